"""Timing of the PyTorch backend's implementations (a benchmark script, not a test)::

    python bench/perf/torch_bench.py [--device cpu] [--threads 2] [--reps 30] [--compile]
                                     [--only gru,lstm,plain,scripted,compiled]

One training step (forward, backward, clipping, Adam) at B=64, T=100, I=1 (``--input-size``), H=128, float32, MSE
on the last step, for ``nn.GRU``, ``nn.LSTM`` and the reset_before loop (eager, scripted and, with ``--compile``,
compiled),
each through ``TorchBackend.train_step`` on prepared tensors, next to a hand-written PyTorch step of the same model
(``nn.GRU``/``nn.LSTM`` + ``nn.Linear`` + ``MSELoss`` + ``clip_grad_norm_`` + ``Adam``) as the harness-overhead
baseline. The two are timed in alternation, so drift in the machine's load hits both alike. Prints medians (ms).
"""
from __future__ import annotations

import argparse
import functools
import time
from typing import Callable

import numpy as np
import torch

from gru_bench.backends.base import TrainConfig
from gru_bench.backends.torch_backend import TorchBackend
from gru_bench.spec import ModelSpec, init_weights

B_, T_, H_ = 64, 100, 128


def _hand_written(cell: str, I_: int, device: torch.device, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    """The step a PyTorch user writes by hand (the baseline for the harness overhead)."""
    torch.manual_seed(0)
    rnn = (torch.nn.GRU if cell == "gru" else torch.nn.LSTM)(I_, H_, batch_first=True, device=device)
    head = torch.nn.Linear(H_, 1, device=device)
    params = [*rnn.parameters(), *head.parameters()]
    fast = dict(fused=True) if device.type == "cuda" else dict(foreach=False)  # the backend's "auto" choice
    opt = torch.optim.Adam(params, lr=1e-3, **fast)
    loss_fn = torch.nn.MSELoss()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(head(rnn(x)[0][:, -1]), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    return step


def _time_ms(fn: Callable[[], float], sync: Callable[[], None]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t) * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd loop (compiles for long)")
    ap.add_argument("--input-size", type=int, default=1, help="I (the adding task of the suites feeds I=2)")
    ap.add_argument("--only", default=None, help="comma-separated subset of gru,lstm,plain,scripted,compiled")
    args = ap.parse_args(argv)
    backend = TorchBackend()
    reason = backend.available(args.device)
    if reason is not None:
        raise SystemExit(f"device {args.device!r}: {reason}")
    print("threads:", backend.set_threads(args.threads))
    dev = torch.device(args.device)
    rng = np.random.default_rng(0)
    I_ = args.input_size
    x_np = rng.random((B_, T_, I_), dtype=np.float32)
    y_np = rng.random((B_, 1), dtype=np.float32)
    variants = {"gru": ("gru", "reset_after", {}), "lstm": ("lstm", "standard", {}),
                "plain": ("gru", "reset_before", {"loop": "plain"}),
                "scripted": ("gru", "reset_before", {"loop": "scripted"}),
                "compiled": ("gru", "reset_before", {"loop": "compiled"})}
    chosen = args.only.split(",") if args.only else [k for k in variants if k != "compiled" or args.compile]
    unknown = [k for k in chosen if k not in variants]
    if unknown:
        raise SystemExit(f"--only {args.only!r}: unknown {unknown}; expected names from {', '.join(variants)}")
    for cell, variant, options in (variants[k] for k in chosen):
        spec = ModelSpec(cell, I_, H_, 1, variant=variant)
        model = backend.build(spec, init_weights(spec, 0, dtype="float32"), args.device, "float32",
                              TrainConfig(optimizer="adam", lr=1e-3, clip=1.0), options)
        x, y = backend.prepare(model, x_np, y_np)
        ours = functools.partial(backend.train_step, model, x, y)
        theirs = _hand_written(cell, I_, dev, x, y) if variant != "reset_before" else None
        t0 = time.perf_counter()
        ours()
        first = time.perf_counter() - t0
        for _ in range(args.warmup):
            ours()
            if theirs:
                theirs()
        a, b = [], []
        for _ in range(args.reps):  # alternate: drift in the machine's load hits both alike
            a.append(_time_ms(ours, lambda: backend.sync(args.device)))
            if theirs:
                b.append(_time_ms(theirs, lambda: backend.sync(args.device)))
        impl = backend.provenance(model)["implementation"]
        line = f"{impl:42s} median {np.median(a):8.2f} ms  (IQR {np.subtract(*np.percentile(a, [75, 25])):.2f};" \
               f" first call {first:.1f} s)"
        if b:
            line += f"  hand-written {np.median(b):8.2f} ms  ratio {np.median(a) / np.median(b):.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
