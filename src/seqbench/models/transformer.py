"""Pre-LN Transformer (Xiong et al. 2020) with rotary position embeddings (Su et al. 2021).

Pre-LN puts LayerNorm inside each residual branch (x + attn(LN(x)), x + mlp(LN(x))) and a final
LayerNorm before the head, so it trains without learning-rate warm-up. Rotary embeddings rotate
queries and keys by their position, so attention scores depend only on relative offsets: there
is no table of positions and no maximum length, and the model runs at any length. (ALiBi was
tried first: its monotone distance penalty could not learn to read the input exactly two steps
back, MSE 0.77 vs 1.0 trivial, where rotary embeddings can.) Causal mode masks the future;
streaming keeps a KV cache (O(t) work per step, as attention over the whole past requires).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import ExportStep, SeqModel, StateSpec
from seqbench.models.dropout import FastDropout
from seqbench.models.registry import register_model
from seqbench.models.streaming import use_numpy_for


def rotary(x: torch.Tensor, pos: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x: (B, H, L, D) by angle pos * base^(-2i/D)."""
    D = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    ang = pos.to(torch.float32)[:, None] * inv_freq[None, :]  # (L, D/2)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: int, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.drop = FastDropout(dropout)

    def qkv_heads(self, x: torch.Tensor, pos: torch.Tensor):
        B, L, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return rotary(q, pos), rotary(k, pos), v  # each (B, heads, L, head_dim)

    def attend(self, x, q, k, v, mask=None, is_causal=False):
        B, L, _ = x.shape
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, -1)))
        return x + self.drop(self.mlp(self.ln2(x)))


@register_model("transformer", width_arg="hidden")
class Transformer(SeqModel):
    """Pre-LN Transformer with rotary positions (any length; causal or bidirectional)."""

    supports_step = True

    def __init__(self, d_in: int, d_out: int, causal: bool = True, hidden: int = 64, layers: int = 2,
                 heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__(d_in, d_out, causal)
        if hidden < 1 or layers < 1 or heads < 1 or mlp_ratio < 1:
            raise SeqbenchError(f"transformer needs hidden, layers, heads, mlp_ratio >= 1, got hidden={hidden}, "
                                f"layers={layers}, heads={heads}, mlp_ratio={mlp_ratio}")
        self.hidden, self.layers, self.heads = hidden, layers, heads
        # attention width decoupled from `hidden` (even, for rotary pairs) so budgets move in small steps
        self.head_dim = max(2, 2 * round(hidden / heads / 2))
        self.embed = nn.Linear(d_in, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, self.head_dim, mlp_ratio, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, d_out)
        self.apply(self._init)
        for b in self.blocks:  # GPT-2: scale residual projections by depth
            for lin in (b.proj, b.mlp[2]):
                nn.init.normal_(lin.weight, 0.0, 0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)

    def export_step(self, max_len: int) -> ExportStep:
        return TransformerExportStep(self, max_len)

    def describe(self) -> str:
        return f"{self.layers} layers x {self.hidden}, {self.heads} heads x {self.head_dim}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        pos = torch.arange(x.shape[1], device=x.device)
        h = self.embed(x)  # (B, L, hidden)
        for block in self.blocks:
            h = block.attend(h, *block.qkv_heads(h, pos), is_causal=self.causal)
        return self.head(self.ln_f(h))

    # -- streaming: a KV cache per layer, grown by doubling -----------------------------------
    def _init_state(self, batch_size: int, engine: str) -> dict:
        p = self._param_like()
        state = {"t": 0, "k": [None] * self.layers, "v": [None] * self.layers, "numpy": use_numpy_for(p, engine)}
        if state["numpy"]:
            state.update(self._fold_numpy())
            state["kv_np"] = [None] * self.layers  # (cache, NumPy views of K and V), renewed with the cache
        return state

    @torch.no_grad()
    def _fold_numpy(self) -> dict:
        """The weights once, folded for the NumPy step: each LayerNorm's gain and bias into the matmul
        after it, 1/sqrt(head_dim) into the query columns, and the rotary pair swap (x[2i], x[2i+1])
        -> (-x[2i+1], x[2i]) into extra query/key columns, so a rotation is qk * cos + qk_swapped * sin."""
        H, D = self.heads, self.head_dim
        a = lambda t: np.ascontiguousarray(t.detach().numpy())  # noqa: E731
        erf = _erf()
        partner = np.arange(D) ^ 1  # the other channel of each rotary pair
        sign = np.where(np.arange(D) % 2 == 0, -1.0, 1.0)

        def after_ln(ln: nn.LayerNorm, W: torch.Tensor, b: torch.Tensor):  # LN(h) @ W.T + b = n @ W' + b'
            return ln.weight[:, None] * W.t(), ln.bias @ W.t() + b

        w = []
        for blk in self.blocks:
            W, b = after_ln(blk.ln1, blk.qkv.weight, blk.qkv.bias)  # (hidden, 3 * H * D), columns (3, H, D)
            W, b = W.reshape(-1, 3, H, D).clone(), b.reshape(3, H, D).clone()
            W[:, 0] /= math.sqrt(D)
            b[0] /= math.sqrt(D)
            sw = torch.as_tensor(sign, dtype=W.dtype)
            Wcat = torch.cat([W.flatten(1), (W[:, :2, :, partner] * sw).flatten(1)], 1)  # q, k, v, q~, k~
            bcat = torch.cat([b.flatten(), (b[:2, :, partner] * sw).flatten()])
            W1, b1 = after_ln(blk.ln2, blk.mlp[0].weight, blk.mlp[0].bias)
            W2 = blk.mlp[2].weight.t()
            if erf is not None:  # gelu(m) = m/sqrt2 (1 + erf(m/sqrt2)) / sqrt2: both 1/sqrt2 folded
                W1, b1, W2 = W1 / math.sqrt(2), b1 / math.sqrt(2), W2 / math.sqrt(2)
            w.append((blk.ln1.eps, a(Wcat), a(bcat), a(blk.proj.weight.t()), a(blk.proj.bias), blk.ln2.eps, a(W1),
                      a(b1), a(W2), a(blk.mlp[2].bias)))
        Wh, bh = after_ln(self.ln_f, self.head.weight, self.head.bias)
        io = (a(self.embed.weight.t()), a(self.embed.bias), self.ln_f.eps, a(Wh), a(bh))
        inv_freq = 10_000.0 ** (-np.arange(0, D, 2, dtype=np.float32) / D)  # as rotary(): float32 angles
        return {"w": w, "io": io, "mean": np.full((self.hidden, 1), 1.0 / self.hidden, dtype=io[0].dtype),  # row means
                "inv_freq": np.tile(np.repeat(inv_freq, 2), 2 * H), "erf": erf, "rot": (-ROT_BLOCK, None, None)}

    def _step_is_torch_free(self, state: dict) -> bool:
        return state["numpy"]  # NumPy, and torch's GELU on tensors made from its arrays (no grad)

    def _step(self, x_t: torch.Tensor, state: dict):
        if not state["numpy"]:
            y, state = self._step_chunk(x_t.unsqueeze(1), state)
            return y[:, 0], state
        return self._step_numpy(x_t.numpy(), state)

    def _step_numpy(self, x: np.ndarray, state: dict):
        """One position through every layer on NumPy, weights folded by ``_fold_numpy`` (~20 small
        array ops per layer, where torch's per-op overhead dominated; KV cache shared with the
        chunk path)."""
        B, t, H, D = x.shape[0], state["t"], self.heads, self.head_dim
        inner = H * D
        We, be, eps_f, Wh, bh = state["io"]
        u, erf = state["mean"], state["erf"]
        t0, cos, sin = state["rot"]
        if not 0 <= t - t0 < ROT_BLOCK:  # rotary angles for the next block of positions
            t0 = t - t % ROT_BLOCK
            ang = np.arange(t0, t0 + ROT_BLOCK, dtype=np.float32)[:, None] * state["inv_freq"]  # float32, as torch
            cos, sin = np.cos(ang).astype(u.dtype), np.sin(ang).astype(u.dtype)
            state["rot"] = t0, cos, sin
        cos, sin = cos[t - t0], sin[t - t0]

        def norm(h, eps):  # LayerNorm without its affine part (folded into the next matmul)
            c = h - h @ u
            return c / np.sqrt((c * c) @ u + eps)

        h = x @ We + be  # (B, hidden)
        for i, (eps1, Wqkv, bqkv, Wp, bp, eps2, W1, b1, W2, b2) in enumerate(state["w"]):
            z = norm(h, eps1) @ Wqkv + bqkv  # (B, 5 * inner): q, k, v, and q, k pair-swapped
            qk = z[:, :2 * inner] * cos + z[:, 3 * inner:] * sin  # rotated (q already scaled)
            q, k, v = qk[:, :inner].reshape(B, H, D), qk[:, inner:].reshape(B, H, D), z[:, 2 * inner:3 * inner]
            cache = state["k"][i]
            if cache is None or cache.shape[2] <= t:  # grow (by doubling, shared with the chunk path)
                state["k"][i] = _append(cache, torch.from_numpy(k[:, :, None]), t)
                state["v"][i] = _append(state["v"][i], torch.from_numpy(v.reshape(B, H, 1, D)), t)
            kv = state["kv_np"][i]
            if kv is None or kv[0] is not state["k"][i]:  # a new cache (grown here or by a chunk): new views
                kv = state["kv_np"][i] = (state["k"][i], state["k"][i].numpy(), state["v"][i].numpy())
            _, kc, vc = kv
            kc[:, :, t], vc[:, :, t] = k, v.reshape(B, H, D)
            s = kc[:, :, :t + 1] @ q[..., None]  # (B, H, t+1, 1)
            s = np.exp(s - s.max(2, keepdims=True))
            att = (s.swapaxes(2, 3) @ vc[:, :, :t + 1]) / s.sum(2, keepdims=True)  # (B, H, 1, D)
            h = h + att.reshape(B, inner) @ Wp + bp
            m = norm(h, eps2) @ W1 + b1
            if erf is None:
                m = F.gelu(torch.from_numpy(m)).numpy()  # exact (erf) GELU: NumPy has no erf
            else:
                g = erf(m)
                g += 1.0
                m *= g
            h = h + m @ W2 + b2
        state["t"] = t + 1
        return torch.from_numpy(norm(h, eps_f) @ Wh + bh), state

    def _step_chunk(self, x: torch.Tensor, state: dict):
        C, t0 = x.shape[1], state["t"]
        q_pos = torch.arange(t0, t0 + C, device=x.device)
        # query i (position t0+i) sees keys 0..t0+i; a single step sees the whole cache
        mask = None if C == 1 else torch.arange(t0 + C, device=x.device)[None, :] <= q_pos[:, None]
        h = self.embed(x)
        for i, block in enumerate(self.blocks):
            q, k, v = block.qkv_heads(h, q_pos)  # (B, heads, C, head_dim)
            keys = state["k"][i] = _append(state["k"][i], k, t0)
            values = state["v"][i] = _append(state["v"][i], v, t0)
            h = block.attend(h, q, keys[:, :, :t0 + C], values[:, :, :t0 + C], mask)
        state["t"] = t0 + C
        return self.head(self.ln_f(h)), state


ROT_BLOCK = 256  # positions whose rotary cos/sin the NumPy step computes at once


def _erf():
    """SciPy's erf for the NumPy step's GELU where SciPy is installed (a ufunc: a third of the cost of
    a round trip through torch's GELU on a 200-wide row), else None (torch's GELU)."""
    try:
        from scipy.special import erf
    except ImportError:
        return None
    return erf


def _append(cache: torch.Tensor | None, new: torch.Tensor, t0: int) -> torch.Tensor:
    """Write new (B, H, C, D) at positions t0..t0+C-1 of a capacity-doubling cache."""
    need = t0 + new.shape[2]
    if cache is None or cache.shape[2] < need:
        capacity = max(16, 1 << (need - 1).bit_length())  # next power of two: room for the steps that follow
        grown = new.new_zeros(*new.shape[:2], capacity, new.shape[3])
        if cache is not None:
            grown[:, :, :t0] = cache[:, :, :t0]
        cache = grown
    cache[:, :, t0:need] = new
    return cache


class TransformerExportStep(ExportStep):
    """State: per layer a key and a value cache (B, heads, max_len, head_dim), and ``position``, the
    number of steps taken (int64, shape (1,)); a stream holds at most ``max_len`` steps: from step
    ``max_len + 1`` on, the output is NaN (start a new stream, or export with a larger ``max_len``)."""

    def __init__(self, m, max_len: int):
        super().__init__()
        self.m, self.max_len = m, max_len
        self.max_steps = max_len  # a stream's limit: past it the output is NaN

    def specs(self, batch):
        dt, shape = self.m.head.weight.dtype, (batch, self.m.heads, self.max_len, self.m.head_dim)
        out = [StateSpec("position", (1,), torch.int64, "steps taken so far (the next step's position)", None)]
        for i in range(self.m.layers):
            out += [StateSpec(f"layer{i}_keys", shape, dt, f"layer {i}'s key cache (rotated keys)"),
                    StateSpec(f"layer{i}_values", shape, dt, f"layer {i}'s value cache")]
        return out

    def forward(self, x, position, *caches):
        B, m = x.shape[0], self.m
        slots = torch.arange(self.max_len, device=x.device)
        here = (slots == position)[None, None, :, None]  # this step's slot
        hidden_future = slots > position  # (M,): not yet written
        h, new = m.embed(x), []
        for i, block in enumerate(m.blocks):
            qkv = block.qkv(block.ln1(h)).view(B, 3, block.heads, block.head_dim)
            q = rotary(qkv[:, 0, :, None], position)  # (B, heads, 1, D)
            k = rotary(qkv[:, 1, :, None], position)
            keys = torch.where(here, k, caches[2 * i])
            values = torch.where(here, qkv[:, 2, :, None], caches[2 * i + 1])
            new += [keys, values]
            scores = (q @ keys.transpose(-1, -2)) / math.sqrt(block.head_dim)  # (B, heads, 1, M)
            att = torch.softmax(scores.masked_fill(hidden_future, float("-inf")), dim=-1) @ values
            h = h + block.proj(att.reshape(B, -1))
            h = h + block.mlp(block.ln2(h))
        y = m.head(m.ln_f(h))
        # past max_len steps the cache is full and attention would be wrong: the output says so (NaN)
        y = torch.where(position < self.max_len, y, torch.full_like(y, float("nan")))
        return (y, position + 1, *new)
