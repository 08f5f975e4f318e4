"""Language modelling on the Penn Treebank (``ptb_word``, ``ptb_char``), from the ``treebank``
package (Mikolov's PTB: 887,521 / 70,390 / 78,669 training / valid / test words, 10k vocabulary).

Word level: each line's words then ``<eos>``; perplexity. Char level: the same text with spaces
written ``_`` (the standard ptb.char files) and ``<eos>`` at each line end; bits per character.

Each split is one long token stream, cut into windows of ``seq_len`` tokens in which only the last
``valid_len`` predictions are scored (the first window scores all of its), so every scored token
after the first window has at least ``seq_len - valid_len`` tokens of context and every token of
the split is scored exactly once. Batches are groups of windows. Inputs are token ids: models are
built with ``embed_dim`` (an embedding and a tied softmax around any zoo model).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.data import cached_arrays, require
from seqbench.errors import SeqbenchError
from seqbench.tasks.base import Metric, PaperReference, Task
from seqbench.tasks.registry import register_task

PREPROCESSING_VERSION = 1  # of _build: bump when it changes (the cache rebuilds PTB)
EOS = "<eos>"


def _tokens(text: str, level: str) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        out.extend(line.split() if level == "word" else list(line.strip().replace(" ", "_")))
        out.append(EOS)
    return out


def _build(level: str) -> dict[str, np.ndarray]:
    treebank = require("treebank", why=f"ptb_{level}")
    streams = {k: _tokens(treebank.penn[k], level) for k in ("train", "valid", "test")}
    vocab = sorted(set(streams["train"]))
    index = {w: i for i, w in enumerate(vocab)}
    unk = index.get("<unk>")
    arrays = {"vocab": np.array(vocab)}
    for k, toks in streams.items():
        ids = [index.get(t, unk) for t in toks]
        if any(i is None for i in ids):
            raise SeqbenchError(f"ptb_{level}: the {k} split has tokens missing from the training vocabulary")
        arrays[k] = np.array(ids, dtype=np.int32)
    return arrays


class TokenStream(Task):
    """Language modelling on token streams (ids): windows of ``seq_len`` inputs, the next token as
    target, the last ``valid_len`` positions of each window scored (every token scored once).
    Subclasses call ``_setup`` with {vocab, train, valid, test} id arrays."""

    input_kind = "tokens"
    soft_targets = "softmax"
    level = "char"

    def _setup(self, arrays: dict[str, np.ndarray], seq_len: int, valid_len: int, max_tokens: int | None) -> None:
        if not (isinstance(seq_len, int) and isinstance(valid_len, int) and 1 <= valid_len <= seq_len):
            raise SeqbenchError(f"need 1 <= valid_len <= seq_len, got seq_len={seq_len}, valid_len={valid_len}")
        if max_tokens is not None and max_tokens <= seq_len:
            raise SeqbenchError(f"max_tokens must exceed seq_len ({seq_len}), got {max_tokens}")
        self.seq_len, self.valid_len, self.max_tokens = seq_len, valid_len, max_tokens
        self.vocab = [str(w) for w in arrays["vocab"]]
        self.d_in = self.d_out = self.vocab_size = len(self.vocab)
        self.streams = {k: torch.from_numpy(arrays[k][:max_tokens].astype(np.int64)) for k in ("train", "valid", "test")}
        self.windows = {k: self._windows(len(s), k) for k, s in self.streams.items()}
        self.sizes = {k: len(w[0]) for k, w in self.windows.items()}
        counts = np.bincount(arrays["train"][:max_tokens], minlength=self.vocab_size) + 1.0  # add-one unigram
        logp = np.log(counts / counts.sum())
        self.trivial_by_split = {k: self._from_nll(float(-logp[arrays[k][:max_tokens][1:]].mean()))
                                 for k in ("valid", "test")}
        self.trivial_baseline = self.trivial_by_split["test"]
        self.trivial_note = "unigram (add-one) frequencies of the training set"

    def _from_nll(self, nll: float) -> float:
        """The headline metric from the mean NLL: bits per character, or perplexity for words."""
        return nll / math.log(2) if self.metric.name == "bpc" else math.exp(min(nll, 700.0))

    def _windows(self, n: int, split: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """(starts, score_from): window i is inputs [s, s+seq_len), scoring positions >= score_from."""
        L, V = self.seq_len, self.valid_len
        if n - 1 < L:
            raise SeqbenchError(f"{self.name}: the {split} split has {n} tokens, fewer than seq_len + 1 = {L + 1}; "
                                "use a smaller seq_len (and valid_len) or more text")
        starts, score_from = [0], [0]
        end = L  # predictions [0, end) are scored
        while end < n - 1:
            new_end = min(end + V, n - 1)
            starts.append(new_end - L)
            score_from.append(L - (new_end - end))
            end = new_end
        return torch.tensor(starts), torch.tensor(score_from)

    def config(self) -> dict[str, Any]:
        cfg = {"name": self.name, "seq_len": self.seq_len, "valid_len": self.valid_len}
        if self.max_tokens is not None:
            cfg["max_tokens"] = self.max_tokens
        return cfg

    def _gather(self, split: str, idx: np.ndarray) -> tuple[torch.Tensor, Any]:
        """Windows ``idx``: ids (B, seq_len) and (next ids, mask of the scored positions)."""
        starts, score_from = self.windows[split]
        idx = torch.from_numpy(np.asarray(idx))
        stream, offs = self.streams[split], torch.arange(self.seq_len + 1)
        tok = stream[starts[idx, None] + offs]  # (B, seq_len + 1)
        mask = torch.arange(self.seq_len)[None, :] >= score_from[idx, None]
        return tok[:, :-1], (tok[:, 1:], mask)

    def _nll(self, out: torch.Tensor, target) -> torch.Tensor:
        y, mask = target
        return F.cross_entropy(out[mask], y[mask], reduction="none")

    def loss(self, out: torch.Tensor, target) -> torch.Tensor:
        return self._nll(out, target).mean()

    def score(self, out: torch.Tensor, target) -> dict[str, tuple[float, int]]:
        nll = self._nll(out, target)
        return {"nll": (float(nll.sum()), nll.numel())}

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        means[self.metric.name] = self._from_nll(means["nll"])
        return means

    def info(self) -> dict[str, Any]:
        info = super().info()
        info.update(train=len(self.streams["train"]), valid=len(self.streams["valid"]), test=len(self.streams["test"]),
                    seq_len=f"{self.seq_len} (scored {self.valid_len})")
        return info


class _PTB(TokenStream):
    source = "Penn Treebank (Mikolov's preprocessing), from the treebank package"

    def __init__(self, seq_len: int, valid_len: int, max_tokens: int | None):
        super().__init__()
        self._setup(cached_arrays(f"ptb-{self.level}", lambda: _build(self.level), PREPROCESSING_VERSION),
                    seq_len, valid_len, max_tokens)


@register_task("ptb_word")
class PTBWord(_PTB):
    """Word-level Penn Treebank: next-word prediction, perplexity (windows of 80, last 40 scored)."""

    name = "ptb_word"
    level = "word"
    metric = Metric("ppl", higher_is_better=False)
    paper = PaperReference({"lstm": 78.93, "gru": 92.48, "rnn": 114.50, "tcn": 88.68, "trellisnet": 56.97},
                           "perplexity; TCN paper Table 1 (13M params); TrellisNet without MoS (24M)")
    recommended = {"optimizer": "sgd", "lr": 4.0, "clip": 0.35, "batch_size": 16, "epochs": 100,
                   "schedule": "plateau", "gamma": 0.5}
    embed_dim = 600  # the paper's word embedding

    def __init__(self, seq_len: int = 80, valid_len: int = 40, max_tokens: int | None = None):
        super().__init__(seq_len, valid_len, max_tokens)


@register_task("ptb_char")
class PTBChar(_PTB):
    """Character-level Penn Treebank: next-character prediction, bits per character."""

    name = "ptb_char"
    level = "char"
    metric = Metric("bpc", higher_is_better=False)
    paper = PaperReference({"lstm": 1.36, "gru": 1.37, "rnn": 1.48, "tcn": 1.31, "trellisnet": 1.158},
                           "bits per character; TCN paper Table 1 (3M params); TrellisNet paper")
    recommended = {"optimizer": "sgd", "lr": 4.0, "clip": 0.15, "batch_size": 32, "epochs": 100,
                   "schedule": "plateau", "gamma": 0.1}
    embed_dim = 100  # the paper's character embedding

    def __init__(self, seq_len: int = 400, valid_len: int = 320, max_tokens: int | None = None):
        super().__init__(seq_len, valid_len, max_tokens)
