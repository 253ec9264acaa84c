"""The run record's modules (schema, machine, storage, tabular): the machine manifest (without importing torch/TF),
machine id, git info, record paths, atomic writes (no half files, even when the writer is SIGKILLed), load errors,
and the round trip through load_results."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import gru_bench
from gru_bench import schema, storage, tabular
from gru_bench.case import Case
from gru_bench.errors import InputError
from gru_bench.machine import git_info, machine_id, machine_manifest
from gru_bench.schema import (SCHEMA_VERSION, Accuracy, Calibration, CaseResult, Curve, GitInfo, Load, MemoryFigure,
                              RunRecord, TimingStats)
from gru_bench.storage import load_record, record_path, save_record
from gru_bench.tabular import load_results


def make_case(**kw) -> Case:
    base = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=16,
                options={"threads": 2})
    return Case(**{**base, **kw})


def make_record(n_ok: int = 1, samples: int = 5) -> RunRecord:
    cases = []
    for i in range(n_ok):
        c = make_case(seed=i)
        t = [0.01 + 0.001 * k for k in range(samples)]
        cases.append(CaseResult(
            case=c, case_id=c.case_id, status="ok", params=1234, params_backend=1234, flops_forward=1e6,
            flops_train_step=3e6, implementation="numpy (hand-written BPTT)",
            provenance={"implementation": "numpy (hand-written BPTT)", "blas": "openblas"},
            threads={"requested": 2, "numpy_blas": 2},
            train_time=TimingStats(samples=t, median=0.012, iqr=0.002, min=0.01, mean=0.012, ci_low=0.011,
                                   ci_high=0.013, gflops=0.25, pct_peak=1.5),
            forward_time=TimingStats(samples=[0.004] * 3, median=0.004, iqr=0.0, min=0.004, mean=0.004,
                                     ci_low=0.004, ci_high=0.004),
            memory=[MemoryFigure(name="host_peak_rss_delta", bytes=1000, method="psutil"),
                    MemoryFigure(name="activation_estimate", bytes=2000, method="analytic")],
            accuracy=Accuracy(metric="mse", final_metric=0.01, final_loss=0.01, baseline_loss=1 / 6,
                              baseline_metric=1 / 6, solved=True, steps_to_solve=200, seconds_to_solve=1.5,
                              curve=Curve(step=[50, 100], loss=[0.1, 0.02], seconds=[0.5, 1.0])),
            load=Load(before=[0.1, 0.2, 0.3], after=[0.4, 0.2, 0.3], cpu_percent_before=1.0,
                      cpu_percent_after=2.0, busy=False),
            node="host", started_at="2025-01-01T00:00:00+00:00", wall_s=3.0))
    bad = make_case(cell="lstm", variant="standard")
    cases.append(CaseResult(case=bad, case_id=bad.case_id, status="diverged", reason="loss became nan at step 7",
                            accuracy=Accuracy(metric="mse", baseline_loss=1 / 6,
                                              curve=Curve(step=[5, 7], loss=[0.3, float("nan")],
                                                          seconds=[0.1, float("inf")])),
                            warnings=["machine busy", "second"]))
    return RunRecord(run_id="run-1", suite_name="quick", suite={"name": "quick"}, label="<b>label</b>",
                     created="2025-01-01T12:00:00+00:00", machine_id="host-abc123",
                     machine={"hostname": "host", "cpu": {"model": "Test CPU"}}, calibration=Calibration(
                         gemm_gflops=50.0, method="test"), git=GitInfo(commit="abc", dirty=False, branch="main"),
                     cases=cases)


# ---------------------------------------------------------------------------------------------------- manifest
def test_manifest_has_the_facts_and_imports_no_framework():
    code = ("import sys, json; from gru_bench.machine import machine_manifest; m = machine_manifest();"
            "print(json.dumps({'m': m, 'imported': [k for k in ('torch', 'tensorflow', 'keras', 'jax')"
            " if k in sys.modules]}))")
    env = {**os.environ, "OMP_NUM_THREADS": "3", "TF_ENABLE_ONEDNN_OPTS": "1", "CUDA_VISIBLE_DEVICES": "",
           "TF_CLI_CONFIG_FILE": "not-speed"}
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=env).stdout)
    assert out["imported"] == []
    m = out["m"]
    assert m["cpu"]["model"] and m["cores_logical"] >= 1 and m["ram_bytes"] > 0
    assert m["os"] and m["python"].split()[-1] == sys.version.split()[0]
    assert m["versions"]["numpy"] == __import__("numpy").__version__
    assert "torch" in m["versions"] and "tensorflow" in m["versions"]
    assert m["blas"] and all("num_threads" in b for b in m["blas"])
    assert m["env"]["OMP_NUM_THREADS"] == "3" and m["env"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert m["env"]["CUDA_VISIBLE_DEVICES"] == "" and "TF_CLI_CONFIG_FILE" not in m["env"]
    assert "gpu" in m  # None without nvidia-smi


FAKE_SMI = """#!/bin/sh
case "$1" in
  --query-gpu=*) echo "NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0"
                 echo "NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0";;
  *) echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |";;
esac
"""


def test_manifest_reads_gpus_and_cuda_builds_without_importing_frameworks(tmp_path):
    """A fake nvidia-smi on PATH and fake torch/tensorflow packages (files only) stand in for a GPU machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    pkgs = tmp_path / "pkgs"
    (pkgs / "torch").mkdir(parents=True)
    (pkgs / "torch" / "__init__.py").write_text("raise RuntimeError('imported torch')\n")
    (pkgs / "torch" / "version.py").write_text("__version__ = '2.5.0+cu124'\ncuda: Optional[str] = '12.4'\n"
                                                "hip: Optional[str] = None\n")
    (pkgs / "tensorflow" / "python" / "platform").mkdir(parents=True)
    (pkgs / "tensorflow" / "__init__.py").write_text("raise RuntimeError('imported tensorflow')\n")
    (pkgs / "tensorflow" / "python" / "platform" / "build_info.py").write_text(
        "import collections\nbuild_info = collections.OrderedDict([('cpu_compiler', '/usr/bin/gcc'), "
        "('cuda_compute_capabilities', ['sm_60']), ('cuda_version', '12.3'), ('cudnn_version', '8'), "
        "('is_cuda_build', True)])\n")
    code = ("import json; from gru_bench.machine import machine_manifest as m; x = m(); "
            "print(json.dumps([x['gpu'], x['builds']]))")
    here = str(Path(gru_bench.__file__).resolve().parents[1])  # this gru_bench, not whichever is installed
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{pkgs}{os.pathsep}{here}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    gpu, builds = json.loads(out.stdout)
    assert gpu["count"] == 2 and gpu["driver_cuda_version"] == "12.4"
    assert gpu["devices"][0] == {"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "driver": "550.54.15",
                                 "compute_capability": "9.0"}
    assert builds["torch_cuda"] == "12.4" and "torch_hip" not in builds
    assert builds["tensorflow_cuda_version"] == "12.3" and builds["tensorflow_cudnn_version"] == "8"


def test_machine_id_is_a_slug_and_a_hardware_hash():
    m = {"hostname": "My Host.local", "cpu": {"model": "X"}, "cores_logical": 8, "ram_bytes": 1 << 34,
         "versions": {"numpy": "1"}}
    mid = machine_id(m)
    assert mid.startswith("my-host-local-") and len(mid.rsplit("-", 1)[1]) == 6
    assert machine_id({**m, "versions": {"numpy": "2"}}) == mid  # software upgrades keep the folder
    assert machine_id({**m, "cores_logical": 4}) != mid  # other hardware, another folder
    assert machine_id(machine_manifest()) == machine_id(machine_manifest())


# --------------------------------------------------------------------------------------------------------- git
def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


def test_git_info_commit_dirty_branch(tmp_path):
    assert git_info(tmp_path) == GitInfo()  # not a repository
    _git(tmp_path, "init", "-q", "-b", "trunk")
    (tmp_path / "f.txt").write_text("a")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    info = git_info(tmp_path)
    assert (info.commit, info.dirty, info.branch) == (head, False, "trunk")
    (tmp_path / "untracked.txt").write_text("u")
    assert git_info(tmp_path).dirty is False  # untracked files do not change the code that ran
    (tmp_path / "f.txt").write_text("b")
    assert git_info(tmp_path).dirty is True


# ------------------------------------------------------------------------------------------------------ paths
def test_record_path_layout():
    created = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    p = record_path("results", "host-abc123", "quick", created)
    assert p == Path("results/host-abc123/20250304T050607Z_quick.json")
    # an ISO string with an offset is converted to UTC
    assert record_path("out", "m", "long_dependency", "2025-03-04T07:06:07+02:00") == Path(
        "out/m/20250304T050607Z_long-dependency.json")


# ----------------------------------------------------------------------------------------------- save & load
def test_save_and_load_round_trip_keeps_nan_and_is_strict_json(tmp_path):
    rec = make_record()
    p = save_record(rec, tmp_path / "deep" / "r.json")
    text = p.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    back = load_record(p)
    assert back.model_dump(exclude={"cases"}) == rec.model_dump(exclude={"cases"})
    curve = back.cases[-1].accuracy.curve
    assert curve.loss[0] == 0.3 and math.isnan(curve.loss[1]) and math.isinf(curve.seconds[1])
    assert back.cases[0] == rec.cases[0]
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]  # no temp file left


def test_save_replaces_atomically_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    save_record(make_record(1), p)
    old = p.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_record(make_record(3), p)
    assert p.read_text() == old
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # the temp file was removed


WRITER = """
import os, sys, time
from gru_bench.schema import RunRecord, CaseResult
from gru_bench.storage import save_record
from gru_bench.case import Case

real_fdopen = os.fdopen


class SlowFile:  # writes in 64 KiB chunks with a pause: a kill lands mid-write most of the time
    def __init__(self, f):
        self.f = f
    def write(self, text):
        for i in range(0, len(text), 65536):
            self.f.write(text[i:i + 65536])
            self.f.flush()
            time.sleep(0.002)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()


os.fdopen = lambda *a, **k: SlowFile(real_fdopen(*a, **k))
c = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=16)
cases = [CaseResult(case=c, case_id=c.case_id, status="failed", reason="x" * 2000) for _ in range(400)]
i = 0
print("ready", flush=True)
while True:
    i += 1
    save_record(RunRecord(run_id=f"run-{i}", suite_name="s", created="2025-01-01T00:00:00", cases=cases),
                sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_half_record(tmp_path):
    """A writer rewrites a ~1 MB record in a loop, slowly, and is SIGKILLed at several moments: the record is
    always absent or whole. Kills must have landed mid-write (a temp file left behind) for the test to count."""
    p = tmp_path / "rec.json"
    delays = [0.05, 0.13, 0.21, 0.34, 0.55, 0.08, 0.17, 0.29, 0.44, 0.61]
    for k, delay in enumerate(delays):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if p.exists():
            rec = load_record(p)  # raises on a half file
            assert len(rec.cases) == 400
        if k >= 4 and list(tmp_path.glob(".rec.json.*.tmp")) and p.exists():
            break
    assert list(tmp_path.glob(".rec.json.*.tmp")), "no kill landed mid-write: the test proved nothing"
    assert p.exists()
    assert not [f for f in tmp_path.glob("*.json") if f != p]
    assert len(load_results(tmp_path)) == 400


@pytest.mark.parametrize("content, match", [
    ('{"schema_version": 1, "run_id": "r", "suite_name": "s", "created": "x", "cases": [', "corrupt record"),
    ("\x00\x01garbage", "corrupt record"),
    ("[1, 2]", "not a gru-bench run record"),
    ('{"name": "package"}', "not a gru-bench run record"),
    ('{"schema_version": 99, "run_id": "r"}', f"schema_version=99: this gru-bench reads version {SCHEMA_VERSION}"),
    ('{"schema_version": 2, "run_id": "r"}', "not a valid gru-bench run record: suite_name: Field required"),
])
def test_load_record_errors_name_the_file(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InputError) as ei:
        load_record(p)
    msg = str(ei.value)
    assert msg.startswith(str(p)) and match in msg and "\n" not in msg
    with pytest.raises(InputError, match=match):
        load_results([p])


def test_load_record_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot be read"):
        load_record(tmp_path / "none.json")
    with pytest.raises(InputError, match="no such file or directory"):
        load_results(tmp_path / "none.json")


# ------------------------------------------------------------------------------------------------ load_results
def test_load_results_round_trip_one_row_per_case(tmp_path):
    rec = make_record(n_ok=2)
    p = save_record(rec, record_path(tmp_path, rec.machine_id, rec.suite_name, rec.created))
    df = load_results(p)
    assert len(df) == 3
    assert list(df["status"]) == ["ok", "ok", "diverged"]
    assert list(df["case_id"]) == [c.case_id for c in rec.cases]
    row = df.iloc[0]
    src = rec.cases[0]
    assert (row["run_id"], row["suite_name"], row["machine_id"], row["commit"], row["record"]) == (
        "run-1", "quick", "host-abc123", "abc", str(p))
    assert row["run_label"] == "<b>label</b>" and row["calibration_gflops"] == 50.0
    for k, v in src.case.model_dump().items():
        assert (json.loads(row[k]) if k == "options" else row[k]) == v, k
    assert row["params"] == 1234 and row["implementation"] == "numpy (hand-written BPTT)"
    assert row["train_time_median"] == src.train_time.median and row["train_time_n"] == 5
    assert row["train_time_samples"] == src.train_time.samples
    assert row["train_time_pct_peak"] == 1.5 and row["forward_time_median"] == 0.004
    assert row["mem_host_peak_rss_delta"] == 1000 and row["mem_activation_estimate_method"] == "analytic"
    assert bool(row["solved"]) is True and row["steps_to_solve"] == 200 and row["curve_loss"] == [0.1, 0.02]
    assert row["load_before_1m"] == 0.1 and bool(row["load_busy"]) is False
    assert row["prov_blas"] == "openblas" and row["threads_requested"] == 2
    bad = df.iloc[2]
    assert bad["reason"] == "loss became nan at step 7" and bad["warnings"] == "machine busy; second"
    assert math.isnan(bad["curve_loss"][1])
    assert bad["train_time_median"] is None or math.isnan(bad["train_time_median"])


def test_load_results_reads_directories_recursively_and_skips_other_json(tmp_path):
    a, b = make_record(1), make_record(2)
    b.run_id = "run-2"
    save_record(a, tmp_path / "m1" / "a.json")
    save_record(b, tmp_path / "m2" / "sub" / "b.json")
    (tmp_path / "m1" / "notes.json").write_text('{"not": "a record"}')
    (tmp_path / "m1" / "journal.jsonl").write_text("{}\n")
    with pytest.warns(UserWarning, match="notes.json: skipped"):
        df = load_results(tmp_path)
    assert sorted(df.groupby("run_id").size().items()) == [("run-1", 2), ("run-2", 3)]
    # the same file twice counts once; the package-level function is the same
    assert len(gru_bench.load_results([tmp_path / "m1" / "a.json", tmp_path / "m1" / "a.json"])) == 2


def test_load_results_empty_directory_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no run records"):
        load_results(tmp_path)


def test_record_schema_version_is_written():
    assert json.loads(make_record().model_dump_json())["schema_version"] == SCHEMA_VERSION


def test_deeply_nested_json_is_an_input_error_naming_the_file(tmp_path):
    """A RecursionError (exit 1, no file named) before: now a one-line InputError, also inside a folder scan."""
    d = tmp_path / "runs"
    d.mkdir()
    storage.save_record(make_record(), d / "good.json")
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep\.json: not a gru-bench run record \(JSON nested deeper than 64"):
        tabular.load_results(d)
    (d / "deep.json").write_text('{"schema_version": %d, "run_id": "x", "suite": %s1%s}'
                                 % (SCHEMA_VERSION, '{"a": ' * 300, "}" * 300))  # parses; far deeper than a record
    with pytest.raises(InputError, match=r"deep\.json: .*nested deeper"):
        storage.load_record(d / "deep.json")
    assert len(tabular.load_results(d / "good.json")) == 2


def test_a_record_with_duplicated_cases_is_flagged_on_load(tmp_path):
    rec = make_record(n_ok=2)
    dup = rec.model_copy(update={"cases": rec.cases + [rec.cases[0]]})
    path = storage.save_record(dup, tmp_path / "dup.json")
    with pytest.warns(UserWarning, match=r"dup\.json: holds 1 case\(s\) more than once .* 2 times"):
        df = tabular.load_results(path)
    assert len(df) == 4  # every result kept: nothing measured is dropped
    import warnings as _w
    with _w.catch_warnings():
        _w.simplefilter("error")  # a clean record loads without a warning
        storage.load_record(storage.save_record(rec, tmp_path / "ok.json"))
# ------------------------------------------------------------------------------------------- schema migration
BASELINE = Path(__file__).resolve().parents[1] / "results" / "baselines" / "quick.json"


def test_version_1_record_loads_with_a_warning_and_its_new_fields_none():
    assert json.loads(BASELINE.read_text())["schema_version"] == 1  # the CI baseline is a version-1 record
    with pytest.warns(schema.SchemaWarning, match=r"quick\.json: schema version 1 \(this gru-bench writes 2\)"):
        rec = load_record(BASELINE)
    assert rec.schema_version == SCHEMA_VERSION == 2 and rec.migrated_from == 1
    accs = [c.accuracy for c in rec.cases if c.accuracy is not None]
    assert accs, "the baseline has accuracy phases"
    for a in accs:
        assert (a.heldout, a.target_loss, a.steps_to_target, a.seconds_to_target, a.best_loss, a.eval_every) == (
            None,) * 6
        assert a.final_loss is not None and a.curve.step  # what version 1 measured is all there
    for c in rec.cases:  # ids stay stable: the new Case field at its default is not hashed
        assert c.case.stop_at_target is False and c.case.case_id == c.case_id
    raw = json.loads(BASELINE.read_text())
    assert [c.accuracy.final_loss for c in rec.cases if c.accuracy] == [
        c["accuracy"]["final_loss"] for c in raw["cases"] if c.get("accuracy")]


def test_current_record_loads_without_a_schema_warning(tmp_path):
    p = save_record(make_record(), tmp_path / "r.json")
    import warnings as _w
    with _w.catch_warnings():
        _w.simplefilter("error", schema.SchemaWarning)
        rec = load_record(p)
    assert rec.migrated_from is None


def test_time_to_target_fields_round_trip(tmp_path):
    rec = make_record()
    acc = rec.cases[0].accuracy
    acc.eval_every, acc.target_loss, acc.steps_to_target, acc.seconds_to_target = 50, 1 / 60, 100, 1.0
    acc.best_loss, acc.best_metric, acc.best_step = 0.005, 0.005, 100
    acc.heldout = Curve(step=[50, 100], loss=[0.05, 0.005], seconds=[0.5, 1.0], metric=[0.05, 0.005])
    back = load_record(save_record(rec, tmp_path / "r.json"))
    assert back.cases[0].accuracy == acc
    row = load_results(tmp_path).iloc[0]
    assert row["steps_to_target"] == 100 and row["heldout_loss"] == [0.05, 0.005] and row["best_step"] == 100


def test_atomic_write_gives_the_mode_of_a_new_file_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from gru_bench.storage import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_exclusive_atomic_write_creates_once_and_leaves_no_temp_file(tmp_path):
    from gru_bench.storage import atomic_write_text

    p = atomic_write_text(tmp_path / "j.jsonl", "first\n", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write_text(p, "second\n", exclusive=True)
    assert p.read_text() == "first\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["j.jsonl"]  # neither attempt left its temp file
    atomic_write_text(p, "third\n")  # not exclusive: replaces
    assert p.read_text() == "third\n" and sorted(x.name for x in tmp_path.iterdir()) == ["j.jsonl"]


def test_a_journal_gets_the_mode_of_a_record(tmp_path):
    """Journals were created through mkstemp (0600) while records were fixed to the umask's mode (a81e3c8): both
    go through ``storage.atomic_write_text`` now."""
    import stat

    from gru_bench.runner import Journal

    old = os.umask(0o022)
    try:
        j = Journal.create(tmp_path / "run.journal.jsonl", {"run_id": "x"}, exclusive=True)
        r = save_record(make_record(), tmp_path / "run.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(j.path.stat().st_mode) == stat.S_IMODE(r.stat().st_mode) == 0o644
    assert json.loads(j.path.read_text().splitlines()[0])["run_id"] == "x"


def test_migrations_run_in_turn_from_any_registered_version(monkeypatch):
    """The asv-style hook: each ``migrate_vN_to_vN+1`` sees the record in version N's form, in order; the chain
    reaches SCHEMA_VERSION; a record gets one SchemaWarning and ``migrated_from`` its original version."""
    seen = []

    def migrate_v0_to_v1(data):
        seen.append(("0->1", data["schema_version"]))
        return {**data, "renamed": data.pop("old_name")}

    monkeypatch.setitem(schema.MIGRATIONS, 0, migrate_v0_to_v1)
    v1 = schema.MIGRATIONS[1]
    monkeypatch.setitem(schema.MIGRATIONS, 1, lambda d: (seen.append(("1->2", d["schema_version"])), v1(d))[1])
    with pytest.warns(schema.SchemaWarning, match="schema version 0"):
        out = schema.migrate({"schema_version": 0, "old_name": 5, "run_id": "r"}, "f.json")
    assert seen == [("0->1", 0), ("1->2", 1)]
    assert out["schema_version"] == SCHEMA_VERSION and out["migrated_from"] == 0 and out["renamed"] == 5
    assert sorted(schema.MIGRATIONS) == [0, 1] and all(v in schema.MIGRATIONS for v in range(1, SCHEMA_VERSION))


def test_migration_names_say_their_step():
    with pytest.raises(TypeError, match="migrate_v3_to_v4"):
        schema.migration(3)(lambda d: d)
    assert schema.MIGRATIONS[1].__name__ == "migrate_v1_to_v2"


@pytest.mark.parametrize("n, text", [(None, "—"), (float("nan"), "—"), (0, "0 B"), (1023, "1023 B"),
                                     (1536, "1.5 KiB"), (3 * 2**20, "3 MiB"), (-2 * 2**30, "-2 GiB"),
                                     (5 * 2**40, "5 TiB"), (123.4 * 2**20, "123 MiB")])
def test_format_bytes_is_the_one_byte_formatter(n, text):
    from gru_bench.units import format_bytes

    assert format_bytes(n) == text


@pytest.mark.parametrize("names, expected", [
    (("host_peak_rss_delta", "host_vmhwm_delta", "tracemalloc_peak", "working_set", "device_peak_allocated"),
     "device_peak_allocated"),
    (("host_peak_rss_delta", "host_vmhwm_delta", "tracemalloc_peak", "working_set"), "working_set"),
    (("host_peak_rss_delta", "host_vmhwm_delta", "tracemalloc_peak"), "tracemalloc_peak"),
    (("host_peak_rss_delta", "host_vmhwm_delta"), "host_vmhwm_delta"),
    (("host_peak_rss_delta", "activation_estimate"), "host_peak_rss_delta"),
    (("activation_estimate", "fixed_overhead", "host_maxrss_delta"), None),
])
def test_peak_memory_follows_the_preference_order(names, expected):
    """One home for "which figure is the peak" (the terminal table and the report both read it)."""
    c = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=8)
    r = CaseResult(case=c, case_id=c.case_id, status="ok",
                   memory=[MemoryFigure(name=n, bytes=i + 1, method="m") for i, n in enumerate(names)])
    fig = r.peak_memory()
    assert (fig.name if fig else None) == expected


def test_the_worker_stores_the_model_spec_and_it_round_trips(tmp_path):
    """``CaseResult.model``: the spec the worker built (so the report needs no reverse engineering); optional, so
    a record without it (every record before this field) still loads, with None."""
    from gru_bench.spec import ModelSpec
    from gru_bench.worker import run_case

    c = Case(backend="numpy", cell="lstm", variant="standard", task="copy", seq_len=5, hidden=8, batch_size=4,
             warmup=0, repetitions=1)
    r = run_case(c, None, ("timing",))
    assert r.status == "ok", r.reason
    io = __import__("gru_bench.tasks", fromlist=["get_task"]).get_task("copy").model_io(5)
    assert r.model == ModelSpec("lstm", io["input_size"], 8, io["output_size"], 1, variant="standard",
                                head=io["head"], loss=io["loss"])
    rec = make_record()
    rec.cases = [r]
    back = load_record(save_record(rec, tmp_path / "m.json"))
    assert back.cases[0].model == r.model and isinstance(back.cases[0].model, ModelSpec)
    d = json.loads((tmp_path / "m.json").read_text())
    del d["cases"][0]["model"]
    assert schema.record_from_dict(d).cases[0].model is None
