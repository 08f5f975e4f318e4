"""TCN training and inference throughput: seqbench's TCN vs the straightforward reference (issue 6).

    python benchmarks/train_throughput.py [--threads 2] [--compile] [--quick]

For the seq-MNIST configuration (8 levels x 25, k=7, batch 64, L=784, 1 -> 10, cross-entropy on
the last step) and adding T=600 (8 x 24, k=8, batch 32, 2 -> 1, MSE on the last step), in one
process with the candidates' runs interleaved: training samples/s (forward + backward + Adam step),
inference samples/s, an LSTM of equal parameter count, achieved GFLOP/s of the convolutions each
path actually computes against the machine's fp32 matmul peak (torch.mm, 2048 x 2048) measured in
the same run, and peak training memory (each in a fresh process).

Targets: seqbench trains >= 2.5x the reference's samples/s; >= 50% of the matmul peak.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import seqbench  # noqa: E402
from common import machine, matmul_peak, time_interleaved  # noqa: E402
from reference_tcn import reference_like  # noqa: E402

CONFIGS = {  # name: model shape, batch, length, d_in, d_out, loss
    "smnist": dict(hidden=25, levels=8, kernel_size=7, batch=64, length=784, d_in=1, d_out=10, loss="ce"),
    "adding": dict(hidden=24, levels=8, kernel_size=8, batch=32, length=600, d_in=2, d_out=1, loss="mse"),
}


def build(cfg: dict, variant: str):
    """(model, forward fn giving the last step's output (B, d_out)) for one variant."""
    torch.manual_seed(0)
    tcn = seqbench.create_model("tcn", cfg["d_in"], cfg["d_out"], hidden=cfg["hidden"], levels=cfg["levels"],
                                kernel_size=cfg["kernel_size"])
    if variant == "reference":
        ref = reference_like(tcn)
        return ref, lambda x: ref(x, last_only=True)
    if variant == "seqbench":  # what seqbench.train runs for a last-step task
        return tcn, lambda x: tcn.forward_last(x)[:, -1]
    if variant == "seqbench-full":  # left padding only: every step's output computed
        return tcn, lambda x: tcn(x)[:, -1]
    if variant == "seqbench-compile":
        fn = torch.compile(tcn.forward_last)
        return tcn, lambda x: fn(x)[:, -1]
    if variant == "lstm":
        lstm = seqbench.create_model("lstm", cfg["d_in"], cfg["d_out"], params=seqbench.count_params(tcn))
        return lstm, lambda x: lstm.forward_last(x)[:, -1]
    raise ValueError(variant)


def data(cfg: dict):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["batch"], cfg["length"], cfg["d_in"], generator=g)
    y = (torch.randint(0, cfg["d_out"], (cfg["batch"],), generator=g) if cfg["loss"] == "ce"
         else torch.randn(cfg["batch"], cfg["d_out"], generator=g))
    return x, y


def train_step_fn(cfg: dict, model, fwd, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = F.cross_entropy if cfg["loss"] == "ce" else F.mse_loss

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(fwd(x), y).backward()
        opt.step()
    return step


def infer_fn(model, fwd, x):
    def run():
        with torch.inference_mode():
            fwd(x)
    return lambda: (model.eval(), run(), model.train())


def conv_flops(cfg: dict, variant: str, training: bool) -> float:
    """FLOPs of the convolutions a path computes for one batch (2 per multiply-add). Training counts
    forward + input gradient + weight gradient (3x), except no input gradient for the raw input."""
    B, L, k, H = cfg["batch"], cfg["length"], cfg["kernel_size"], cfg["hidden"]
    total = 0.0
    n = L  # steps a block's input holds
    for i in range(cfg["levels"]):
        d, c_in = 2 ** i, (cfg["d_in"] if i == 0 else H)
        if variant == "reference":  # pads both sides: (k-1)d extra outputs per conv
            out1 = out2 = L + (k - 1) * d
            out_res = L
        elif variant in ("seqbench", "seqbench-compile"):  # decimated: n steps in, ceil(n/2) out
            out1, out2 = n, (n + 1) // 2
            out_res = out2
            n = out2
        else:
            out1 = out2 = out_res = L
        mult = 2 if (training and i == 0) else (3 if training else 1)  # first conv: no grad for x
        total += mult * 2 * B * out1 * c_in * H * k
        total += (3 if training else 1) * 2 * B * out2 * H * H * k
        if c_in != H:
            total += mult * 2 * B * out_res * c_in * H
    return total


def memory_probe(cfg_name: str, variant: str) -> None:
    """Run in a fresh process: peak RSS growth over two training steps, in MiB (Linux)."""
    cfg = CONFIGS[cfg_name]
    model, fwd = build(cfg, variant)
    x, y = data(cfg)
    step = train_step_fn(cfg, model, fwd, x, y)
    before = _status_kib("VmRSS")
    step()
    step()
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork + exec)
    print(json.dumps({"peak_mib": max(_status_kib("VmHWM") - before, 0) / 1024}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_memory(cfg_name: str, variant: str, threads: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-probe", cfg_name, variant, "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    ap.add_argument("--memory-probe", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        return memory_probe(*args.memory_probe)

    rounds = 2 if args.quick else 5
    print(f"machine: {machine()}")
    peak = matmul_peak()
    print(f"fp32 matmul peak (torch.mm 2048x2048): {peak:.1f} GFLOP/s\n")
    variants = ["reference", "seqbench", "seqbench-full", "lstm"] + (["seqbench-compile"] if args.compile else [])
    verdicts = []
    for name, cfg in CONFIGS.items():
        x, y = data(cfg)
        built = {v: build(cfg, v) for v in variants}
        t0 = time.perf_counter()
        train = time_interleaved({v: train_step_fn(cfg, *built[v], x, y) for v in variants},
                                 rounds=rounds, min_time=0.5)
        infer = time_interleaved({v: infer_fn(*built[v], x) for v in variants}, rounds=rounds, min_time=0.3)
        params = {v: seqbench.count_params(built[v][0]) for v in variants}
        print(f"== {name}: {cfg['levels']} levels x {cfg['hidden']}, k={cfg['kernel_size']}, batch {cfg['batch']}, "
              f"L={cfg['length']}  ({time.perf_counter() - t0:.0f}s)")
        print(f"{'variant':17} {'params':>7} {'train samples/s':>16} {'vs ref':>7} {'GFLOP/s':>8} {'% peak':>7} "
              f"{'infer samples/s':>16} {'vs ref':>7} {'peak MiB':>9}")
        for v in variants:
            tr, inf = cfg["batch"] / train[v], cfg["batch"] / infer[v]
            gflops = conv_flops(cfg, v, True) / train[v] / 1e9 if v != "lstm" else float("nan")
            mem = peak_memory(name, v, args.threads) if v in ("reference", "seqbench", "lstm") else float("nan")
            print(f"{v:17} {params[v]:>7,} {tr:>16.1f} {tr / (cfg['batch'] / train['reference']):>6.2f}x "
                  f"{gflops:>8.1f} {gflops / peak:>6.0%} {inf:>16.1f} {inf / (cfg['batch'] / infer['reference']):>6.2f}x "
                  f"{mem:>9.0f}", flush=True)
        speedup = train["reference"] / train["seqbench"]
        frac = conv_flops(cfg, "seqbench", True) / train["seqbench"] / 1e9 / peak
        verdicts.append(f"{name}: seqbench trains {speedup:.2f}x the reference [target >= 2.5x: "
                        f"{'PASS' if speedup >= 2.5 else 'FAIL'}]; its convolutions run at {frac:.0%} of the "
                        f"matmul peak [target >= 50%: {'PASS' if frac >= 0.5 else 'FAIL'}]")
        print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
