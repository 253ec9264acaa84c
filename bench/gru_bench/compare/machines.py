"""Which machine a record comes from, and the per-record time scale that makes timings of two machines comparable."""
from __future__ import annotations

from .. import machine
from ..schema import RunRecord


def machine_id(record: RunRecord) -> str:
    """The record's machine (``machine.machine_id``: hostname and hardware, not software)."""
    return record.machine_id or machine.machine_id(record.machine or {})


def _machine_name(record: RunRecord) -> str:
    m = record.machine or {}
    cpu = (m.get("cpu") or {}).get("model") if isinstance(m.get("cpu"), dict) else m.get("cpu")
    return " / ".join(str(x) for x in (m.get("hostname"), cpu) if x) or machine_id(record)


def time_scales(base: list[RunRecord], cand: list[RunRecord], warn: list[str]) -> tuple[list[float], list[float]]:
    """Per-record factors for timing samples: 1 on one machine; ``gflops_r / gflops_ref`` across machines, so a
    sample becomes 'seconds on the reference (first baseline) machine'."""
    ids = {machine_id(r) for r in base + cand}
    if len(ids) <= 1:
        return [1.0] * len(base), [1.0] * len(cand)
    names = sorted({_machine_name(r) for r in base + cand})
    if any(r.calibration is None or not r.calibration.gemm_gflops > 0 for r in base + cand):
        warn.append(f"records come from different machines ({', '.join(names)}) and not all have a calibration: "
                    "timings are compared unnormalised; read timing verdicts with care")
        return [1.0] * len(base), [1.0] * len(cand)
    ref = base[0].calibration.gemm_gflops  # type: ignore[union-attr]
    gf = ", ".join(f"{r.calibration.gemm_gflops:.1f}" for r in base + cand)  # type: ignore[union-attr]
    warn.append(f"records come from different machines ({', '.join(names)}): timings normalised by each record's "
                f"calibration.gemm_gflops ({gf} GFLOP/s) to the baseline machine; timing verdicts are indicative")
    return ([r.calibration.gemm_gflops / ref for r in base],  # type: ignore[union-attr]
            [r.calibration.gemm_gflops / ref for r in cand])  # type: ignore[union-attr]
