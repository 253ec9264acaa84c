"""The sweep: isolation of each case in its own process (segfault, hang, NaN, OOM, exit), the journal, resume after
SIGKILL, Ctrl-C, and the record that comes out."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from gru_bench.case import Case
from gru_bench.errors import InputError
from gru_bench.executors import Executor, get_executor
from gru_bench.executors.local import LocalExecutor, run_isolated
from gru_bench.journal import JOURNAL_SUFFIX, Journal, resolve_run
from gru_bench.runner import new_run, open_run, resume, run_suite
from gru_bench.schema import CaseResult
from gru_bench.storage import load_record
from gru_bench.suite import load_suite
from gru_bench.tabular import load_results

from conftest import QUIET, write_suite
from conftest import tiny_case as case

# ---------------------------------------------------------------------------------------------- isolation
@pytest.mark.slow
def test_each_fault_gets_its_status_and_the_sweep_goes_on(faults, monkeypatch):
    kills = iter(range(100))  # every OOM-kill counter reading is higher than the last: the kernel saw OOM kills
    monkeypatch.setattr("gru_bench.executors.local._oom_kills", lambda: {"memory.events": next(kills)})
    cases = [case(), case("segfault"), case("hang", timeout_s=4), case("nan"), case("oomkilled"), case("exiting"),
             case(cell="lstm", variant="standard")]
    got: list[CaseResult] = []
    started: list[Case] = []
    LocalExecutor().run(cases, None, got.append, lambda: False, started.append)
    assert started == cases
    assert [r.case for r in got] == cases  # one result per case, in order
    status = [r.status for r in got]
    assert status == ["ok", "failed", "timeout", "diverged", "oom", "failed", "ok"], [r.reason for r in got]
    assert got[1].reason == "worker died from SIGSEGV (Segmentation fault)"
    assert "time limit of 4 s" in got[2].reason and got[2].wall_s < 30
    assert got[2].params == got[1].params == got[0].params > 0  # from spec.py, though the worker never answered
    assert got[4].reason.startswith("worker killed by SIGKILL: the OOM killer (oom_kill rose in memory.events)")
    assert got[5].reason == "worker exited with code 7 and no result: fatal: the framework gave up"
    assert got[6].train_time is not None and len(got[6].train_time.samples) == 3


def test_cancel_kills_the_worker_and_reports_nothing(faults):
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    t0 = time.monotonic()
    try:
        result = run_isolated(case("hang", timeout_s=120), None, stop.is_set)
    finally:
        timer.cancel()
    assert result is None  # cancelled: no result, so a resume reruns it
    assert time.monotonic() - t0 < 30
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # no worker left behind


def test_executor_protocol_and_registry():
    ex = get_executor("local")
    assert isinstance(ex, LocalExecutor) and isinstance(ex, Executor) and ex.name == "local"
    with pytest.raises(InputError, match="executor='ray2': expected one of local"):
        get_executor("ray2")
    ran: list[Case] = []
    ex.run([case()], None, ran.append, lambda: True)  # asked to stop before the first case: nothing starts
    assert ran == []


# ------------------------------------------------------------------------------------------------ journal
def test_journal_tolerates_a_truncated_last_line(tmp_path, capsys):
    path = tmp_path / f"run{JOURNAL_SUFFIX}"
    j = Journal.create(path, {"record": {"x": 1}, "plan": []})
    assert not list(tmp_path.glob("*.tmp"))  # created atomically
    r = CaseResult(case=case(), case_id=case().case_id, status="skipped", reason="test")
    j.append(r)
    j.close()
    with open(path, "a") as f:
        f.write('{"type": "result", "result": {"case": ')  # killed mid-write
    header, results = Journal.read(path)
    assert header["record"] == {"x": 1} and results == [r]
    assert capsys.readouterr().err == "", "an unfinished last line is dropped silently"
    j = Journal(path)
    j.append(r)  # appending first drops the partial line
    j.close()
    text = path.read_text()
    assert text.count("\n") == 3 and all(json.loads(line) for line in text.splitlines())
    assert Journal.read(path)[1] == [r, r]


@pytest.mark.parametrize("exclusive", [False, True])
def test_journal_gets_the_mode_of_a_new_file_not_mkstemps_0600(tmp_path, exclusive):
    """A journal (like a record) is readable by whoever may read a new file here: mode 0666 & ~umask."""
    import stat

    old = os.umask(0o022)
    try:
        j = Journal.create(tmp_path / f"run{JOURNAL_SUFFIX}", {"record": {}, "plan": []}, exclusive=exclusive)
    finally:
        os.umask(old)
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o644
    with pytest.raises(FileExistsError):
        Journal.create(j.path, {"record": {}, "plan": []}, exclusive=True)  # one run id, one journal
    assert not list(tmp_path.glob("*.tmp"))


def _journal_with_lines(path, *lines: str):
    """A journal with a header and the given lines after it, each ending in a newline; its result."""
    Journal.create(path, {"record": {"x": 1}, "plan": []})
    r = CaseResult(case=case(), case_id=case().case_id, status="skipped", reason="test")
    entry = json.dumps({"type": "result", "result": json.loads(r.model_dump_json())})
    with open(path, "a") as f:
        f.write("".join((entry if line == "OK" else line) + "\n" for line in lines))
    return r


def test_journal_skips_a_complete_bad_last_line_with_a_warning(tmp_path, capsys):
    """A kill mid-write leaves no newline, so a complete line that is not an entry is corruption: skipped with one
    warning line naming the file and line, the results before it kept."""
    path = tmp_path / f"run{JOURNAL_SUFFIX}"
    r = _journal_with_lines(path, "OK", '{"type": "result", "result": {"case": 1}}')
    assert Journal.read(path)[1] == [r]
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("warning: ") and f"{path}:3: not a case result" in line


def test_journal_keeps_the_lines_after_a_corrupt_one(tmp_path, capsys):
    path = tmp_path / f"run{JOURNAL_SUFFIX}"
    r = _journal_with_lines(path, "not json", "OK", '{"type": "result"}', "OK")
    assert Journal.read(path)[1] == [r, r], "every good line, before and after the corrupt ones"
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 2 and f"{path}:2: not a JSON line" in lines[0] and f"{path}:4: not a case result" in lines[1]
    header, finished, timed = Journal.read_all(path)
    assert finished == [r, r] and timed == {} and len(capsys.readouterr().err.splitlines()) == 2  # warned once


def test_journal_rejects_what_is_not_a_journal(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"type": "header", "journal_version": 1}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: not a JSON line"):
        Journal.read(bad)
    bad.write_text('{"type": "result"}\n')
    with pytest.raises(InputError, match="no journal header"):
        Journal.read(bad)
    bad.write_text('{"type": "header", "journal_version": 99}\n')
    with pytest.raises(InputError, match="journal_version=99: expected 1"):
        Journal.read(bad)


def test_one_process_per_run(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.toml"))
    run = new_run(suite, tmp_path / "out", calibrate=False)  # holds the journal's lock until it ends
    with pytest.raises(InputError, match="another gru-bench process is running this run"):
        open_run(run.record.run_id, tmp_path / "out")
    run.journal.close()
    again = open_run(run.record.run_id, tmp_path / "out")
    assert again.remaining == suite.cases()
    again.journal.close()


def test_resolve_run_errors(tmp_path):
    with pytest.raises(InputError, match=r"--resume 'nope': no such run under"):
        resolve_run("nope", tmp_path)
    for d in ("m1", "m2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / f"r1{JOURNAL_SUFFIX}").write_text("")
    with pytest.raises(InputError, match="found under several machines"):
        resolve_run("r1", tmp_path)
    assert resolve_run(str(tmp_path / "m1" / f"r1{JOURNAL_SUFFIX}"), tmp_path) == (
        tmp_path / "m1" / "r1.json", tmp_path / "m1" / f"r1{JOURNAL_SUFFIX}")


# --------------------------------------------------------------------------------------------- the record
def test_every_timestamp_is_utc_to_the_second_whatever_the_local_zone(tmp_path, monkeypatch):
    """One clock (``storage.now_iso``): the record's ``created``/``finished``, a result's ``started_at`` (worker and
    executor) are ISO 8601 in UTC with ``+00:00``, also where the local zone is not UTC."""
    import re

    from gru_bench import storage
    from gru_bench.worker import run_case

    utc = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: a local offset would show
    time.tzset()
    try:
        assert utc.match(storage.now_iso()), storage.now_iso()
        run = new_run(load_suite(write_suite(tmp_path / "s.toml")), tmp_path / "out", calibrate=False)
        run.journal.close()
        assert utc.match(run.record.created) and utc.match(run.assemble(True).finished)
        assert utc.match(run_case(case(), phases=("timing",)).started_at)
        died = run_isolated(case(), python="/bin/false")  # no result from the worker: the executor's own stamp
        assert died.status == "failed" and utc.match(died.started_at)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_run_writes_a_record_that_round_trips_through_load_results(tmp_path, faults):
    suite = load_suite(write_suite(tmp_path / "s.toml", backend=["numpy", "nodevice"], cell="gru", steps=20,
                                   eval_every=10))
    outcome = run_suite(suite, tmp_path / "out", label="<b>lab</b>", console=QUIET, progress=False)
    assert not outcome.interrupted and outcome.failed == []
    rec = outcome.record
    assert [r.case for r in rec.cases] == suite.cases()  # every planned case once, in plan order
    assert [r.status for r in rec.cases] == ["ok", "skipped"]
    assert rec.finished is not None and rec.calibration.gemm_gflops > 0 and rec.label == "<b>lab</b>"
    assert outcome.record_path.parent.name == rec.machine_id and outcome.record_path.stem == rec.run_id
    assert load_record(outcome.record_path) == rec
    assert not list((tmp_path / "out").rglob(f"*{JOURNAL_SUFFIX}"))  # the complete record replaced its journal
    df = load_results([tmp_path / "out"])
    assert len(df) == 2 and list(df["status"]) == ["ok", "skipped"]
    assert set(df["case_id"]) == {c.case_id for c in suite.cases()}
    # resuming a finished run reruns nothing and keeps the record's cases
    again = resume(rec.run_id, tmp_path / "out", console=QUIET, progress=False)
    assert again.record.cases == rec.cases


def test_resume_skips_journaled_cases(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.toml"))  # 2 cases
    run = new_run(suite, tmp_path / "out", calibrate=False)
    plan = suite.cases()
    fake = CaseResult(case=plan[0], case_id=plan[0].case_id, status="failed", reason="from the first attempt")
    run.journal.append(fake)  # as if the run had been killed after its first case
    run.journal.close()
    started: list[Case] = []

    class Recording(LocalExecutor):
        def run(self, cases, calibration, on_result, should_stop, on_start=None):
            started.extend(cases)
            super().run(cases, calibration, on_result, should_stop, on_start)

    out = resume(run.record.run_id, tmp_path / "out", Recording(), console=QUIET, progress=False)
    assert started == plan[1:]  # the journaled case is not run again
    assert [r.case_id for r in out.record.cases] == [c.case_id for c in plan]
    assert out.record.cases[0] == fake and len(out.failed) == 1


# --------------------------------------------------------------------------------- interruption (processes)
def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gru_bench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_results(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for j in out.rglob(f"*{JOURNAL_SUFFIX}"):
            if j.read_text().count('"type": "result"') >= n:
                return j
        time.sleep(0.1)
    raise AssertionError(f"no journal with {n} results within {timeout} s")


@pytest.mark.slow
def test_sigkill_midway_then_resume_runs_every_case_exactly_once(tmp_path):
    suite = write_suite(tmp_path / "s.toml", hidden=[8, 12])  # 4 cases
    out = tmp_path / "out"
    proc = _cli("run", str(suite), "--out", str(out), "--no-progress")
    journal = _wait_for_results(out, 2, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    _, before = Journal.read(journal)
    assert 2 <= len(before) < 4
    gone, alive = psutil.wait_procs(workers, timeout=20)  # a worker exits when its runner dies
    assert alive == []
    for f in out.rglob("*.json"):  # no half-written record
        load_record(f)

    run_id = journal.name[: -len(JOURNAL_SUFFIX)]
    done = subprocess.run([sys.executable, "-m", "gru_bench.cli", "run", "--resume", run_id, "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rec = load_record(journal.with_name(run_id + ".json"))
    plan = load_suite(suite).cases()
    assert [r.case_id for r in rec.cases] == [c.case_id for c in plan]  # each exactly once, in plan order
    assert rec.cases[: len(before)] == before  # the finished ones were kept, not rerun
    assert all(r.status == "ok" for r in rec.cases) and rec.finished is not None


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_finished_cases(tmp_path):
    suite = write_suite(tmp_path / "s.toml", hidden=[8, 12])  # 4 cases
    out = tmp_path / "out"
    proc = _cli("run", str(suite), "--out", str(out), "--no-progress")
    journal = _wait_for_results(out, 1, proc)
    proc.send_signal(signal.SIGINT)  # at a terminal the worker, in its own session, would not see it
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    run_id = journal.name[: -len(JOURNAL_SUFFIX)]
    partial = load_record(journal.with_name(run_id + ".json"))
    assert partial.finished is None and 1 <= len(partial.cases) < 4
    assert journal.exists()  # kept for the resume
    rest = open_run(str(journal.with_name(run_id + ".json")), out)  # resume from the partial record's path
    assert [c.case_id for c in rest.remaining] == [c.case_id for c in load_suite(suite).cases()][len(partial.cases):]
    rest.journal.close()


def test_describe_shows_time_to_target():
    from gru_bench.console import describe
    from gru_bench.schema import Accuracy, CaseResult

    c = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=10, hidden=8, steps=300)
    acc = Accuracy(metric="mse", final_metric=0.01, final_loss=0.01, baseline_loss=1 / 6, baseline_metric=1 / 6,
                   target_loss=1 / 60, steps_to_target=150, seconds_to_target=1.234)
    line = describe(CaseResult(case=c, case_id=c.case_id, status="ok", accuracy=acc))
    assert "target at step 150 (1.23 s)" in line
    acc.steps_to_target = acc.seconds_to_target = None
    assert "target not reached" in describe(CaseResult(case=c, case_id=c.case_id, status="ok", accuracy=acc))
    acc.target_loss = None  # a version-1 record: nothing said
    assert "target" not in describe(CaseResult(case=c, case_id=c.case_id, status="ok", accuracy=acc))
