"""What a sweep prints on the terminal: notes, a progress bar, one line per finished case with its warnings, and
the closing lines (busy machine, how to resume)."""
from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from .case import Case
from .schema import CaseResult, RunRecord

STATUS_STYLE = {"ok": "green", "skipped": "dim", "diverged": "yellow", "failed": "red", "timeout": "red",
                "oom": "red"}


def describe(result: CaseResult) -> str:
    """One rich-markup line for a finished case."""
    style = STATUS_STYLE.get(result.status, "red")
    parts = [f"[{style}]{result.status:>8}[/] {escape(result.case.label)}"]
    if result.train_time is not None:
        parts.append(f"step {result.train_time.median * 1e3:.2f} ms")
    acc = result.accuracy
    if acc is not None and acc.final_metric is not None:
        parts.append(f"{acc.metric} {acc.final_metric:.4g} (baseline {acc.baseline_metric:.4g})"
                     if acc.baseline_metric is not None else f"{acc.metric} {acc.final_metric:.4g}")
    if acc is not None and acc.target_loss is not None:
        parts.append(f"target at step {acc.steps_to_target} ({acc.seconds_to_target:.2f} s)"
                     if acc.steps_to_target is not None else "target not reached")
    if result.reason:
        parts.append(f"[dim]— {escape(result.reason)}[/]")
    return "  ".join(parts)


class SweepConsole:
    """The terminal side of one sweep: ``with`` it around the executor (the bar shows while cases run)."""

    def __init__(self, console: Console, total: int, completed: int, progress: bool = True) -> None:
        self.console = console
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                            disable=not progress, transient=True)
        self.task = self.bar.add_task("starting", total=total, completed=completed)

    def __enter__(self) -> "SweepConsole":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def notes(self, notes: Sequence[str]) -> None:
        for note in notes:
            self.console.print(f"[yellow]note[/]: {escape(note)}")

    def started(self, case: Case) -> None:
        self.bar.update(self.task, description=escape(case.label))

    def finished(self, result: CaseResult) -> None:
        self.bar.advance(self.task)
        self.console.print(describe(result), highlight=False)
        for w in result.warnings:
            self.console.print(f"  [yellow]warning[/]: {escape(w)}", highlight=False)

    def closing(self, record: RunRecord, kept: int, planned: int, interrupted: bool) -> None:
        busy = sum(1 for r in record.cases if r.load is not None and r.load.busy)
        if busy:
            self.console.print(f"[yellow]warning[/]: {busy} of {len(record.cases)} cases ran on a busy machine: their "
                               f"timings may be noisy (see each case's warning)", highlight=False)
        if interrupted:
            self.console.print(f"[yellow]interrupted[/]: {kept} of {planned} cases kept; finish with "
                               f"[bold]gru-bench run --resume {escape(record.run_id)}[/]", highlight=False)


__all__ = ["STATUS_STYLE", "SweepConsole", "describe"]
