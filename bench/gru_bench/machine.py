"""Where and from what a run comes: the machine manifest (CPU, cores, RAM, GPU, library versions and builds, BLAS
threads, speed-relevant environment), the machine id (the folder its records live in) and the commit. Imports
neither torch nor TensorFlow."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .backends import framework_builds
from .schema import GitInfo

# distributions whose versions decide speed or numerics (looked up without importing them)
VERSIONED = ("gru-bench", "numpy", "scipy", "torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "ray", "pandas",
             "threadpoolctl", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11", "nvidia-cublas-cu12")
# environment variables that change speed or threads; exact names and prefixes
SPEED_ENV = ("OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
             "CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "XLA_FLAGS",
             "GRU_BENCH_BACKENDS")
SPEED_ENV_PREFIXES = ("MKL_", "KMP_", "GOMP_", "PYTORCH_", "TORCH_", "ONEDNN_", "DNNL_", "TF_ENABLE_", "TF_XLA_",
                      "TF_NUM_", "TF_GPU_", "TF_CUDNN_", "TF_DETERMINISTIC", "TF_FORCE_", "TF_USE_", "TF_INTRA_",
                      "TF_INTER_")
CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "neon", "asimd")


def _run(cmd: list[str], cwd: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> str | None:
    """stdout of ``cmd`` stripped, or None when it is missing, fails or hangs."""
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "arch": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    if text:
        m = re.search(r"^(model name|Hardware|cpu model)\s*:\s*(.+)$", text, re.M)
        if m:
            info["model"] = m.group(2).strip()
        m = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.M)
        if m:
            have = set(m.group(2).split())
            info["flags"] = [f for f in CPU_FLAGS if f in have]
    elif platform.system() == "Darwin":
        info["model"] = _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or info["model"]
    return info


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _gpus() -> dict[str, Any] | None:
    """GPU model(s), memory, driver and the driver's CUDA version from ``nvidia-smi`` (None without it)."""
    if shutil.which("nvidia-smi") is None:
        return None
    rows = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                 "--format=csv,noheader,nounits"])
    if not rows:
        return None
    gpus = []
    for row in rows.splitlines():
        parts = [p.strip() for p in row.split(",")]
        parts += [""] * (4 - len(parts))
        gpus.append({"name": parts[0], "memory_mib": int(parts[1]) if parts[1].isdigit() else parts[1],
                     "driver": parts[2], "compute_capability": parts[3]})
    banner = _run(["nvidia-smi"]) or ""
    m = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    return {"devices": gpus, "count": len(gpus), "driver_cuda_version": m.group(1) if m else None}


def _speed_env() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k in SPEED_ENV or k.startswith(SPEED_ENV_PREFIXES)}


def machine_manifest() -> dict[str, Any]:
    """What decides speed on this machine: CPU, cores, RAM, OS, Python and library versions, GPU, BLAS threads and
    the environment variables that change speed. Imports neither torch nor TensorFlow."""
    import numpy  # noqa: F401  (loads NumPy's BLAS, so threadpoolctl can report it)
    import psutil
    from threadpoolctl import threadpool_info

    vm = psutil.virtual_memory()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
    manifest: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu": _cpu_info(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": affinity,
        "cpu_max_mhz": round(freq.max, 1) if freq and freq.max else None,
        "ram_bytes": int(vm.total),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": _versions(),
        "builds": framework_builds(),
        "gpu": _gpus(),
        "blas": [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "architecture")}
                 for p in threadpool_info()],
        "env": _speed_env(),
    }
    return manifest


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "unknown"


def machine_id(manifest: dict[str, Any]) -> str:
    """``<hostname-slug>-<6 hex>``: the hash covers the hardware (CPU model, cores, RAM, GPUs), not the software,
    so one machine keeps one folder across upgrades, and two machines sharing a hostname get two."""
    gpu = manifest.get("gpu") or {}
    hw = {"hostname": manifest.get("hostname"), "cpu": (manifest.get("cpu") or {}).get("model"),
          "cores": manifest.get("cores_logical"), "ram": manifest.get("ram_bytes"),
          "gpus": [d.get("name") for d in gpu.get("devices", [])]}
    digest = hashlib.sha1(json.dumps(hw, sort_keys=True).encode()).hexdigest()[:6]
    return f"{slug(str(manifest.get('hostname') or 'host'))}-{digest}"


def git_info(path: str | os.PathLike[str] = ".") -> GitInfo:
    """Commit, dirty flag (tracked files changed) and branch of the repository holding ``path``; all None when it
    is not a git repository or git is missing."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd=path)
    if not commit:
        return GitInfo()
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path)
    branch = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=path)
    return GitInfo(commit=commit, dirty=None if status is None else bool(status),
                   branch=None if branch in (None, "HEAD") else branch)
