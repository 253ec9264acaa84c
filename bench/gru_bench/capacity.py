"""Will a case fit in memory? A lower-bound estimate from ``spec.py``, checked before a sweep starts.

A case needs at least (bytes of its dtype ``s``, ``P`` parameters, batch ``B``, fed length ``L``)::

    weights P·s  +  gradients P·s  +  optimizer state (Adam: 2·P·s, SGD: 0)
    +  activations kept for BPTT: gate outputs and states (spec.activation_bytes: layers·B·L·H·(G+S)·s)
    +  the batch B·L·(I + O)·s

Every backend needs at least this much (frameworks need more: workspaces, the allocator's slack), so a case whose
estimate exceeds the machine's RAM (or, on CUDA, the device's memory) cannot run: ``check_suite`` refuses it up
front, naming the case and the estimate, instead of letting it start and end as ``oom`` after minutes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

import numpy as np
import psutil

from .case import Case
from .errors import InputError
from .spec import ModelSpec, activation_bytes, param_count
from .units import format_bytes

OPTIMIZER_SLOTS = {"sgd": 0, "adam": 2}  # state tensors the size of the parameters


@dataclass(frozen=True)
class Estimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    batch: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.batch


def _param_count(spec: ModelSpec) -> int:
    """``spec.param_count`` without listing every layer (a million layers must not cost a million dict entries):
    layers above the first are alike, so the count is linear in the layer count."""
    if spec.num_layers <= 2:
        return param_count(spec)
    one, two = (param_count(replace(spec, num_layers=n)) for n in (1, 2))
    return one + (spec.num_layers - 1) * (two - one)


def estimate(case: Case) -> Estimate:
    """The least memory ``case`` needs in one process (bytes), from ``spec.py``'s layout (Python ints: no overflow)."""
    from .worker import model_spec

    spec, L = model_spec(case)
    s = np.dtype(case.dtype).itemsize
    P = _param_count(spec)
    B = case.batch_size
    out_len = L if spec.head == "every" else 1
    return Estimate(weights=P * s, gradients=P * s, optimizer=OPTIMIZER_SLOTS.get(case.optimizer, 2) * P * s,
                    activations=activation_bytes(spec, B, L, s),
                    batch=B * L * spec.input_size * s + B * out_len * spec.output_size * s)


def _device_bytes() -> dict[str, int]:
    """Memory of each CUDA device by its index, from ``nvidia-smi`` (no framework started); empty without one."""
    from .machine import _gpus

    gpus = (_gpus() or {}).get("devices", [])
    return {str(i): int(g["memory_mib"]) * 2**20 for i, g in enumerate(gpus) if isinstance(g.get("memory_mib"), int)}


def check_cases(cases: Iterable[Case], ram_bytes: int | None = None,
                device_bytes: dict[str, int] | None = None) -> None:
    """``InputError`` for the first case whose estimate exceeds this machine's RAM or its CUDA device's memory."""
    ram = ram_bytes if ram_bytes is not None else psutil.virtual_memory().total
    devices: dict[str, int] | None = device_bytes
    seen: dict[str, int] = {}
    for case in cases:
        key = case.model_copy(update={"seed": 0}).case_id  # seeds share a size
        if key not in seen:
            seen[key] = estimate(case).total
        need = seen[key]
        if case.device.startswith("cuda"):
            if devices is None:
                devices = _device_bytes()
            index = case.device.partition(":")[2] or "0"
            limit, where = devices.get(index), f"the memory of {case.device}"
        else:
            limit, where = ram, "this machine's RAM"
        if limit is not None and need > limit:
            e = estimate(case)
            b = format_bytes
            raise InputError(f"case {case.label}: needs at least {b(need)} (weights {b(e.weights)}, gradients "
                             f"{b(e.gradients)}, optimizer {b(e.optimizer)}, activations {b(e.activations)}, batch "
                             f"{b(e.batch)}), more than {where} ({b(limit)}): expected a smaller hidden, seq_len, "
                             f"batch_size or num_layers, "
                             f"or --force to try anyway")


def check_suite(suite: Any) -> None:
    check_cases(suite.cases())


__all__ = ["Estimate", "check_cases", "check_suite", "estimate"]
