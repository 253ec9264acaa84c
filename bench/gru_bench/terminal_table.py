"""The terminal's GRU/LSTM table at the end of ``gru-bench run``: one row per GRU/LSTM pair (``Case.pair_id``),
each side's parameters, step time (with its GEMM-floor efficiency), memory figure and time-to-target, and the
GRU/LSTM ratios."""
from __future__ import annotations

import json
import statistics
from typing import Any, Iterable

from rich.markup import escape
from rich.table import Table

from .units import format_bytes

SHOWN_KEYS = ("backend", "device", "task", "seq_len", "hidden", "cell", "variant", "seed", "timeout_s", "denormals")


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _memory(r: Any) -> tuple[float | None, str | None]:
    """The case's peak memory figure (``CaseResult.peak_memory``) in bytes and its name; None for the bytes when it
    is below its noise floor ("—", not a number to compare)."""
    from .memory import below_floor

    fig = r.peak_memory()
    if fig is None:
        return None, None
    return (None if below_floor(fig) else float(fig.bytes)), fig.name


def _side(results: list[Any]) -> dict[str, Any] | None:
    """One side of a row (the seeds of one cell/variant at one configuration), aggregated by the median."""
    if not results:
        return None
    ok = [r for r in results if r.status == "ok"]
    statuses = sorted({r.status for r in results if r.status != "ok"})
    acc = [r.accuracy for r in ok if r.accuracy is not None and r.accuracy.final_metric is not None]
    return {
        "params": results[0].params,
        "step": _median(r.train_time.median for r in ok if r.train_time is not None),
        "floor": _median(r.gemm_floor.efficiency for r in ok if r.gemm_floor is not None),
        "mem": _median(_memory(r)[0] for r in ok),
        "metric": _median(a.final_metric for a in acc),
        "baseline": _median(a.baseline_metric for a in acc),
        "metric_name": acc[0].metric if acc else None,
        "solved": f"{sum(a.solved for a in acc)}/{len(acc)}" if acc else None,
        "to_target": _to_target(results),
        "status": ",".join(statuses),
    }


def _to_target(results: list[Any]) -> str:
    """Time-to-target over seeds: the Kaplan–Meier median steps (unsolved seeds censored at their budget) and how
    many seeds reached the target, e.g. ``150 (3/3)``; ``— (1/3)`` when fewer than half did; ``—`` unmeasured."""
    from .survival import median_steps, seeds_of

    steps, budgets = seeds_of(results)
    if not budgets:
        return "—"
    median = median_steps(steps, budgets)
    reached = f"({sum(s is not None for s in steps)}/{len(steps)})"
    return f"{median:.0f} {reached}" if median is not None else f"— {reached}"


def _fmt_side(s: dict[str, Any] | None) -> list[str]:
    if s is None:
        return ["—"] * 5
    step = f"{s['step'] * 1e3:.2f} ms" if s["step"] is not None else (s["status"] or "—")
    if s["step"] is not None and s.get("floor") is not None:
        step += f" ({s['floor']:.0%} floor)"
    if s["status"] and s["step"] is not None:
        step += f" ({s['status']})"
    metric = "—"
    if s["metric"] is not None:
        metric = f"{s['metric']:.3g}"
        if s["baseline"] is not None:
            metric += f" / {s['baseline']:.3g}"
        if s["solved"]:
            metric += f" ✓{s['solved']}" if not s["solved"].startswith("0/") else ""
    return [f"{s['params']:,}" if s["params"] is not None else "—", step, format_bytes(s["mem"]), metric,
            s["to_target"]]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def summary_table(cases: list[Any]) -> Table:
    """GRU and LSTM side by side for each configuration (seeds aggregated by the median), with GRU/LSTM ratios.

    Step columns read ``median (efficiency floor)``: the share of the step its own GEMMs need at this machine's BLAS
    speed (``gemm_floor.py``; 100 % = all GEMM). Metric columns read ``final / trivial baseline`` and ``✓k/n`` when
    k of n seeds solved the task; "to target"
    columns the Kaplan–Meier median steps to the first held-out evaluation under the target and ``(k/n)`` seeds
    that reached it (``survival.py``)."""
    groups: dict[str, dict[str, list[Any]]] = {}
    for r in cases:  # a row is a GRU/LSTM pair (Case.pair_id), its seeds pooled
        side = "lstm" if r.case.cell == "lstm" else f"gru[{r.case.variant}]"
        groups.setdefault(r.case.pair_id, {}).setdefault(side, []).append(r)
    varying = _varying_keys([r.case for r in cases])
    t = Table(title="GRU vs LSTM (median over seeds; step (share of it its GEMMs need at BLAS speed); metric: "
                    "final / baseline; to target: KM median steps (seeds that reached it))", title_justify="left")
    for col in ("backend", "task", "T", "H", "GRU variant"):
        t.add_column(col, no_wrap=True)
    for col in ("GRU params", "GRU step", "GRU mem", "GRU metric", "GRU to target", "LSTM params", "LSTM step",
                "LSTM mem", "LSTM metric", "LSTM to target"):
        t.add_column(col, justify="right")
    for col in ("params ×", "time ×", "mem ×"):
        t.add_column(f"GRU/LSTM {col}", justify="right")
    for sides in groups.values():
        c = next(iter(sides.values()))[0].case
        lstm = _side(sides.get("lstm", []))
        grus = sorted(k for k in sides if k != "lstm") or [None]
        for g in grus:
            gru = _side(sides[g]) if g else None
            ratios = [_ratio(gru and gru["params"], lstm and lstm["params"]),
                      _ratio(gru and gru["step"], lstm and lstm["step"]),
                      _ratio(gru and gru["mem"], lstm and lstm["mem"])]
            variant = g[4:-1] if g else "—"
            kept = " denormals=keep" if c.denormals == "keep" else ""  # flush and keep are separate rows
            kept += "".join(f" {k}={_key_text(c, k)}" for k in varying)
            t.add_row(escape(f"{c.backend}/{c.device}{kept}"), escape(c.task), str(c.seq_len), str(c.hidden), variant,
                      *map(escape, _fmt_side(gru)), *map(escape, _fmt_side(lstm)), *ratios)
    return t


def _key_text(case: Any, key: str) -> str:
    return json.dumps(case.options, sort_keys=True) if key == "options" else str(getattr(case, key))


def _varying_keys(cases: list[Any]) -> list[str]:
    """The configuration keys not shown in columns that take more than one value among ``cases``."""
    return [k for k in type(cases[0]).model_fields if k not in SHOWN_KEYS
            and len({_key_text(c, k) for c in cases}) > 1] if cases else []


# ---------------------------------------------------------------------------------------- info and list
