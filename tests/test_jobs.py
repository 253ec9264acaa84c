"""`run --jobs N`: timing phases alone first, then the training phases N at a time on one thread each; every case
ends as one result holding both phases, with the same training curve as when run whole."""
from __future__ import annotations

import os
import threading
import time

from gru_bench.case import Case
from gru_bench.executors import local
from gru_bench.executors.local import LocalExecutor, merge_phases
from gru_bench.schema import Load
from gru_bench.worker import run_case

TINY = dict(backend="numpy", task="adding", seq_len=10, hidden=6, batch_size=8, warmup=1,
            repetitions=3, steps=40, eval_every=10, eval_batches=1, lr=0.02, options={"threads": 1})


def _cases() -> list[Case]:
    variants = {"gru": "reset_after", "lstm": "standard"}
    return [Case(cell=cell, variant=variants[cell], seed=seed, **TINY) for cell in variants for seed in (0, 1)] + \
        [Case(cell="gru", variant="reset_after", seed=5, **{**TINY, "steps": 0})]


def test_jobs_runs_timing_alone_then_training_in_parallel_and_merges(monkeypatch):
    calls: list[tuple[str, tuple | None, int | None, float, float]] = []
    lock = threading.Lock()

    def spy(case, calibration=None, should_stop=lambda: False, poll_s=0.2, python=None, extra_env=None, phases=None,
            threads=None):
        t0 = time.monotonic()
        # in this process (no subprocess) keeps the test quick; run_isolated's own paths are tested elsewhere
        result = run_case(case, calibration, phases or ("timing", "accuracy"), threads)
        with lock:
            calls.append((case.case_id, tuple(phases) if phases else None, threads, t0, time.monotonic()))
        return result

    monkeypatch.setattr(local, "run_isolated", spy)
    got = []
    LocalExecutor(jobs=2).run(_cases(), None, got.append, lambda: False)
    cases = _cases()
    assert sorted(r.case_id for r in got) == sorted(c.case_id for c in cases), "one result per case"
    timing = [c for c in calls if c[1] != ("accuracy",)]
    training = [c for c in calls if c[1] == ("accuracy",)]
    assert len(timing) == 5 and len(training) == 4
    assert all(c[2] == 1 for c in training), "training phases run on one thread"
    assert max(c[4] for c in timing) <= min(c[3] for c in training), "no training phase overlaps a timing phase"
    for r in got:
        assert r.status == "ok", r.reason
        assert r.train_time is not None
        if r.case.steps:
            assert r.accuracy is not None and r.provenance["accuracy_run"]["jobs"] == 2
            whole = run_case(r.case)  # the same case run whole, in one phase pair, on its own thread count
            assert r.accuracy.curve.loss == whole.accuracy.curve.loss, "training is the same computation"
            assert any("--jobs 2" in w for w in r.warnings)
        else:
            assert r.accuracy is None and "accuracy_run" not in r.provenance


def test_merge_keeps_the_worse_status_and_both_sides():
    case = Case(cell="gru", variant="reset_after", seed=0, **TINY)
    timing = run_case(case, phases=("timing",))
    training = timing.model_copy(update={"status": "diverged", "reason": "loss nan at step 3", "warnings": ["w"],
                                         "train_time": None})
    merged = merge_phases(timing, training, jobs=3)
    assert merged.status == "diverged" and merged.reason == "loss nan at step 3"
    assert merged.train_time == timing.train_time, "the figures come from the timing phase"
    assert "w" in merged.warnings and merged.wall_s == timing.wall_s + training.wall_s


def test_merge_keeps_the_timing_load_when_the_training_shared_a_busy_machine():
    """Under --jobs the training runs beside other workers, so its load is busy by design: the merged result keeps
    the quiet timing phase's load (not busy, no "timings may be noisy"), the training's load goes to the provenance,
    and the shared-machine warning stays."""
    case = Case(cell="gru", variant="reset_after", seed=0, **TINY)
    timing = run_case(case, phases=("timing",)).model_copy(update={"load": Load(before=[0.1] * 3, after=[0.1] * 3),
                                                                   "warnings": []})
    noisy = "machine busy: 1-min load 3.00 on 2 cores after the case; timings may be noisy"
    training = timing.model_copy(update={"load": Load(before=[0.1] * 3, after=[3.0] * 3, busy=True, warning=noisy),
                                         "warnings": [noisy, "own"]})
    merged = merge_phases(timing, training, jobs=2)
    assert merged.load == timing.load and not merged.load.busy
    assert noisy not in merged.warnings and "own" in merged.warnings
    assert any("--jobs 2" in w and "shared machine" in w for w in merged.warnings)
    assert merged.provenance["accuracy_run"]["load"]["busy"] is True
    assert merged.provenance["accuracy_run"]["load"]["warning"] == noisy


def test_one_job_or_one_training_case_runs_cases_whole(monkeypatch):
    seen = []
    monkeypatch.setattr(local, "run_isolated",
                        lambda case, cal, stop, poll, py, env=None, phases=None, threads=None: seen.append(phases) or
                        run_case(case))
    LocalExecutor(jobs=1).run(_cases()[:2], None, lambda r: None, lambda: False)
    LocalExecutor(jobs=4).run(_cases()[:1], None, lambda r: None, lambda: False)
    assert seen == [None, None, None]


def test_a_run_stopped_in_training_keeps_the_timing_and_resume_runs_only_the_training(tmp_path, monkeypatch):
    """`--jobs 2` stopped during the training stage (every training phase cancelled): each timing phase is in the
    journal (a ``timed`` entry); the resume runs no timing phase again, only the training of those cases, and the
    record holds each case once with the journaled timing samples and a training curve."""
    import json

    from rich.console import Console

    from gru_bench.journal import TIMED, Journal
    from gru_bench.runner import execute, new_run, open_run
    from gru_bench.suite import load_suite

    suite_file = tmp_path / "s.toml"
    suite_file.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in dict(
        name="jobs", backend="numpy", cell=["gru", "lstm"], variant=None, task="adding", seq_len=10, hidden=[6],
        batch_size=8, warmup=1, repetitions=3, steps=20, eval_every=10, eval_batches=1, threads=1, seeds=[0, 1],
    ).items() if v is not None) + "\n")
    calls: list[tuple[str, tuple | None]] = []
    cancel_training = [True]

    def spy(case, calibration=None, should_stop=lambda: False, poll_s=0.2, python=None, extra_env=None, phases=None,
            threads=None):
        calls.append((case.case_id, tuple(phases) if phases else None))
        if phases == ("accuracy",) and cancel_training[0]:
            return None  # cancelled in flight: no result
        return run_case(case, calibration, phases or ("timing", "accuracy"), threads)

    monkeypatch.setattr(local, "run_isolated", spy)
    quiet = Console(file=open(os.devnull, "w"))
    run = new_run(load_suite(str(suite_file)), tmp_path / "out", calibrate=False)
    first = execute(run, LocalExecutor(jobs=2), quiet, progress=False)
    assert first.interrupted and first.record.cases == []
    timed = Journal.read_timed(run.journal.path)
    assert sorted(timed) == sorted(c.case_id for c in run.plan) and all(r.train_time for r in timed.values())
    assert all(json.loads(line)["type"] == TIMED for line in run.journal.path.read_text().splitlines()[1:])

    calls.clear()
    cancel_training[0] = False
    again = open_run(str(run.journal.path), tmp_path / "out")
    assert sorted(again.timed) == sorted(timed)
    done = execute(again, LocalExecutor(jobs=2), quiet, progress=False)
    assert not done.interrupted
    assert sorted(calls) == sorted((cid, ("accuracy",)) for cid in timed), "only the training phases ran again"
    assert sorted(r.case_id for r in done.record.cases) == sorted(timed)
    for r in done.record.cases:
        assert r.status == "ok" and r.accuracy is not None and r.accuracy.curve.loss
        assert r.train_time.samples == timed[r.case_id].train_time.samples  # the journaled timing, not a new one
