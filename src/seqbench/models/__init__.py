"""The model zoo: every model maps (B, L, d_in) -> (B, L, d_out) under one contract."""
from seqbench.models.base import SeqModel, count_params, empirical_receptive_field
from seqbench.models.budget import solve_width_for_budget
from seqbench.models.registry import (create_model, list_models, model_for_task, model_from_config,
                                      register_model)

__all__ = ["SeqModel", "count_params", "empirical_receptive_field", "solve_width_for_budget",
           "create_model", "list_models", "model_for_task", "model_from_config", "register_model"]
