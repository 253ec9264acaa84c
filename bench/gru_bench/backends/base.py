"""The backend protocol: the only interface the runner, the worker and the conformance checks call.

The runner holds NumPy arrays. ``x`` is ``(B, T, I)`` in the model's dtype; ``y`` is ``(B, O)`` / ``(B, T, O)`` floats
for ``loss="mse"`` or int64 class indices ``(B,)`` / ``(B, T)`` for ``loss="xent"`` (see ``spec.py``).
Frameworks are imported inside their own backend module only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

from ..spec import ModelSpec, Weights

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer settings; the formulas are in ``spec.py`` (PyTorch's SGD and Adam, global-norm clipping)."""

    optimizer: str = "adam"  # "sgd" | "adam"
    lr: float = 1e-3
    clip: float | None = 1.0  # max global gradient norm; None = no clipping
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}: expected a positive number")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip={self.clip!r}: expected a positive number or None")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MemoryProbe:
    """Device memory counters of one device. ``peak()`` returns bytes by name, e.g. ``{"allocated": ..., "reserved": ...}``,
    or ``{}`` when the device has no counters (CPU: the runner measures host memory itself)."""

    method: str  # how it is measured, e.g. "torch.cuda.max_memory_allocated"; "none" on CPU
    reset: Any = field(default=lambda: None)  # () -> None: zero the peak counters
    peak: Any = field(default=lambda: {})  # () -> dict[str, int]


@runtime_checkable
class Backend(Protocol):
    """What every backend provides. All methods are required unless marked optional.

    * ``available``: ``None`` if it can run on ``device`` here, else the reason (shown as a visible skip).
    * ``build``: a model holding exactly ``weights`` (canonical layout), ready to train with ``train``.
    * ``train_step``: forward + backward + clipping + optimizer step on one batch; returns the loss before the step.
    * ``forward``: the head's output for ``x``: ``(B, O)`` or ``(B, T, O)``, as NumPy.
    * ``gradients``: d(loss)/d(weights) in canonical layout, without changing the model.
    * ``weights``: the model's current weights in canonical layout, as NumPy.
    * ``sync``: wait for all queued work on ``device`` (a no-op on synchronous devices).
    * ``memory``: the device's peak-memory probe.
    * ``provenance``: which implementation ran and the settings that decide speed; must hold ``"implementation"``.
    * ``set_threads``: fix the framework's intra-op threads to ``n`` (``None``: leave) and return the settings in force.
    * ``prepare`` (optional): put ``x``/``y`` where the model lives once, so timed steps move no data.
    * ``set_denormals`` (optional): put ``Case.denormals`` ("flush" | "keep") in force in this process and return
      ``{"method", "applied"}``; raise ``_denormals.KeepUnsupported`` when the framework cannot keep them.
    * ``subnormal_census`` (optional): ``{name: subnormal fraction}`` of one backward pass on ``x``/``y``, model
      unchanged (without it the worker counts the parameter gradients of ``gradients``).
    """

    name: ClassVar[str]

    def available(self, device: str) -> str | None: ...

    def build(self, spec: ModelSpec, weights: Weights, device: str = "cpu", dtype: str = "float32",
              train: TrainConfig = TrainConfig(), options: Mapping[str, Any] | None = None) -> Any: ...

    def train_step(self, model: Any, x: Any, y: Any) -> float: ...

    def forward(self, model: Any, x: Any) -> np.ndarray: ...

    def gradients(self, model: Any, x: Any, y: Any) -> Weights: ...

    def weights(self, model: Any) -> Weights: ...

    def sync(self, device: str) -> None: ...

    def memory(self, device: str) -> MemoryProbe: ...

    def provenance(self, model: Any) -> dict[str, Any]: ...

    def set_threads(self, n: int | None) -> dict[str, int]: ...


def prepare(backend: Backend, model: Any, x: np.ndarray, y: np.ndarray | None = None) -> tuple[Any, Any]:
    """``backend.prepare`` when the backend has it, else the arrays unchanged."""
    fn = getattr(backend, "prepare", None)
    return fn(model, x, y) if fn is not None else (x, y)
