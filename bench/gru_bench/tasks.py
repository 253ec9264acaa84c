"""Synthetic long-dependency tasks: seeded batches, the model shape they need, and their trivial baselines.

Every task turns ``(rng, batch_size, seq_len)`` into NumPy arrays; ``seq_len`` (T) is the difficulty dial, the
distance the model must carry information over. The same ``numpy.random.Generator`` state gives the same batch,
bit for bit, so loss curves are comparable across backends point by point.

Each task states its *trivial baseline*: the best loss a model can reach without carrying any information across
time (derived analytically in the task's docstring). A task counts as solved when the held-out loss falls below
10 % of that baseline (``solved``).

Shapes: ``x`` is ``(B, L, I)`` floats, where ``L = input_len(T)``; ``y`` is ``(B, O)`` / ``(B, L, O)`` floats for
``loss="mse"`` and int64 class indices ``(B,)`` / ``(B, L)`` for ``loss="xent"`` (``spec.py``'s conventions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .losses import loss_and_grad

DTYPES = ("float32", "float64")
SOLVED_FRACTION = 0.1  # solved: held-out loss < 10 % of the trivial baseline
# The direction of every metric a task reports (``Task.metric``) and of the held-out ``loss``: True when higher is
# better. The one definition; ``compare`` and ``export`` read it through ``metric_higher_is_better``.
HIGHER_IS_BETTER = {"accuracy": True, "mse": False, "loss": False}


def metric_higher_is_better(metric: str) -> bool | None:
    """True when a larger value of ``metric`` is better, False when smaller is, None for a metric of no known task."""
    return HIGHER_IS_BETTER.get(metric)


def _check_positive(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")


def _check_batch_args(rng: Any, batch_size: Any, seq_len: Any, dtype: Any, min_len: int) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r}: expected a numpy.random.Generator (numpy.random.default_rng(seed))")
    _check_positive("batch_size", batch_size)
    _check_positive("seq_len", seq_len, min_len)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPES)}")


@dataclass(frozen=True)
class Task:
    """A synthetic task. Subclasses define the methods below; the fields describe it for reports.

    * ``model_io(T)``: what the model needs, ``dict(input_size, output_size, head, loss)``.
    * ``input_len(T)``: the length L of the sequences actually fed.
    * ``batch(rng, B, T, dtype)``: one seeded batch ``(x, y)``.
    * ``baseline(T)``: the trivial baseline, ``dict(loss=..., metric=...)``, analytic.
    * ``evaluate(yhat, y)``: ``dict(loss=..., metric=...)`` of a model's output on a batch.
    * ``solved(loss, T)``: held-out loss below 10 % of the baseline loss.
    """

    name: str
    metric: str  # "mse" | "accuracy": its direction is HIGHER_IS_BETTER[metric] (``higher_is_better``)
    description: str
    citation: str
    min_seq_len: ClassVar[int] = 1

    def model_io(self, seq_len: int) -> dict[str, Any]:
        raise NotImplementedError

    def input_len(self, seq_len: int) -> int:
        raise NotImplementedError

    def batch(self, rng: np.random.Generator, batch_size: int, seq_len: int,
              dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def baseline(self, seq_len: int) -> dict[str, float | None]:
        raise NotImplementedError

    def evaluate(self, yhat: np.ndarray, y: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    @property
    def higher_is_better(self) -> bool:
        """Does the task's metric grow when the model gets better (accuracy) or shrink (mse)?"""
        return HIGHER_IS_BETTER[self.metric]

    def target_loss(self, seq_len: int) -> float:
        """The solved threshold: 10 % of the trivial baseline's loss at this ``seq_len`` (time-to-target's target)."""
        return float(SOLVED_FRACTION * self.baseline(seq_len)["loss"])

    def solved(self, loss: float, seq_len: int) -> bool:
        """True when ``loss`` (held-out) is below 10 % of the trivial baseline's loss at this ``seq_len``."""
        return bool(loss < self.target_loss(seq_len))

    def _check_seq_len(self, seq_len: Any) -> None:
        _check_positive("seq_len", seq_len, self.min_seq_len)


# ------------------------------------------------------------------------------------------------------ adding
@dataclass(frozen=True)
class AddingTask(Task):
    """The adding problem in the form of Le, Jaitly & Hinton (2015).

    Input ``x (B, T, 2)``: channel 0 holds values ``v_t ~ U[0, 1)``; channel 1 is a marker, 0 everywhere except
    exactly two 1s: one at a position drawn uniformly from the first half ``[0, ⌊T/2⌋)``, one from the second half
    ``[⌊T/2⌋, T)``. Target ``y (B, 1)``: the sum of the two marked values. Many-to-one, MSE; ``T >= 2``.

    Trivial baseline: predict the constant 1 whatever the input. With ``S = v_a + v_b`` the sum of two independent
    U[0, 1] values, ``E[S] = 1`` and ``Var[S] = 2 · 1/12``, so the MSE of the constant 1 is
    ``E[(S − 1)²] = Var[S] = 1/6 ≈ 0.1667``; no constant does better (the mean minimises squared error).
    """

    min_seq_len: ClassVar[int] = 2

    def model_io(self, seq_len: int) -> dict[str, Any]:
        self._check_seq_len(seq_len)
        return dict(input_size=2, output_size=1, head="last", loss="mse")

    def input_len(self, seq_len: int) -> int:
        self._check_seq_len(seq_len)
        return seq_len

    def batch(self, rng: np.random.Generator, batch_size: int, seq_len: int,
              dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        _check_batch_args(rng, batch_size, seq_len, dtype, self.min_seq_len)
        B, T, half = batch_size, seq_len, seq_len // 2
        values = rng.random((B, T))  # (B, T) U[0, 1)
        first = rng.integers(0, half, B)  # (B,) a marker in [0, T/2)
        second = rng.integers(half, T, B)  # (B,) a marker in [T/2, T)
        rows = np.arange(B)
        x = np.zeros((B, T, 2), dtype=dtype)  # (B, T, 2)
        x[:, :, 0] = values
        x[rows, first, 1] = 1.0
        x[rows, second, 1] = 1.0
        y = (values[rows, first] + values[rows, second])[:, None].astype(dtype)  # (B, 1)
        return x, y

    def baseline(self, seq_len: int) -> dict[str, float | None]:
        self._check_seq_len(seq_len)
        return dict(loss=1.0 / 6.0, metric=1.0 / 6.0)

    def evaluate(self, yhat: np.ndarray, y: np.ndarray) -> dict[str, float]:
        loss, _ = loss_and_grad("mse", np.asarray(yhat, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return dict(loss=loss, metric=loss)


# -------------------------------------------------------------------------------------------------- copy tasks
BLANK, DELIMITER = 0, 9  # input categories: 0 blank, 1..8 symbols, 9 delimiter
N_SYMBOLS = 8
N_INPUT = 10  # one-hot width of the input
N_OUTPUT = 9  # output classes: 0 blank, 1..8 symbols (the delimiter is never a target)


def _one_hot(codes: np.ndarray, width: int, dtype: str) -> np.ndarray:
    return np.eye(width, dtype=dtype)[codes]  # (..., width)


@dataclass(frozen=True)
class _CopyFamily(Task):
    """Shared by the copy tasks: K = 10 symbols to remember, sequence length ``T + 20``, delimiter at ``T + 9``,
    the symbols to be written on the last K steps; metric = accuracy on those K steps."""

    n_copy: ClassVar[int] = 10

    def model_io(self, seq_len: int) -> dict[str, Any]:
        self._check_seq_len(seq_len)
        return dict(input_size=N_INPUT, output_size=N_OUTPUT, head="every", loss="xent")

    def input_len(self, seq_len: int) -> int:
        self._check_seq_len(seq_len)
        return seq_len + 2 * self.n_copy

    def _positions(self, rng: np.random.Generator, batch_size: int, seq_len: int) -> np.ndarray:
        """(B, K) positions of the symbols in the input, ascending."""
        raise NotImplementedError

    def batch(self, rng: np.random.Generator, batch_size: int, seq_len: int,
              dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        _check_batch_args(rng, batch_size, seq_len, dtype, self.min_seq_len)
        B, K, L = batch_size, self.n_copy, self.input_len(seq_len)
        symbols = rng.integers(1, N_SYMBOLS + 1, (B, K))  # (B, K) in 1..8
        pos = self._positions(rng, B, seq_len)  # (B, K)
        codes = np.full((B, L), BLANK, dtype=np.int64)  # (B, L)
        np.put_along_axis(codes, pos, symbols, axis=1)
        codes[:, L - K - 1] = DELIMITER
        y = np.full((B, L), BLANK, dtype=np.int64)  # (B, L)
        y[:, L - K:] = symbols
        return _one_hot(codes, N_INPUT, dtype), y  # (B, L, 10), (B, L)

    def baseline(self, seq_len: int) -> dict[str, float | None]:
        L = self.input_len(seq_len)
        return dict(loss=self.n_copy * math.log(N_SYMBOLS) / L, metric=1.0 / N_SYMBOLS)

    def evaluate(self, yhat: np.ndarray, y: np.ndarray) -> dict[str, float]:
        yhat = np.asarray(yhat, dtype=np.float64)
        if yhat.ndim != 3 or yhat.shape[-1] != N_OUTPUT or yhat.shape[1] <= self.n_copy:
            raise ValueError(f"yhat has shape {yhat.shape}: expected (B, T + 20, {N_OUTPUT}) logits")
        loss, _ = loss_and_grad("xent", yhat, np.asarray(y))
        K = self.n_copy
        accuracy = float(np.mean(yhat[:, -K:, :].argmax(axis=-1) == y[:, -K:]))
        return dict(loss=loss, metric=accuracy)


@dataclass(frozen=True)
class CopyTask(_CopyFamily):
    """The copy-memory problem of Arjovsky, Shah & Bengio (2016), "Unitary Evolution Recurrent Neural Networks".

    Input (length ``T + 20``): 10 symbols drawn uniformly with replacement from 8, then ``T − 1`` blanks, one
    delimiter, 10 more blanks. Target: blanks for ``T + 10`` steps, then the 10 symbols in order. Inputs are one-hot
    over 10 categories; outputs are logits over 9 classes; the loss is the mean cross-entropy over all ``T + 20``
    steps (many-to-many). ``seq_len`` is the paper's T, the length of the gap; ``T >= 1``.

    Labels: the paper names the categories ``a_0..a_7`` (symbols), ``a_8`` (blank), ``a_9`` (delimiter); here they
    are relabelled blank = 0, symbols = 1..8, delimiter = 9 (the convention of the public EUNN/GORU copying code).
    Relabelling changes nothing: the function to learn and the baseline are the same. The delimiter is never a
    target, so the output has 9 classes instead of the paper's 10.

    Trivial baseline (the paper's "memoryless strategy"): predict blank with certainty for the first ``T + 10``
    steps (loss 0: their target is always blank, and the position is known), then uniform over the 8 symbols on
    the last 10 steps (loss ``ln 8`` each). Mean over ``T + 20`` steps: ``10 ln 8 / (T + 20)``. Its accuracy on the
    copied symbols is chance, 1/8.
    """

    def _positions(self, rng: np.random.Generator, batch_size: int, seq_len: int) -> np.ndarray:
        return np.broadcast_to(np.arange(self.n_copy), (batch_size, self.n_copy))  # (B, K): always the first K


@dataclass(frozen=True)
class SelectiveCopyTask(_CopyFamily):
    """Selective copying (Gu & Dao 2023, "Mamba", §3.1), laid out exactly like ``copy`` so that the two differ in one
    thing only: where the symbols sit.

    Input (length ``T + 20``): the 10 symbols (uniform with replacement from 8) are placed at 10 distinct positions
    drawn uniformly among the first ``T + 9`` steps (kept in order), blanks elsewhere; the delimiter at step
    ``T + 9``; 10 blanks. Target: blanks, then the 10 symbols in their order of appearance on the last 10 steps.
    ``T >= 1``; at ``T = 1`` it is the copy task.

    Why this task: in ``copy`` the symbols always arrive on steps 0..9, so a model can solve it by timing alone (a
    fixed, input-independent schedule of what to write and when). Here the positions change from sequence to
    sequence, so the model must decide *from the content* of each step whether to store it (a symbol) or to ignore
    it (a blank) — the input-dependent gating that distinguishes a GRU's update gate and an LSTM's input gate
    from time-invariant recurrences, and the dependency that Gu & Dao show time-invariant models fail on. Parity
    tests a different thing (exact XOR accumulation) that gated cells are not designed to express.

    Trivial baseline: as for ``copy`` — the memoryless strategy predicts blank with certainty on the first
    ``T + 10`` steps and uniform over the 8 symbols on the last 10: cross-entropy ``10 ln 8 / (T + 20)``,
    accuracy 1/8.
    """

    def _positions(self, rng: np.random.Generator, batch_size: int, seq_len: int) -> np.ndarray:
        span = seq_len + self.n_copy - 1  # the steps before the delimiter
        keys = rng.random((batch_size, span))  # (B, T + 9)
        return np.sort(np.argsort(keys, axis=1)[:, : self.n_copy], axis=1)  # (B, K): a uniform K-subset, ascending


# ------------------------------------------------------------------------------------------------------ registry
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        AddingTask(
            name="adding", metric="mse",
            description="sum of the two marked values among T uniform values (many-to-one, MSE)",
            citation="Le, Jaitly & Hinton 2015, A Simple Way to Initialize Recurrent Networks of Rectified "
                     "Linear Units, arXiv:1504.00941",
        ),
        CopyTask(
            name="copy", metric="accuracy",
            description="reproduce 10 symbols after a gap of T blanks (many-to-many, cross-entropy)",
            citation="Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks, arXiv:1511.06464",
        ),
        SelectiveCopyTask(
            name="selective_copy", metric="accuracy",
            description="reproduce, in order, 10 symbols scattered at random among T + 9 steps "
                        "(many-to-many, cross-entropy)",
            citation="Gu & Dao 2023, Mamba: Linear-Time Sequence Modeling with Selective State Spaces, "
                     "arXiv:2312.00752",
        ),
    )
}
TASK_NAMES = tuple(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task={name!r}: expected one of {', '.join(TASK_NAMES)}")
    return TASKS[name]
