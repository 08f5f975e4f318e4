"""Model registry: ``@register_model`` on a SeqModel class, ``create_model`` to build one."""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass

from seqbench.errors import SeqbenchError
from seqbench.models.base import SeqModel
from seqbench.registry import Registry
from seqbench.utils import describe_type, matches_type, parse_count

def _load_zoo() -> None:
    import seqbench.models.zoo  # noqa: F401 - its modules' @register_model decorators fill the registry


MODELS: Registry["ModelEntry"] = Registry("model", load=_load_zoo)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[SeqModel]
    width_arg: str          # the config key the budget solver scales (e.g. "hidden")
    summary: str

    def config_keys(self) -> list[str]:
        sig = inspect.signature(self.cls.__init__)
        return [p for p in sig.parameters if p not in ("self", "d_in", "d_out", "causal")]

    def check_options(self, cfg: dict) -> None:
        """Unknown names, wrong types and out-of-range values are one-line errors, before anything
        is built: integers where the signature says int, dropout rates in [0, 1), sizes >= 1."""
        valid = self.config_keys()
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise SeqbenchError(f"unknown option(s) {', '.join(unknown)} for model {self.name!r}; "
                                f"valid options: {', '.join(valid)}")
        hints = typing.get_type_hints(inspect.unwrap(self.cls.__init__))
        for key, value in cfg.items():
            hint = hints.get(key)
            if hint is not None and not matches_type(value, hint):
                raise SeqbenchError(f"model option {key} of {self.name!r} must be {describe_type(hint)}, got {value!r}")
            if "dropout" in key and not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise SeqbenchError(f"model option {key} of {self.name!r} is a probability in [0, 1), got {value!r}")
            if hint is int and key in POSITIVE and value < 1:
                raise SeqbenchError(f"model option {key} of {self.name!r} must be >= 1, got {value!r}")
            if hint is int and key in DEPTH and value > MAX_DEPTH:
                raise SeqbenchError(f"model option {key} of {self.name!r} is {value:,}; seqbench builds at most "
                                    f"{MAX_DEPTH:,} (a deeper stack is not trainable, and would take minutes to build)")


# integer options that count something (a width, a depth, a kernel): at least 1
POSITIVE = {"hidden", "levels", "layers", "heads", "kernel_size", "state_dim", "mlp_ratio", "chunk", "embed_dim"}


# options that stack modules: each level is a Python object, so a tampered depth would hang the build
DEPTH = {"levels", "layers"}
MAX_DEPTH = 1000


def register_model(name: str, *, width_arg: str = "hidden"):
    """Class decorator adding a model to the zoo under ``name`` (refuses duplicates)."""
    def wrap(cls: type[SeqModel]) -> type[SeqModel]:
        doc = (cls.__doc__ or "").strip().splitlines()
        MODELS.register(name, ModelEntry(name, cls, width_arg, doc[0] if doc else ""))
        cls.registry_name = name
        return cls
    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return MODELS.names(pattern)


def get_model_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def create_model(name: str, d_in: int, d_out: int, *, params: int | str | None = None,
                 causal: bool = True, embed_dim: int | None = None, emb_dropout: float = 0.0,
                 **cfg) -> SeqModel:
    """Build a zoo model mapping (B, L, d_in) -> (B, L, d_out).

    ``params=N`` (or "70k") solves the model's width so its parameter count lands within 5% of N
    (see ``seqbench.models.budget``); other keyword arguments set the architecture (``levels``,
    ``kernel_size``, ``dropout``...). Unknown keywords raise an error listing the valid ones.

    ``embed_dim=E`` builds a token model (``seqbench.models.embedding.TokenModel``): ids (B, L) in
    0..d_in-1 -> logits (B, L, d_out), with d_out == d_in (the decoder is tied to the embedding);
    a budget then covers the embedding too.
    """
    if embed_dim is not None:
        return _create_token_model(name, d_in, d_out, params, causal, embed_dim, emb_dropout, cfg)
    entry = get_model_entry(name)
    entry.check_options(cfg)
    if not isinstance(causal, bool):
        raise SeqbenchError(f"causal must be true or false, got {causal!r}")
    if params is not None:
        from seqbench.models.budget import check_fits_in_memory, solve_width_for_budget
        if entry.width_arg in cfg:
            raise SeqbenchError(f"give either params= or {entry.width_arg}= for {name!r}, not both")
        target = parse_count(params)
        check_fits_in_memory(target, f"a budget of {target:,} parameters")
        cfg[entry.width_arg] = solve_width_for_budget(name, d_in, d_out, target, causal=causal, **cfg).width
    from seqbench.models.budget import check_fits_in_memory, count_on_meta
    n = count_on_meta(entry.cls, d_in=d_in, d_out=d_out, causal=causal, **cfg)  # before allocating anything
    check_fits_in_memory(n, f"{name} with {', '.join(f'{k}={v}' for k, v in cfg.items()) or 'its defaults'}")
    return entry.cls(d_in=d_in, d_out=d_out, causal=causal, **cfg)


def _create_token_model(name, vocab, d_out, params, causal, embed_dim, emb_dropout, cfg) -> SeqModel:
    from seqbench.models.embedding import TokenModel
    if d_out != vocab:
        raise SeqbenchError(f"a token model's decoder is tied to its embedding: d_out must equal the vocabulary "
                            f"size d_in={vocab}, got {d_out}")
    if not (isinstance(embed_dim, int) and embed_dim >= 1 and isinstance(vocab, int) and vocab >= 2):
        raise SeqbenchError(f"embed_dim must be a positive integer and the vocabulary >= 2, got {embed_dim}, {vocab}")
    inner_budget = None
    if params is not None:
        shared = vocab * embed_dim + vocab  # tied embedding/decoder + decoder bias
        inner_budget = parse_count(params) - shared
        if inner_budget <= 0:
            raise SeqbenchError(f"a budget of {parse_count(params):,} params does not cover the embedding alone "
                                f"({shared:,} = vocab {vocab:,} x embed_dim {embed_dim} + bias); raise params or "
                                "lower embed_dim")
    if not (isinstance(emb_dropout, (int, float)) and 0 <= emb_dropout < 1):
        raise SeqbenchError(f"emb_dropout is a probability in [0, 1), got {emb_dropout!r}")
    inner = create_model(name, embed_dim, embed_dim, params=inner_budget, causal=causal, **cfg)
    return TokenModel(inner, vocab, embed_dim, emb_dropout)


def model_for_task(name: str, task, *, params: int | str | None = None, causal: bool = True, **cfg) -> SeqModel:
    """``create_model`` with the task's dimensions (and ``embed_dim`` for token tasks unless given)."""
    return create_model(name, task.d_in, task.d_out, params=params, causal=causal, **{**task.model_kwargs(), **cfg})


def model_from_config(config: dict) -> SeqModel:
    """Rebuild a model from its ``model.config`` (e.g. stored beside a checkpoint)."""
    if not isinstance(config, dict) or not {"name", "d_in", "d_out"} <= set(config):
        raise SeqbenchError("a model config is a mapping with name, d_in, d_out and the model's options, "
                            f"got {str(config)[:80]!r}")
    cfg = dict(config)
    return create_model(cfg.pop("name"), cfg.pop("d_in"), cfg.pop("d_out"), **cfg)
