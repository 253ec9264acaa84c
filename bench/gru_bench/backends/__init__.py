"""Backend registry. Modules are imported on first use, so ``--backend numpy`` never imports torch or TensorFlow.

Third-party backends plug in without editing gru-bench: set ``GRU_BENCH_BACKENDS="name=module:Class,..."`` (the
module must be importable, e.g. on ``PYTHONPATH``) and ``name`` is benchmarked like a built-in backend, in every
worker process of the run. The class must follow the protocol of ``base.py`` and pass ``gru_bench.testing``.
"""
from __future__ import annotations

import importlib
import os
import re

from ..errors import InputError
from .base import Backend, MemoryProbe, TrainConfig, prepare

# name -> (module, class, pip extra that provides the framework)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "numpy": ("gru_bench.backends.numpy_backend", "NumpyBackend", None),
    "torch": ("gru_bench.backends.torch_backend", "TorchBackend", "torch"),
    "tf": ("gru_bench.backends.tf_backend", "TFBackend", "tensorflow-cpu"),
}
BACKEND_NAMES = tuple(_REGISTRY)  # the built-in backends; ``backend_names()`` adds the plugins
PLUGIN_ENV = "GRU_BENCH_BACKENDS"
_PLUGIN_ENTRY = re.compile(r"^([A-Za-z_][\w-]*)=([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


class BackendUnavailable(RuntimeError):
    """The backend cannot be imported here (its framework is missing); the message says how to install it."""


def plugins() -> dict[str, tuple[str, str, str | None]]:
    """The backends added through ``GRU_BENCH_BACKENDS`` (read at each call, so workers inherit it)."""
    raw = os.environ.get(PLUGIN_ENV, "").strip()
    found: dict[str, tuple[str, str, str | None]] = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        m = _PLUGIN_ENTRY.match(entry)
        if m is None:
            raise InputError(f"{PLUGIN_ENV} entry {entry!r}: expected name=module:Class")
        name, module, cls = m.groups()
        if name in _REGISTRY:
            raise InputError(f"{PLUGIN_ENV} entry {entry!r}: name {name!r} is a built-in backend; pick another name")
        found[name] = (module, cls, None)
    return found


def _registry() -> dict[str, tuple[str, str, str | None]]:
    return {**_REGISTRY, **plugins()}


def backend_names() -> tuple[str, ...]:
    """Built-in backends, then the plugins of ``GRU_BENCH_BACKENDS``."""
    return tuple(_registry())


def get_backend(name: str) -> Backend:
    registry = _registry()
    if name not in registry:
        raise ValueError(f"backend={name!r}: expected one of {', '.join(registry)}")
    module, cls, extra = registry[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # the framework itself (or the plugin module) is missing
        hint = f" (pip install 'gru-bench[{extra}]')" if extra else ""
        raise BackendUnavailable(f"backend {name!r} cannot be imported: {e}{hint}") from e
    klass = getattr(mod, cls, None)
    if klass is None:
        raise BackendUnavailable(f"backend {name!r}: module {module!r} has no class {cls!r}")
    return klass()


def unavailable_reason(name: str, device: str) -> str | None:
    """None when ``name`` can run on ``device`` here, else the reason in one line."""
    try:
        return get_backend(name).available(device)
    except BackendUnavailable as e:
        return str(e)


__all__ = ["Backend", "BackendUnavailable", "BACKEND_NAMES", "MemoryProbe", "PLUGIN_ENV", "TrainConfig",
           "backend_names", "get_backend", "plugins", "prepare", "unavailable_reason"]
