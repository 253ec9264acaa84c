"""Time one training step (forward, backward, clipping, Adam) of the NumPy backend against plain PyTorch, side by side.

    python bench/perf/train_step.py                       # B=64, T=100, I=1, H=128,512,1024, float32, 2 threads
    python bench/perf/train_step.py --hidden 128 --threads 1 --reps 50

Participants per hidden size: NumPy GRU (reset_after and reset_before), NumPy LSTM, and a hand-written PyTorch loop
(``nn.GRU``/``nn.LSTM`` + ``nn.Linear`` head on the last step + ``MSELoss`` + ``clip_grad_norm_`` + ``Adam``), all on
the same weights (``spec.init_weights``) and the same batch. Warm-up, then the participants take turns
(round-robin) so that machine noise spreads over all of them; median and IQR of the per-step times, achieved
GFLOP/s from ``spec.flops(...).train_step``, and the NumPy/torch ratio per cell (< 1: NumPy is faster). BLAS
(threadpoolctl) and torch intra-op threads are fixed to the same ``--threads`` and printed.

A benchmark script, not a test: it asserts nothing; its table goes into the notes.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gru_bench import timing_stats
from gru_bench.threads import fix_threads
from gru_bench.backends.base import TrainConfig
from gru_bench.backends.numpy_backend import NumpyBackend
from gru_bench.spec import ModelSpec, flops, init_weights

app = typer.Typer(add_completion=False)
console = Console()
if not console.is_terminal:  # piped into a file or a note: wide enough for the table
    console = Console(width=120)


@dataclass
class Participant:
    label: str  # e.g. "numpy GRU reset_after"
    cell: str  # "gru" | "lstm": which torch row it is compared with
    spec: ModelSpec
    step: Callable[[], float]
    samples: list[float] = field(default_factory=list)


def _numpy(spec: ModelSpec, x: np.ndarray, y: np.ndarray, train: TrainConfig) -> Callable[[], float]:
    backend = NumpyBackend()
    model = backend.build(spec, init_weights(spec, 0, dtype="float32"), "cpu", "float32", train)
    return lambda: backend.train_step(model, x, y)


def _torch(spec: ModelSpec, x: np.ndarray, y: np.ndarray, train: TrainConfig) -> Callable[[], float]:
    import torch

    w = init_weights(spec, 0, dtype="float32")
    rnn_cls = torch.nn.GRU if spec.cell == "gru" else torch.nn.LSTM
    rnn = rnn_cls(spec.input_size, spec.hidden_size, num_layers=spec.num_layers, batch_first=True)
    head = torch.nn.Linear(spec.hidden_size, spec.output_size)
    with torch.no_grad():
        for name, p in list(rnn.named_parameters()) + [(f"head.{n}", p) for n, p in head.named_parameters()]:
            p.copy_(torch.from_numpy(w[name]))
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=train.lr, betas=train.betas, eps=train.eps)
    loss_fn = torch.nn.MSELoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(xt)  # (B, T, H)
        loss = loss_fn(head(out[:, -1]), yt)  # head on the last step, (B, O)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train.clip)
        opt.step()
        return loss.item()

    return step


def _participants(H: int, B: int, T: int, with_torch: bool) -> list[Participant]:
    rng = np.random.default_rng(0)
    x = rng.random((B, T, 1), dtype=np.float32)  # (B, T, I)
    y = rng.random((B, 1), dtype=np.float32)  # (B, O)
    train = TrainConfig(optimizer="adam", lr=1e-3, clip=1.0)
    out = []
    for cell, variant in (("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")):
        spec = ModelSpec(cell, 1, H, 1, variant=variant)
        name = f"numpy {cell.upper()} {variant}" if cell == "gru" else "numpy LSTM"
        out.append(Participant(name, cell, spec, _numpy(spec, x, y, train)))
    if with_torch:
        for cell in ("gru", "lstm"):
            spec = ModelSpec(cell, 1, H, 1)
            label = "torch nn.GRU" if cell == "gru" else "torch nn.LSTM"
            out.append(Participant(label, cell, spec, _torch(spec, x, y, train)))
    return out


def _threads(n: int, with_torch: bool) -> str:
    in_force = fix_threads(n)  # BLAS pools (threadpoolctl) and the thread environment variables
    said = [f"BLAS {in_force.get('blas', {})}"]
    if with_torch:
        import torch

        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        said.append(f"torch {torch.__version__} intra-op {torch.get_num_threads()}, "
                    f"inter-op {torch.get_num_interop_threads()}")
    return "; ".join(said)


@app.command()
def main(
    hidden: str = typer.Option("128,512,1024", help="hidden sizes H, comma-separated"),
    threads: int = typer.Option(2, min=1, help="BLAS and torch intra-op threads (the same for both)"),
    batch: int = typer.Option(64, min=1, help="batch size B"),
    seq_len: int = typer.Option(100, min=1, help="sequence length T"),
    reps: int = typer.Option(30, min=1, help="timed steps per participant (at most; see --budget)"),
    warmup: int = typer.Option(3, min=0, help="untimed steps per participant first"),
    budget: float = typer.Option(120.0, min=1.0, help="seconds per hidden size: fewer reps for large H"),
    torch: bool = typer.Option(True, "--torch/--no-torch", help="include the PyTorch participants"),
) -> None:
    """Time one training step of NumPy GRU/LSTM and torch nn.GRU/nn.LSTM, side by side."""
    try:
        sizes = [int(h) for h in hidden.split(",") if h.strip()]
    except ValueError:
        raise typer.BadParameter(f"--hidden {hidden!r}: expected comma-separated positive integers") from None
    if not sizes or min(sizes) <= 0:
        raise typer.BadParameter(f"--hidden {hidden!r}: expected comma-separated positive integers") from None
    NumpyBackend()  # NumPy's BLAS is loaded before the threads are fixed
    console.print(f"[bold]train step[/] B={batch} T={seq_len} I=1 O=1 float32, Adam + clip 1.0; "
                  f"threads: {_threads(threads, torch)}")
    console.print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
                  f"load {os.getloadavg()[0]:.2f} at start")

    table = Table(title=f"one training step, B={batch} T={seq_len} I=1 float32, {threads} threads")
    for col in ("H", "participant", "median ms", "IQR ms", "GFLOP/s", "reps", "numpy/torch"):
        table.add_column(col, justify="left" if col == "participant" else "right")
    for done, H in enumerate(sizes, start=1):
        parts = _participants(H, batch, seq_len, torch)
        t0 = time.perf_counter()
        for p in parts:  # warm-up: buffers allocated, BLAS threads started, torch's allocator primed
            for _ in range(max(warmup, 1)):
                p.step()
        per_round = (time.perf_counter() - t0) / max(warmup, 1)
        n = max(3, min(reps, int(budget / max(per_round, 1e-9))))
        for _ in range(n):  # round-robin: each participant once per round
            for p in parts:
                s = time.perf_counter()
                p.step()
                p.samples.append(time.perf_counter() - s)
        stats = {p.label: timing_stats.summarize(p.samples, flops(p.spec, batch, seq_len).train_step) for p in parts}
        torch_median = {p.cell: stats[p.label].median for p in parts if p.label.startswith("torch")}
        for p in parts:
            st = stats[p.label]
            ratio = (f"{st.median / torch_median[p.cell]:.2f}"
                     if p.label.startswith("numpy") and p.cell in torch_median else "")
            table.add_row(str(H), p.label, f"{st.median * 1e3:.1f}", f"{st.iqr * 1e3:.1f}", f"{st.gflops:.1f}",
                          str(len(p.samples)), ratio)
        table.add_section()
        if done < len(sizes):  # large H takes minutes: show what is measured so far
            console.print(table)
    console.print(table)
    console.print(f"load {os.getloadavg()[0]:.2f} at the end (1-min average; the machine has {os.cpu_count()} "
                  f"logical CPUs). numpy/torch: NumPy median / torch median of the same cell (GRU rows against "
                  f"nn.GRU, which is reset_after).")


if __name__ == "__main__":
    app()
