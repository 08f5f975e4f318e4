"""The task suite: each task brings its data, loss, metric, trivial baseline and paper numbers."""
from seqbench.tasks.base import Metric, PaperReference, Task
from seqbench.tasks.registry import create_task, list_tasks, register_task

__all__ = ["Metric", "PaperReference", "Task", "create_task", "list_tasks", "register_task"]
