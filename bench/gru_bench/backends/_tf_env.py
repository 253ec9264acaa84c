"""TensorFlow's process-wide settings, read without guessing: oneDNN, threads, device names, log level.

Nothing here imports TensorFlow at module level; ``quiet_import`` is the one place that does, after setting the
C++ log level (only when the user has not set it) so that TF's INFO lines never reach the terminal.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
from typing import Any

from .device import Device

# CPU features for which TensorFlow's Linux x86 wheels turn oneDNN on by default (tensorflow/core/util/port.cc,
# DefaultOneDnnPolicy); TF_ENABLE_ONEDNN_OPTS overrides the default either way.
_ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
_TRUE, _FALSE = ("1", "true"), ("0", "false")


def quiet_import() -> tuple[Any, Any]:
    """``(tensorflow, keras)`` on the TensorFlow backend, with TF's C++ INFO/WARNING lines off unless asked for."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the user's own setting wins
    if "keras" not in sys.modules:  # Keras picks its backend once, at import; this backend needs TensorFlow's
        os.environ["KERAS_BACKEND"] = "tensorflow"
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"], sys.modules["keras"]
    with _startup_noise_filtered():
        import tensorflow as tf
        import keras
    return tf, keras


# Lines TensorFlow's C++ side writes to fd 2 while it starts, before its log level applies (absl's pre-init
# notice, the oneDNN banner, the CPU-feature notice); matched per line, anything else is passed on.
_STARTUP_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+\] |[\d\- :.]+: [IW] \S+\] )?"
               r"oneDNN custom operations are on\..*"),
    re.compile(r"^To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`\.?$"),
    re.compile(r"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+\] |[\d\- :.]+: [IW] \S+\] )?"
               r"This TensorFlow binary is optimized to use available CPU instructions.*"),
    re.compile(r"^To enable the following instructions: .* in other operations, rebuild TensorFlow with the "
               r"appropriate compiler flags\.$"),
)


def is_startup_noise(line: str) -> bool:
    """Whether one stderr line is TensorFlow's known start-up noise (nothing the user needs)."""
    return any(p.match(line.rstrip("\r\n")) for p in _STARTUP_NOISE)


def drop_startup_noise(text: str) -> str:
    """``text`` without the lines that are TensorFlow's start-up noise, every other line kept in order."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_startup_noise(line))


class _startup_noise_filtered:
    """Route fd 2 to a temp file for the block (C++ writes bypass ``sys.stderr``), then pass on what is not noise.

    Only when the user has not asked for TF's logs (TF_CPP_MIN_LOG_LEVEL < 2 leaves stderr alone)."""

    def __enter__(self) -> "_startup_noise_filtered":
        self._saved = None
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() in ("0", "1"):
            return self
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        try:
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except OSError:  # no fd 2 (or no temp dir): import as is
            self._saved = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        kept = drop_startup_noise(self._tmp.read().decode("utf-8", "replace"))
        self._tmp.close()
        if kept:
            os.write(2, kept.encode("utf-8"))


def tf_device(device: str) -> str:
    """``"cpu"`` -> ``"/CPU:0"``, ``"cuda"``/``"cuda:N"`` -> ``"/GPU:N"``; anything else is a ``ValueError``."""
    dev = Device.parse(device)
    return "/CPU:0" if dev.is_cpu else f"/GPU:{dev.index or 0}"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def onednn_state() -> tuple[bool, str]:
    """Whether TensorFlow's oneDNN custom ops are on in this process, and why (env override or build default)."""
    raw = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if raw is not None and raw.strip().lower() in _TRUE + _FALSE:
        on = raw.strip().lower() in _TRUE
        return on, f"TF_ENABLE_ONEDNN_OPTS={raw.strip()}"
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False, f"default for {sys.platform}/{platform.machine()} (not checked: assumed off)"
    found = sorted(_cpu_flags() & set(_ONEDNN_DEFAULT_FLAGS))
    if found:
        return True, f"default on this CPU ({', '.join(found)})"
    return False, "default on this CPU (off without AVX512_VNNI/AVX512_BF16/AVX_VNNI/AMX)"


def schedulable_cpus() -> int:
    """The CPUs this process may run on (TensorFlow's default thread-pool size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_in_force(tf: Any) -> dict[str, int]:
    """The intra-/inter-op pool sizes TensorFlow uses (its ``0`` means "one per schedulable CPU")."""
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {"intra_op": intra or schedulable_cpus(), "inter_op": inter or schedulable_cpus()}
