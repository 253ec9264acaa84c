"""Checks of a suite against this machine before a single worker starts: can any backend use the CUDA device asked
for, and how many training phases may run at once (``run --jobs``'s default)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .errors import InputError

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def cuda_driver_present() -> bool:
    return NVIDIA_DRIVER.exists() or shutil.which("nvidia-smi") is not None


def check_devices(suite: Any) -> None:
    """``InputError`` when the suite asks for CUDA and no backend of the suite can use it here (checked before a
    single worker starts; without an NVIDIA driver no framework is imported for the check)."""
    cuda = [d for d in suite.device if d.startswith("cuda")]
    if not cuda:
        return
    if not cuda_driver_present():
        raise InputError(f"--device {cuda[0]}: CUDA is not available on this machine (no NVIDIA driver found): "
                         f"expected a machine with an NVIDIA GPU, or --device cpu")
    from .backends import unavailable_reason

    for device in cuda:
        reasons = {b: unavailable_reason(b, device) for b in suite.backend}
        if all(reasons.values()):
            detail = "; ".join(f"{b}: {r}" for b, r in reasons.items())
            raise InputError(f"--device {device}: no backend of this suite can use it here ({detail}): expected "
                             f"--device cpu or a backend built with CUDA")


def default_jobs(cases: Any) -> int:
    """The usable cores for CPU suites (training does not need a quiet machine); 1 when a case runs on CUDA."""
    if any(c.device != "cpu" for c in cases):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
