"""The run record: its schema (below), atomic save, load, and the machine & commit manifest.

One JSON file per run: ``results/<machine-id>/<timestamp>_<suite>.json``. Units: seconds, bytes, FLOPs.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .case import Case

SCHEMA_VERSION = 2
# Version history (``migrate`` reads every version listed here, with a ``SchemaWarning``):
#   1: the first release.
#   2: time-to-target (#11): Accuracy.eval_every, heldout, target_loss, steps/seconds_to_target, best_*;
#      Case.stop_at_target. A version-1 record loads with these None (it never measured them).
Status = Literal["ok", "skipped", "failed", "diverged", "timeout", "oom"]


class _Model(BaseModel):
    # NaN/inf (a diverged loss curve) are written as the strings "NaN"/"Infinity", so a record stays strict JSON
    # and reads back as the same floats.
    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="strings")


class TimingStats(_Model):
    """Raw samples (seconds) and their statistics; ``ci_*`` is a 95 % bootstrap interval of the median."""

    samples: list[float]
    median: float
    iqr: float
    min: float
    mean: float
    ci_low: float
    ci_high: float
    gflops: float | None = None  # achieved: spec FLOPs / median
    pct_peak: float | None = None  # gflops / the run's calibrated GEMM GFLOP/s * 100
    cpu_samples: list[float] | None = None  # process CPU seconds per sample (time.process_time), beside wall time


class MemoryFigure(_Model):
    name: str  # e.g. "host_peak_rss_delta", "tracemalloc_peak", "device_peak_allocated", "activation_estimate"
    bytes: int
    method: str  # how it was measured, e.g. "psutil RSS sampling", "resource.getrusage ru_maxrss", "analytic B·T·H·G·bytes"
    floor_bytes: int | None = None  # below this the method measures noise, not the work (None: no known floor)
    seconds: float | None = None  # what measuring this figure cost (wall seconds), where it had a cost of its own


class Curve(_Model):
    step: list[int] = Field(default_factory=list)
    loss: list[float] = Field(default_factory=list)  # training: mean over the last eval_every steps; held-out: mean
    seconds: list[float] = Field(default_factory=list)  # training wall time since the first step (evaluation excluded)
    metric: list[float] | None = None  # held-out curve only: the task's metric at each point


class Accuracy(_Model):
    """What training reached. The headline is time-to-target (MLPerf style): the held-out loss is evaluated every
    ``eval_every`` steps (and at the last step); ``steps_to_target``/``seconds_to_target`` are the step and the
    training seconds (held-out evaluation excluded) of the first evaluation whose held-out loss is below
    ``target_loss`` (the task's solved threshold, 10 % of the trivial baseline's loss), None when none was.
    ``best_*`` is the evaluation with the lowest held-out loss (``best_metric`` the metric at that same point),
    ``final_*`` the last evaluation (the step budget, or the target step under ``stop_at_target``).

    ``steps_to_solve``/``seconds_to_solve`` are kept for readers of schema version 1 and equal ``*_to_target`` in
    version-2 records (version 1 gated them on the training loss as well, so they could lie later than the first
    held-out hit; a migrated version-1 record keeps them and has ``*_to_target`` None)."""

    metric: str  # the metric people read for the task, e.g. "mse", "accuracy"
    final_metric: float | None = None  # on held-out seeded batches, at the last evaluation
    final_loss: float | None = None  # held-out loss at the last evaluation
    baseline_loss: float  # the trivial baseline's loss
    baseline_metric: float | None = None
    solved: bool = False  # final held-out loss below target_loss
    steps_to_solve: int | None = None  # = steps_to_target (schema 2); see the docstring
    seconds_to_solve: float | None = None  # = seconds_to_target (schema 2)
    curve: Curve = Field(default_factory=Curve)  # training loss
    # schema version 2: time-to-target
    eval_every: int | None = None  # evaluation cadence (steps); the last step is evaluated too
    heldout: Curve | None = None  # held-out loss (and metric) at every evaluation point
    target_loss: float | None = None  # held-out loss below this counts as solved (tasks.Task.target_loss)
    steps_to_target: int | None = None  # first evaluation step with held-out loss < target_loss
    seconds_to_target: float | None = None  # training seconds up to that step (evaluation excluded)
    stopped_at_target: bool = False  # training ended at the target (Case.stop_at_target) before the budget
    best_loss: float | None = None  # lowest held-out loss over the evaluations
    best_metric: float | None = None  # the metric at that evaluation
    best_step: int | None = None


class Load(_Model):
    before: list[float] | None = None  # 1/5/15-min load averages
    after: list[float] | None = None
    cpu_percent_before: float | None = None
    cpu_percent_after: float | None = None
    busy: bool = False
    warning: str | None = None  # why the machine counted as busy, shown on screen and in reports


class GemmFloor(_Model):
    """The time of a training step's own GEMMs at their real shapes on this machine, and the step against it."""

    seconds: float  # sum over the step's GEMMs of each shape's measured median time x its count
    gflops: float  # the step's GEMM FLOPs / seconds: what this machine's BLAS does at these shapes
    efficiency: float | None = None  # floor seconds / median step seconds (1.0 = the step is all GEMM at BLAS speed)
    shapes: list[dict[str, Any]] = Field(default_factory=list)  # {"m","k","n","count","seconds"} per shape
    method: str = ""


class CaseResult(_Model):
    case: Case
    case_id: str
    status: Status
    reason: str | None = None  # why not ok
    params: int | None = None  # spec.param_count
    params_backend: int | None = None  # counted from the backend's own weights
    flops_forward: float | None = None
    flops_train_step: float | None = None
    implementation: str | None = None  # e.g. "torch.nn.GRU (cuDNN)", "numpy (hand-written BPTT)"
    provenance: dict[str, Any] = Field(default_factory=dict)
    threads: dict[str, Any] = Field(default_factory=dict)
    train_time: TimingStats | None = None
    forward_time: TimingStats | None = None
    memory: list[MemoryFigure] = Field(default_factory=list)
    accuracy: Accuracy | None = None
    load: Load | None = None
    node: str | None = None  # host that ran it
    started_at: str | None = None  # ISO 8601
    wall_s: float | None = None
    warnings: list[str] = Field(default_factory=list)
    # subnormal census of one un-timed step on the timing batch: {"hidden_grad": fraction, "param_grad": fraction}
    subnormals: dict[str, float] | None = None
    gemm_floor: GemmFloor | None = None  # the step's own GEMMs timed at their shapes (issue #11 part 4)


class Calibration(_Model):
    gemm_gflops: float  # measured peak of this machine (float32 GEMM)
    method: str


class GitInfo(_Model):
    commit: str | None = None
    dirty: bool | None = None
    branch: str | None = None


class RunRecord(_Model):
    schema_version: int = SCHEMA_VERSION
    migrated_from: int | None = None  # the schema version the file was written in, when it was older (``migrate``)
    run_id: str
    suite_name: str
    suite: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None  # free text from the user, shown in reports (escaped)
    created: str  # ISO 8601
    finished: str | None = None
    machine_id: str | None = None  # ``machine_id(machine)``: the folder the record lives in
    machine: dict[str, Any] = Field(default_factory=dict)  # manifest: cpu, cores, ram, os, python, versions, gpu...
    machines: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per node, for cluster runs
    calibration: Calibration | None = None
    git: GitInfo = Field(default_factory=GitInfo)
    cases: list[CaseResult] = Field(default_factory=list)


# ======================================================================================= machine, commit, files
import hashlib  # noqa: E402  (the functions below; the schema above needs none of these)
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterable  # noqa: E402

from .errors import InputError  # noqa: E402

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

    from .backends import framework_builds  # each backend reads its framework's build, without importing it

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


def _slug(text: str, limit: int = 40) -> str:
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
    return f"{_slug(str(manifest.get('hostname') or 'host'))}-{digest}"


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


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset (the form of ``RunRecord.created``)."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def record_path(out_dir: str | os.PathLike[str], machine_id: str, suite_name: str,
                created: str | datetime) -> Path:
    """``out_dir/<machine-id>/<YYYYmmddTHHMMSSZ>_<suite>.json`` (timestamp in UTC, so files sort by time)."""
    when = datetime.fromisoformat(created) if isinstance(created, str) else created
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    stamp = when.strftime("%Y%m%dT%H%M%S") + ("Z" if when.tzinfo is not None else "")
    return Path(out_dir) / _slug(machine_id, 80) / f"{stamp}_{_slug(suite_name, 60)}.json"


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort where the platform refuses)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems / platforms refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def write_outputs(outputs: Any) -> None:
    """Write each ``(path, make_text)`` whose path is not None (``--markdown``/``--json`` of compare and ab); a path
    that cannot be written is an ``InputError`` naming it."""
    for path, text in outputs:
        if path is not None:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text() + "\n", encoding="utf-8")
            except OSError as e:
                raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part: a temp file
    in the same directory, flushed and fsynced, renamed over ``path`` (``os.replace``), then the directory fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a record gets the mode any new file would get
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def save_record(record: RunRecord, path: str | os.PathLike[str]) -> Path:
    """Write ``record`` as JSON to ``path`` atomically (``atomic_write_text``); returns the path."""
    return atomic_write_text(path, record.model_dump_json(indent=1))


def _first_error(e: Any) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{loc}: {err['msg']}"


class SchemaWarning(UserWarning):
    """A record of an older schema version was read: the fields added since are missing (None)."""


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    # Version 2 only adds optional fields (Accuracy time-to-target, Case.stop_at_target): their defaults stand for
    # "not measured". steps_to_solve keeps its version-1 value (gated on the training loss too), *_to_target stay None.
    return {**data, "schema_version": 2}


MIGRATIONS: dict[int, Any] = {1: _from_v1}  # version -> function of the parsed record to the next version


def migrate(data: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """An older record (a version in ``MIGRATIONS``) lifted to ``SCHEMA_VERSION`` with a ``SchemaWarning`` naming
    ``where``; ``migrated_from`` says which version it was. A current record is returned as it is."""
    version = data.get("schema_version")
    if version == SCHEMA_VERSION or isinstance(version, bool) or version not in MIGRATIONS:
        return data
    warnings.warn(f"{where}: schema version {version} (this gru-bench writes {SCHEMA_VERSION}): read with the "
                  f"fields added since (time-to-target, held-out curve) missing", SchemaWarning, stacklevel=3)
    first = version
    while data.get("schema_version") in MIGRATIONS:
        data = MIGRATIONS[data["schema_version"]](data)
    return {**data, "migrated_from": data.get("migrated_from") or first}


def record_from_dict(data: Any, where: str = "record") -> RunRecord:
    """A parsed JSON document -> ``RunRecord``, or ``InputError`` naming ``where`` and what is wrong. An older
    schema version is migrated (``migrate``, with a ``SchemaWarning``)."""
    from pydantic import ValidationError

    if not isinstance(data, dict) or "schema_version" not in data or "run_id" not in data:
        raise InputError(f"{where}: not a gru-bench run record (expected a JSON object with schema_version and "
                         f"run_id)")
    data = migrate(data, where)
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise InputError(f"{where}: schema_version={version!r}: this gru-bench reads version {SCHEMA_VERSION} "
                         f"(a record from {'a newer' if isinstance(version, int) and version > SCHEMA_VERSION else 'another'}"
                         f" gru-bench)")
    try:
        return RunRecord.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{where}: not a valid gru-bench run record: {_first_error(e)}") from None


MAX_JSON_DEPTH = 64  # a record nests ~6 levels; anything far deeper is not one (and would exhaust the stack later)


def _json_depth_exceeds(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Is a parsed JSON document nested deeper than ``limit`` (iteratively: no recursion)?"""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return False


def _parse_json(text: str, path: Path) -> Any:
    """``json.loads`` with a one-line ``InputError`` naming ``path`` for invalid or absurdly nested JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: corrupt record (invalid JSON at line {e.lineno} column {e.colno}: "
                         f"{e.msg})") from None
    except RecursionError:
        too_deep = True
    else:
        too_deep = _json_depth_exceeds(data)
    if too_deep:
        raise InputError(f"{path}: not a gru-bench run record (JSON nested deeper than {MAX_JSON_DEPTH} levels)")
    return data


def _warn_duplicate_cases(record: RunRecord, where: str) -> None:
    """A record holds each case once (a resume replaces, never appends): flag one that does not."""
    counts: dict[str, int] = {}
    for c in record.cases:
        counts[c.case_id] = counts.get(c.case_id, 0) + 1
    dup = {cid: n for cid, n in counts.items() if n > 1}
    if dup:
        label = next(c.case.label for c in record.cases if c.case_id in dup)
        warnings.warn(f"{where}: holds {len(dup)} case(s) more than once (e.g. {label!r} "
                      f"{dup[next(iter(dup))]} times): every result is kept; compare pools them as separate runs",
                      stacklevel=3)


def load_record(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run record; ``InputError`` naming the file when it is missing, corrupt (truncated, not JSON), not a
    gru-bench record, of an unknown schema version, or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: corrupt record (not UTF-8 text)") from None
    record = record_from_dict(_parse_json(text, path), where=str(path))
    _warn_duplicate_cases(record, str(path))
    return record


def _is_record_file(path: Path) -> bool:
    """Cheap check for directory scans: a JSON object whose keys include schema_version and run_id."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return True  # let load_record name the problem: a corrupt record must not vanish from a report
    return isinstance(data, dict) and "schema_version" in data and "run_id" in data


def record_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories searched recursively for ``*.json`` (other JSON documents skipped with a
    warning). ``InputError`` for a path that does not exist or a directory with no record."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = []
            for f in sorted(p.rglob("*.json")):
                if _is_record_file(f):
                    found.append(f)
                else:
                    warnings.warn(f"{f}: skipped, not a gru-bench run record", stacklevel=2)
            if not found:
                raise InputError(f"{p}: no run records (*.json) found in this directory")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory: expected run records (.json) or a folder of them")
    out: list[Path] = []
    for f in files:  # the same file named twice counts once
        if f.resolve() not in {o.resolve() for o in out}:
            out.append(f)
    return out


# the fixed columns of load_results, in order; memory, provenance and thread columns follow, sorted
RUN_COLUMNS = ("run_id", "suite_name", "run_label", "created", "machine_id", "hostname", "cpu_model", "commit",
               "dirty", "branch", "calibration_gflops", "record")
CASE_COLUMNS = tuple(Case.model_fields) + ("case_id", "label")
RESULT_COLUMNS = ("status", "reason", "implementation", "params", "params_backend", "flops_forward",
                  "flops_train_step", "node", "started_at", "wall_s", "warnings")
TIMING_FIELDS = ("median", "iqr", "min", "mean", "ci_low", "ci_high", "gflops", "pct_peak", "n", "samples")
ACCURACY_SCALARS = ("metric", "final_metric", "final_loss", "baseline_loss", "baseline_metric", "solved",
                    "steps_to_solve", "seconds_to_solve", "target_loss", "steps_to_target",
                    "seconds_to_target", "stopped_at_target", "best_loss", "best_metric", "best_step")
ACCURACY_COLUMNS = ACCURACY_SCALARS + ("curve_step", "curve_loss", "curve_seconds", "heldout_step", "heldout_loss",
                                       "heldout_seconds", "heldout_metric")
LOAD_COLUMNS = ("load_busy", "load_warning", "load_before_1m", "load_after_1m", "cpu_percent_before",
                "cpu_percent_after")
FIXED_COLUMNS = (RUN_COLUMNS + CASE_COLUMNS + RESULT_COLUMNS
                 + tuple(f"{t}_{f}" for t in ("train_time", "forward_time") for f in TIMING_FIELDS)
                 + ACCURACY_COLUMNS + LOAD_COLUMNS)


def _timing_columns(prefix: str, t: TimingStats | None) -> dict[str, Any]:
    if t is None:
        return {f"{prefix}_{f}": None for f in TIMING_FIELDS}
    d = {f"{prefix}_{f}": getattr(t, f) for f in TIMING_FIELDS if f not in ("n", "samples")}
    d[f"{prefix}_n"] = len(t.samples)
    d[f"{prefix}_samples"] = list(t.samples)
    return d


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def case_row(record: RunRecord, result: CaseResult, record_file: str | None = None) -> dict[str, Any]:
    """One case of one run as a flat dict (the row ``load_results`` builds)."""
    row: dict[str, Any] = {
        "run_id": record.run_id, "suite_name": record.suite_name, "run_label": record.label,
        "created": record.created, "machine_id": record.machine_id or machine_id(record.machine),
        "hostname": record.machine.get("hostname"), "cpu_model": (record.machine.get("cpu") or {}).get("model"),
        "commit": record.git.commit, "dirty": record.git.dirty, "branch": record.git.branch,
        "calibration_gflops": record.calibration.gemm_gflops if record.calibration else None,
        "record": record_file,
    }
    case = result.case.model_dump()
    case["options"] = json.dumps(case["options"], sort_keys=True)  # hashable: rows group by it
    row.update(case)
    row["case_id"] = result.case_id
    row["label"] = result.case.label
    for k in RESULT_COLUMNS:
        row[k] = getattr(result, k)
    row["warnings"] = "; ".join(result.warnings) if result.warnings else None
    row.update(_timing_columns("train_time", result.train_time))
    row.update(_timing_columns("forward_time", result.forward_time))
    acc = result.accuracy
    for k in ACCURACY_COLUMNS:
        row[k] = None
    if acc is not None:
        for k in ACCURACY_SCALARS:
            row[k] = getattr(acc, k)
        row["curve_step"], row["curve_loss"], row["curve_seconds"] = acc.curve.step, acc.curve.loss, acc.curve.seconds
        if acc.heldout is not None:
            row["heldout_step"], row["heldout_loss"] = acc.heldout.step, acc.heldout.loss
            row["heldout_seconds"], row["heldout_metric"] = acc.heldout.seconds, acc.heldout.metric
    load = result.load
    row.update({"load_busy": load.busy if load else None, "load_warning": load.warning if load else None,
                "load_before_1m": load.before[0] if load and load.before else None,
                "load_after_1m": load.after[0] if load and load.after else None,
                "cpu_percent_before": load.cpu_percent_before if load else None,
                "cpu_percent_after": load.cpu_percent_after if load else None})
    for fig in result.memory:
        row[f"mem_{fig.name}"] = fig.bytes
        row[f"mem_{fig.name}_method"] = fig.method
    for k, v in result.provenance.items():
        if k != "implementation" and _scalar(v):
            row[f"prov_{k}"] = v
    for k, v in result.threads.items():
        if _scalar(v):
            row[f"threads_{k}"] = v
    return row


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> "Any":
    """Run records (files, or directories searched recursively for ``*.json``) -> a pandas DataFrame, one row per
    case: run columns, the case's fields, status, counts, timing statistics (``train_time_median`` ...),
    accuracy, load, then ``mem_<name>`` (bytes), ``prov_<key>`` and ``threads_<key>`` columns.
    ``InputError`` naming the file for a corrupt record or an unknown schema version."""
    import pandas as pd

    rows = []
    for f in record_files(paths):
        record = load_record(f)
        rows.extend(case_row(record, r, str(f)) for r in record.cases)
    extra = sorted({k for r in rows for k in r} - set(FIXED_COLUMNS))
    return pd.DataFrame(rows, columns=list(FIXED_COLUMNS) + extra)
