"""The run record's schema: the pydantic models, ``SCHEMA_VERSION``, and the migrations that lift an older record
to it when it is read (``migrate``; asv's pattern: one ``migrate_vN_to_vN+1`` per version step, applied in turn).

Units: seconds, bytes, FLOPs. Files, folders and loading: ``storage``; the machine and commit manifest: ``machine``.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from .case import Case
from .errors import InputError
from .spec import ModelSpec

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
    # how it was measured, e.g. "psutil RSS sampling", "resource.getrusage ru_maxrss", "analytic B·T·H·(G+S)·bytes"
    method: str
    floor_bytes: int | None = None  # below this the method measures noise, not the work (None: no known floor)
    seconds: float | None = None  # what measuring this figure cost (wall seconds), where it had a cost of its own


# Which measured memory figure stands for a case's peak, in order of preference: the device allocator's own peak
# on CUDA; on the CPU the per-batch working set (memory.py: the same B/2B method on every backend), then (older
# records) tracemalloc for NumPy, the host's high-water mark and sampled RSS. ``CaseResult.peak_memory``.
PEAK_PREFERENCE = ("device_peak_allocated", "working_set", "tracemalloc_peak", "host_vmhwm_delta",
                   "host_peak_rss_delta")


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
    # the model that ran (cell, I, H, O, layers, variant, head, loss), validated as spec.ModelSpec; None in records
    # written before it was stored (the report then rebuilds it from the Case and the task's definition)
    model: ModelSpec | None = None

    def peak_memory(self) -> MemoryFigure | None:
        """The figure that is "the peak memory" of this case: the first of ``PEAK_PREFERENCE`` it has (the device
        allocator's peak on CUDA, the working set on the CPU), None when it has none of them."""
        figs = {m.name: m for m in self.memory}
        return next((figs[name] for name in PEAK_PREFERENCE if name in figs), None)


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


# ============================================================================================ migrations
def _first_error(e: Any) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{loc}: {err['msg']}"


class SchemaWarning(UserWarning):
    """A record of an older schema version was read: the fields added since are missing (None)."""


Migration = Callable[[dict[str, Any]], dict[str, Any]]
# from-version N -> ``migrate_vN_to_vN+1``: a parsed record of version N -> the same record in version N + 1's form
# (``migrate`` sets ``schema_version`` after each step). A schema bump adds one function here, registered with
# ``@migration(N)``; the chain must reach ``SCHEMA_VERSION`` (checked below, at import).
MIGRATIONS: dict[int, Migration] = {}


def migration(from_version: int) -> Callable[[Migration], Migration]:
    """Register ``migrate_v{from_version}_to_v{from_version + 1}``."""
    def register(fn: Migration) -> Migration:
        if fn.__name__ != f"migrate_v{from_version}_to_v{from_version + 1}" or from_version in MIGRATIONS:
            raise TypeError(f"{fn.__name__}: expected migrate_v{from_version}_to_v{from_version + 1}, registered once")
        MIGRATIONS[from_version] = fn
        return fn
    return register


@migration(1)
def migrate_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Version 2 only adds optional fields (Accuracy time-to-target, Case.stop_at_target): their defaults stand for
    # "not measured". steps_to_solve keeps its version-1 value (gated on the training loss too), *_to_target stay None.
    return data


assert all(v in MIGRATIONS for v in range(min(MIGRATIONS, default=SCHEMA_VERSION), SCHEMA_VERSION)), \
    "a schema version without its migration to the next"


def migrate(data: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """An older record (a version in ``MIGRATIONS``) lifted to ``SCHEMA_VERSION`` step by step, with one
    ``SchemaWarning`` naming ``where``; ``migrated_from`` says which version it was. A current record (or one of a
    version no migration starts from) is returned as it is."""
    version = data.get("schema_version")
    if version == SCHEMA_VERSION or isinstance(version, bool) or version not in MIGRATIONS:
        return data
    warnings.warn(f"{where}: schema version {version} (this gru-bench writes {SCHEMA_VERSION}): read with the "
                  f"fields added since (time-to-target, held-out curve) missing", SchemaWarning, stacklevel=3)
    first = version
    while version in MIGRATIONS:
        data = {**MIGRATIONS[version](dict(data)), "schema_version": version + 1}
        version += 1
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
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise InputError(f"{where}: schema_version={version!r}: this gru-bench reads version {SCHEMA_VERSION} "
                         f"(a record from {'a newer' if newer else 'another'} gru-bench)")
    try:
        return RunRecord.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{where}: not a valid gru-bench run record: {_first_error(e)}") from None
