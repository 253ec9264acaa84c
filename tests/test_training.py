"""The NumPy backend learns: GRU and LSTM solve the adding problem at T = 50 within a fixed step budget.

Setup (fixed seeds): float32, H = 16, one layer, batch 64, Adam lr 0.02, clipping at global norm 1, PyTorch-style init
(seed 0), training batches from ``default_rng(0)``, the held-out MSE measured every 50 steps on 1000 sequences from
``default_rng(12345)``. "Solved" is the task's own rule: held-out MSE below 10 % of the trivial baseline (1/6), i.e.
below 0.01667.

Measured when the budgets were picked (seed 0; in brackets, seeds 1 and 2 with another held-out set):
  GRU:  solved at step 150 [150, 150], held-out MSE 0.0042 -> budget 400 steps;
  LSTM: solved at step 600 [600, 350], held-out MSE 0.0047 -> budget 1200 steps.
About 1 s (GRU) and 5 s (LSTM) of CPU on one core.
"""
from __future__ import annotations

import numpy as np
import pytest

from gru_bench.backends import TrainConfig, get_backend
from gru_bench.spec import ModelSpec, init_weights
from gru_bench.tasks import get_task

T, H, B, LR, EVAL_EVERY, HELD_OUT = 50, 16, 64, 0.02, 50, 1000
BUDGET = {"gru": 400, "lstm": 1200}


@pytest.fixture(scope="module")
def numpy_backend():
    backend = get_backend("numpy")
    before = backend.set_threads(None)
    backend.set_threads(1)  # small matrices: one BLAS thread is fastest, and steady on a busy machine
    yield backend
    backend.set_threads(max(before.values(), default=None))


def _train_until_solved(backend, cell: str, budget: int, seed: int = 0) -> tuple[int | None, list[float]]:
    """Train; every EVAL_EVERY steps measure the held-out MSE; stop when solved. Returns (step solved, MSEs)."""
    task = get_task("adding")
    io = task.model_io(T)
    spec = ModelSpec(cell, io["input_size"], H, io["output_size"], head=io["head"], loss=io["loss"])
    model = backend.build(spec, init_weights(spec, seed), device="cpu", dtype="float32",
                          train=TrainConfig(optimizer="adam", lr=LR, clip=1.0))
    rng = np.random.default_rng(seed)
    hx, hy = task.batch(np.random.default_rng(12345), HELD_OUT, T, "float32")
    curve = [task.evaluate(backend.forward(model, hx), hy)["loss"]]
    for step in range(1, budget + 1):
        x, y = task.batch(rng, B, T, "float32")
        backend.train_step(model, x, y)
        if step % EVAL_EVERY == 0:
            curve.append(task.evaluate(backend.forward(model, hx), hy)["loss"])
            if task.solved(curve[-1], T):
                return step, curve
    return None, curve


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_numpy_solves_the_adding_problem_at_T50(numpy_backend, cell, record_property):
    baseline = get_task("adding").baseline(T)["loss"]  # 1/6
    step, curve = _train_until_solved(numpy_backend, cell, BUDGET[cell])
    record_property("steps_to_solve", step)
    record_property("held_out_mse", curve[-1])
    assert curve[0] > 0.1 * baseline, f"untrained {cell} already solves it: MSE {curve[0]:.4f}"
    assert step is not None, (f"{cell} did not reach held-out MSE < {0.1 * baseline:.4f} in {BUDGET[cell]} steps; "
                              f"MSE every {EVAL_EVERY} steps: {[round(v, 4) for v in curve]}")
    assert curve[-1] < 0.1 * baseline
