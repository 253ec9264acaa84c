"""What the report says about each run: a one-line machine description and the full manifest (every field of
the record's header and machine, flattened to ``key: value`` rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..schema import RunRecord


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(d, dict):
        out: list[tuple[str, str]] = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(d, (list, tuple)):
        return [(prefix, ", ".join(json.dumps(x) if isinstance(x, (dict, list)) else str(x) for x in d))]
    return [(prefix, "" if d is None else str(d))]


def machine_line(rec: RunRecord) -> str:
    """Machine id, CPU model, cores and GPUs, as far as the manifest says."""
    m = rec.machine
    cpu = m.get("cpu")
    cpu = cpu.get("model") if isinstance(cpu, dict) else cpu
    cores = m.get("cores_logical") or m.get("cores")
    gpu = m.get("gpu")
    gpus = (
        [d.get("name") for d in gpu.get("devices", []) if isinstance(d, dict)]
        if isinstance(gpu, dict)
        else ([gpu] if gpu else [])
    )
    parts = [
        rec.machine_id or m.get("machine_id") or m.get("hostname") or "machine",
        cpu,
        f"{cores} cores" if cores else None,
        *gpus,
    ]
    return ", ".join(str(p) for p in parts if p)


def manifest(rec: RunRecord, path: Path) -> list[tuple[str, str]]:
    items = [
        ("file", str(path)),
        ("run id", rec.run_id),
        ("label", rec.label or ""),
        ("suite", rec.suite_name),
        ("created", rec.created),
        ("finished", rec.finished or "not finished"),
        ("commit", rec.git.commit or "unknown"),
        ("dirty", "" if rec.git.dirty is None else str(rec.git.dirty)),
        ("branch", rec.git.branch or ""),
        ("schema version", str(rec.schema_version) + (f" (read from version {rec.migrated_from})"
                                                     if rec.migrated_from else "")),
        ("cases", str(len(rec.cases))),
    ]
    if rec.calibration:
        items += [
            ("calibrated peak", f"{rec.calibration.gemm_gflops:.1f} GFLOP/s"),
            ("calibration method", rec.calibration.method),
        ]
    items += [(f"machine.{k}", v) for k, v in _flatten(rec.machine)]
    for node, m in rec.machines.items():
        items += [(f"node {node}.{k}", v) for k, v in _flatten(m)]
    if rec.suite:
        items.append(("suite settings", json.dumps(rec.suite, sort_keys=True, default=str)))
    return items
