"""What the PyTorch backend declares, readable without importing torch: its capabilities, its options (the
suite checks them when it loads) and how the installed torch was built. ``torch_backend.TorchBackend`` subclasses
``TorchDeclared``; the options are described in ``torch_backend``'s docstring."""
from __future__ import annotations

import re
from typing import Any, ClassVar

from ..spec import DTYPES
from ._installed import module_file_text
from .base import Backend, Capabilities, Option

LOOP_IMPLS = ("plain", "scripted", "compiled")  # the reset_before step loops (``_torch_cells``)
AUTOCAST_NAMES = ("bfloat16", "float16")
OPTIMIZER_IMPLS = ("auto", "for-loop", "foreach", "fused")
FLAG_OPTIONS = ("cudnn_benchmark", "tf32", "deterministic", "cudnn", "onednn")
_FLAG_HELP = {"cudnn_benchmark": "torch.backends.cudnn.benchmark", "tf32": "TF32 for cuBLAS and cuDNN on CUDA",
              "deterministic": "torch.backends.cudnn.deterministic", "cudnn": "cuDNN on/off",
              "onednn": "oneDNN (mkldnn) on/off"}
OPTIONS: tuple[Option, ...] = (
    Option("loop", ("auto", *LOOP_IMPLS), "auto", "the reset_before step loop"),
    Option("compile", ("auto", True, False), "auto", "True = loop 'compiled'; False forbids it"),
    Option("compile_mode", ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"), "default",
           "torch.compile's mode"),
    Option("autocast", (None, *AUTOCAST_NAMES), None, "torch.autocast around forward + loss (CUDA)"),
    Option("optimizer_impl", OPTIMIZER_IMPLS, "auto", "fused on CUDA, for-loop on the CPU when auto"),
    *(Option(k, (None, True, False), False if k == "tf32" else None, _FLAG_HELP[k]) for k in FLAG_OPTIONS),
)


def build_info() -> dict[str, Any]:
    """CUDA/HIP versions and the git commit the installed torch was built with (its ``version.py``, not imported)."""
    builds: dict[str, Any] = {}
    text = module_file_text("torch", "version.py")
    if text:
        for key in ("cuda", "hip", "git_version"):
            m = re.search(rf"^{key}\s*(?::\s*[^=]+)?=\s*['\"]?([^'\"\n]+)['\"]?", text, re.M)
            if m and m.group(1) != "None":
                builds[f"torch_{key}"] = m.group(1)
    return builds


class TorchDeclared(Backend):
    """The PyTorch backend's declarations (abstract: the methods are ``torch_backend.TorchBackend``'s)."""

    name: ClassVar[str] = "torch"
    capabilities: ClassVar[Capabilities] = Capabilities(devices=("cpu", "cuda"), dtypes=DTYPES, device_memory=True)
    options: ClassVar[tuple[Option, ...]] = OPTIONS

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        return build_info()
