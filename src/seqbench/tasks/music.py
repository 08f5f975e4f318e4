"""Polyphonic music (``chorales``): Bach chorales from music21's corpus as 88-key piano rolls,
next-step prediction scored as the NLL per frame of 88 independent sigmoids (as in the TCN paper's
JSB Chorales task).

Each chorale (a ``.mxl`` file in ``music21/corpus/bach``, sorted by name) becomes a (T, 88) binary
roll of its four voices (Soprano, Alto, Tenor, Bass; the instrumental parts some scores add are
left out, as in JSB) sampled ``steps_per_quarter`` times per quarter note (1 = quarter-note steps like the original
JSB set; 2 or 4 for finer steps): key ``m - 21`` is on in every frame that MIDI pitch m sounds.
The fixed split shuffles the pieces with seed 0 and takes 60% / 20% / 20% (the original JSB split
is 229 / 76 / 77 pieces). Parsing costs ~0.2 s per piece, so rolls are cached.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.data import cached_arrays, require
from seqbench.errors import SeqbenchError
from seqbench.tasks.arrays import ArrayTask, split_target, step_mask
from seqbench.tasks.base import Metric, PaperReference
from seqbench.tasks.registry import register_task

PREPROCESSING_VERSION = 1  # of _build: bump when it changes (the cache rebuilds the chorales)

KEYS, LOWEST = 88, 21  # piano keys A0 (MIDI 21) .. C8 (MIDI 108)


def chorale_paths() -> list[Path]:
    corpus = require("music21.corpus", why="the chorales task")
    return sorted((Path(str(p)) for p in corpus.getComposer("bach") if str(p).endswith(".mxl")), key=lambda p: p.name)


def piano_roll(path: Path, steps_per_quarter: int) -> np.ndarray:
    """(T, 88) uint8 roll of one score."""
    corpus = require("music21.corpus")
    score = corpus.parse(str(path))
    voices = [p for p in score.parts if (p.partName or "").split()[0:1] in (["Soprano"], ["Alto"], ["Tenor"], ["Bass"])]
    notes = [n for part in (voices or score.parts) for n in part.flatten().notes]
    end = max((float(n.offset) + float(n.quarterLength) for n in notes), default=0.0)
    roll = np.zeros((max(1, math.ceil(end * steps_per_quarter - 1e-9)), KEYS), dtype=np.uint8)
    for n in notes:  # frame t samples the pitches sounding at time t / steps_per_quarter
        a = math.ceil(float(n.offset) * steps_per_quarter - 1e-9)
        b = math.ceil((float(n.offset) + float(n.quarterLength)) * steps_per_quarter - 1e-9)
        for p in n.pitches:
            if LOWEST <= p.midi < LOWEST + KEYS:
                roll[a:b, p.midi - LOWEST] = 1
    return roll


def _build(n_pieces: int | None, steps_per_quarter: int) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    paths = chorale_paths()[:n_pieces]
    rolls = [piano_roll(p, steps_per_quarter) for p in tqdm(paths, desc="parsing chorales (once; cached)",
                                                             unit="piece", leave=False)]
    return {"rolls": np.concatenate(rolls), "lengths": np.array([len(r) for r in rolls]),
            "names": np.array([p.name for p in paths])}


@register_task("chorales")
class Chorales(ArrayTask):
    """Bach chorales as 88-key piano rolls: predict the next frame (NLL per frame, 88 sigmoids)."""

    name = "chorales"
    d_in = d_out = KEYS
    metric = Metric("nll", higher_is_better=False)
    soft_targets = "sigmoid"
    output_steps = "all"
    source = "Bach chorales from music21's corpus (music21 is BSD-licensed)"
    paper = PaperReference({"tcn": 8.10, "lstm": 8.45, "gru": 8.43, "rnn": 8.91},
                           "NLL on JSB Chorales, TCN paper Table 1; a different encoding of the same chorales")
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 1, "clip": 0.2, "epochs": 100}
    trivial_note = "each key on with its training-set frequency, independently"

    def __init__(self, steps_per_quarter: int = 1, n_pieces: int | None = None):
        super().__init__()
        if steps_per_quarter not in (1, 2, 4):
            raise SeqbenchError(f"steps_per_quarter must be 1, 2 or 4, got {steps_per_quarter}")
        if n_pieces is not None and n_pieces < 3:
            raise SeqbenchError(f"n_pieces must be >= 3 (one per split), got {n_pieces}")
        self.steps_per_quarter, self.n_pieces = steps_per_quarter, n_pieces
        a = cached_arrays(f"chorales-satb-sampled-{n_pieces or 'all'}-q{steps_per_quarter}", lambda: _build(n_pieces, steps_per_quarter),
                          PREPROCESSING_VERSION)
        rolls = np.split(a["rolls"], np.cumsum(a["lengths"])[:-1])
        rolls = [r for r in rolls if len(r) >= 2]
        order = np.random.default_rng(0).permutation(len(rolls))
        n_valid = n_test = max(1, int(round(0.2 * len(rolls))))
        parts = {"train": order[n_valid + n_test:], "valid": order[:n_valid], "test": order[n_valid:n_valid + n_test]}
        for split, idx in parts.items():
            pieces = [rolls[i] for i in idx]
            lengths = np.array([len(r) - 1 for r in pieces])
            x = np.zeros((len(pieces), lengths.max(), KEYS), dtype=np.float32)
            y = np.zeros_like(x)
            for i, r in enumerate(pieces):
                x[i, :len(r) - 1], y[i, :len(r) - 1] = r[:-1], r[1:]
            self._set_split(split, x, y, lengths)
        self.variable_length = True
        self.seq_len = int(max(d[0].shape[1] for d in self.data.values()))
        self.trivial_baseline = self._marginal_nll()

    def _marginal_nll(self) -> float:
        p = np.clip(self.real_targets("train").mean(axis=0), 1e-4, 1 - 1e-4)  # frames (n, 88)
        y = self.real_targets("test")
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1).mean())

    def config(self) -> dict:
        cfg = {"name": "chorales", "steps_per_quarter": self.steps_per_quarter}
        if self.n_pieces is not None:
            cfg["n_pieces"] = self.n_pieces
        return cfg

    def _frame_nll(self, out: torch.Tensor, target) -> torch.Tensor:
        y, lengths = split_target(target)
        nll = F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(-1)  # (B, L) per frame
        mask = step_mask(lengths, nll.shape[1])
        return nll.flatten() if mask is None else nll[mask]

    def loss(self, out: torch.Tensor, target) -> torch.Tensor:
        return self._frame_nll(out, target).mean()

    def score(self, out: torch.Tensor, target) -> dict[str, tuple[float, int]]:
        nll = self._frame_nll(out, target)
        return {"nll": (float(nll.sum()), nll.numel())}
