"""The PyTorch backend: CPU and CUDA (``cuda``, ``cuda:N``), float32/float64, bfloat16/float16 autocast on CUDA.

What runs (the equations are ``spec.py``'s):

* GRU ``reset_after`` and LSTM: ``torch.nn.GRU`` / ``torch.nn.LSTM`` (batch-first, ``num_layers`` stacked). Which
  kernel PyTorch dispatches to is *observed*, not assumed: at build, one tiny forward runs with grad enabled and
  the nodes of its autograd graph are the evidence kept in the provenance (``CudnnRnnBackward0`` -> cuDNN,
  ``MkldnnRnnLayerBackward0`` -> oneDNN, GEMM and gate nodes -> ATen's native cell loop). On the CPU wheel of
  torch 2.13 (checked against ``torch.profiler``'s op names in the tests): nn.LSTM in float32 runs oneDNN
  (``aten::mkldnn_rnn_layer``); nn.LSTM in float64 and nn.GRU in any dtype run the native cell loop (ATen's oneDNN
  RNN path serves LSTM only).
* GRU ``reset_before``: no fused PyTorch kernel computes it, so it runs as a step loop (``_torch_cells``), in one of
  ``"plain"`` (eager autograd), ``"scripted"`` (TorchScript) or ``"compiled"`` (``torch.compile``, fullgraph, so a
  graph break is an error and never a silent fallback). Never ``nn.GRU``: that would be the other function.
* Head ``nn.Linear``; loss ``nn.MSELoss`` / ``nn.CrossEntropyLoss`` (mean); ``torch.nn.utils.clip_grad_norm_``;
  ``torch.optim.SGD`` / ``torch.optim.Adam`` (their formulas are ``spec.py``'s), in the for-loop, foreach or fused
  implementation (``optimizer_impl``; recorded).

Options (``build(..., options=)``, declared in ``_torch_decl`` and checked when a suite loads; unknown keys and
values are a ``ValueError``):

* ``loop``: ``"auto"`` | ``"plain"`` | ``"scripted"`` | ``"compiled"``: the reset_before loop. ``auto`` is ``"plain"``.
  Measured on a 2-core CPU, one training step at B=64, T=100, H=128, float32, 2 threads
  (``python bench/perf/torch_bench.py --compile``): eager 84 ms, scripted 117 ms, compiled 73 ms (nn.GRU
  72 ms). The compiled loop is the fastest per step, but its cold compile of the unrolled T=100 loop took 3 to 12
  minutes there (17 s from a warm Inductor cache): it pays only after thousands of steps, and a case's time limit
  may not even cover it, so it is never the automatic choice. On CUDA the ranking is unmeasured by this project;
  ``plain`` is the robust default there too (pass ``"scripted"``/``"compiled"`` to measure). Ignored (recorded as
  n/a) for the torch.nn variants.
* ``compile``: ``"auto"`` (default: ``loop`` decides) | ``True`` (= ``loop="compiled"``) | ``False`` (forbids it).
* ``compile_mode``: ``torch.compile``'s ``mode`` (``"default"``, ``"reduce-overhead"`` = CUDA graphs,
  ``"max-autotune"``).
* ``autocast``: ``None`` | ``"bfloat16"`` | ``"float16"``: ``torch.autocast`` around forward + loss (CUDA, float32
  weights); float16 adds a ``torch.amp.GradScaler`` (unscaled before clipping).
* ``optimizer_impl``: ``"auto"`` (fused on CUDA, for-loop on the CPU) | ``"for-loop"`` | ``"foreach"`` | ``"fused"``.
* ``tf32``: ``False`` (default) | ``True`` | ``None``: TF32 tensor cores for cuBLAS matmuls and cuDNN (RNNs
  included) on CUDA. Off by default because ``dtype="float32"`` promises IEEE float32 numbers (torch's own default
  lets cuDNN use TF32, whose GEMMs read 10 of float32's 23 mantissa bits); ``None`` leaves torch's setting.
* ``cudnn_benchmark``, ``deterministic``, ``cudnn``, ``onednn``: ``None`` (leave torch's setting) or a bool setting
  ``torch.backends.cudnn.benchmark``; ``cudnn.deterministic``; cuDNN on/off; oneDNN (mkldnn) on/off.
  All these switches are process-wide (the runner runs one case per process); the values in force are recorded.

A GPU out-of-memory propagates as ``torch.OutOfMemoryError`` (a subclass of ``RuntimeError``): the worker records
the case as ``oom`` and the sweep goes on. Nothing here catches it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..spec import ModelSpec, Weights
from ._torch_cells import Net, make_rnn
from ._torch_convert import canonical_to_state_dict, state_dict_to_canonical
from ._torch_decl import TorchDeclared
from ._torch_settings import apply_flags, cuda_reason, probe_kernel, settings
from .base import MemoryProbe, TrainConfig, check_threads, check_x_shape, check_y
from .device import Device

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}  # _torch_decl.AUTOCAST_NAMES
AUTO_LOOP = {"cpu": "plain", "cuda": "plain"}  # see ``loop`` above
LOOP_NAMES = {"plain": "eager reset_before loop", "scripted": "scripted reset_before loop",
              "compiled": "compiled reset_before loop"}


# -------------------------------------------------------------------------------------------------- model
@dataclass
class TorchModel:
    """A built model: the module, how it is called, its optimizer and what ran."""

    spec: ModelSpec
    net: Net
    call: Callable[[torch.Tensor], torch.Tensor]  # net, or net under torch.compile
    device: torch.device
    dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    train: TrainConfig
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler for float16 autocast, else None
    loss_fn: nn.Module
    info: dict[str, Any]
    params: list[nn.Parameter] = field(default_factory=list)  # net.parameters(), listed once
    compiled: bool = False
    warm_shapes: set[tuple[int, ...]] = field(default_factory=set)

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def _check_model(model: Any) -> TorchModel:
    if not isinstance(model, TorchModel):
        raise ValueError(f"model is a {type(model).__name__}: expected a model built by TorchBackend.build")
    return model


def _optimizer(params: list[nn.Parameter], train: TrainConfig, impl: str,
               device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    """``torch.optim.SGD`` (no momentum) / ``torch.optim.Adam`` in implementation ``impl``; returns it and the
    implementation actually chosen."""
    if impl == "auto":
        impl = "fused" if device.type == "cuda" else "for-loop"
    flags = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[impl]
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=0.0, **flags), impl
    return torch.optim.Adam(params, lr=train.lr, betas=train.betas, eps=train.eps, **flags), impl


# ------------------------------------------------------------------------------------------------ backend
class TorchBackend(TorchDeclared):
    """The backend contract (``base.py``) in PyTorch; see the module docstring for what runs and the options
    (declared in ``_torch_decl``)."""

    # --------------------------------------------------------------------------------------- placement
    def available(self, device: str) -> str | None:
        try:
            dev = Device.parse(device)
        except ValueError as e:
            return str(e)
        return None if dev.is_cpu else cuda_reason(dev.index)

    def make_model(self, spec: ModelSpec, weights: Weights, device: str, dtype: str, train: TrainConfig,
                   opts: dict[str, Any]) -> TorchModel:
        dev = torch.device(device)
        tdtype = TORCH_DTYPES[dtype]

        autocast_dtype = AUTOCAST_DTYPES.get(opts["autocast"]) if opts["autocast"] else None
        if autocast_dtype is not None:
            if dev.type != "cuda":
                raise ValueError(f"options['autocast']={opts['autocast']!r}: autocast runs on CUDA only "
                                 f"(device={device!r}); expected None")
            if dtype != "float32":
                raise ValueError(f"options['autocast']={opts['autocast']!r}: needs dtype='float32' weights, "
                                 f"got dtype={dtype!r}")
            if autocast_dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                raise ValueError(f"options['autocast']='bfloat16': {torch.cuda.get_device_name(dev)} has no "
                                 f"bfloat16 support; expected None or 'float16'")
        apply_flags(opts, dev)

        loop = self._loop(spec, opts, dev)
        rnn = make_rnn(spec, loop, tdtype, dev)
        net = Net(spec, rnn, tdtype, dev)
        net.load_state_dict(canonical_to_state_dict(spec, weights, dtype=tdtype, device=dev), strict=True)
        if isinstance(rnn, nn.RNNBase):
            rnn.flatten_parameters()  # cuDNN wants one contiguous weight buffer
        params = list(net.parameters())
        optimizer, opt_impl = _optimizer(params, train, opts["optimizer_impl"], dev)
        scaler = torch.amp.GradScaler(dev.type) if autocast_dtype is torch.float16 else None
        loss_fn = nn.MSELoss() if spec.loss == "mse" else nn.CrossEntropyLoss()

        compiled = loop == "compiled"
        call: Callable[[torch.Tensor], torch.Tensor] = net
        if compiled:
            call = torch.compile(net, fullgraph=True, dynamic=False, mode=opts["compile_mode"])

        info: dict[str, Any] = {}
        model = TorchModel(spec, net, call, dev, tdtype, autocast_dtype, train, optimizer, scaler, loss_fn, info,
                           params=params, compiled=compiled)
        if loop is None:
            kernel, evidence = probe_kernel(rnn, spec, dev, tdtype, autocast_dtype, model.autocast)
            implementation = f"torch.nn.{type(rnn).__name__} ({kernel})"
        else:
            kernel, evidence = "step loop", []
            implementation = LOOP_NAMES[loop]
        info.update({
            "implementation": implementation,
            "kernel": kernel,
            "kernel_evidence": evidence,  # autograd nodes of a forward at build: the fused kernel's, else all
            "kernel_evidence_method": "autograd graph of one forward at build" if loop is None else
                                      "n/a (no fused kernel computes reset_before)",
            "loop": loop if loop is not None else "n/a (torch.nn module)",
            "compile": ({"backend": "inductor", "mode": opts["compile_mode"], "fullgraph": True, "dynamic": False,
                         "note": "compiles on the first call of each shape (training and inference graphs)"}
                        if compiled else False),
            "dtype": dtype,
            "autocast": opts["autocast"],
            "grad_scaler": scaler is not None,
            "optimizer": train.optimizer,
            "optimizer_impl": opt_impl,
            "clip": f"torch.nn.utils.clip_grad_norm_(max_norm={train.clip})" if train.clip is not None else None,
            "loss": type(loss_fn).__name__,
            "param_count": sum(p.numel() for p in params),
            **settings(dev),
        })
        return model

    @staticmethod
    def _loop(spec: ModelSpec, opts: Mapping[str, Any], dev: torch.device) -> str | None:
        """The reset_before loop implementation (None for the fused variants)."""
        loop, compile_ = opts["loop"], opts["compile"]
        if compile_ is True and loop not in ("auto", "compiled"):
            raise ValueError(f"options['compile']=True conflicts with options['loop']={loop!r}; "
                             f"expected loop 'auto' or 'compiled'")
        if compile_ is False and loop == "compiled":
            raise ValueError("options['compile']=False conflicts with options['loop']='compiled'")
        if not (spec.cell == "gru" and spec.variant == "reset_before"):
            return None
        if compile_ is True:
            return "compiled"
        return AUTO_LOOP[dev.type] if loop == "auto" else loop

    # ------------------------------------------------------------------------------------------- batches
    def prepare(self, model: TorchModel, x: Any, y: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (and ``y``) as tensors on the model's device, in the dtypes the step uses: timed steps move no data."""
        model = _check_model(model)
        xt = self._x(model, x)
        return xt, (None if y is None else self._y(model, xt, y))

    @staticmethod
    def _x(model: TorchModel, x: Any) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x is a {type(x).__name__}: expected a numpy array or tensor of shape "
                             f"(B, T, {model.spec.input_size})")
        check_x_shape(model.spec, tuple(x.shape))
        return x.to(device=model.device, dtype=model.dtype)  # no copy when already there

    @staticmethod
    def _y(model: TorchModel, x: torch.Tensor, y: Any) -> torch.Tensor:
        host = isinstance(y, np.ndarray)
        if host:
            y = torch.from_numpy(np.ascontiguousarray(y))
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"y is a {type(y).__name__}: expected a numpy array or tensor")
        kind = ("f" if y.is_floating_point() else "c" if y.is_complex() else "b" if y.dtype == torch.bool
                else "u" if y.dtype == torch.uint8 else "i")
        xent = model.spec.loss == "xent"
        # a device tensor is not inspected (that would sync); CUDA asserts on a bad index
        bounds = (int(y.min()), int(y.max())) if xent and host and kind in "iu" and y.numel() else None
        check_y(model.spec, tuple(x.shape), tuple(y.shape), y.dtype, kind, bounds)
        return y.to(device=model.device, dtype=torch.long if xent else model.dtype)

    # --------------------------------------------------------------------------------------------- compute
    @staticmethod
    def _loss(model: TorchModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward + loss under the model's autocast. Cross-entropy over (B·T, O) for the every-step head."""
        with model.autocast():
            yhat = model.call(x)  # (B, O) or (B, T, O)
            if model.spec.loss == "xent":
                return model.loss_fn(yhat.reshape(-1, yhat.shape[-1]), y.reshape(-1))
            return model.loss_fn(yhat, y)

    def _warm_compiled(self, model: TorchModel, x: torch.Tensor) -> None:
        """A compiled model has two graphs per shape (training, inference): compile the inference one on the first
        training step of a shape too, so a later timed ``forward`` does not pay for compiling."""
        key = tuple(x.shape)
        if model.compiled and key not in model.warm_shapes:
            model.warm_shapes.add(key)
            with torch.no_grad(), model.autocast():
                model.call(x)

    def train_step(self, model: TorchModel, x: Any, y: Any) -> float:
        """Forward, loss, backward, clipping, optimizer step; the loss before the step (``.item()`` waits for it)."""
        model = _check_model(model)
        x = self._x(model, x)
        y = self._y(model, x, y)
        self._warm_compiled(model, x)
        opt, scaler, clip = model.optimizer, model.scaler, model.train.clip
        opt.zero_grad(set_to_none=True)
        loss = self._loss(model, x, y)
        if scaler is None:
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.params, clip)
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)  # clip the true gradients
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.params, clip)
            scaler.step(opt)  # skipped when the scaled gradients overflowed
            scaler.update()
        return float(loss.item())

    def forward(self, model: TorchModel, x: Any) -> np.ndarray:
        """The head's output (B, O) or (B, T, O) as NumPy, in the model's dtype."""
        model = _check_model(model)
        x = self._x(model, x)
        with torch.no_grad(), model.autocast():
            yhat = model.call(x)
        return yhat.to(model.dtype).cpu().numpy()

    def gradients(self, model: TorchModel, x: Any, y: Any) -> Weights:
        """d(loss)/d(weights), unclipped, in canonical layout; the model, its ``.grad`` and the optimizer untouched."""
        model = _check_model(model)
        x = self._x(model, x)
        y = self._y(model, x, y)
        names, params = zip(*model.net.named_parameters())
        with torch.enable_grad():
            grads = torch.autograd.grad(self._loss(model, x, y), params)
        return state_dict_to_canonical(model.spec, dict(zip(names, grads)))

    def subnormal_census(self, model: TorchModel, x: Any, y: Any) -> dict[str, float]:
        """Subnormal fractions of one backward pass (model untouched): dL/dx (B, T, I), i.e. each step's gate
        gradients through W_ih, the hidden-state gradient as it decays back through time (nn.GRU/nn.LSTM keep
        dL/dh_t inside the kernel), and the parameter gradients (optional helper, ``_denormals``)."""
        from ._denormals import census

        model = _check_model(model)
        x = self._x(model, x).detach().requires_grad_(True)
        y = self._y(model, x, y)
        with torch.enable_grad():
            grads = torch.autograd.grad(self._loss(model, x, y), [x, *model.params])
        flat = torch.cat([g.reshape(-1) for g in grads[1:]])
        return census([("input_grad", grads[0].detach().cpu().numpy()), ("param_grad", flat.detach().cpu().numpy())])

    def weights(self, model: TorchModel) -> Weights:
        model = _check_model(model)
        return state_dict_to_canonical(model.spec, model.net.state_dict())

    # -------------------------------------------------------------------------------------------- device
    def sync(self, device: str) -> None:
        """Wait for the queued work of a CUDA device; the CPU runs synchronously."""
        if not Device.parse(device).is_cpu:
            torch.cuda.synchronize(torch.device(device))

    def memory(self, device: str) -> MemoryProbe:
        if Device.parse(device).is_cpu:
            return MemoryProbe(method="none")  # host memory: measured by the runner
        dev = torch.device(device)
        return MemoryProbe(
            method="torch.cuda.max_memory_allocated / torch.cuda.max_memory_reserved",
            reset=lambda: torch.cuda.reset_peak_memory_stats(dev),
            peak=lambda: {"allocated": int(torch.cuda.max_memory_allocated(dev)),
                          "reserved": int(torch.cuda.max_memory_reserved(dev))},
        )

    def provenance(self, model: TorchModel) -> dict[str, Any]:
        model = _check_model(model)
        return {**model.info, "threads": self.set_threads(None)}

    def set_denormals(self, policy: str) -> dict[str, Any]:
        """Put ``Case.denormals`` ("flush" | "keep") in force in this process (optional; ``_denormals.py``)."""
        from ._denormals import torch_policy

        return torch_policy(policy)

    def set_threads(self, n: int | None) -> dict[str, int]:
        """``torch.set_num_threads(n)``, and the inter-op pool too while it has not started (it can be sized once)."""
        n = check_threads(n)
        if n is not None:
            torch.set_num_threads(n)
            with contextlib.suppress(RuntimeError):  # "cannot set number of interop threads after parallel work"
                torch.set_num_interop_threads(n)
        return {"torch_intra_op": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads()}
