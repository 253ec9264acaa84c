"""Exporters to github-action-benchmark's custom JSON and Bencher Metric Format, from synthetic run records."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gru_bench.case import Case
from gru_bench.errors import InputError
from gru_bench.export import export_command, to_bmf, to_github_benchmark
from gru_bench.schema import Accuracy, CaseResult, GitInfo, MemoryFigure, RunRecord, TimingStats


def timing(s) -> TimingStats:
    s = np.asarray(s, dtype=float)
    return TimingStats(samples=s.tolist(), median=float(np.median(s)), iqr=0.0, min=float(s.min()),
                       mean=float(s.mean()), ci_low=float(s.min()), ci_high=float(s.max()))


def record(run_id: str, train, acc=0.75, status="ok") -> RunRecord:
    copy = Case(backend="numpy", cell="lstm", variant="standard", task="copy", seq_len=10, hidden=8, steps=50)
    adding = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=10, hidden=8)
    return RunRecord(run_id=run_id, suite_name="quick", created="2025-01-01T00:00:00",
                     git=GitInfo(commit="0123456789abcdef"),
                     cases=[
                         CaseResult(case=copy, case_id=copy.case_id, status="ok", implementation="numpy",
                                    train_time=timing(train), forward_time=timing([t / 3 for t in train]),
                                    memory=[MemoryFigure(name="activation_estimate", bytes=3 * 2**20, method="a")],
                                    accuracy=Accuracy(metric="accuracy", final_metric=acc, final_loss=0.5,
                                                      baseline_loss=2.0)),
                         CaseResult(case=adding, case_id=adding.case_id, status=status, reason="boom")])


def test_github_smaller_is_better_entries():
    entries = to_github_benchmark([record("r", [0.010, 0.012, 0.011])])
    names = [e["name"] for e in entries]
    label = "numpy/cpu lstm copy T=10 H=8 L=1 B=64 float32 seed=0"
    assert names == [f"{label} · train_time", f"{label} · forward_time", f"{label} · memory:activation_estimate",
                     f"{label} · loss"]  # the failed case is not exported; accuracy is bigger-is-better
    train = entries[0]
    assert set(train) == {"name", "unit", "value", "range", "extra"}
    assert (train["unit"], train["value"]) == ("ms", pytest.approx(11.0))
    assert train["range"] == "± 1" and "commit 0123456789ab" in train["extra"]
    assert entries[2]["value"] == pytest.approx(3.0) and entries[2]["unit"] == "MiB"


def test_github_bigger_is_better_and_pooling():
    entries = to_github_benchmark([record("a", [0.01], acc=0.7), record("b", [0.02], acc=0.9)], bigger_is_better=True)
    assert len(entries) == 1 and entries[0]["value"] == pytest.approx(0.8) and "runs=2" in entries[0]["extra"]
    pooled = to_github_benchmark([record("a", [0.010, 0.011]), record("b", [0.013, 0.014, 0.015])])
    assert pooled[0]["value"] == pytest.approx(13.0) and "n=5 samples" in pooled[0]["extra"]


def test_bmf():
    bmf = to_bmf([record("r", [0.010, 0.012, 0.011])])
    (label, measures), = bmf.items()
    assert label.startswith("numpy/cpu lstm copy")
    assert measures["latency"] == {"value": pytest.approx(11e6), "lower_value": pytest.approx(10e6),
                                   "upper_value": pytest.approx(12e6)}
    assert set(measures) == {"latency", "forward-latency", "memory-activation-estimate", "final-loss",
                             "final-accuracy"}
    assert all("value" in m and all(isinstance(v, float) for v in m.values()) for m in measures.values())


def test_export_command(tmp_path, capsys):
    p = tmp_path / "r.json"
    p.write_text(record("r", [0.01, 0.02]).model_dump_json())
    assert export_command(p, "bmf", tmp_path / "out" / "bmf.json") == 0
    assert "latency" in next(iter(json.loads((tmp_path / "out" / "bmf.json").read_text()).values()))
    assert export_command([p], "github-smaller", None) == 0
    assert json.loads(capsys.readouterr().out)[0]["unit"] == "ms"
    with pytest.raises(InputError, match="--format 'csv'"):
        export_command(p, "csv", None)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(InputError, match="bad.json"):
        export_command(tmp_path / "bad.json", "bmf", None)


def test_nan_timing_samples_are_dropped_with_a_warning_naming_the_file(tmp_path, capsys):
    """All-NaN samples made scipy/json fail without naming a file; now they are dropped, the file named."""
    nan = float("nan")
    rec = record("r1", [0.010, 0.011, 0.012])
    cr = rec.cases[0]
    half = cr.model_copy(update={
        "train_time": timing([0.010, nan, 0.012, float("inf")]).model_copy(update={"ci_low": nan, "ci_high": nan}),
        "forward_time": timing([nan, nan]).model_copy(update={"median": nan, "ci_low": nan, "ci_high": nan})})
    path = tmp_path / "nan.json"
    path.write_text(rec.model_copy(update={"cases": [half, rec.cases[1]]}).model_dump_json())
    for fmt in ("github-smaller", "bmf"):
        assert export_command([path], fmt, tmp_path / f"{fmt}.json") == 0
        err = capsys.readouterr().err
        assert re.search(r"^warning: \S*nan\.json: .*2 of 4 train_time samples are not finite", err, re.M), err
        assert "2 of 2 forward_time" in err
    entries = json.loads((tmp_path / "github-smaller.json").read_text())
    train = [e for e in entries if e["name"].endswith("train_time")][0]
    assert train["value"] == pytest.approx(11.0) and "n=2 samples" in train["extra"]  # median of 10, 12 ms
    assert not [e for e in entries if e["name"].endswith("forward_time")]  # no finite sample: no timing
    bmf = json.loads((tmp_path / "bmf.json").read_text())
    m = next(iter(bmf.values()))
    assert "forward-latency" not in m and m["latency"]["lower_value"] == pytest.approx(0.010 * 1e9)


def test_deeply_nested_json_is_refused_naming_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep\.json: .*nested deeper"):
        export_command([deep], "bmf", tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_metric_direction_has_one_home_that_export_and_compare_read():
    """tasks.HIGHER_IS_BETTER is the one definition of which way a metric improves: every task's metric has one,
    and export's bigger/smaller split follows it (accuracy bigger; mse and the loss smaller)."""
    import importlib

    from gru_bench.tasks import TASKS, metric_higher_is_better

    assert {t.name: t.higher_is_better for t in TASKS.values()} == {"adding": False, "copy": True,
                                                                     "selective_copy": True}
    assert metric_higher_is_better("loss") is False and metric_higher_is_better("no such metric") is None
    for name in ("export", "compare.engine", "compare.quality"):
        assert not hasattr(importlib.import_module(f"gru_bench.{name}"), "HIGHER_IS_BETTER")  # no second copy
