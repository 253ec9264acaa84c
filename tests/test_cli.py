"""The command line: exit codes (0 ran, 1 failed, 2 usage/input, 130 interrupted — the last in test_runner.py),
one-line errors with a traceback only under --debug, the commands' plumbing, and the GRU/LSTM table."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import fault_backend
from gru_bench import preflight
from gru_bench.case import Case
from gru_bench.cli import main
from gru_bench.terminal_table import summary_table
from gru_bench.schema import CaseResult, TimingStats
from gru_bench.status import ExitStatus
from gru_bench.storage import load_record

from conftest import error_lines, write_suite


# ---------------------------------------------------------------------------------------- usage errors: 2
@pytest.mark.parametrize("argv, needle", [
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "no_such_suite"], "suite 'no_such_suite' not found"),
    (["run", "--hidden", "0"], "hidden='0': expected a number greater than 0"),
    (["run", "--steps", "many"], "steps='many'"),
    (["run", "--backend", "numpy,jax"], "backend[1]='jax': expected one of numpy, torch, tf"),
    (["run", "--resume", "nope"], "--resume 'nope': no such run"),
    (["run", "quick", "--resume", "x"], "expected --resume alone"),
    (["run", "--executor", "slurm"], "executor='slurm': expected one of local"),
    (["run", "--executor", "ray", "--jobs", "2"], "--jobs with --executor ray: expected --executor local"),
    (["report", "missing.json", "-o", "out"], "report input 'missing.json' does not exist"),
    (["compare", "only-one.json"], "Missing argument 'candidate'"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_usage_and_input_errors_exit_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == ExitStatus.USAGE == 2
    lines = error_lines(capsys)
    assert lines[0].startswith("error: ") and needle in lines[0], lines
    assert not any("Traceback" in line for line in lines)


def test_cuda_without_cuda_exits_2_before_any_worker(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "cuda_driver_present", lambda: False)
    assert main(["run", "--device", "cuda", "--out", str(tmp_path)]) == 2
    (line,) = error_lines(capsys)
    assert line == ("error: --device cuda: CUDA is not available on this machine (no NVIDIA driver found): "
                    "expected a machine with an NVIDIA GPU, or --device cpu")
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_cuda_with_a_driver_but_no_usable_backend_exits_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "cuda_driver_present", lambda: True)
    assert main(["run", "--backend", "numpy", "--device", "cuda", "--out", str(tmp_path)]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith("error: --device cuda: no backend of this suite can use it here (numpy: ")


# ------------------------------------------------------------------------------------ unexpected errors: 1
def _explode(*a, **k):
    raise RuntimeError("disk on fire\nsecond line")


def test_unexpected_error_is_one_line_and_exit_1(capsys, monkeypatch):
    monkeypatch.setattr("gru_bench.suite.load_suite", _explode)
    assert main(["run"]) == ExitStatus.FAILED
    lines = error_lines(capsys)
    assert lines == ["error: RuntimeError: disk on fire (run with --debug for the traceback)"]


def test_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setattr("gru_bench.suite.load_suite", _explode)
    assert main(["run", "--debug"]) == ExitStatus.FAILED
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "_explode" in err


# ----------------------------------------------------------------------------------------- run: 0 and 1
def test_run_ok_exits_0_prints_the_table_and_writes_the_record(capsys, tmp_path):
    suite = write_suite(tmp_path / "s.toml")
    code = main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "--label", "cli test"])
    captured = capsys.readouterr()
    assert code == ExitStatus.OK, captured.err
    (path,) = (tmp_path / "out").rglob("*.json")
    rec = load_record(path)
    assert f"record: {path}" in captured.err and rec.label == "cli test"
    assert [r.status for r in rec.cases] == ["ok", "ok"]
    gru, lstm = rec.cases
    assert "GRU/LSTM" in captured.out and "reset_after" in captured.out
    assert f"{gru.params / lstm.params:.2f}" in captured.out  # the params ratio, 3H(I+H)+6H+head over 4H(...)
    # under the table, the report's answer: the GRU/LSTM step-time ratio of this run's two cases
    ratio = gru.train_time.median / lstm.train_time.median
    speed = next(line for line in captured.out.splitlines() if line.startswith("• Speed (numpy): "))
    assert f"GRU/LSTM step time {ratio:.2f}," in speed


def test_run_with_a_failed_case_exits_1(capsys, tmp_path, monkeypatch):
    fault_backend.enable(monkeypatch)
    suite = write_suite(tmp_path / "s.toml", backend=["numpy", "raising"], cell="gru")
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == ExitStatus.FAILED
    err = capsys.readouterr().err
    assert "failed" in err and "RuntimeError: kernel exploded" in err


def test_skipped_cases_do_not_fail_the_run(capsys, tmp_path, monkeypatch):
    fault_backend.enable(monkeypatch)
    suite = write_suite(tmp_path / "s.toml", backend="nodevice", cell="gru")
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == ExitStatus.OK
    assert "not supported by this test backend" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- report and compare
def test_report_and_compare_delegate(tmp_path, monkeypatch, capsys):
    calls = {}

    def build_report(inputs, out_dir, title):
        calls["report"] = (inputs, out_dir, title)
        return out_dir / "index.html"

    def compare_command(baseline, candidate, fail_on, markdown, json_path):
        calls["compare"] = (baseline, candidate, fail_on, markdown, json_path)
        return 1

    monkeypatch.setitem(sys.modules, "gru_bench.report", types.SimpleNamespace(build_report=build_report))
    monkeypatch.setitem(sys.modules, "gru_bench.compare.command",
                        types.SimpleNamespace(compare_command=compare_command))
    rec = tmp_path / "a.json"
    rec.write_text("{}")
    assert main(["report", str(rec), str(tmp_path), "-o", str(tmp_path / "rep"), "--title", "T"]) == 0
    assert calls["report"] == ([rec, tmp_path], tmp_path / "rep", "T")
    assert main(["compare", str(rec), str(rec), "--fail-on", "train_time:10%", "--json", "c.json"]) == 1
    assert calls["compare"] == (rec, rec, "train_time:10%", None, Path("c.json"))


# -------------------------------------------------------------------------------------- info, list, table
def test_list_shows_suites_tasks_cells(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("quick", "long_dependency", "adding", "copy", "reset_before", "lstm", "numpy"):
        assert word in out


@pytest.mark.slow
def test_info_check_reports_each_backend_and_device(capsys):
    assert main(["info", "--check"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "usable" in out and "cuda" in out


def test_info_starts_no_framework():
    """Plain ``info`` lists versions from the installed metadata and imports neither torch nor TensorFlow."""
    import subprocess
    import sys

    code = ("import sys; from gru_bench.cli import main; rc = main(['info']); "
            "print(rc, 'torch' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 False False"
    assert "numpy" in out.stdout and "usable" in out.stdout and "--check" in out.stdout


def _result(cell: str, variant: str, seed: int, step_s: float, params: int, metric: float,
            to_target: int | None = None) -> CaseResult:
    c = Case(backend="numpy", cell=cell, variant=variant, task="adding", seq_len=50, hidden=64, seed=seed, steps=300)
    t = TimingStats(samples=[step_s], median=step_s, iqr=0, min=step_s, mean=step_s, ci_low=step_s, ci_high=step_s)
    from gru_bench.schema import Accuracy, MemoryFigure

    return CaseResult(case=c, case_id=c.case_id, status="ok", params=params, train_time=t,
                      memory=[MemoryFigure(name="tracemalloc_peak", bytes=1024 * (3 if cell == "gru" else 4),
                                           method="test")],
                      accuracy=Accuracy(metric="mse", final_metric=metric, baseline_loss=1 / 6, baseline_metric=1 / 6,
                                        target_loss=1 / 60, steps_to_target=to_target))


def test_summary_table_puts_gru_and_lstm_side_by_side_with_ratios():
    from rich.console import Console

    cases = [_result("gru", "reset_after", s, t, 300, 0.01, tt)
             for s, t, tt in ((0, 0.002, 100), (1, 0.004, 250), (2, 0.003, None))]
    cases += [_result("lstm", "standard", s, t, 400, 0.02, tt) for s, t, tt in ((0, 0.006, 200), (1, 0.006, None))]
    console = Console(width=250, record=True)
    console.print(summary_table(cases))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "reset_after" in line)
    assert "3.00 ms" in row and "6.00 ms" in row  # medians over seeds
    assert "0.50" in row  # GRU/LSTM time: 3 ms / 6 ms
    assert "0.75" in row  # params 300/400 and memory 3/4 KiB
    assert "0.01 / 0.167" in row and "0.02 / 0.167" in row  # final metric / trivial baseline
    # time-to-target, KM over seeds (budget 300): GRU 100, 250, unsolved -> F(250) = 2/3, median 250;
    # LSTM 200, unsolved -> F(200) = 1/2, median 200
    assert "250 (2/3)" in row and "200 (1/2)" in row


def test_old_record_warning_is_one_line(capsys):
    baseline = Path(__file__).resolve().parents[1] / "results" / "baselines" / "quick.json"
    assert main(["compare", str(baseline), str(baseline), "--fail-on", "none"]) == 0
    captured = capsys.readouterr()  # compare lists load warnings with its own (stdout); others print to stderr
    err_lines = [ln for ln in (captured.out + captured.err).splitlines() if "schema version 1" in ln]
    assert len(err_lines) == 1 and all(ln.startswith("warning: ") and "quick.json" in ln for ln in err_lines)


@pytest.mark.skipif(preflight.cuda_driver_present(), reason="this machine has an NVIDIA driver: --device cuda may work")
def test_console_script_exit_code():
    exe = Path(sys.executable).with_name("gru-bench")
    if not exe.exists():
        pytest.skip("the gru-bench console script is not installed next to this Python")
    p = subprocess.run([str(exe), "run", "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: --device cuda: CUDA is not available") and "\n" not in p.stderr.strip()


def test_summary_table_pairs_on_pair_id_not_on_a_subset_of_keys():
    """Two learning rates are two GRU/LSTM pairs, two rows that say which is which (they were pooled before)."""
    from rich.console import Console

    cases = [_result(cell, var, 0, t, 300, 0.01) for cell, var, t in (("gru", "reset_after", 0.002),
                                                                      ("lstm", "standard", 0.004))]
    fast = [r.model_copy(update={"case": r.case.model_copy(update={"lr": 0.01})}) for r in cases]
    fast[0] = fast[0].model_copy(update={"train_time": fast[0].train_time.model_copy(update={"median": 0.001})})
    console = Console(width=250, record=True)
    console.print(summary_table(cases + fast))
    rows = [line for line in console.export_text().splitlines() if "reset_after" in line]
    assert len(rows) == 2
    slow = next(r for r in rows if "lr=0.001" in r)
    quick = next(r for r in rows if "lr=0.01" in r)
    assert "2.00 ms" in slow and "0.50" in slow  # 2 ms / 4 ms, not pooled with the other lr
    assert "1.00 ms" in quick and "0.25" in quick  # 1 ms / 4 ms
