"""Imports every architecture module so their @register_model decorators run."""
from seqbench.models import rnn, tcn  # noqa: F401
