"""Regression tests of the reliability review (issue 14): concurrent runs into one --out, --resume FOLDER, kills
from outside vs the OOM killer, temp folders left by a SIGKILL, bad output paths and suite paths, one-line usage
errors, distinct labels, and no stray journal when the executor cannot start."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

import fault_backend
from gru_bench import cli, storage
from gru_bench.case import Case
from gru_bench.cli import main
from gru_bench.status import ExitStatus
from gru_bench.errors import InputError
from gru_bench.executors import KILLED_FROM_OUTSIDE, local
from gru_bench.executors.local import LocalExecutor, clean_stale_temps, run_isolated
from gru_bench.journal import JOURNAL_SUFFIX, Journal, unfinished_runs
from gru_bench.schema import CaseResult
from gru_bench.runner import execute, new_run, open_run, retry_on_resume
from gru_bench.suite import load_suite

from conftest import QUIET, error_lines, write_suite
from conftest import tiny_case as case

def _fixed_now() -> datetime:
    """Every run starts in the same second: the id race of two runs into one --out, every time."""
    return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------- 1: run ids are unique
def test_runs_started_at_once_into_one_out_get_distinct_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "now_utc", _fixed_now)
    suite = load_suite(write_suite(tmp_path / "s.toml"))
    out, n = tmp_path / "out", 8
    barrier = threading.Barrier(n)
    runs, errors = [], []

    def start() -> None:
        try:
            barrier.wait()
            runs.append(new_run(suite, out, calibrate=False))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [r.record.run_id for r in runs]
    assert len(set(ids)) == n, ids  # each run its own id, record path and journal
    assert len({r.record_path for r in runs}) == n
    journals = sorted(out.rglob(f"*{JOURNAL_SUFFIX}"))
    assert len(journals) == n and not list(out.rglob("*.tmp"))  # no temp file left
    for r in runs:  # each journal holds its own run's header
        assert Journal.read(r.journal.path)[0]["record"]["run_id"] == r.record.run_id
        r.journal.close()


def test_a_finished_run_of_the_same_second_keeps_its_record(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "now_utc", _fixed_now)
    suite = load_suite(write_suite(tmp_path / "s.toml"))
    first = new_run(suite, tmp_path / "out", calibrate=False)
    first.journal.close()
    first.record_path.write_text("{}")  # finished: the record is there, its journal is gone
    first.journal.path.unlink()
    second = new_run(suite, tmp_path / "out", calibrate=False)
    second.journal.close()
    assert second.record_path != first.record_path and first.record_path.read_text() == "{}"


# ---------------------------------------------------------------------------------- --resume FOLDER
def test_resume_takes_the_runs_folder_newest_unfinished_first(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "now_utc", _fixed_now)  # same second: the second run's id is one second later
    suite = load_suite(write_suite(tmp_path / "s.toml"))
    out = tmp_path / "out"
    older = new_run(suite, out, calibrate=False)
    newer = new_run(suite, out, calibrate=False)
    for r in (older, newer):
        r.journal.close()
    assert newer.record.run_id > older.record.run_id
    assert unfinished_runs(out) == [newer.journal.path, older.journal.path]
    for folder in (out, older.record_path.parent):  # the --out folder or the machine's folder below it
        run = open_run(str(folder), Path("elsewhere"))
        assert run.record.run_id == newer.record.run_id and run.remaining == suite.cases()
        assert any(older.record.run_id in note and "unfinished runs" in note for note in run.notes), run.notes
        run.journal.close()


def test_resume_folder_with_only_finished_runs_is_an_input_error(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "r.json").write_text(json.dumps({"run_id": "r", "cases": [], "finished": "2026-01-01"}))
    with pytest.raises(InputError, match="no unfinished run in this folder"):
        open_run(str(tmp_path), tmp_path)


# ---------------------------------------------------------------------------------- 4: outside kills
def test_sigkill_verdicts():
    status, reason = local._oom_verdict({"/proc/vmstat": 3}, {"/proc/vmstat": 4})
    assert status == "oom" and "oom_kill rose in /proc/vmstat" in reason
    status, reason = local._oom_verdict({"/proc/vmstat": 3}, {"/proc/vmstat": 3})
    assert status == "failed" and reason.startswith(KILLED_FROM_OUTSIDE)
    status, reason = local._oom_verdict({}, {})  # nothing to tell: not called oom, retried on resume
    assert status == "failed" and reason.startswith(KILLED_FROM_OUTSIDE)


def test_oom_counters_are_read_here():
    counters = local._oom_kills()
    if not Path("/proc/vmstat").exists():
        pytest.skip("not Linux: no /proc/vmstat")
    assert all(isinstance(v, int) and v >= 0 for v in counters.values())


@pytest.mark.slow
def test_worker_killed_from_outside_is_failed_not_oom(monkeypatch):
    fault_backend.enable(monkeypatch)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def kill_the_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            if new:
                time.sleep(2.0)  # well into the case
                os.kill(new[0].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    oom_before = local._oom_kills()
    result = run_isolated(case("hang", timeout_s=120))
    killer.join()
    if any(local._oom_kills().get(k, 0) > v for k, v in oom_before.items()):
        pytest.skip("the kernel OOM-killed something on this machine meanwhile: the verdict is ambiguous")
    assert result is not None and result.status == "failed", result
    assert result.reason.startswith(KILLED_FROM_OUTSIDE) and retry_on_resume(result)


def test_resume_retries_cases_killed_from_outside_only(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.toml", hidden=[8, 12]))  # 4 cases
    plan = suite.cases()
    run = new_run(suite, tmp_path / "out", calibrate=False)
    outside = CaseResult(case=plan[0], case_id=plan[0].case_id, status="failed",
                         reason=f"{KILLED_FROM_OUTSIDE} (no OOM kill counted by the kernel or the cgroup)")
    legacy = CaseResult(case=plan[1], case_id=plan[1].case_id, status="oom",
                        reason="worker killed by SIGKILL (probably the kernel's OOM killer)")
    real_oom = CaseResult(case=plan[2], case_id=plan[2].case_id, status="oom",
                          reason="worker killed by SIGKILL: the OOM killer (oom_kill rose in /proc/vmstat)")
    crash = CaseResult(case=plan[3], case_id=plan[3].case_id, status="failed",
                       reason="worker died from SIGSEGV (Segmentation fault)")
    for r in (outside, legacy, real_oom, crash):
        run.journal.append(r)
    run.journal.close()
    again = open_run(run.record.run_id, tmp_path / "out")
    again.journal.close()
    assert again.remaining == plan[:2]  # the kills from outside run again; a real OOM and a crash are results
    assert any("killed from outside" in n for n in again.notes)


# ---------------------------------------------------------------------------------- 5: temp folders
def _dead_owner() -> dict:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    info = {"pid": p.pid, "create_time": psutil.Process(p.pid).create_time()}
    p.wait()
    return info


def test_stale_case_temp_folders_are_removed(tmp_path):
    me = psutil.Process()
    dead, alive, fresh, other = (tmp_path / f"gru-bench-case-{n}" for n in ("dead", "alive", "fresh", "x"))
    for d in (dead, alive, fresh):
        d.mkdir()
        (d / "request.json").write_text("{}")
    (dead / local.OWNER_FILE).write_text(json.dumps(_dead_owner()))
    (alive / local.OWNER_FILE).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))
    other.write_text("a file, not ours")
    assert clean_stale_temps(tmp_path) == 1
    assert not dead.exists() and alive.exists() and fresh.exists() and other.exists()


def test_next_run_cleans_what_a_sigkilled_run_left(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    left = tmp_path / "gru-bench-case-left"
    left.mkdir()
    (left / local.OWNER_FILE).write_text(json.dumps(_dead_owner()))
    got: list[CaseResult] = []
    LocalExecutor().run([case()], None, got.append, lambda: False)
    assert [r.status for r in got] == ["ok"]
    assert list(tmp_path.glob("gru-bench-case-*")) == []  # the stale one and this run's own are gone


# ---------------------------------------------------------------------------------- 6, 7: bad paths, one line
def _no_calibration(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("calibrated before the output path was checked")

    monkeypatch.setattr("gru_bench.calibration.calibrate", refuse)


def test_out_naming_a_file_exits_2_before_calibrating(tmp_path, capsys, monkeypatch):
    _no_calibration(monkeypatch)
    suite = write_suite(tmp_path / "s.toml")
    f = tmp_path / "a-file"
    f.write_text("x")
    for out, needle in ((f, "is a file, not a folder"), (f / "below", "is a file, not a folder")):
        assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == ExitStatus.USAGE
        (line,) = error_lines(capsys)
        assert line.startswith(f"error: --out {str(out)!r}: ") and needle in line
    assert f.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "s.toml"]


def test_out_in_an_unwritable_place_exits_2(tmp_path, capsys, monkeypatch):
    _no_calibration(monkeypatch)
    suite = write_suite(tmp_path / "s.toml")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_access = os.access
    if os.geteuid() == 0:  # root may write anywhere: let the check see what a user would
        monkeypatch.setattr("gru_bench.outdir.os.access",
                            lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    try:
        assert main(["run", str(suite), "--out", str(locked / "out"), "--no-progress"]) == ExitStatus.USAGE
        (line,) = error_lines(capsys)
        assert "cannot be made" in line and str(locked) in line
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_report_o_naming_a_file_exits_2(tmp_path, capsys):
    rec = tmp_path / "r.json"
    rec.write_text("{}")
    target = tmp_path / "index"
    target.write_text("keep me")
    assert main(["report", str(rec), "-o", str(target)]) == ExitStatus.USAGE
    (line,) = error_lines(capsys)
    assert line.startswith(f"error: -o {str(target)!r}: is a file") and target.read_text() == "keep me"


def test_suite_paths_that_exist_but_are_no_suite_files(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(InputError, match=r"latin1\.toml: not UTF-8 text"):
        load_suite(bad)
    with pytest.raises(InputError, match="is a folder") as e:
        load_suite(tmp_path)
    assert "does not exist" not in str(e.value)
    if Path("/dev/null").exists():
        with pytest.raises(InputError, match="is not a regular file") as e:
            load_suite("/dev/null")
        assert "does not exist" not in str(e.value)


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["run", "a", "b"], ["report"], ["frobnicate"],
                                  ["run", "--ray-cpus-per-case", "x"]])
def test_usage_errors_are_one_line(argv, capsys):
    assert main(argv) == ExitStatus.USAGE
    (line,) = error_lines(capsys)
    assert line.startswith("error: ") and "--help" in line


# ---------------------------------------------------------------------------------- 12: labels, stray journal
def test_labels_tell_cases_apart():
    base = case()
    assert base.label == "numpy/cpu gru[reset_after] adding T=10 H=8 L=1 B=8 float32 warmup=1 repetitions=3 seed=0"
    variants = [base, case(steps=100), case(steps=200), case(lr=0.01), case(lr=0.003, steps=100),
                case(optimizer="sgd"), case(clip=None), case(options={"threads": 1, "autocast": "bfloat16"})]
    assert len({c.label for c in variants}) == len(variants) == len({c.case_id for c in variants})
    assert all(c.label.rsplit(" seed=", 1)[1] == "0" for c in variants)  # the seed stays last
    plain = Case(backend="numpy", cell="lstm", variant="standard", task="copy", seq_len=10, hidden=8)
    assert plain.label == plain.short_label == "numpy/cpu lstm copy T=10 H=8 L=1 B=64 float32 seed=0"


class _CannotStart:
    name = "broken"

    def run(self, cases, calibration, on_result, should_stop, on_start=None):
        raise InputError("--ray-address '127.0.0.1:1': no Ray cluster there")


def test_an_executor_that_cannot_start_leaves_no_journal(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.toml"))
    run = new_run(suite, tmp_path / "out", calibrate=False)
    with pytest.raises(InputError, match="no Ray cluster"):
        execute(run, _CannotStart(), QUIET, progress=False)
    assert list((tmp_path / "out").rglob("*.json*")) == []
    # a resumed run keeps its journal: what it holds was measured before
    run = new_run(suite, tmp_path / "out", calibrate=False)
    run.journal.append(CaseResult(case=run.plan[0], case_id=run.plan[0].case_id, status="skipped", reason="t"))
    run.journal.close()
    again = open_run(run.record.run_id, tmp_path / "out")
    with pytest.raises(InputError):
        execute(again, _CannotStart(), QUIET, progress=False)
    assert again.journal.path.exists() and len(Journal.read(again.journal.path)[1]) == 1


def test_cli_ray_that_cannot_start_leaves_no_journal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "check_devices", lambda suite: None)
    monkeypatch.setattr("gru_bench.executors.get_executor", lambda name, **o: _CannotStart())
    suite = write_suite(tmp_path / "s.toml")
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == ExitStatus.USAGE
    assert "no Ray cluster" in error_lines(capsys)[-1]
    assert list((tmp_path / "out").rglob(f"*{JOURNAL_SUFFIX}")) == []
