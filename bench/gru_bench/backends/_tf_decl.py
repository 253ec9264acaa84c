"""What the TensorFlow backend declares, readable without importing TensorFlow: its capabilities, its options (the
suite checks them when it loads) and how the installed TensorFlow was built. ``tf_backend.TFBackend`` subclasses
``TFDeclared``; the options are described in ``tf_backend``'s docstring."""
from __future__ import annotations

import re
from typing import Any, ClassVar

from ..spec import DTYPES
from ._installed import module_file_text
from .base import Backend, Capabilities, Option

OPTIONS: tuple[Option, ...] = (
    Option("jit_compile", (True, False, "auto"), "auto", "XLA-compile the step and the forward pass"),
    Option("use_cudnn", (True, False, "auto"), "auto", "as in Keras; True where cuDNN cannot run is an error"),
    Option("tf32", (True, False), False, "TensorFloat-32 matrix multiplies on NVIDIA GPUs"),
)


def build_info() -> dict[str, Any]:
    """CUDA/cuDNN versions the installed TensorFlow was built with (its ``build_info.py``, not imported)."""
    builds: dict[str, Any] = {}
    text = module_file_text("tensorflow", "python/platform/build_info.py")
    if text:
        for key in ("cuda_version", "cudnn_version", "is_cuda_build"):
            m = re.search(rf"['\"]{key}['\"]\s*[,:]\s*['\"]?([^'\",)}}\n]+)['\"]?", text)
            if m:
                builds[f"tensorflow_{key}"] = m.group(1)
    return builds


class TFDeclared(Backend):
    """The TensorFlow backend's declarations (abstract: the methods are ``tf_backend.TFBackend``'s)."""

    name: ClassVar[str] = "tf"
    # TensorFlow flushes denormals on its CPU threads and has no switch to keep them (``_denormals.tf_policy``).
    # Its working-set windows' host peaks vary by up to ~2.8 MiB run to run (5 windows each: 2.3 MiB at H=24, T=60,
    # B=32; 2.8 MiB at H=128, T=50, B=32; numpy 0.04, torch 0.4 MiB at H=24): a smaller working set is noise
    capabilities: ClassVar[Capabilities] = Capabilities(devices=("cpu", "cuda"), dtypes=DTYPES, denormals=("flush",),
                                                        device_memory=True, host_memory_noise=3 << 20)
    options: ClassVar[tuple[Option, ...]] = OPTIONS

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        return build_info()
