"""The backend contract: the only interface the runner, the worker and the conformance checks call.

A backend subclasses ``Backend``: it implements the abstract methods, declares what it can do (``capabilities``)
and the options it accepts (``options``), and inherits the shared checks (``build`` validates its arguments
once, here, then calls ``make_model``) and the documented defaults of the optional hooks.

The runner holds NumPy arrays. ``x`` is ``(B, T, I)`` in the model's dtype; ``y`` is ``(B, O)`` / ``(B, T, O)`` floats
for ``loss="mse"`` or int64 class indices ``(B,)`` / ``(B, T)`` for ``loss="xent"`` (see ``spec.py``).
Frameworks are imported inside their own backend module only.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from ..spec import DTYPES, OPTIMIZERS, ModelSpec, Weights, check_weights
from . import _denormals
from .device import Device


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer settings; the formulas are in ``spec.py`` (PyTorch's SGD and Adam, global-norm clipping)."""

    optimizer: str = "adam"  # spec.OPTIMIZERS: "sgd" | "adam"
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
    """Device memory counters of one device. ``peak()`` returns bytes by name, e.g. ``{"allocated": ...,
    "reserved": ...}``, or ``{}`` when the device has no counters (CPU: the runner measures host memory itself)."""

    method: str  # how it is measured, e.g. "torch.cuda.max_memory_allocated"; "none" on CPU
    reset: Any = field(default=lambda: None)  # () -> None: zero the peak counters
    peak: Any = field(default=lambda: {})  # () -> dict[str, int]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared on its class (read without building a model)."""

    devices: tuple[str, ...] = ("cpu",)  # device kinds (``Device.kind``) it may run on
    dtypes: tuple[str, ...] = DTYPES  # model dtypes ``build`` accepts
    denormals: tuple[str, ...] = _denormals.POLICIES  # policies ``set_denormals`` can put in force
    device_memory: bool = False  # ``memory`` reports device counters on a non-CPU device
    traced_allocations: bool = False  # it allocates through Python/NumPy, so ``tracemalloc`` sees its memory
    # how much one working-set window's host peak varies run to run (bytes; the allocators' and runtime's own
    # noise): a working set below it is noise, whatever the peak reader's page granularity (memory.RSS_FLOOR)
    host_memory_noise: int = 0


@dataclass(frozen=True)
class Option:
    """One option a backend accepts: its name, the values allowed (``True`` is not ``1``) and the default."""

    name: str
    choices: tuple[Any, ...]
    default: Any
    help: str = ""

    def allows(self, value: Any) -> bool:
        return any(value is c or (type(value) is type(c) and value == c) for c in self.choices)


def check_options(backend: str, declared: tuple[Option, ...], options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` checked against the ``declared`` ones, with the defaults of those not given; ``ValueError``
    naming the key for an unknown key or a value not allowed."""
    given = dict(options or {})
    if not declared:
        if given:
            raise ValueError(f"options={given!r}: the {backend} backend takes no options (expected none)")
        return {}
    by_name = {o.name: o for o in declared}
    out = {o.name: o.default for o in declared}
    for key, value in given.items():
        opt = by_name.get(key)
        if opt is None:
            raise ValueError(f"options[{key!r}]: unknown {backend} option; expected one of {', '.join(by_name)}")
        if not opt.allows(value):
            raise ValueError(f"options[{key!r}]={value!r}: expected one of {', '.join(map(repr, opt.choices))}")
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------ shared checks
def check_x_shape(spec: ModelSpec, shape: tuple[int, ...]) -> None:
    """``x`` must be ``(B, T, I)`` with ``B, T >= 1``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[2] != spec.input_size or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"x has shape {shape}: expected (B, T, {spec.input_size}) with B, T >= 1")


def check_y(spec: ModelSpec, x_shape: tuple[int, ...], y_shape: tuple[int, ...], dtype: object, kind: str,
            bounds: tuple[int, int] | None = None) -> None:
    """``y`` against the head and loss: its shape, its ``dtype`` (shown) of ``kind`` (NumPy's letter: ``f`` float,
    ``i``/``u`` integer, ``b`` bool, ``c`` complex) and, for class indices, their ``(min, max)`` when known."""
    B, T = int(x_shape[0]), int(x_shape[1])
    y_shape = tuple(int(s) for s in y_shape)
    if spec.loss == "mse":
        want = (B, spec.output_size) if spec.head == "last" else (B, T, spec.output_size)
        if y_shape != want:
            raise ValueError(f"y has shape {y_shape}: expected {want} for head={spec.head!r}, loss='mse'")
        if kind != "f":
            raise ValueError(f"y has dtype {dtype}: expected floating targets for loss='mse'")
        return
    want = (B,) if spec.head == "last" else (B, T)
    if y_shape != want:
        raise ValueError(f"y has shape {y_shape}: expected {want} class indices for head={spec.head!r}, loss='xent'")
    if kind not in "iu":
        raise ValueError(f"y has dtype {dtype}: expected integer class indices for loss='xent'")
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= spec.output_size):
        raise ValueError(f"y has class indices in [{bounds[0]}, {bounds[1]}]: expected 0 <= y < {spec.output_size}"
                         " (output_size)")


def check_threads(n: Any) -> int | None:
    """``n`` as an int, or None; ``ValueError`` unless a positive integer (not a bool) or None."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads={n!r}: expected a positive integer or None")
    return int(n)


# ------------------------------------------------------------------------------------------------ backend
class Backend(ABC):
    """What every backend provides.

    Required (abstract):

    * ``make_model``: a model holding exactly ``weights`` (canonical layout), ready to train with ``train``;
      called by ``build`` after the shared checks, with the options checked and completed by their defaults.
    * ``train_step``: forward + backward + clipping + optimizer step on one batch; returns the loss before the step.
    * ``forward``: the head's output for ``x``: ``(B, O)`` or ``(B, T, O)``, as NumPy.
    * ``gradients``: d(loss)/d(weights) in canonical layout, without changing the model.
    * ``weights``: the model's current weights in canonical layout, as NumPy.
    * ``provenance``: which implementation ran and the settings that decide speed; must hold ``"implementation"``.
    * ``set_threads``: fix the framework's intra-op threads to ``n`` (``None``: leave) and return the settings in
      force.

    Optional, with the default behaviour written beside each method below: ``available``, ``sync``, ``memory``,
    ``prepare``, ``set_denormals``, ``subnormal_census``, ``build_info``.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    options: ClassVar[tuple[Option, ...]] = ()

    # ---------------------------------------------------------------------------------------- placement
    def available(self, device: str) -> str | None:
        """``None`` if it can run on ``device`` here, else the reason (shown as a visible skip). Default: the
        device parses and its kind is one of ``capabilities.devices``."""
        try:
            kind = Device.parse(device).kind
        except ValueError as e:
            return str(e)
        if kind not in self.capabilities.devices:
            where = ", ".join(repr(k) for k in self.capabilities.devices)
            return f"the {self.name} backend runs on {where} only, not {device!r}"
        return None

    def build(self, spec: ModelSpec, weights: Weights, device: str = "cpu", dtype: str = "float32",
              train: TrainConfig = TrainConfig(), options: Mapping[str, Any] | None = None) -> Any:
        """The shared checks of every backend's arguments (``ValueError`` naming the argument), then
        ``make_model``. Subclasses override ``make_model``, not this."""
        if not isinstance(spec, ModelSpec):
            raise ValueError(f"spec is a {type(spec).__name__}: expected a gru_bench.spec.ModelSpec")
        reason = self.available(device)
        if reason is not None:
            raise ValueError(reason if reason.startswith(f"device={device!r}") else f"device={device!r}: {reason}")
        if dtype not in self.capabilities.dtypes:
            raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(self.capabilities.dtypes)}")
        if not isinstance(train, TrainConfig):
            raise ValueError(f"train is a {type(train).__name__}: expected a TrainConfig")
        check_weights(spec, weights)
        opts = check_options(self.name, self.options, options)
        return self.make_model(spec, weights, device, dtype, train, opts)

    @classmethod
    def check_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The options checked against ``options`` (the declared ones), completed by their defaults."""
        return check_options(cls.name, cls.options, options)

    @abstractmethod
    def make_model(self, spec: ModelSpec, weights: Weights, device: str, dtype: str, train: TrainConfig,
                   options: dict[str, Any]) -> Any: ...

    # ------------------------------------------------------------------------------------------ compute
    def prepare(self, model: Any, x: np.ndarray, y: np.ndarray | None = None) -> tuple[Any, Any]:
        """Put ``x``/``y`` where the model lives once, so timed steps move no data. Default: unchanged."""
        return x, y

    @abstractmethod
    def train_step(self, model: Any, x: Any, y: Any) -> float: ...

    @abstractmethod
    def forward(self, model: Any, x: Any) -> np.ndarray: ...

    @abstractmethod
    def gradients(self, model: Any, x: Any, y: Any) -> Weights: ...

    @abstractmethod
    def weights(self, model: Any) -> Weights: ...

    def subnormal_census(self, model: Any, x: Any, y: Any) -> dict[str, float]:
        """``{name: subnormal fraction}`` of one backward pass on ``x``/``y``, model unchanged. Default: the
        parameter gradients of ``gradients`` (``param_grad``)."""
        grads = self.gradients(model, x, y)
        return _denormals.census([("param_grad", np.concatenate([np.ravel(np.asarray(g))
                                                                  for g in grads.values()]))])

    # ------------------------------------------------------------------------------------------- device
    def sync(self, device: str) -> None:
        """Wait for all queued work on ``device``. Default: nothing (synchronous devices)."""
        return None

    def memory(self, device: str) -> MemoryProbe:
        """The device's peak-memory probe. Default: none (host memory is measured by the worker)."""
        return MemoryProbe(method="none")

    # ----------------------------------------------------------------------------------------- settings
    @abstractmethod
    def provenance(self, model: Any) -> dict[str, Any]: ...

    @abstractmethod
    def set_threads(self, n: int | None) -> dict[str, int]: ...

    def set_denormals(self, policy: str) -> dict[str, Any]:
        """Put ``Case.denormals`` ("flush" | "keep") in force in this process and return ``{"method", "applied"}``;
        raise ``_denormals.KeepUnsupported`` when it cannot. Default: nothing is changed, recorded as such."""
        return {"method": "none (backend has no set_denormals)", "applied": False}

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        """How the installed framework was built (CUDA, cuDNN, git version: ``{key: value}``), read without
        importing it, for the machine manifest. Default: ``{}``."""
        return {}


__all__ = ["Backend", "Capabilities", "MemoryProbe", "Option", "TrainConfig", "check_options", "check_threads",
           "check_x_shape", "check_y"]
