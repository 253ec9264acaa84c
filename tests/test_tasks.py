"""The synthetic tasks: layout of every batch, seeding, the analytic baselines checked by simulation, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gru_bench.spec import ModelSpec
from gru_bench.tasks import TASK_NAMES, TASKS, get_task

BLANK, DELIM = 0, 9


def _batch(name: str, seed: int = 0, B: int = 16, T: int = 12, dtype: str = "float32"):
    return get_task(name).batch(np.random.default_rng(seed), B, T, dtype)


# --------------------------------------------------------------------------------------------- every task
@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_dtypes_and_model_io(name, dtype):
    task = get_task(name)
    B, T = 5, 7
    x, y = task.batch(np.random.default_rng(1), B, T, dtype)
    io = task.model_io(T)
    L = task.input_len(T)
    assert x.shape == (B, L, io["input_size"]) and x.dtype == np.dtype(dtype)
    if io["loss"] == "mse":
        assert y.dtype == np.dtype(dtype)
        want = (B, io["output_size"]) if io["head"] == "last" else (B, L, io["output_size"])
    else:
        assert y.dtype == np.int64
        want = (B,) if io["head"] == "last" else (B, L)
        assert y.min() >= 0 and y.max() < io["output_size"]
    assert y.shape == want
    ModelSpec("gru", io["input_size"], 4, io["output_size"], head=io["head"], loss=io["loss"])  # a valid model
    assert task.metric in ("mse", "accuracy") and task.description and task.citation


@pytest.mark.parametrize("name", TASK_NAMES)
def test_same_seed_same_batch_other_seed_other_batch(name):
    x1, y1 = _batch(name, seed=3)
    x2, y2 = _batch(name, seed=3)
    x3, y3 = _batch(name, seed=4)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not (np.array_equal(x1, x3) and np.array_equal(y1, y3))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_float32_and_float64_batches_hold_the_same_numbers(name):
    x32, y32 = _batch(name, seed=5, dtype="float32")
    x64, y64 = _batch(name, seed=5, dtype="float64")
    np.testing.assert_array_equal(x32, x64.astype(np.float32))
    np.testing.assert_array_equal(y32, y64.astype(y32.dtype))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_solved_is_ten_percent_of_the_baseline(name):
    task = get_task(name)
    base = task.baseline(30)["loss"]
    assert task.solved(0.099 * base, 30)
    assert not task.solved(0.101 * base, 30)
    assert not task.solved(base, 30)


# --------------------------------------------------------------------------------------------------- adding
def test_adding_layout_two_markers_one_per_half_and_target_is_their_sum():
    B, T = 400, 11
    x, y = _batch("adding", B=B, T=T, dtype="float64")
    values, marks = x[:, :, 0], x[:, :, 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(marks)) == {0.0, 1.0}
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, : T // 2].sum(axis=1) == 1) and np.all(marks[:, T // 2:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (values * marks).sum(axis=1), rtol=0, atol=1e-15)
    # both halves are fully used: every position of each half holds a marker somewhere in the batch
    assert np.all(marks.sum(axis=0) > 0)


def test_adding_baseline_is_one_sixth_by_simulation():
    """Predicting 1 gives MSE = Var(v_a + v_b) = 1/6. Simulated with 200 000 sequences (standard error of the
    mean squared error ≈ 4.4e-4); tolerance 2e-3. The mean target is 1 within 2e-3 (s.e. 9e-4)."""
    task = get_task("adding")
    assert task.baseline(50) == {"loss": 1 / 6, "metric": 1 / 6}
    _, y = task.batch(np.random.default_rng(0), 200_000, 50, "float64")
    ev = task.evaluate(np.ones_like(y), y)
    assert abs(ev["loss"] - 1 / 6) < 2e-3 and ev["metric"] == ev["loss"]
    assert abs(y.mean() - 1.0) < 2e-3


def test_adding_evaluate_perfect_prediction():
    task = get_task("adding")
    _, y = task.batch(np.random.default_rng(0), 8, 10)
    ev = task.evaluate(y.copy(), y)
    assert ev == {"loss": 0.0, "metric": 0.0}
    assert task.solved(ev["loss"], 10)


# ----------------------------------------------------------------------------------------------- copy family
def _codes(x):
    return x.argmax(axis=-1)  # (B, L) category of each one-hot step


def _memoryless_logits(B: int, L: int) -> np.ndarray:
    """The memoryless strategy as logits: blank certain on the first L − 10 steps, uniform over 1..8 after."""
    logits = np.full((B, L, 9), -1e9)
    logits[:, : L - 10, BLANK] = 0.0
    logits[:, L - 10:, 1:] = 0.0
    return logits


@pytest.mark.parametrize("name", ["copy", "selective_copy"])
@pytest.mark.parametrize("T", [1, 5, 40])
def test_copy_family_layout(name, T):
    task = get_task(name)
    B = 64
    x, y = task.batch(np.random.default_rng(2), B, T, "float64")
    L = T + 20
    assert task.input_len(T) == L and x.shape == (B, L, 10)
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)  # one-hot
    c = _codes(x)
    assert np.all(c[:, T + 9] == DELIM) and np.all(c[:, T + 10:] == BLANK)
    head = c[:, : T + 9]
    symbols_in = head[head != BLANK].reshape(B, 10)  # exactly 10 symbols before the delimiter, in order
    assert symbols_in.min() >= 1 and symbols_in.max() <= 8 and not np.any(head == DELIM)
    assert np.all(y[:, : T + 10] == BLANK)
    np.testing.assert_array_equal(y[:, T + 10:], symbols_in)  # output = the symbols, in order of appearance
    if name == "copy":
        assert np.all(c[:, :10] >= 1)  # the symbols are the first 10 steps
    # all 8 symbols occur
    assert set(np.unique(symbols_in)) == set(range(1, 9))


def test_selective_copy_positions_are_spread_over_the_whole_span():
    """Positions are a uniform 10-subset of the first T + 9 steps: every step is used, the mean position is
    (T + 8)/2 within 0.5 (s.e. ≈ 0.12 for 4000 × 10 positions at T = 40)."""
    T, B = 40, 4000
    x, _ = get_task("selective_copy").batch(np.random.default_rng(7), B, T, "float32")
    c = _codes(x)[:, : T + 9]
    occupied = c != BLANK  # (B, T + 9)
    assert np.all(occupied.sum(axis=1) == 10)
    assert np.all(occupied.any(axis=0))
    pos = np.nonzero(occupied)[1]
    assert abs(pos.mean() - (T + 8) / 2) < 0.5
    assert occupied[:, :10].all(axis=1).mean() < 0.01  # unlike copy, the symbols are rarely the first 10 steps


def test_selective_copy_at_T1_has_the_copy_layout():
    x, y = get_task("selective_copy").batch(np.random.default_rng(0), 32, 1, "float32")
    c = _codes(x)
    assert np.all(c[:, :10] >= 1) and np.all(c[:, 10] == DELIM)


@pytest.mark.parametrize("name", ["copy", "selective_copy"])
@pytest.mark.parametrize("T", [1, 30, 100])
def test_copy_family_baseline_is_the_memoryless_strategy(name, T):
    """The memoryless strategy's cross-entropy equals 10 ln 8 / (T + 20) to 1e-12; its accuracy on the copied
    symbols is chance: 1/8 within 0.005 over 10 000 × 10 symbols (s.e. 1.0e-3)."""
    task = get_task(name)
    base = task.baseline(T)
    assert base["loss"] == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-15)
    assert base["metric"] == 1 / 8
    B = 10_000 if T == 30 else 16
    _, y = task.batch(np.random.default_rng(0), B, T, "float32")
    ev = task.evaluate(_memoryless_logits(B, T + 20), y)
    assert ev["loss"] == pytest.approx(base["loss"], rel=1e-12)
    # ties (uniform over 8) have no argmax meaning: break them at random, as a guessing model would
    guess = _memoryless_logits(B, T + 20)
    guess[:, -10:, 1:] += np.random.default_rng(1).random((B, 10, 8)) * 1e-6
    if T == 30:
        assert abs(task.evaluate(guess, y)["metric"] - 1 / 8) < 0.005


@pytest.mark.parametrize("name", ["copy", "selective_copy"])
def test_copy_family_perfect_and_wrong_predictions(name):
    task = get_task(name)
    _, y = task.batch(np.random.default_rng(0), 8, 10, "float32")
    perfect = np.eye(9)[y] * 50.0  # (B, L, 9) logits
    ev = task.evaluate(perfect, y)
    assert ev["metric"] == 1.0 and ev["loss"] < 1e-12  # log(1 + 8 e^-50)
    assert task.solved(ev["loss"], 10)
    wrong = np.eye(9)[(y % 8) + 1] * 50.0  # every step predicts a class other than its target
    assert task.evaluate(wrong, y)["metric"] == 0.0


# ------------------------------------------------------------------------------------------------ bad input
def test_get_task_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"task='parity'.*adding, copy, selective_copy"):
        get_task("parity")
    assert set(TASKS) == {"adding", "copy", "selective_copy"}


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("adding", dict(batch_size=0), r"batch_size=0"),
        ("adding", dict(batch_size=2.5), r"batch_size=2.5"),
        ("adding", dict(seq_len=1), r"seq_len=1: expected an integer >= 2"),
        ("copy", dict(seq_len=0), r"seq_len=0: expected an integer >= 1"),
        ("selective_copy", dict(seq_len=True), r"seq_len=True"),
        ("copy", dict(dtype="float16"), r"dtype='float16': expected one of float32, float64"),
        ("adding", dict(rng=np.random.RandomState(0)), r"rng=.*numpy.random.Generator"),
        ("copy", dict(rng=0), r"rng=0"),
    ],
)
def test_bad_batch_arguments_raise_value_error_naming_them(name, kwargs, match):
    args = dict(rng=np.random.default_rng(0), batch_size=4, seq_len=8, dtype="float32") | kwargs
    with pytest.raises(ValueError, match=match):
        get_task(name).batch(**args)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_bad_seq_len_everywhere(name):
    task = get_task(name)
    for fn in (task.model_io, task.input_len, task.baseline):
        with pytest.raises(ValueError, match=r"seq_len=-3"):
            fn(-3)


def test_evaluate_rejects_mismatched_shapes():
    add = get_task("adding")
    _, y = add.batch(np.random.default_rng(0), 4, 6)
    with pytest.raises(ValueError, match=r"y has shape"):
        add.evaluate(np.zeros((4, 6, 1)), y)
    cp = get_task("copy")
    _, y = cp.batch(np.random.default_rng(0), 4, 6)
    with pytest.raises(ValueError, match=r"yhat has shape \(4, 26, 10\)"):
        cp.evaluate(np.zeros((4, 26, 10)), y)
    with pytest.raises(ValueError, match=r"dtype float64: expected integer"):
        cp.evaluate(np.zeros((4, 26, 9)), y.astype(np.float64))


def test_xent_rejects_out_of_range_class_index():
    """losses.xent names an out-of-range class index instead of failing with an IndexError."""
    import numpy as np
    import pytest

    from gru_bench.losses import xent

    with pytest.raises(ValueError, match=r"class index 3: expected indices in \[0, 2\]"):
        xent(np.zeros((2, 3)), np.array([0, 3]))
    loss, _ = xent(np.zeros((2, 3)), np.array([0, 2]))
    assert abs(loss - np.log(3)) < 1e-12  # uniform logits: ln C
