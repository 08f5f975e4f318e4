"""seqbench: which sequence architecture should I use? A model zoo under one contract, a task
suite, and systematic, matched-budget comparisons."""
from seqbench.errors import SeqbenchError
from seqbench.models import (SeqModel, count_params, create_model, empirical_receptive_field,
                             list_models, model_for_task, model_from_config, register_model,
                             solve_width_for_budget)
from seqbench.tasks import Task, create_task, list_tasks, register_task
from seqbench.recommend import Limits, Recommendation, recommend
from seqbench.train import TrainConfig, TrainResult, load_model, train
from seqbench.run import Run

__version__ = "0.1.0"

__all__ = ["SeqbenchError", "SeqModel", "count_params", "create_model", "empirical_receptive_field",
           "list_models", "model_for_task", "model_from_config", "register_model", "solve_width_for_budget", "Task",
           "create_task", "list_tasks", "register_task", "TrainConfig", "TrainResult", "load_model",
           "train", "Run", "Limits", "Recommendation", "recommend", "__version__"]
