"""Backend registry. Modules are imported on first use, so ``--backend numpy`` never imports torch or TensorFlow."""
from __future__ import annotations

import importlib

from .base import Backend, MemoryProbe, TrainConfig, prepare

# name -> (module, class, pip extra that provides the framework)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "numpy": ("gru_bench.backends.numpy_backend", "NumpyBackend", None),
    "torch": ("gru_bench.backends.torch_backend", "TorchBackend", "torch"),
    "tf": ("gru_bench.backends.tf_backend", "TFBackend", "tensorflow-cpu"),
}
BACKEND_NAMES = tuple(_REGISTRY)


class BackendUnavailable(RuntimeError):
    """The backend cannot be imported here (its framework is missing); the message says how to install it."""


def get_backend(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"backend={name!r}: expected one of {', '.join(BACKEND_NAMES)}")
    module, cls, extra = _REGISTRY[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # the framework itself is missing
        hint = f" (pip install 'gru-bench[{extra}]')" if extra else ""
        raise BackendUnavailable(f"backend {name!r} cannot be imported: {e}{hint}") from e
    return getattr(mod, cls)()


def unavailable_reason(name: str, device: str) -> str | None:
    """None when ``name`` can run on ``device`` here, else the reason in one line."""
    try:
        return get_backend(name).available(device)
    except BackendUnavailable as e:
        return str(e)


__all__ = ["Backend", "BackendUnavailable", "BACKEND_NAMES", "MemoryProbe", "TrainConfig", "get_backend",
           "prepare", "unavailable_reason"]
