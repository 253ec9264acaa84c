"""The run record: its schema (below), atomic save, load, and the machine & commit manifest.

One JSON file per run: ``results/<machine-id>/<timestamp>_<suite>.json``. Units: seconds, bytes, FLOPs.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .case import Case

SCHEMA_VERSION = 1
Status = Literal["ok", "skipped", "failed", "diverged", "timeout", "oom"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


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


class MemoryFigure(_Model):
    name: str  # e.g. "host_peak_rss_delta", "tracemalloc_peak", "device_peak_allocated", "activation_estimate"
    bytes: int
    method: str  # how it was measured, e.g. "psutil RSS sampling", "resource.getrusage ru_maxrss", "analytic B·T·H·G·bytes"


class Curve(_Model):
    step: list[int] = Field(default_factory=list)
    loss: list[float] = Field(default_factory=list)  # training loss (mean over the last eval_every steps)
    seconds: list[float] = Field(default_factory=list)  # training wall time since the first step


class Accuracy(_Model):
    metric: str  # the metric people read for the task, e.g. "mse", "accuracy"
    final_metric: float | None = None  # on held-out seeded batches
    final_loss: float | None = None  # held-out loss
    baseline_loss: float  # the trivial baseline's loss
    baseline_metric: float | None = None
    solved: bool = False  # final held-out loss below 10 % of the baseline loss
    steps_to_solve: int | None = None
    seconds_to_solve: float | None = None
    curve: Curve = Field(default_factory=Curve)


class Load(_Model):
    before: list[float] | None = None  # 1/5/15-min load averages
    after: list[float] | None = None
    cpu_percent_before: float | None = None
    cpu_percent_after: float | None = None
    busy: bool = False


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


class Calibration(_Model):
    gemm_gflops: float  # measured peak of this machine (float32 GEMM)
    method: str


class GitInfo(_Model):
    commit: str | None = None
    dirty: bool | None = None
    branch: str | None = None


class RunRecord(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    suite_name: str
    suite: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None  # free text from the user, shown in reports (escaped)
    created: str  # ISO 8601
    finished: str | None = None
    machine: dict[str, Any] = Field(default_factory=dict)  # manifest: cpu, cores, ram, os, python, versions, gpu...
    machines: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per node, for cluster runs
    calibration: Calibration | None = None
    git: GitInfo = Field(default_factory=GitInfo)
    cases: list[CaseResult] = Field(default_factory=list)
