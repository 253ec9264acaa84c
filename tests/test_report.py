"""The report: tables (unit), the iso-parameter computation (against spec.py), and whole reports built from
synthetic records and from a real small run. The browser test (test_report_browser.py) imports the record builders
below.

The synthetic records are realistic: sizes, parameter counts, FLOPs and activation bytes come from ``spec.py`` for
each task's model; times follow the FLOPs with a per-backend efficiency and seeded noise; loss curves decay towards a
per-cell floor. Among the cases: a failed one (its reason holds HTML), a skipped one, a busy-machine warning; the
run label is a script tag.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gru_bench import spec
from gru_bench.case import Case
from gru_bench.errors import InputError
from gru_bench.report import build_report
from gru_bench.report.frame import cases_frame, groups_frame
from gru_bench.report.display_table import Column, Table, format_value, sort_key
from gru_bench.report.iso import iso_frame
from gru_bench.report.tables import FOLLOWS_TOLERANCE, follows, problems_table, verdict_frame, verdict_table
from gru_bench.schema import (Accuracy, Calibration, CaseResult, Curve, GitInfo, Load, MemoryFigure, RunRecord,
                              TimingStats)

ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"


# ================================================================================ record builders (fixtures)
XSS = "<script>alert(1)</script>"
TASK_IO = {
    "adding": dict(input_size=2, output_size=1, head="last", loss="mse"),
    "copy": dict(input_size=10, output_size=9, head="every", loss="xent"),
}
BASELINE = {"adding": (1 / 6, 1 / 6), "copy": None}
EFFICIENCY = {"numpy": 0.35, "torch": 0.5, "tf": 0.3}  # fraction of the calibrated peak each backend reaches
IMPL = {
    ("numpy", "gru"): "numpy (hand-written BPTT)",
    ("numpy", "lstm"): "numpy (hand-written BPTT)",
    ("torch", "gru"): "torch.nn.GRU (native CPU)",
    ("torch", "lstm"): "torch.nn.LSTM (native CPU)",
    ("tf", "gru"): "keras GRU (generic loop)",
    ("tf", "lstm"): "keras LSTM (generic loop)",
}
PEAK_GFLOPS = 60.0
LSTM_H = 64
ISO_GRU_H = spec.iso_param_hidden(spec.ModelSpec("lstm", 2, LSTM_H, 1), "gru")  # 74 for the adding task


def model_spec(case: Case) -> spec.ModelSpec:
    io = TASK_IO[case.task]
    return spec.ModelSpec(
        case.cell,
        io["input_size"],
        case.hidden,
        io["output_size"],
        case.num_layers,
        variant=case.variant,
        head=io["head"],
        loss=io["loss"],
    )


def timing(rng: np.random.Generator, center: float, n: int = 12, flops: float | None = None) -> TimingStats:
    s = np.sort(center * (1 + 0.04 * rng.standard_normal(n)).clip(0.8, None))
    med = float(np.median(s))
    g = flops / med / 1e9 if flops else None
    return TimingStats(
        samples=s.tolist(),
        median=med,
        iqr=float(np.subtract(*np.percentile(s, [75, 25]))),
        min=float(s[0]),
        mean=float(s.mean()),
        ci_low=float(np.percentile(s, 30)),
        ci_high=float(np.percentile(s, 70)),
        gflops=g,
        pct_peak=100 * g / PEAK_GFLOPS if g else None,
    )


def case_result(
    case: Case, rng: np.random.Generator, status: str = "ok", reason: str | None = None, busy: bool = False
) -> CaseResult:
    ms = model_spec(case)
    fl = spec.flops(ms, case.batch_size, case.seq_len)
    common = dict(
        case=case,
        case_id=case.case_id,
        params=spec.param_count(ms),
        params_backend=spec.param_count(ms),
        flops_forward=fl.forward,
        flops_train_step=fl.train_step,
        model=ms,  # as the worker records it
    )
    if status != "ok":
        return CaseResult(**common, status=status, reason=reason)
    step = fl.train_step / (PEAK_GFLOPS * 1e9 * EFFICIENCY[case.backend]) + 2e-4 * case.seq_len
    act = spec.activation_bytes(ms, case.batch_size, case.seq_len, 4)
    mem = [
        MemoryFigure(name="host_peak_rss_delta", bytes=int(act * 2.5 + 3e6), method="psutil RSS sampling"),
        MemoryFigure(name="activation_estimate", bytes=act, method="analytic B·T·H·G·bytes"),
    ]
    acc = None
    if case.steps:
        floor = {"gru": 0.004, "lstm": 0.012}[case.cell] * (1 + case.seq_len / 50)
        base = BASELINE[case.task][0] if BASELINE[case.task] else 10 * math.log(8) / (case.seq_len + 20)
        steps = list(range(0, case.steps + 1, case.eval_every))
        loss = [
            float(base * math.exp(-s / (case.steps / 4)) + floor * (1 + 0.1 * rng.standard_normal()) ** 2)
            for s in steps
        ]
        seconds = [s * step * 1.1 for s in steps]
        final = loss[-1] * 1.05
        metric = "mse" if case.task == "adding" else "accuracy"
        fm = final if metric == "mse" else float(min(1.0, 0.125 + (1 - final / base)))
        solved = final < 0.1 * base
        acc = Accuracy(
            metric=metric,
            final_metric=fm,
            final_loss=final,
            baseline_loss=base,
            baseline_metric=base if metric == "mse" else 0.125,
            solved=solved,
            steps_to_solve=steps[-2] if solved else None,
            seconds_to_solve=seconds[-2] if solved else None,
            curve=Curve(step=steps, loss=loss, seconds=seconds),
        )
    load = (
        Load(before=[3.5, 1.0, 0.5], after=[3.9, 1.2, 0.6], busy=True)
        if busy
        else Load(before=[0.1] * 3, after=[0.2] * 3)
    )
    warnings = ["machine busy: 1-min load 3.9 on 2 cores"] if busy else []
    return CaseResult(
        **common,
        status="ok",
        implementation=IMPL[(case.backend, case.cell)],
        provenance={"implementation": IMPL[(case.backend, case.cell)]},
        train_time=timing(rng, step, flops=fl.train_step),
        forward_time=timing(rng, step / 3),
        memory=mem,
        accuracy=acc,
        load=load,
        warnings=warnings,
        wall_s=step * 40,
    )


def synthetic_record(
    label: str | None = XSS,
    commit: str = "a1b2c3d4e5f60718",
    created: str = "2025-11-20T10:00:00",
    slowdown: float = 1.0,
    seed: int = 0,
    run_id: str | None = None,
) -> RunRecord:
    rng = np.random.default_rng(seed)
    results: list[CaseResult] = []
    cells = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")]
    for backend in ("numpy", "torch", "tf"):
        for cell, variant in cells:
            hiddens = [32, LSTM_H] + ([ISO_GRU_H] if cell == "gru" else [])
            for hidden in hiddens:
                for T in (20, 50):
                    for s in (0, 1):
                        case = Case(
                            backend=backend,
                            cell=cell,
                            variant=variant,
                            task="adding",
                            seq_len=T,
                            hidden=hidden,
                            batch_size=32,
                            steps=200,
                            eval_every=20,
                            seed=s,
                            repetitions=12,
                        )
                        if backend == "torch" and cell == "lstm" and hidden == 32 and T == 50 and s == 1:
                            results.append(case_result(case, rng, "failed", "RuntimeError: <b>boom</b> & more"))
                            continue
                        r = case_result(case, rng, busy=(backend == "tf" and hidden == 32 and T == 20 and s == 0))
                        if r.train_time is not None and slowdown != 1.0:
                            r = r.model_copy(update={"train_time": timing(rng, r.train_time.median * slowdown)})
                        results.append(r)
    for cell, variant in cells:  # the copy task on numpy only
        for T in (10, 20):
            case = Case(
                backend="numpy",
                cell=cell,
                variant=variant,
                task="copy",
                seq_len=T,
                hidden=32,
                batch_size=32,
                steps=100,
                eval_every=20,
                seed=0,
                repetitions=12,
            )
            results.append(case_result(case, rng))
    skipped = Case(
        backend="tf",
        device="cuda",
        cell="gru",
        variant="reset_after",
        task="adding",
        seq_len=20,
        hidden=32,
        batch_size=32,
        steps=200,
        eval_every=20,
        repetitions=12,
    )
    results.append(case_result(skipped, rng, "skipped", "TensorFlow sees no GPU"))
    return RunRecord(
        run_id=run_id or f"run-{commit[:6]}-{seed}",
        suite_name="fixture",
        label=label,
        created=created,
        finished=created,
        suite={"name": "fixture", "backend": ["numpy", "torch", "tf"]},
        machine_id="ci-box-1a2b3c",
        machine={
            "hostname": "ci-box",
            "cpu": {"model": "Test CPU @ 2.0GHz", "arch": "x86_64"},
            "cores_logical": 2,
            "ram_bytes": 8 * 2**30,
            "python": "CPython 3.11.9",
            "versions": {"numpy": "2.4.0", "torch": "2.13.0+cpu", "tensorflow": "2.21.0"},
            "env": {"OMP_NUM_THREADS": "2"},
        },
        calibration=Calibration(gemm_gflops=PEAK_GFLOPS, method="float32 GEMM 1024³, median of 5"),
        git=GitInfo(commit=commit, dirty=False, branch="main"),
        cases=results,
    )


# ------------------------------------------------------------------------------------------- a real small run
TINY_SUITE = """\
name = "tiny"
description = "report tests: numpy only, a few steps"
backend = "numpy"
device = "cpu"
cell = ["gru", "lstm"]
variant = ["reset_after", "reset_before"]
task = "adding"
seq_len = [5, 10]
hidden = 8
batch_size = 8
steps = 4
eval_every = 2
eval_batches = 1
seeds = 0
warmup = 1
repetitions = 3
timeout_s = 120
threads = 1
"""
_REAL_RUN: dict[str, Path] = {}


def real_run_record(tmp_root) -> Path:
    """Path of the record of a real six-case run (``gru-bench run`` with the tiny suite above, label = XSS), made
    once per test session and shared by the report tests and the browser test."""
    if "path" in _REAL_RUN:
        return _REAL_RUN["path"]
    root = Path(tmp_root)
    (root / "tiny.toml").write_text(TINY_SUITE)
    exe = Path(sys.executable).with_name("gru-bench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gru_bench.cli"]
    proc = subprocess.run(
        [*cmd, "run", str(root / "tiny.toml"), "--out", str(root / "results"), "--label", XSS, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, f"gru-bench run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    records = sorted((root / "results").rglob("*_tiny.json"))
    assert len(records) == 1, f"expected one record, found {records}"
    _REAL_RUN["path"] = records[0]
    return records[0]


# ================================================================================================ tests


# ------------------------------------------------------------------------------------------------- helpers
def tiny_record(
    label: str | None = "tiny",
    commit: str = "c0ffee1234",
    created: str = "2025-11-20T10:00:00",
    seeds=(0, 1, 2),
    backends=("numpy",),
    hiddens=(16,),
    run_id: str | None = None,
) -> RunRecord:
    """A small record: GRU (both variants) and LSTM on the adding task, a few seeds."""
    rng = np.random.default_rng(7)
    results = []
    for b in backends:
        for cell, variant in (("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")):
            for h in hiddens:
                for s in seeds:
                    case = Case(
                        backend=b,
                        cell=cell,
                        variant=variant,
                        task="adding",
                        seq_len=20,
                        hidden=h,
                        batch_size=16,
                        steps=100,
                        eval_every=20,
                        seed=s,
                        repetitions=12,
                    )
                    results.append(case_result(case, rng))
    return RunRecord(
        run_id=run_id or f"tiny-{commit}",
        suite_name="tiny",
        label=label,
        created=created,
        git=GitInfo(commit=commit, dirty=False, branch="main"),
        cases=results,
    )


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory) -> tuple[Path, str, str]:
    """One report from the synthetic record, with a corrupt and a foreign file beside it."""
    d = tmp_path_factory.mktemp("synthetic")
    (d / "run.json").write_text(synthetic_record().model_dump_json())
    (d / "corrupt.json").write_text('{"schema_version": 1, "run_id": "cut off')
    (d / "foreign.json").write_text('{"name": "some other tool", "version": 3}')
    err = io.StringIO()
    index = build_report([d], d / "report", stderr=err)
    return index, index.read_text(encoding="utf-8"), err.getvalue()


# ------------------------------------------------------------------------------------------ table (unit)
def test_format_value_units_and_missing():
    assert format_value("seconds_ms", 0.0123456) == "12.3"  # seconds shown as ms, 3 significant digits
    assert format_value("seconds_ms", 0.000456) == "0.46"
    assert format_value("seconds_ms", 1.5) == "1,500"
    assert format_value("bytes", 3 * 2**20) == "3 MiB"
    assert format_value("bytes", 1536) == "1.5 KiB"
    assert format_value("ratio", 0.7512) == "0.75×"
    assert format_value("int", 17473.0) == "17,473"
    assert format_value("pct", 12.345) == "12.3 %"
    for kind in ("seconds_ms", "bytes", "ratio", "int", "float", "text"):
        assert format_value(kind, float("nan")) == "" and format_value(kind, None) == ""


def test_sort_keys_numeric_fraction_and_missing():
    assert float(sort_key("seconds_ms", 0.002)) == 0.002  # raw value, not the display text
    assert sort_key("float", float("nan")) == ""  # missing sorts last (the script keeps "" at the end)
    assert float(sort_key("count", "2/3")) == pytest.approx(2 / 3, rel=1e-12)
    assert sort_key("text", "numpy/cpu") == "numpy/cpu"


def test_table_markdown_escapes_and_csv_keeps_raw(tmp_path):
    df = pd.DataFrame({"name": ["a|b", XSS], "t": [0.0015, float("nan")]})
    t = Table("x", "X", [Column("name", "name"), Column("t", "time (ms)", "seconds_ms", "num")], df)
    md = t.to_markdown()
    assert "a\\|b" in md and ESCAPED_XSS in md and "<script>" not in md
    assert md.splitlines()[1] == "|---|---:|"
    back = pd.read_csv(t.to_csv(tmp_path / "x.csv"))
    assert back["t"].iloc[0] == pytest.approx(0.0015, rel=1e-12)  # CSV: SI units, unformatted
    with pytest.raises(ValueError, match="columns \\['nope'\\] not in the frame"):
        Table("y", "Y", [Column("nope", "n")], df)
    with pytest.raises(ValueError, match="kind='weird'"):
        Column("a", "a", "weird")


def test_follows_tolerance():
    assert follows(0.75, 0.75) == "yes"
    assert follows(0.75 * (1 + FOLLOWS_TOLERANCE) * 0.999, 0.75) == "yes"
    assert follows(0.75 * (1 + FOLLOWS_TOLERANCE) * 1.01, 0.75) == "no: GRU slower than FLOPs predict"
    assert follows(0.5, 0.75) == "no: GRU faster than FLOPs predict"
    assert follows(float("nan"), 0.75) == ""


# ----------------------------------------------------------------------------------------- verdict (unit)
def test_verdict_pairs_gru_with_lstm_and_aggregates_seeds():
    rec = tiny_record()
    cases = cases_frame([rec])
    v = verdict_frame(groups_frame(cases))
    assert list(v["gru_variant"]) == ["reset_after", "reset_before"]  # one row per GRU variant, LSTM beside it
    io_ = TASK_IO["adding"]
    gru = spec.ModelSpec("gru", io_["input_size"], 16, io_["output_size"])
    lstm = spec.ModelSpec("lstm", io_["input_size"], 16, io_["output_size"])
    want_params = spec.param_count(gru) / spec.param_count(lstm)
    want_flops = spec.flops(gru, 16, 20).train_step / spec.flops(lstm, 16, 20).train_step
    assert v["params_ratio"].tolist() == pytest.approx([want_params] * 2, rel=1e-12)
    assert v["flops_ratio"].tolist() == pytest.approx([want_flops] * 2, rel=1e-12)
    assert 0.74 < want_params < 0.76  # ≈ 3/4 at this size (the head moves it slightly)
    for _, row in v.iterrows():  # seeds aggregate by the median of the per-seed medians
        g = cases[(cases["cell"] == "gru") & (cases["variant"] == row["gru_variant"])]
        l = cases[cases["cell"] == "lstm"]
        assert row["gru_train_s"] == pytest.approx(np.median(g["train_s"]), rel=1e-12)
        assert row["time_ratio"] == pytest.approx(np.median(g["train_s"]) / np.median(l["train_s"]), rel=1e-12)
        assert row["follows"] == follows(row["time_ratio"], row["flops_ratio"])
        assert row["gru_final_loss"] == pytest.approx(g["final_loss"].mean(), rel=1e-12)  # accuracy: the mean
        assert (
            row["gru_solved"] == f"{int(g['solved'].sum())}/3" and row["lstm_solved"] == f"{int(l['solved'].sum())}/3"
        )
        assert row["status"] == ""


def test_verdict_shows_failed_side_and_missing_partner():
    rec = tiny_record(seeds=(0,), hiddens=(16, 24))
    bad = rec.cases[-1]  # the LSTM at H=24
    assert bad.case.cell == "lstm" and bad.case.hidden == 24
    rec.cases[-1] = bad.model_copy(
        update=dict(status="failed", reason="RuntimeError: boom", train_time=None, accuracy=None, memory=[])
    )
    extra = Case(
        backend="numpy",
        cell="gru",
        variant="reset_after",
        task="adding",
        seq_len=20,
        hidden=40,
        batch_size=16,
        steps=100,
        eval_every=20,
        repetitions=12,
    )
    rec.cases.append(case_result(extra, np.random.default_rng(0)))
    t = verdict_table(groups_frame(cases_frame([rec])))
    df = t.df.set_index(["hidden", "gru_variant"])
    assert df.loc[(24, "reset_after"), "status"] == "LSTM: failed: RuntimeError: boom"
    assert math.isnan(df.loc[(24, "reset_after"), "time_ratio"])
    assert df.loc[(40, "reset_after"), "status"] == "no LSTM at this size"  # kept, not dropped, not "failed"
    css = dict(zip(zip(t.df["hidden"], t.df["gru_variant"]), t.row_css))
    assert css[(24, "reset_after")] == "failed" and css[(40, "reset_after")] == "" and css[(16, "reset_after")] == ""
    probs = problems_table(cases_frame([rec])).df
    assert probs["status"].tolist() == ["failed"] and probs["reason"].tolist() == ["RuntimeError: boom"]


# ------------------------------------------------------------------------------------- iso-parameter (unit)
def test_iso_parameter_matches_spec():
    """For each LSTM: the GRU hidden size of spec.iso_param_hidden, and the measured GRU at it when within ±10 %."""
    rec = synthetic_record()
    iso = iso_frame(groups_frame(cases_frame([rec])))
    io_ = TASK_IO["adding"]
    numpy_64 = iso[
        (iso["task"] == "adding")
        & (iso["backend_device"] == "numpy/cpu")
        & (iso["lstm_hidden"] == LSTM_H)
        & (iso["seq_len"] == 20)
    ]
    lspec = spec.ModelSpec("lstm", io_["input_size"], LSTM_H, io_["output_size"])
    assert ISO_GRU_H == spec.iso_param_hidden(lspec, "gru") == 74  # ≈ 64·√(4/3)
    assert set(numpy_64["gru_variant"]) == {"reset_after", "reset_before"}
    for _, r in numpy_64.iterrows():
        assert r["iso_hidden"] == ISO_GRU_H and r["gru_hidden"] == ISO_GRU_H and r["match"] == "exact"
        gspec = spec.ModelSpec("gru", io_["input_size"], ISO_GRU_H, io_["output_size"])
        assert r["iso_params"] == r["gru_params"] == spec.param_count(gspec)
        assert r["params_ratio"] == pytest.approx(spec.param_count(gspec) / spec.param_count(lspec), rel=1e-12)
        assert abs(r["params_ratio"] - 1) < 0.01
        assert r["io_source"] == "recorded model"
    small = iso[(iso["backend_device"] == "numpy/cpu") & (iso["lstm_hidden"] == 32) & (iso["task"] == "adding")]
    want = spec.iso_param_hidden(spec.ModelSpec("lstm", io_["input_size"], 32, io_["output_size"]), "gru")
    assert set(small["iso_hidden"]) == {want}
    # the GRUs measured (32, 64, 74) are all more than 10 % off the LSTM's parameters: say what to add
    assert set(small["match"]) == {f"not measured: add hidden={want} to the suite"}
    assert small["gru_train_s"].isna().all()
    # the copy task: GRU and LSTM at H=32 only; the sizes are the recorded model's (I=10, O=9)
    copy = iso[iso["task"] == "copy"]
    want_c = spec.iso_param_hidden(spec.ModelSpec("lstm", 10, 32, 9), "gru")
    assert len(copy) and set(copy["iso_hidden"]) == {want_c}


def test_iso_prefers_recorded_model_sizes():
    rec = tiny_record(seeds=(0,))
    rec.cases = [
        r.model_copy(update={"model": spec.ModelSpec("lstm", 5, 16, 3)}) if r.case.cell == "lstm" else r
        for r in rec.cases
    ]
    iso = iso_frame(groups_frame(cases_frame([rec])))
    assert set(iso["io_source"]) == {"recorded model"}
    assert set(iso["iso_hidden"]) == {spec.iso_param_hidden(spec.ModelSpec("lstm", 5, 16, 3), "gru")}


def test_iso_of_records_without_the_model_reads_the_case_and_its_task():
    """Records written before ``CaseResult.model``: the model is rebuilt from the Case (H, L) and the task's own
    sizes (adding: I=2, O=1), the same the worker used; an unknown task leaves the sizes unknown, said so."""
    rec = synthetic_record()
    recorded = iso_frame(groups_frame(cases_frame([rec])))
    rec.cases = [r.model_copy(update={"model": None}) for r in rec.cases]
    old = iso_frame(groups_frame(cases_frame([rec])))
    adding = old["task"] == "adding"
    assert set(old.loc[adding, "io_source"]) == {"task definition"}
    assert old.loc[adding, "iso_hidden"].tolist() == recorded.loc[recorded["task"] == "adding", "iso_hidden"].tolist()
    rec.cases = [r.model_copy(update={"case": r.case.model_copy(update={"task": "retired_task"})}) for r in rec.cases]
    gone = iso_frame(groups_frame(cases_frame([rec])))
    assert set(gone["match"]) == {"model sizes unknown (task not recognised)"} and gone["iso_hidden"].isna().all()


# --------------------------------------------------------------------------------------- a whole report
def test_report_is_self_contained(fixture_report):
    index, page, _ = fixture_report
    assert index.name == "index.html"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no network reference at all
    assert not re.search(r"<link\b", page) and not re.search(r"<script[^>]*\bsrc=", page)
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) >= 5
    for uri in imgs:
        assert uri.startswith("data:image/png;base64,")
        png = base64.b64decode(uri.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the one inline script is the one the Content-Security-Policy allows, by hash
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page


def test_report_sections_in_reading_order(fixture_report):
    _, page, _ = fixture_report
    order = ["verdict", "iso", "accuracy", "curves", "speed", "memory", "backends", "manifest", "warnings"]
    pos = [page.index(f'<section id="{s}">') for s in order]
    assert pos == sorted(pos)
    assert '<table class="sortable" id="verdict-table"' in page
    for plot in ("accuracy_vs_T", "learning_curves", "speed_vs_hidden", "speed_vs_seq_len", "throughput", "memory"):
        assert f'id="plot-{plot}"' in page


def test_report_escapes_record_strings(fixture_report):
    _, page, _ = fixture_report
    assert XSS not in page and "alert(1)</script>" not in page
    assert page.count(ESCAPED_XSS) >= 3  # title, run line, manifest
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; more" in page and "<b>boom</b>" not in page


def test_report_keeps_failed_skipped_and_busy(fixture_report):
    index, page, _ = fixture_report
    probs = pd.read_csv(index.parent / "tables" / "problems.csv")
    assert sorted(probs["status"]) == ["failed", "skipped"]
    assert set(probs["reason"]) == {"RuntimeError: <b>boom</b> & more", "TensorFlow sees no GPU"}
    assert "1 failed, 1 skipped case(s)" in page
    warn = page[page.index('<section id="warnings">') :]
    assert "machine busy: 1-min load 3.9 on 2 cores" in warn and "TensorFlow sees no GPU" in warn
    v = pd.read_csv(index.parent / "tables" / "verdict.csv")
    failed = v[v["status"].fillna("").str.contains("failed")]
    assert len(failed) == 2 and set(failed["hidden"]) == {32} and set(failed["seq_len"]) == {50}


def test_report_names_and_skips_bad_inputs(fixture_report):
    index, page, err = fixture_report
    for name in ("corrupt.json", "foreign.json"):
        assert name in err and name in page
    assert "Inputs skipped" in page


def test_report_files_beside_index(fixture_report):
    index, page, _ = fixture_report
    out = index.parent
    names = re.findall(r'id="plot-([a-z_A-Z]+)"', page)
    for n in names:
        assert (out / "plots" / f"{n}.png").stat().st_size > 5000
        assert (out / "plots" / f"{n}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    verdict = pd.read_csv(out / "tables" / "verdict.csv")
    assert len(verdict) == page[page.index('id="verdict-table"') :].split("</table>")[0].count("<tr") - 1
    assert (verdict["params_ratio"].dropna().between(0.74, 0.77)).all()  # ≈ 3/4; the shared head moves it
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# gru-bench: " + ESCAPED_XSS)
    assert "| task | T | H |" in md and "## Cases that did not finish" in md and "TensorFlow sees no GPU" in md
    assert "<script>" not in md and "<b>" not in md
    for t in ("verdict", "iso_parameter", "accuracy", "speed", "memory", "backends", "problems"):
        assert (out / "tables" / f"{t}.md").exists() and (out / "tables" / f"{t}.csv").exists()


# -------------------------------------------------------------------------------------------- bad inputs
def test_empty_and_missing_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="none given"):
        build_report([], tmp_path / "r")
    with pytest.raises(InputError, match="does not exist|no such file"):
        build_report([tmp_path / "nope.json"], tmp_path / "r")
    (tmp_path / "bad.json").write_text("{not json")
    err = io.StringIO()
    with pytest.raises(InputError, match="no readable gru-bench run record"):
        build_report([tmp_path / "bad.json"], tmp_path / "r", stderr=err)
    assert "bad.json" in err.getvalue()
    assert not (tmp_path / "r" / "index.html").exists()


def test_record_without_cases_still_reports(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text(RunRecord(run_id="e", suite_name="s", created="2025-11-20T10:00:00").model_dump_json())
    page = build_report([p], tmp_path / "r").read_text(encoding="utf-8")
    assert "the records hold no cases" in page and "0 cases" in page


def test_stopped_run_lists_cases_never_run(tmp_path):
    """A record of a run stopped midway (no ``finished``): the planned cases it never reached are listed."""
    from gru_bench.suite import load_suite

    (tmp_path / "tiny.toml").write_text(TINY_SUITE)
    suite = load_suite(tmp_path / "tiny.toml")
    planned = suite.cases()
    assert len(planned) == 6
    rng = np.random.default_rng(0)
    rec = RunRecord(
        run_id="stopped",
        suite_name="tiny",
        suite=suite.record(),
        label="stopped run",
        created="2025-11-20T10:00:00",
        finished=None,
        cases=[case_result(c, rng) for c in planned[:2]],
    )
    (tmp_path / "r.json").write_text(rec.model_dump_json())
    index = build_report([tmp_path / "r.json"], tmp_path / "out")
    probs = pd.read_csv(index.parent / "tables" / "problems.csv")
    assert sorted(probs["case_id"]) == sorted(c.case_id for c in planned[2:])
    assert set(probs["status"]) == {"not run"}
    page = index.read_text(encoding="utf-8")
    assert "4 planned case(s) not run" in page and "did not finish (interrupted, or still running): 2 of 6" in page


# ----------------------------------------------------------------------------------------- several runs
@pytest.mark.slow
def test_several_runs_compare_and_history(tmp_path):
    a = tiny_record(label="before", commit="aaaa1111", created="2025-11-20T10:00:00", seeds=(0,), hiddens=(16, 32))
    b = tiny_record(label="after", commit="bbbb2222", created="2025-11-21T10:00:00", seeds=(0,), hiddens=(16, 32))
    b.cases = [
        r.model_copy(update={"train_time": r.train_time.model_copy(update={"median": r.train_time.median * 1.5})})
        for r in b.cases
    ]
    for rec, name in ((a, "a.json"), (b, "b.json")):
        (tmp_path / name).write_text(rec.model_dump_json())
    seen = {}

    def provider(records):
        seen["runs"] = [r.run_id for r in records]
        return pd.DataFrame(
            {
                "series": ["case X", "case X"],
                "commit": ["aaaa1111", "bbbb2222"],
                "created": ["2025-11-20T10:00:00", "2025-11-21T10:00:00"],
                "value": [1.0, 2.0],
                "cell_key": ["LSTM", "LSTM"],
                "unit": ["train step (ms)"] * 2,
                "change_point": [False, True],
                "verdict": ["", "slower 2.00× (from the provider)"],
            }
        )

    index = build_report([tmp_path / "b.json", tmp_path / "a.json"], tmp_path / "r", title="two", history=provider)
    page = index.read_text(encoding="utf-8")
    assert seen["runs"] == [a.run_id, b.run_id]  # oldest first, whatever the order given
    assert '<section id="comparison">' in page and '<section id="history">' in page
    comp = pd.read_csv(index.parent / "tables" / "comparison.csv")
    assert len(comp) == len(a.cases) and comp["ratio_1"].to_numpy() == pytest.approx(1.5, rel=1e-9)
    hist = pd.read_csv(index.parent / "tables" / "history.csv")
    assert "slower 2.00× (from the provider)" in set(hist["verdict"].dropna())
    assert 'id="plot-history"' in page and 'id="plot-comparison"' in page

    def broken(records):
        raise RuntimeError("no luck")

    page = build_report([tmp_path], tmp_path / "r2", history=broken).read_text(encoding="utf-8")
    assert "History module failed (RuntimeError: no luck)" in page and 'id="plot-history"' in page


# ---------------------------------------------------------------------------------------------- real run
@pytest.mark.slow
def test_report_from_a_real_run(tmp_path_factory):
    """`gru-bench run` (numpy, six cases, four steps) then `gru-bench report`: the CLI path end to end."""
    record = real_run_record(tmp_path_factory.mktemp("real"))
    out = record.parent.parent.parent / "report"
    exe = Path(sys.executable).with_name("gru-bench")
    proc = subprocess.run(
        [str(exe), "report", str(record), "-o", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert str(out / "index.html") in proc.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    assert ESCAPED_XSS in page and XSS not in page
    v = pd.read_csv(out / "tables" / "verdict.csv")
    assert sorted(v["gru_variant"]) == ["reset_after", "reset_after", "reset_before", "reset_before"]
    assert v["time_ratio"].notna().all() and (v["time_ratio"] > 0).all()
    rec = RunRecord.model_validate_json(record.read_text())
    want = {(r.case.cell, r.case.variant, r.case.seq_len): r.train_time.median for r in rec.cases}
    for _, row in v.iterrows():
        ratio = want[("gru", row["gru_variant"], row["seq_len"])] / want[("lstm", "standard", row["seq_len"])]
        assert row["time_ratio"] == pytest.approx(ratio, rel=1e-12)
    assert 'id="plot-learning_curves"' in page and 'id="plot-speed_vs_seq_len"' in page
    bad = subprocess.run(
        [str(exe), "report", str(out / "tables"), "-o", str(out / "x")], capture_output=True, text=True, timeout=600
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------- reliability review (issue 14)
def test_deeply_nested_json_in_a_folder_is_skipped_with_a_warning(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    (d / "run.json").write_text(tiny_record(seeds=(0,)).model_dump_json())
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    err = io.StringIO()
    index = build_report([d], tmp_path / "report", stderr=err)
    assert index.stat().st_size > 0 and "deep.json" in err.getvalue() and "nested deeper" in err.getvalue()
    with pytest.raises(InputError, match=r"deep\.json"):
        build_report([d / "deep.json"], tmp_path / "report2", stderr=io.StringIO())


_KILL_AT = r"""
import os, signal, sys
from pathlib import Path
import gru_bench.report as rep
where, inputs, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if where == "index-write":  # killed while index.html is being written: the file exists, truncated
    real = Path.write_text
    def write_text(self, text, *a, **kw):
        if self.name == "index.html":
            with open(self, "w") as f:
                f.write(text[:100]); f.flush()
            die()
        return real(self, text, *a, **kw)
    Path.write_text = write_text
elif where == "tables":  # killed among the tables, after the plots
    real_csv = rep.Table.to_csv
    def to_csv(self, path, *a, **kw):
        real_csv(self, path, *a, **kw)
        if self.name == "speed":
            die()
    rep.Table.to_csv = to_csv
elif where == "swap":  # killed in the swap: plots/ and tables/ already new, index.html not yet
    real_replace = os.replace
    def replace(src, dst):
        if Path(dst).name == "index.html":
            die()
        return real_replace(src, dst)
    os.replace = replace
rep.build_report([Path(inputs)], out)
"""


@pytest.mark.parametrize("where", ["index-write", "tables", "swap"])
def test_a_report_killed_while_writing_leaves_the_old_report_whole(tmp_path, where):
    """SIGKILL of a real process at the write: the folder holds the old report (or the new), never a 0-byte or
    truncated index.html, nor emptied plots/ and tables/; the next build sweeps the leftovers."""
    old_rec, new_rec = tmp_path / "old.json", tmp_path / "new.json"
    old_rec.write_text(tiny_record(seeds=(0,), label="OLD-REPORT").model_dump_json())
    new_rec.write_text(tiny_record(seeds=(0, 1), label="NEW-REPORT", run_id="new").model_dump_json())
    out = tmp_path / "report"
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    build_report([old_rec], out, stderr=io.StringIO())
    old_index = (out / "index.html").read_bytes()
    old_plots = sorted(p.name for p in (out / "plots").iterdir())
    old_tables = {p.name: p.read_bytes() for p in (out / "tables").iterdir()}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", _KILL_AT, where, str(new_rec), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # it really died by SIGKILL at the injection point
    index = (out / "index.html").read_bytes()
    assert index == old_index and b"OLD-REPORT" in index and index.rstrip().endswith(b"</html>")
    if where == "swap":  # the folders were already swapped: new and complete, beside the (self-contained) old page
        assert sorted(p.name for p in (out / "plots").iterdir()) == old_plots
        assert set(p.name for p in (out / "tables").iterdir()) == set(old_tables)
    else:
        assert sorted(p.name for p in (out / "plots").iterdir()) == old_plots
        assert {p.name: p.read_bytes() for p in (out / "tables").iterdir()} == old_tables
    assert (out / "notes.txt").read_text() == "the user's own file"
    build_report([new_rec], out, stderr=io.StringIO())
    assert b"NEW-REPORT" in (out / "index.html").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "notes.txt", "plots", "summary.md", "tables"]


def test_stale_temp_folders_are_swept_but_a_live_build_keeps_its_own(tmp_path):
    rec = tmp_path / "r.json"
    rec.write_text(tiny_record(seeds=(0,)).model_dump_json())
    out = tmp_path / "report"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".gru-bench-report-{int(dead.stdout)}-abc"  # a build killed earlier: its process is gone
    live = out / f".gru-bench-report-{os.getppid()}-xyz"  # a build still running (the parent is alive)
    for d in (stale, live):
        (d / "plots").mkdir(parents=True)
    build_report([rec], out, stderr=io.StringIO())
    assert not stale.exists() and live.is_dir() and (out / "index.html").stat().st_size > 0
# ------------------------------------------------------------------------------------------- time-to-target
def _tt_record() -> RunRecord:
    """GRU seeds reach the target at 100, 200 and never (budget 300); LSTM seeds at 250 and never."""
    out = []
    for cell, variant, hits in (("gru", "reset_after", [100, 200, None]), ("lstm", "standard", [250, None])):
        for seed, hit in enumerate(hits):
            c = Case(backend="numpy", cell=cell, variant=variant, task="adding", seq_len=10, hidden=16, steps=300,
                     eval_every=50, seed=seed)
            held = Curve(step=[50, 100, 150, 200, 250, 300], loss=[0.1, 0.01, 0.02, 0.005, 0.004, 0.02],
                         seconds=[0.1 * i for i in range(1, 7)], metric=[0.1, 0.01, 0.02, 0.005, 0.004, 0.02])
            acc = Accuracy(metric="mse", final_metric=0.02, final_loss=0.02, baseline_loss=1 / 6,
                           baseline_metric=1 / 6, curve=held, heldout=held, eval_every=50, target_loss=1 / 60,
                           steps_to_target=hit, best_loss=0.004 + seed * 0.001, best_metric=0.004)
            out.append(CaseResult(case=c, case_id=c.case_id, status="ok", accuracy=acc))
    return RunRecord(run_id="tt", suite_name="tt", created="2026-01-01T00:00:00", cases=out)


def test_groups_carry_kaplan_meier_time_to_target():
    groups = groups_frame(cases_frame([_tt_record()]))
    gru = groups[groups["cell"] == "gru"].iloc[0]
    lstm = groups[groups["cell"] == "lstm"].iloc[0]
    # GRU by hand: F(100) = 1/3, F(200) = 2/3 -> median 200; LSTM: F(250) = 1/2 -> median 250
    assert (gru["median_steps_to_target"], gru["reached"], gru["n_tt"]) == (200, 2, 3)
    assert (lstm["median_steps_to_target"], lstm["reached"], lstm["n_tt"]) == (250, 1, 2)
    assert gru["solved_curve_step"] == [0, 100, 200, 300]
    assert gru["solved_curve_frac"] == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3], abs=1e-12)
    assert gru["best_loss"] == pytest.approx(0.005, rel=1e-12)  # mean of 0.004, 0.005, 0.006


def test_report_shows_time_to_target_and_reads_a_version_1_record(tmp_path):
    from gru_bench.storage import save_record

    p = save_record(_tt_record(), tmp_path / "in" / "tt.json")
    baseline = Path(__file__).resolve().parents[1] / "results" / "baselines" / "quick.json"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        index = build_report([p, baseline], tmp_path / "out")
    page = index.read_text()
    assert (tmp_path / "out" / "plots" / "solved_vs_step.png").is_file()
    assert "Time to target" in page and "steps to target (median)" in page
    acc = pd.read_csv(tmp_path / "out" / "tables" / "accuracy.csv")
    assert sorted(acc["median_steps_to_target"].dropna()) == [200, 250]  # the v1 rows: no time-to-target
    assert set(acc["reached_text"].dropna()) == {"2/3", "1/2"}
    assert "schema version 1" in err.getvalue() and "schema version 1" in page
    assert "input file(s) skipped" not in page  # an old record is read, not skipped


# --- the first screen: answer sentences (report/answer.py) -------------------------------------------------------


def flat_timing(center: float, n: int = 12) -> TimingStats:
    """Noise-free timing: every sample ``center`` (for tests whose assertion sits near a threshold)."""
    return TimingStats(samples=[center] * n, median=center, iqr=0.0, min=center, mean=center, ci_low=center,
                       ci_high=center)


def answer_record(steps_to_target, budget: int = 1000, seeds=(0, 1), Ts=(20, 40, 60), ms_per_step=None,
                  created: str = "2026-01-02T03:04:00", hidden: int = 24, noise: bool = True) -> RunRecord:
    """GRU (reset_after) and LSTM on adding, numpy, H=``hidden``, at ``Ts`` over ``seeds``;
    ``steps_to_target(cell, T, seed)`` gives the step the target was reached (None: not within ``budget``); step
    times ``ms_per_step`` with 4 % seeded noise, or exact (``noise=False``)."""
    rng = np.random.default_rng(0)
    results = []
    for cell, variant in (("gru", "reset_after"), ("lstm", "standard")):
        for T in Ts:
            for s in seeds:
                case = Case(backend="numpy", cell=cell, variant=variant, task="adding", seq_len=T, hidden=hidden,
                            batch_size=32, steps=budget, eval_every=25, seed=s, repetitions=12, stop_at_target=True)
                r = case_result(case, rng)
                st = steps_to_target(cell, T, s)
                step_s = (ms_per_step or {}).get(cell, 1.0 if cell == "gru" else 1.3) / 1000
                acc = r.accuracy.model_copy(update=dict(
                    target_loss=0.1 * r.accuracy.baseline_loss, steps_to_target=st,
                    seconds_to_target=None if st is None else st * step_s, solved=st is not None))
                tt = timing(rng, step_s) if noise else flat_timing(step_s)
                r = r.model_copy(update={"accuracy": acc, "train_time": tt})
                results.append(r)
    return RunRecord(run_id="answer-test", suite_name="answer", created=created, machine={"hostname": "box"},
                     cases=results)


def _answer(rec):
    from gru_bench.report import answer
    from gru_bench.report.frame import cases_frame

    return answer.sentences(cases_frame([rec]))


def _printed_ratio(sentence: str) -> float:
    """The GRU/LSTM step-time ratio a speed sentence prints."""
    m = re.search(r"GRU/LSTM step time (\d+\.\d\d)", sentence)
    assert m, sentence
    return float(m.group(1))


def test_answer_gru_first_at_every_T():
    s = _answer(answer_record(lambda c, T, seed: (100 + 25 * seed if c == "gru" else 400 + 25 * seed) * T // 20,
                              budget=1500))
    learn = [x for x in s if x.startswith("Learning")]
    assert len(learn) == 1, s
    assert "GRU reached the target first at every T" in learn[0]
    assert "T=20: GRU first, median 100 vs 400 steps" in learn[0]  # KM median of {100,125}: the first with F>=0.5
    assert "2/2 vs 2/2 seeds; every seed agrees" in learn[0]
    speed = [x for x in s if x.startswith("Speed (numpy)")]
    assert len(speed) == 1 and "GRU is faster" in speed[0]
    # the printed ratio, 1.0/1.3 ms: each median is of 12 samples with 4 % seeded noise (≈1.2 % each), so 6 % is
    # about 3 standard deviations of the ratio (and the 2-decimal print is well inside it)
    assert _printed_ratio(speed[0]) == pytest.approx(1.0 / 1.3, rel=0.06)


def test_answer_lstm_first():
    s = _answer(answer_record(lambda c, T, seed: 300 if c == "gru" else 100, ms_per_step={"gru": 2.0, "lstm": 1.0}))
    learn = s[0]
    assert "LSTM reached the target first at every T" in learn and "median 300 vs 100 steps" in learn
    assert any(x.startswith("Speed (numpy): LSTM is faster") for x in s), s


def test_answer_names_no_winner_within_five_percent():
    """A GRU/LSTM step-time ratio within SAME_WITHIN (5 %) of 1 is "about as fast", not a win for either cell; just
    outside it the faster cell is named."""
    from gru_bench.report.answer import SAME_WITHIN

    # noise-free step times: the ratios sit 1-2 % from the threshold, under the 4 % noise timing() would add
    tie = _answer(answer_record(lambda c, T, seed: 100, ms_per_step={"gru": 1.04, "lstm": 1.0}, noise=False))
    (speed,) = [x for x in tie if x.startswith("Speed (numpy)")]
    assert "GRU and LSTM are about as fast per training step (within 5%)" in speed and SAME_WITHIN == 0.05
    assert _printed_ratio(speed) == pytest.approx(1.04, abs=0.005)  # 2 decimals printed
    apart = _answer(answer_record(lambda c, T, seed: 100, ms_per_step={"gru": 1.07, "lstm": 1.0}, noise=False))
    (speed,) = [x for x in apart if x.startswith("Speed (numpy)")]
    assert speed.startswith("Speed (numpy): LSTM is faster per training step"), speed
    assert _printed_ratio(speed) == pytest.approx(1.07, abs=0.005)


def test_answer_one_cell_unsolved_is_said_honestly():
    s = _answer(answer_record(lambda c, T, seed: 200 if c == "gru" else None, budget=1000))
    assert "GRU first, median 200 vs not reached steps" in s[0] and "2/2 vs 0/2 seeds" in s[0]
    s = _answer(answer_record(lambda c, T, seed: None))
    assert "No cell reached the target first at any T" in s[0]
    assert "neither cell reached the target in 1,000 steps (0/2 vs 0/2 seeds)" in s[0]


def test_answer_mixed_seeds_and_T_dependence():
    # T=20: GRU 100/900 vs LSTM 300/400 (overlap); T=40: LSTM wins
    def stt(c, T, seed):
        if T == 20:
            return (100, 900)[seed] if c == "gru" else (300, 400)[seed]
        return 800 if c == "gru" else 200
    s = _answer(answer_record(stt, Ts=(20, 40)))
    assert "depends on T" in s[0]
    assert "T=20: GRU first, median 100 vs 300 steps" in s[0] and "seeds overlap" in s[0]
    assert "T=40: LSTM first" in s[0]


def test_answer_without_accuracy_or_targets_degrades():
    rec = synthetic_record()  # no target_loss (like a version-1 record): no learning sentence, speed still said
    s = _answer(rec)
    assert not any(x.startswith("Learning") for x in s)
    # both GRU variants ran on every backend: one speed sentence each, the variant named (#2 of the report review)
    assert {x.split(":")[0] for x in s if x.startswith("Speed")} == {
        f"Speed ({b}, GRU {v})" for b in ("numpy", "torch", "tf") for v in ("reset_after", "reset_before")}
    from gru_bench.report import answer
    from gru_bench.report.frame import cases_frame

    assert answer.headline_figure(cases_frame([rec])) is None
    assert answer.sentences(cases_frame([])) == []


def test_basic_timeline_series_are_seed_groups_not_labels():
    """A series pools the seeds of one configuration (Case.group_id): two configurations whose labels read the same
    (stop_at_target is not in the label) stay two series, each named so a reader tells them apart."""
    from gru_bench.report.timeline import basic_series

    rows = []
    for stop in (False, True):
        for seed, t in ((0, 0.002), (1, 0.004)):
            c = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=8,
                     steps=100, seed=seed, stop_at_target=stop)
            rows.append(dict(status="ok", train_s=t * (2 if stop else 1), commit="abc", created="2025-01-01",
                             label=c.label, group_id=c.group_id, cell_key="GRU reset_after"))
    s = basic_series(pd.DataFrame(rows))
    assert len(s) == 2 and s["series"].nunique() == 2
    assert sorted(s["value"]) == pytest.approx([3.0, 6.0])  # ms, median of the two seeds of each group


def test_summary_md_opens_with_the_answer_sentences_of_the_first_screen(tmp_path):
    """summary.md (issue #12 leftover): its top is the HTML first screen's answer sentences, same text and order,
    no verdict cards before them; with nothing to answer, the same sentence as the page."""
    import html as html_mod

    from gru_bench.report import answer, markdown
    from gru_bench.report.display_table import Table
    from gru_bench.storage import save_record

    rec = answer_record(lambda c, T, seed: (100 + 25 * seed if c == "gru" else 400 + 25 * seed) * T // 20, budget=2000)
    index = build_report([save_record(rec, tmp_path / "r.json")], tmp_path / "out", title="t")
    want = _answer(rec)
    assert len(want) >= 2
    page = index.read_text(encoding="utf-8")
    assert [html_mod.unescape(a) for a in re.findall(r'<li class="answer">(.*?)</li>', page)] == want
    md = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8").splitlines()
    assert md[:2] == ["# t", ""]
    top = md[2:2 + len(want)]
    # the same text once the Markdown (backslash) and HTML escapes are undone (compare.output.md)
    assert [html_mod.unescape(re.sub(r"\\(.)", r"\1", line[2:])) for line in top] == want
    assert all(line.startswith("- ") for line in top)
    assert md.index("## Runs") == 3 + len(want)
    assert md.index("## Runs") < next(i for i, line in enumerate(md) if line.startswith("**adding"))

    empty = Table(name="v", title="Verdict", df=pd.DataFrame(), columns=[])
    text = markdown.summary("t", [], ["run 1"], [], empty, empty, empty, [])
    assert text.splitlines()[2] == f"_{answer.NO_ANSWER}_"


# --- the report review (memory floor, pairing per cell key and device, one configuration per learning sentence) ---
def _with_gru_variant(rec: RunRecord, variant: str, steps_to_target) -> RunRecord:
    """``rec`` plus a copy of its GRU cases as ``variant``, reaching the target at ``steps_to_target(T, seed)``."""
    extra = []
    for r in rec.cases:
        if r.case.cell != "gru":
            continue
        c = r.case.model_copy(update={"variant": variant})
        st = steps_to_target(c.seq_len, c.seed)
        acc = r.accuracy.model_copy(update=dict(steps_to_target=st, solved=st is not None,
                                                seconds_to_target=None if st is None else st / 1000))
        extra.append(r.model_copy(update={"case": c, "case_id": c.case_id, "accuracy": acc}))
    return rec.model_copy(update={"cases": [*rec.cases, *extra]})


def _with_memory(rec: RunRecord, nbytes: dict[str, int], floor: int) -> RunRecord:
    """``rec`` with a working set per cell (``nbytes[cell]``) whose noise floor is ``floor`` bytes."""
    def one(r):
        ws = MemoryFigure(name="working_set", bytes=nbytes[r.case.cell], floor_bytes=floor, method="B/2B RSS peaks")
        return r.model_copy(update={"memory": [ws, *(m for m in r.memory if m.name == "activation_estimate")]})
    return rec.model_copy(update={"cases": [one(r) for r in rec.cases]})


def test_working_set_below_its_floor_is_missing_in_the_report():
    """A working set under its noise floor (memory.below_floor) is "—" in the terminal table: the report takes it
    as missing too (no number in the memory table, no memory sentence), and keeps one above its floor."""
    from gru_bench.report import answer
    from gru_bench.report.group_tables import memory_table

    rec = answer_record(lambda c, T, seed: 100, Ts=(20,), noise=False)
    below = cases_frame([_with_memory(rec, {"gru": 300_000, "lstm": 400_000}, floor=2**20)])
    assert below["peak_bytes"].isna().all() and set(below["peak_name"]) == {"working_set"}
    assert not any(x.startswith("Memory") for x in answer.sentences(below))
    assert memory_table(groups_frame(below)).df["peak_bytes"].isna().all()
    above = cases_frame([_with_memory(rec, {"gru": 4 * 2**20, "lstm": 5 * 2**20}, floor=2**20)])
    assert sorted(set(above["peak_bytes"])) == [4 * 2**20, 5 * 2**20]  # exact: the recorded bytes
    (mem,) = [x for x in answer.sentences(above) if x.startswith("Memory")]
    assert mem.startswith("Memory (numpy): GRU needs less") and "(working_set) 0.80," in mem
    assert mem.endswith("against 0.67 for the least BPTT keeps (gate outputs and states).")  # (3 + 1) / (4 + 2)


def _speed_record(ms: dict[tuple[str, str, str], float]) -> RunRecord:
    """Timing-only cases (adding, T=20, H=24, one seed), noise-free: ``ms[(backend, device, variant)]`` is the step
    time of that cell (variant "standard": the LSTM)."""
    rng = np.random.default_rng(0)
    results = []
    for (backend, device, variant), t in ms.items():
        case = Case(backend=backend, device=device, cell="lstm" if variant == "standard" else "gru", variant=variant,
                    task="adding", seq_len=20, hidden=24, batch_size=32, repetitions=12)
        results.append(case_result(case, rng).model_copy(update={"train_time": flat_timing(t / 1000)}))
    return RunRecord(run_id="speed-test", suite_name="speed", created="2026-01-02T03:04:00", cases=results)


def test_speed_ratios_per_gru_variant_and_device():
    """GRU reset_after and reset_before are two ratios, and so are cpu and cuda of one backend: each its sentence,
    named (they were pooled into one median per backend); one variant on one device keeps the plain heading."""
    from gru_bench.report import answer

    rec = _speed_record({("numpy", "cpu", "reset_after"): 0.7, ("numpy", "cpu", "reset_before"): 0.9,
                         ("numpy", "cpu", "standard"): 1.0,
                         ("torch", "cpu", "reset_after"): 1.2, ("torch", "cpu", "standard"): 1.0,
                         ("torch", "cuda", "reset_after"): 0.5, ("torch", "cuda", "standard"): 1.0,
                         ("tf", "cpu", "reset_after"): 0.6, ("tf", "cpu", "standard"): 1.0})
    speed = {x.split(":")[0]: x for x in answer.speed_sentences(cases_frame([rec]))}
    want = {"Speed (numpy, GRU reset_after)": 0.7, "Speed (numpy, GRU reset_before)": 0.9,
            "Speed (torch/cpu)": 1.2, "Speed (torch/cuda)": 0.5, "Speed (tf)": 0.6}
    assert sorted(speed) == sorted(want)
    for head, ratio_ in want.items():  # noise-free times: the printed ratio is exact to its 2 decimals
        assert _printed_ratio(speed[head]) == pytest.approx(ratio_, abs=0.005), speed[head]
    assert "LSTM is faster" in speed["Speed (torch/cpu)"] and "GRU is faster" in speed["Speed (torch/cuda)"]


def test_learning_sentence_per_configuration_naming_what_differs():
    """Two hidden sizes on one task are two sentences, each over its own seeds and naming its H (they were one
    Kaplan–Meier curve over 4 "seeds"); so are two GRU variants, each against the LSTM."""
    from gru_bench.report import answer

    small = answer_record(lambda c, T, seed: 100 if c == "gru" else 400, Ts=(20, 40), hidden=24)
    large = answer_record(lambda c, T, seed: 500 if c == "gru" else 200, Ts=(20, 40), hidden=48)
    both = small.model_copy(update={"cases": [*small.cases, *large.cases]})
    learn = answer.learning_sentences(cases_frame([both]))
    assert [x.split(":")[0] for x in learn] == ["Learning (adding, numpy, GRU vs LSTM, H=24)",
                                                "Learning (adding, numpy, GRU vs LSTM, H=48)"]
    assert "GRU reached the target first at every T" in learn[0] and "median 100 vs 400 steps" in learn[0]
    assert "LSTM reached the target first at every T" in learn[1] and "median 500 vs 200 steps" in learn[1]
    assert all(x.count("2/2 vs 2/2 seeds") == 2 for x in learn)  # one configuration's 2 seeds at each of 2 Ts

    variants = _with_gru_variant(small, "reset_before", lambda T, seed: 900)
    learn = answer.learning_sentences(cases_frame([variants]))
    assert [x.split(":")[0] for x in learn] == ["Learning (adding, numpy, GRU reset_after vs LSTM)",
                                                "Learning (adding, numpy, GRU reset_before vs LSTM)"]
    assert "GRU reached the target first" in learn[0] and "LSTM reached the target first" in learn[1]


def test_learning_sentences_pool_past_the_limit_and_say_so():
    """More configurations than MAX_LEARNING_SENTENCES on one task: one sentence, saying what it pools and that its
    counts are configurations × seeds."""
    from gru_bench.report import answer

    n = answer.MAX_LEARNING_SENTENCES + 1
    recs = [answer_record(lambda c, T, seed: 100 if c == "gru" else 400, Ts=(20,), hidden=8 * (i + 1))
            for i in range(n)]
    pooled = recs[0].model_copy(update={"cases": [r for rec in recs for r in rec.cases]})
    (learn,) = answer.learning_sentences(cases_frame([pooled]))
    assert learn.startswith(f"Learning (adding, numpy, GRU vs LSTM, {n} configurations pooled over H; cases are "
                            "configurations × seeds): GRU reached the target first at every T")
    assert f"{2 * n}/{2 * n} vs {2 * n}/{2 * n} cases; every case agrees" in learn


def test_backends_vs_fastest_ignores_per_backend_options():
    """Per-backend options ([options.torch] in a suite) do not split the same configuration across backends: the
    slower backend reads its ratio to the fastest (it read 1.00×, each backend its own group)."""
    from gru_bench.report.group_tables import BACKENDS, group_table

    rec = _speed_record({("numpy", "cpu", "reset_after"): 2.0, ("torch", "cpu", "reset_after"): 1.0})
    rec = rec.model_copy(update={"cases": [
        r.model_copy(update={"case": r.case.model_copy(update={"options": {"compile": True}})})
        if r.case.backend == "torch" else r for r in rec.cases]})
    df = group_table(BACKENDS, groups_frame(cases_frame([rec]))).df
    got = dict(zip(df["backend"], df["vs_fastest"]))
    assert got == pytest.approx({"numpy": 2.0, "torch": 1.0}, rel=1e-12)  # noise-free times: exact


def test_backends_vs_fastest_ignores_the_training_budget():
    """A timing-only backend (steps=0, as the answer suite's [[also]] grid) and a trained one (steps=1500) run the
    same step: the slower reads its ratio to the faster (numpy read 1.00× beside a faster TF at T=60)."""
    from gru_bench.report.group_tables import BACKENDS, group_table

    rec = _speed_record({("numpy", "cpu", "reset_after"): 2.0, ("torch", "cpu", "reset_after"): 1.0})
    rec = rec.model_copy(update={"cases": [
        r.model_copy(update={"case": r.case.model_copy(update={"steps": 0, "stop_at_target": True})})
        if r.case.backend == "torch" else r for r in rec.cases]})
    df = group_table(BACKENDS, groups_frame(cases_frame([rec]))).df
    got = dict(zip(df["backend"], df["vs_fastest"]))
    assert got == pytest.approx({"numpy": 2.0, "torch": 1.0}, rel=1e-12)  # noise-free times: exact


def test_summary_md_keeps_record_text_inert(tmp_path):
    """A record's label is text in summary.md (a CI job summary): no link, no image, no raw HTML."""
    from gru_bench.storage import save_record

    label = "[x](http://e) ![i](u) <b>"
    rec = answer_record(lambda c, T, seed: 100, Ts=(20,)).model_copy(update={"label": label})
    build_report([save_record(rec, tmp_path / "r.json")], tmp_path / "out", title=label)
    md = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# \\[x\\](http://e) \\!\\[i\\](u) &lt;b&gt;")
    assert "- \\[x\\](http://e) \\!\\[i\\](u) &lt;b&gt;" in md  # the run line
    assert not re.search(r"(?<!\\)\]\(", md) and not re.search(r"(?<!\\)!\[", md) and "<b>" not in md
    table = Table("x", "X", [Column("name", "name")], pd.DataFrame({"name": [label]})).to_markdown()
    assert table.splitlines()[2] == "| \\[x\\](http://e) \\!\\[i\\](u) &lt;b&gt; |"


def test_lstm_model_unknown_task_is_not_known_but_a_bug_is_raised(monkeypatch):
    """Only get_task's error for a task this version does not define means "not known"; any other error is a bug
    and propagates (it read as an unknown task)."""
    from gru_bench import tasks
    from gru_bench.report.iso import lstm_model

    row = pd.Series({"model": None, "task": "nope", "seq_len": 20, "hidden": 8, "num_layers": 1})
    assert lstm_model(row) == (None, "")
    model, source = lstm_model(row.copy().replace({"nope": "adding"}))
    assert source == "task definition" and (model.input_size, model.hidden_size, model.output_size) == (2, 8, 1)

    def broken(self, seq_len):
        raise RuntimeError("a bug in model_io")

    monkeypatch.setattr(type(tasks.get_task("adding")), "model_io", broken)
    with pytest.raises(RuntimeError, match="a bug in model_io"):
        lstm_model(row.copy().replace({"nope": "adding"}))


def test_headline_figure_uses_the_toolkit_grid_and_one_line_per_cell_key():
    """The headline figure: the toolkit's fixed grid (``figure.new_figure``: one panel row, the shared legend
    under it), T on the size axis, one median line per cell key (the GRU variants apart)."""
    from gru_bench.report import answer, figure

    rec = _with_gru_variant(answer_record(lambda c, T, seed: 100 if c == "gru" else 400), "reset_before",
                            lambda T, seed: 300)
    plot = answer.headline_figure(cases_frame([rec]))
    w, h = plot.fig.get_size_inches()
    assert (w, h) == pytest.approx((figure.WIDTH, answer.HEADLINE_H + figure.LEGEND_H + 0.4), rel=1e-9)
    (ax,) = plot.fig.axes
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [20, 40, 60]
    medians = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    assert len(medians) == 3 and len({ln.get_color() for ln in medians}) == 3
    assert [list(ln.get_ydata()) for ln in medians] == [[100, 100, 100], [300, 300, 300], [400, 400, 400]]
    assert len(plot.fig.legends) == 1
