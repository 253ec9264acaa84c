"""torch's process-wide state, read and set for the torch backend: whether a CUDA device is usable, which RNN kernel
ATen dispatches to (observed from the autograd graph, not assumed), the switches the options set, and the versions
and settings recorded in each case's provenance."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..spec import ModelSpec


# ------------------------------------------------------------------------------------------------- devices
def cuda_reason(index: int | None) -> str | None:
    """None when CUDA device ``index`` (None: the current one) is usable, else why not."""
    if torch.version.cuda is None and torch.version.hip is None:
        return f"CUDA is not available: torch {torch.__version__} was built without CUDA"
    if not torch.cuda.is_available():
        return f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees none"
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        return f"cuda:{index} does not exist: {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})"
    return None


# --------------------------------------------------------------------------------------- kernel evidence
# A fused RNN kernel leaves its own node in the autograd graph (``CudnnRnnBackward0`` for ``aten._cudnn_rnn``,
# ``MkldnnRnnLayerBackward0`` for ``aten.mkldnn_rnn_layer``, ...); ATen's native cell loop leaves GEMM and gate nodes.
_KERNELS = (("CudnnRnn", "cuDNN"), ("MiopenRnn", "MIOpen"), ("MkldnnRnn", "oneDNN/mkldnn"),
            ("ThnnFused", "native fused CUDA cell"))
_PROBED: dict[tuple, tuple[str, tuple[str, ...]]] = {}


def _kernel_name(nodes: set[str]) -> str:
    for marker, name in _KERNELS:
        if any(marker in node for node in nodes):
            return name
    return "native ATen cell loop"


def _autograd_nodes(out: torch.Tensor) -> set[str]:
    """The names of every node of ``out``'s autograd graph."""
    names: set[str] = set()
    seen: set[Any] = set()
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(fn.name())
        stack.extend(f for f, _ in fn.next_functions)
    return names


def probe_kernel(rnn: nn.Module, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
                  autocast_dtype: torch.dtype | None, autocast: Callable[[], Any]) -> tuple[str, list[str]]:
    """Run ``rnn`` forward on a (2, 2, I) batch with grad enabled and read which kernel built the autograd graph.

    ATen picks the RNN kernel from the module type, device, dtype, autocast and the cuDNN/oneDNN switches (not from
    sizes), so the answer is kept per process for that key. Returns the kernel's name and the evidence: the fused
    kernel's autograd node, or all node names when there is none."""
    key = (type(rnn).__name__, str(device), dtype, autocast_dtype, spec.num_layers > 1,
           bool(torch.backends.cudnn.enabled), bool(torch.backends.mkldnn.enabled))
    if key not in _PROBED:
        x = torch.zeros(2, 2, spec.input_size, dtype=dtype, device=device)  # (B, T, I)
        with torch.enable_grad(), autocast():
            nodes = _autograd_nodes(rnn(x)[0])
        fused = sorted(n for n in nodes if any(marker in n for marker, _ in _KERNELS))
        _PROBED[key] = _kernel_name(nodes), tuple(fused or sorted(nodes))
    kernel, evidence = _PROBED[key]
    return kernel, list(evidence)


def apply_flags(opts: Mapping[str, Any], device: torch.device) -> None:
    """Set the process-wide switches the options name (``None``: leave torch's setting)."""
    if opts["cudnn_benchmark"] is not None:
        torch.backends.cudnn.benchmark = opts["cudnn_benchmark"]
    if opts["deterministic"] is not None:
        torch.backends.cudnn.deterministic = opts["deterministic"]
    if opts["cudnn"] is not None:
        torch.backends.cudnn.enabled = opts["cudnn"]
    if opts["onednn"] is not None:
        torch.backends.mkldnn.enabled = opts["onednn"]
    if opts["tf32"] is not None and device.type == "cuda":  # the API of torch 2.1+ (newer: also fp32_precision)
        torch.backends.cuda.matmul.allow_tf32 = opts["tf32"]
        torch.backends.cudnn.allow_tf32 = opts["tf32"]


def _read(fn: Callable[[], Any]) -> Any:
    """A torch setting, or the error reading it raised (newer torch refuses mixed TF32 APIs)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        return f"unreadable: {type(e).__name__}: {e}"


def settings(device: torch.device) -> dict[str, Any]:
    """The versions and switches that decide speed and numerics, as in force now."""
    s: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "onednn_available": torch.backends.mkldnn.is_available(),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        s.update({
            "cuda": torch.version.cuda, "hip": torch.version.hip,
            "cudnn": torch.backends.cudnn.version(), "cudnn_enabled": bool(torch.backends.cudnn.enabled),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "tf32_matmul": _read(lambda: torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": _read(lambda: torch.backends.cudnn.allow_tf32),
            "fp32_precision_matmul": _read(lambda: torch.backends.cuda.matmul.fp32_precision),
            "fp32_precision_cudnn_rnn": _read(lambda: torch.backends.cudnn.rnn.fp32_precision),
            "gpu": torch.cuda.get_device_name(idx),
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_memory_bytes": int(props.total_memory),
        })
    return s
