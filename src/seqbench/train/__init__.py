"""Training: the loop, its config, and loading trained models back."""
from seqbench.train.trainer import TrainConfig, TrainResult, load_model, train

__all__ = ["TrainConfig", "TrainResult", "load_model", "train"]
