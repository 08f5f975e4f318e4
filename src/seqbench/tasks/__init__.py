"""The task suite: each task brings its data, loss, metric, trivial baseline and paper numbers."""
from seqbench.tasks.base import Metric, PaperReference, Task
from seqbench.tasks.registry import create_task, list_tasks, register_task
# Public base classes for your own tasks (README, "Your own task code"):
from seqbench.tasks.arrays import ArrayTask, ClassificationTask  # noqa: E402
from seqbench.tasks.forecast import WindowForecast  # noqa: E402
from seqbench.tasks.language import TokenStream  # noqa: E402

__all__ = ["ArrayTask", "ClassificationTask", "Metric", "PaperReference", "Task", "TokenStream", "WindowForecast",
           "create_task", "list_tasks", "register_task"]
