"""Backend registry. Modules are imported on first use, so ``--backend numpy`` never imports torch or TensorFlow.

Third-party backends plug in without editing gru-bench: set ``GRU_BENCH_BACKENDS="name=module:Class,..."`` (the
module must be importable, e.g. on ``PYTHONPATH``) and ``name`` is benchmarked like a built-in backend, in every
worker process of the run. The class must subclass ``base.Backend`` and pass ``gru_bench.testing``.

``declared(name)`` is a backend's class as far as it can be read without starting its framework (the built-in
framework backends declare their capabilities, options and build info in ``_torch_decl``/``_tf_decl``): what the
suite checks options against and the machine manifest reads build info from.
"""
from __future__ import annotations

import importlib
import os
import re

from typing import Any

from ..errors import InputError
from .base import Backend, Capabilities, MemoryProbe, Option, TrainConfig
from .device import Device

# name -> (module, class, pip extra that provides the framework)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "numpy": ("gru_bench.backends.numpy_backend", "NumpyBackend", None),
    "torch": ("gru_bench.backends.torch_backend", "TorchBackend", "torch"),
    "tf": ("gru_bench.backends.tf_backend", "TFBackend", "tensorflow-cpu"),
}
# built-in backends whose class imports a framework: their declarations, importable without it
_DECLARED: dict[str, tuple[str, str]] = {
    "torch": ("gru_bench.backends._torch_decl", "TorchDeclared"),
    "tf": ("gru_bench.backends._tf_decl", "TFDeclared"),
}
# the top-level module each built-in backend's framework is imported as (what ``cli info`` looks for)
_FRAMEWORK_MODULE = {"numpy": "numpy", "torch": "torch", "tf": "tensorflow"}
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


def _load_class(name: str, module: str, cls: str, extra: str | None) -> type[Backend]:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # the framework itself (or the plugin module) is missing
        hint = f" (pip install 'gru-bench[{extra}]')" if extra else ""
        raise BackendUnavailable(f"backend {name!r} cannot be imported: {e}{hint}") from e
    klass = getattr(mod, cls, None)
    if klass is None:
        raise BackendUnavailable(f"backend {name!r}: module {module!r} has no class {cls!r}")
    if not (isinstance(klass, type) and issubclass(klass, Backend)):
        raise BackendUnavailable(f"backend {name!r}: {module}:{cls} does not subclass gru_bench.backends.Backend")
    return klass


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name`` (imports its framework); ``BackendUnavailable`` when it cannot be imported."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"backend={name!r}: expected one of {', '.join(registry)}")
    module, cls, extra = registry[name]
    return _load_class(name, module, cls, extra)


def declared(name: str) -> type[Backend]:
    """What backend ``name`` declares (``name``, ``capabilities``, ``options``, ``check_options``, ``build_info``),
    read without starting a framework: a built-in framework backend's declaration class, else the class itself."""
    if name in _DECLARED:
        return _load_class(name, *_DECLARED[name], None)
    return backend_class(name)


def get_backend(name: str) -> Backend:
    return backend_class(name)()


def framework_module(name: str) -> str:
    """The module whose presence says backend ``name`` can be imported: its framework for a built-in backend, the
    plugin's own module for a plugin, "" for an unknown name."""
    return _FRAMEWORK_MODULE.get(name) or plugins().get(name, ("", "", None))[0]


def usable_without_a_framework(name: str, device: str) -> bool:
    """Whether ``name`` is known to run on ``device`` without starting a framework: a built-in backend that needs
    none (no pip extra) and declares the device's kind (``cli info`` says "usable" without ``--check``)."""
    if name not in _REGISTRY or _REGISTRY[name][2] is not None:
        return False
    try:
        return Device.parse(device).kind in declared(name).capabilities.devices
    except (ValueError, BackendUnavailable):
        return False


def framework_builds() -> dict[str, Any]:
    """``build_info()`` of every backend that can be read here (CUDA/cuDNN builds of torch and TensorFlow), without
    importing a framework; a plugin that cannot be imported adds nothing."""
    builds: dict[str, Any] = {}
    for name in backend_names():
        try:
            builds.update(declared(name).build_info())
        except (BackendUnavailable, InputError):
            continue
    return builds


def unavailable_reason(name: str, device: str) -> str | None:
    """None when ``name`` can run on ``device`` here, else the reason in one line."""
    try:
        return get_backend(name).available(device)
    except BackendUnavailable as e:
        return str(e)


__all__ = ["Backend", "BackendUnavailable", "BACKEND_NAMES", "Capabilities", "Device", "MemoryProbe", "Option",
           "PLUGIN_ENV", "TrainConfig", "backend_class", "backend_names", "declared", "framework_builds",
           "framework_module", "get_backend", "plugins", "unavailable_reason", "usable_without_a_framework"]
