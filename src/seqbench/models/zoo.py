"""Imports every architecture module so their @register_model decorators run."""
from seqbench.models import lru, rnn, tcn, transformer, trellisnet  # noqa: F401
