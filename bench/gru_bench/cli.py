"""The ``gru-bench`` command line: ``run``, ``report``, ``compare``, ``info``, ``list``.

Exit codes are decided here and nowhere else (``status.ExitStatus``); ``main`` turns every exception into one of
them with a one-line message, and shows a traceback only with ``--debug``: ``InputError`` and usage errors are 2,
anything else (a bug, the environment) is 1.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .ab import DEFAULT_ROUNDS as AB_ROUNDS
from .errors import InputError
from .preflight import check_devices, cuda_driver_present, default_jobs
from .status import ExitStatus
from .terminal_table import summary_table
from .units import format_bytes


app = typer.Typer(name="gru-bench", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GRU vs LSTM, and their implementations, measured with numbers you can trust.")
out = Console()  # tables and listings
err = Console(stderr=True, soft_wrap=True)  # progress, warnings, errors: one line each, never wrapped

DEBUG_HELP = "Show the traceback of an error."


# ------------------------------------------------------------------------------------------------------ run
def _csv(value: Optional[str]) -> Optional[str]:
    return value.strip() if value is not None else None


@app.command()
def run(
    suite: Optional[str] = typer.Argument(None,
                                          help="A suite name (suites/NAME.toml) or a .toml path (default: answer)."),
    backend: Optional[str] = typer.Option(None, help="Backends, comma-separated: numpy,torch,tf."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N (comma-separated for several)."),
    cell: Optional[str] = typer.Option(None, help="gru,lstm"),
    variant: Optional[str] = typer.Option(None, help="GRU variants: reset_after,reset_before."),
    task: Optional[str] = typer.Option(None, help="Tasks: adding,copy,selective_copy."),
    hidden: Optional[str] = typer.Option(None, help="Hidden sizes, e.g. 64,128."),
    seq_len: Optional[str] = typer.Option(None, "--seq-len", help="Sequence lengths T, e.g. 50,100."),
    steps: Optional[str] = typer.Option(None, help="Training-step budget for accuracy (0: timing only)."),
    seeds: Optional[str] = typer.Option(None, help="Seeds, e.g. 0,1,2."),
    stop_at_target: Optional[bool] = typer.Option(None, "--stop-at-target/--no-stop-at-target",
                                                  help="End training at the first held-out evaluation under the "
                                                       "target (time-to-target)."),
    repetitions: Optional[str] = typer.Option(None, help="Timed training steps (and forward passes) per case."),
    threads: Optional[str] = typer.Option(None, help="Intra-op threads of BLAS and the framework."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Where run records go (OUT/<machine-id>/...)."),
    resume: Optional[str] = typer.Option(None, help="Finish an interrupted run: its id, record or journal path, "
                                                    "or a folder (its newest unfinished run)."),
    label: Optional[str] = typer.Option(None, help="Free text stored with the run and shown in reports."),
    executor: str = typer.Option("local", help="What runs the workers: local | ray."),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1,
                                       help="Training phases run at once, one thread each, after every timing phase "
                                            "ran alone (--executor local; default: the usable cores, 1 when a case "
                                            "runs on CUDA)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="The Ray cluster (--executor ray), e.g. auto or HOST:6379."),
    ray_cpus_per_case: Optional[int] = typer.Option(None, "--ray-cpus-per-case",
                                                    help="CPUs a CPU timing case reserves (--executor ray; default: "
                                                         "a whole node)."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
    force: bool = typer.Option(False, "--force", help="Run cases whose estimated memory exceeds this machine's "
                                                      "RAM (or the device's) anyway."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> int:
    """Run a suite: every case in a fresh worker process; a record under OUT; a GRU/LSTM table at the end."""
    from . import runner
    from .executors import get_executor
    from .outdir import check_out_dir
    from .suite import load_suite

    if resume is None:  # a resumed run writes beside its journal
        check_out_dir(out_dir)

    overrides = {"backend": backend, "device": device, "cell": cell, "variant": variant, "task": task,
                 "hidden": hidden, "seq_len": seq_len, "steps": steps, "seeds": seeds, "repetitions": repetitions,
                 "threads": threads}
    overrides = {k: _csv(v) for k, v in overrides.items() if v is not None}
    if stop_at_target is not None:
        overrides["stop_at_target"] = stop_at_target
    ray_opts = {"address": ray_address, "cpus_per_case": ray_cpus_per_case}
    if jobs is not None and executor != "local":  # before the ray branch: --jobs is never silently dropped
        raise InputError(f"--jobs with --executor {executor}: expected --executor local (a cluster schedules its own)")
    if executor == "ray":
        ex = get_executor(executor, **ray_opts)
    elif any(v is not None for v in ray_opts.values()):
        flag = "--ray-address" if ray_address is not None else "--ray-cpus-per-case"
        raise InputError(f"{flag} with --executor {executor}: expected --executor ray")
    if resume is not None:
        given = [f"--{k.replace('_', '-')}" for k in overrides] + (["SUITE"] if suite else []) + \
            (["--label"] if label else [])
        if given:
            raise InputError(f"--resume {resume!r} with {', '.join(given)}: expected --resume alone (a resumed run "
                             f"keeps its own suite, flags and label)")
        run_ = runner.open_run(resume, out_dir)
        err.print(f"resuming [bold]{escape(run_.record.run_id)}[/]: {len(run_.done)} of {len(run_.plan)} cases "
                  f"already finished", highlight=False)
    else:
        suite_ = load_suite(suite or "answer", overrides)
    if executor != "ray":
        plan = run_.plan if resume is not None else suite_.cases()
        ex = get_executor(executor, jobs=jobs or default_jobs(plan))
    if resume is None:
        if executor == "local":  # a cluster's devices are its nodes', not this machine's
            check_devices(suite_)
            if not force:
                from .capacity import check_suite

                check_suite(suite_)
        err.print(f"suite [bold]{escape(suite_.name)}[/]: {len(suite_.cases())} cases; calibrating …", highlight=False)
        run_ = runner.new_run(suite_, out_dir, label)
        if run_.record.calibration is not None:
            err.print(f"calibration: {run_.record.calibration.gemm_gflops:.1f} GFLOP/s "
                      f"({escape(run_.record.calibration.method)})", highlight=False)
    outcome = runner.execute(run_, ex, err, progress=progress)
    if outcome.record.cases:
        # a log file or CI page is not a terminal: give the table room instead of rich's 80 columns
        wide = out if out.is_terminal else Console(width=max(out.width, 200))
        wide.print(summary_table(outcome.record.cases))
        print_answer(wide, outcome.record)
    err.print(f"record: {outcome.record_path}", highlight=False)
    return run_exit_status(outcome)


def print_answer(console: Console, record: Any) -> None:
    """Under the table, the report's first-screen sentences for this run (``report/answer.py``): which cell reached
    the target first at each T, which is faster per step and which needs less memory, on each backend."""
    from .report.answer import sentences
    from .report.frame import cases_frame

    for line in sentences(cases_frame([record])):
        console.print(f"• {escape(line)}", highlight=False)


def run_exit_status(outcome: Any) -> ExitStatus:
    if outcome.interrupted:
        return ExitStatus.INTERRUPTED
    return ExitStatus.FAILED if outcome.failed else ExitStatus.OK


# ---------------------------------------------------------------------------------------------- the table
# the configuration keys the table shows in columns; any other key that differs between its pairs is named in the
# first column (``lr=0.01``), so two rows never look the same
@app.command()
def info(check: bool = typer.Option(False, "--check", help="Start each framework to test its devices (slow)."),
         debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP)) -> int:
    """Library versions (read from the installed metadata) and the backends installed here; ``--check`` starts
    each framework to say which backend/device pairs are usable, and why the others are not."""
    from .backends import backend_names, unavailable_reason
    from .machine import machine_id, machine_manifest

    m = machine_manifest()
    t = Table(title=f"machine {machine_id(m)}", show_header=False, title_justify="left")
    gpu = m.get("gpu") or {}
    rows = [("CPU", f"{m['cpu'].get('model')} ({m.get('cores_logical')} logical cores)"),
            ("RAM", format_bytes(m.get("ram_bytes"))), ("OS", m.get("os")), ("Python", m.get("python")),
            ("GPU", ", ".join(d["name"] for d in gpu.get("devices", [])) or "none found")]
    rows += [(k, v) for k, v in m.get("versions", {}).items() if v and k != "python"]
    for k, v in rows:
        t.add_row(escape(str(k)), escape(str(v)))
    out.print(t)
    devices = ["cpu", "cuda"]
    t = Table(title="backends", title_justify="left")
    t.add_column("backend")
    for d in devices:
        t.add_column(d)
    for name in backend_names():
        cells = []
        for d in devices:
            if d == "cuda" and not cuda_driver_present():
                reason: str | None = "no NVIDIA driver found"
            elif not check:
                cells.append(_installed_cell(name, d))
                continue
            else:
                reason = unavailable_reason(name, d)
            cells.append("[green]usable[/]" if reason is None else f"[dim]{escape(reason)}[/]")
        t.add_row(name, *cells)
    out.print(t)
    return ExitStatus.OK


def _installed_cell(name: str, device: str) -> str:
    """One ``info`` cell without starting a framework: installed (not started) or the missing module."""
    from importlib.util import find_spec

    from .backends import framework_module, usable_without_a_framework

    module = framework_module(name)
    try:
        found = bool(module) and find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"[dim]{escape(module or name)} not installed[/]"
    if usable_without_a_framework(name, device):
        return "[green]usable[/]"
    return "[yellow]installed[/] [dim](--check to start it)[/]"


@app.command("list")
def list_(debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP)) -> int:
    """Suites, tasks, cells and variants, backends."""
    from .backends import backend_names
    from .spec import GRU_VARIANTS, LSTM_VARIANTS
    from .suite_files import list_suites
    from .tasks import TASKS

    t = Table(title="suites", title_justify="left")
    t.add_column("name")
    t.add_column("description")
    for name, desc in list_suites().items():
        t.add_row(escape(name), escape(desc))
    out.print(t)
    t = Table(title="tasks", title_justify="left")
    for col in ("name", "metric", "description"):
        t.add_column(col)
    for name, task in TASKS.items():
        t.add_row(name, task.metric, escape(task.description))
    out.print(t)
    t = Table(title="cells", title_justify="left")
    t.add_column("cell")
    t.add_column("variants")
    t.add_row("gru", ", ".join(GRU_VARIANTS))
    t.add_row("lstm", ", ".join(LSTM_VARIANTS))
    out.print(t)
    out.print(f"backends: {', '.join(backend_names())}")
    return ExitStatus.OK


# ------------------------------------------------------------------------------------- report and compare
@app.command()
def report(
    inputs: list[Path] = typer.Argument(..., help="Run records or folders of them."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Folder for index.html and its assets."),
    title: Optional[str] = typer.Option(None, help="The report's title."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> int:
    """Turn run records into a self-contained HTML report."""
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise InputError(f"report input {missing[0]!r} does not exist: expected a run record .json or a folder")
    from .outdir import check_out_dir
    from .report import build_report

    check_out_dir(out_dir, "-o")

    index = build_report(list(inputs), out_dir, title)
    err.print(f"report: {index}", highlight=False)
    return ExitStatus.OK


@app.command()
def compare(
    baseline: Path = typer.Argument(..., help="The baseline: a run record or a folder of them."),
    candidate: Path = typer.Argument(..., help="The candidate: a run record or a folder of them."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Checks, e.g. train_time:10%."),
    markdown: Optional[Path] = typer.Option(None, help="Write the comparison as Markdown here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the comparison as JSON here."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> int:
    """Compare two run records; exit 1 when a --fail-on check finds a regression."""
    from .compare.command import compare_command

    code = compare_command(baseline, candidate, fail_on, markdown, json_path)
    return ExitStatus(code) if code in tuple(ExitStatus) else ExitStatus.FAILED


@app.command()
def ab(
    suite: Optional[str] = typer.Argument(None, help="A suite name or a .toml path (default: answer)."),
    baseline_python: Optional[str] = typer.Option(None, "--baseline-python", help="The baseline's interpreter."),
    candidate_python: Optional[str] = typer.Option(None, "--candidate-python", help="The candidate's interpreter."),
    baseline_env: list[str] = typer.Option([], "--baseline-env", help="KEY=VALUE for the baseline (repeatable)."),
    candidate_env: list[str] = typer.Option([], "--candidate-env", help="KEY=VALUE for the candidate (repeatable)."),
    rounds: int = typer.Option(AB_ROUNDS, help="ABBA rounds (each runs every case once per side; >= 6 to decide)."),
    fail_on: Optional[str] = typer.Option(
        None, "--fail-on", help="compare's grammar: train_time:F, inconclusive, none (default train_time:5%)."),
    factor: Optional[float] = typer.Option(None, help="Practical factor, 0.05 = 5 % (= --fail-on train_time:5%)."),
    backend: Optional[str] = typer.Option(None, help="Backends, comma-separated."),
    hidden: Optional[str] = typer.Option(None, help="Hidden sizes."),
    seq_len: Optional[str] = typer.Option(None, "--seq-len", help="Sequence lengths T."),
    cell: Optional[str] = typer.Option(None, help="gru,lstm"),
    repetitions: Optional[str] = typer.Option(None, help="Timed steps per round (samples per round)."),
    threads: Optional[str] = typer.Option(None, help="Intra-op threads."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Where both sides' run records go."),
    markdown: Optional[Path] = typer.Option(None, help="Write the comparison as Markdown here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the comparison as JSON here."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> int:
    """Interleaved A/B timing of two environments; exit 1 when a case regressed (or a worker failed)."""
    from . import ab as ab_
    from .outdir import check_out_dir
    from .suite import load_suite

    check_out_dir(out_dir)
    sides = {"A": (ab_.check_python(baseline_python or ab_.default_python(), "--baseline-python"),
                   ab_.parse_env(baseline_env, "--baseline-env")),
             "B": (ab_.check_python(candidate_python or ab_.default_python(), "--candidate-python"),
                   ab_.parse_env(candidate_env, "--candidate-env"))}
    thresholds = ab_.gate(fail_on, factor)
    overrides = {"backend": backend, "hidden": hidden, "seq_len": seq_len, "cell": cell,
                 "repetitions": repetitions, "threads": threads}
    overrides = {k: _csv(v) for k, v in overrides.items() if v is not None}
    suite_ = load_suite(suite or "answer", {**overrides, "steps": "0"})  # the timing phase only
    ab_.abba_order(rounds)
    return ExitStatus(ab_.ab_command(suite_, out_dir, rounds, thresholds, sides, markdown, json_path, err))


@app.command()
def export(
    inputs: list[Path] = typer.Argument(..., help="Run records or folders of them."),
    fmt: str = typer.Option(..., "--format",
                            help="github-smaller | github-bigger (github-action-benchmark) | bmf (Bencher)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write the JSON here (default: stdout)."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> int:
    """Export run records to the JSON that github-action-benchmark or Bencher ingest."""
    from .export import export_command

    return ExitStatus(export_command(inputs, fmt, out))


# ------------------------------------------------------------------------------------------------- main
def _one_line(text: str) -> str:
    return next((s.strip() for s in str(text).splitlines() if s.strip()), "")


def _is(exc: BaseException, class_name: str) -> bool:
    """By class name, so click and typer's own copy of click both match."""
    return any(k.__name__ == class_name for k in type(exc).__mro__)


def _record_warnings() -> Any:
    """Warnings about the records read (an older schema version) as one ``warning:`` line each on stderr."""
    import warnings

    from .schema import SchemaWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        if issubclass(category, SchemaWarning):
            err.print(f"[yellow]warning[/]: {escape(_one_line(str(message)))}", highlight=False)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    """The console script: run the command, map what happened to an ``ExitStatus``."""
    import warnings

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _record_warnings()
            rv = app(args=args, prog_name="gru-bench", standalone_mode=False)
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except Exception as e:
        if _is(e, "UsageError"):  # bad flags, missing arguments; no arguments at all: the help was shown
            message = _one_line(e.format_message())
            ctx = getattr(e, "ctx", None)
            if message:  # one line, the pointer to the help included
                hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
                err.print(f"[red]error[/]: {escape(message + hint)}", highlight=False)
            return ExitStatus.USAGE
        if _is(e, "Abort"):
            return ExitStatus.INTERRUPTED
        return _error_status(e, debug)
    return int(rv) if isinstance(rv, int) else ExitStatus.OK


def _error_status(e: Exception, debug: bool) -> int:
    """``InputError`` (bad usage or input, named by the code that checked it): 2. Anything else, a plain
    ``ValueError`` included (a bug, the environment): 1. One line either way; the traceback with ``--debug``."""
    if debug:
        traceback.print_exception(e)
    if isinstance(e, InputError):
        err.print(f"[red]error[/]: {escape(_one_line(str(e)))}", highlight=False)
        return ExitStatus.USAGE
    hint = "" if debug else " (run with --debug for the traceback)"
    err.print(f"[red]error[/]: {type(e).__name__}: {escape(_one_line(str(e)))}{hint}", highlight=False)
    return ExitStatus.FAILED


if __name__ == "__main__":
    sys.exit(main())
