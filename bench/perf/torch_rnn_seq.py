"""Where does torch's CPU step time stop scaling with T? nn.LSTM / nn.GRU train step over a fine grid of T, with
torch's oneDNN RNN path on and off (``torch.backends.mkldnn.enabled``), denormals flushed, one thread.

Written to explain issue #11's one missed target: with ``denormals = "flush"`` torch's LSTM step costs 3.1x for
T 100 -> 200. The census under flush is zero, so it is not subnormals; this script shows a step in oneDNN's fused
LSTM kernel between two T values, and torch's native cell loop (oneDNN off) scaling with T.

    python bench/perf/torch_rnn_seq.py                      # LSTM, oneDNN on and off
    python bench/perf/torch_rnn_seq.py --cell gru --seq 100,200,400

B=64, I=2, H=64, fp32, forward + backward + Adam, medians of --repetitions after 3 warm-up steps.
"""
from __future__ import annotations

import argparse
import statistics
import time


def step_ms(torch, cell: str, T: int, reps: int, mkldnn: bool, batch: int = 64, inputs: int = 2,
            hidden: int = 64) -> float:
    torch.backends.mkldnn.enabled = mkldnn
    torch.manual_seed(0)
    rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(inputs, hidden, batch_first=True)
    head = torch.nn.Linear(hidden, 1)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), 1e-3)
    x, y = torch.randn(batch, T, inputs), torch.randn(batch, 1)  # (B, T, I), (B, 1)

    def step() -> None:
        opt.zero_grad()
        out, _ = rnn(x)  # (B, T, H)
        ((head(out[:, -1]) - y) ** 2).mean().backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    ap.add_argument("--seq", default="100,125,150,175,200,300,400")
    ap.add_argument("--repetitions", type=int, default=9)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    seqs = [int(s) for s in a.seq.split(",")]
    got = {m: {T: step_ms(torch, a.cell, T, a.repetitions, m) for T in seqs} for m in (True, False)}
    print(f"| T | {a.cell}, oneDNN on (ms) | x previous T | oneDNN off (ms) | x previous T |")
    print("|---|---|---|---|---|")
    for i, T in enumerate(seqs):
        prev = {m: f"{got[m][T] / got[m][seqs[i - 1]]:.2f}x" if i else "" for m in (True, False)}
        print(f"| {T} | {got[True][T]:.1f} | {prev[True]} | {got[False][T]:.1f} | {prev[False]} |")
    for t0 in seqs:
        if 2 * t0 in got[True]:
            print(f"T {t0} -> {2 * t0}: oneDNN on {got[True][2 * t0] / got[True][t0]:.2f}x, "
                  f"off {got[False][2 * t0] / got[False][t0]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
