"""Data plumbing shared by the real tasks: optional imports and the preprocessed-array cache."""
from seqbench.data.cache import cache_dir, cached_arrays
from seqbench.data.optional import require

__all__ = ["cache_dir", "cached_arrays", "require"]
