"""Keras 3 on TensorFlow: ``keras.layers.GRU`` (``reset_after`` True/False) and ``keras.layers.LSTM``, stacked, with a
``Dense`` head, trained by one compiled ``tf.function`` step. CPU and NVIDIA GPU.

The cells are exactly those of ``spec.py``; the weight conversion (and why a folded bias keeps the function) is in
``_tf_convert.py``. What runs is recorded, not assumed: ``provenance`` reads the traced graph and says whether the
cuDNN kernel (``CudnnRNNV3``) or Keras' generic ``while`` loop ran, and why.

Options (``build(..., options=...)``, declared in ``_tf_decl``; unknown keys and values are a ``ValueError``):

* ``jit_compile``: ``True`` | ``False`` | ``"auto"`` (default). XLA-compile the step and the forward pass. ``"auto"``
  turns XLA on for the generic loop: on CPU it was measured to pay (about half the CPU time per train step at
  B=64, T=100, H=128), on GPU it is assumed to (it fuses each step's element-wise ops; no GPU was available to
  measure); off for the cuDNN kernel, which XLA cannot compile.
* ``use_cudnn``: ``"auto"`` (default) | ``True`` | ``False``, as in Keras. ``True`` where cuDNN cannot run is a
  ``ValueError`` instead of Keras' silent fallback.
* ``tf32``: ``False`` (default) | ``True``. On NVIDIA GPUs since Ampere TensorFlow runs float32 matrix multiplies
  (cuBLAS, cuDNN, XLA) in TensorFloat-32, a 10-bit mantissa, unless told not to; ``float32`` here means float32,
  so it is off unless asked for. The switch is process-wide in TensorFlow: each call sets it to its model's choice.

The optimizer is not ``keras.optimizers.Adam`` (Keras adds ε to ``sqrt(v̂)`` with a differently corrected ε):
the step applies PyTorch's SGD/Adam and ``clip_grad_norm_`` formulas of ``spec.py`` itself, in canonical parameter
space: a Keras bias that folds ``b_ih + b_hh`` counts twice in the global norm and moves by both canonical updates.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import ModelSpec, Weights, cast_weights
from . import _tf_convert as convert
from ._tf_decl import TFDeclared
from ._tf_env import onednn_state, quiet_import, tf_device, threads_in_force
from .base import MemoryProbe, TrainConfig, check_threads, check_x_shape, check_y

tf, keras = quiet_import()


class _NoRetracingNotice(logging.Filter):
    """Drops TF's "N out of the last N calls ... triggered tf.function retracing" notice, and only it: each program
    is traced once by design, but TF counts traces per code object, across the programs of different models."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNotice())

_CUDNN_OPS = ("CudnnRNN", "CudnnRNNV2", "CudnnRNNV3")
_LOOP_OPS = ("While", "StatelessWhile")
# Measured with bench/perf/tf_bench.py on a shared 2-core AMD EPYC (tensorflow-cpu 2.21, float32, B=64 T=100 I=1 H=128,
# 2 threads): process CPU per train step with XLA 118/127/139 ms vs 222/275/233 ms without (GRU reset_after /
# reset_before / LSTM), wall medians 1.5-2x lower with XLA. The machine was heavily loaded: absolute ms are noisy.
_CPU_XLA_PAYS = True


@dataclass(frozen=True)
class _Plan:
    """What will run on the device, decided before building: the cuDNN flag handed to Keras, XLA, and why."""

    use_cudnn: bool
    kernel: str  # "cuDNN" | "generic loop" (predicted; provenance checks the traced graph)
    kernel_reason: str
    jit: bool
    jit_reason: str
    tf32: bool = False  # TensorFloat-32 matrix multiplies (GPU only)


def _plan(spec: ModelSpec, on_gpu: bool, use_cudnn: Any, jit: Any) -> _Plan:
    """The cuDNN/XLA decision, following Keras' own rule (``keras.src.backend.tensorflow.rnn.cudnn_ok``): cuDNN needs
    a GPU, tanh/sigmoid, no recurrent dropout, ``unroll=False``, a bias, ``reset_after=True`` (GRU) and no mask. This
    backend always uses tanh/sigmoid, biases, no dropout, no mask and ``unroll=False``."""
    blocker = None
    if not on_gpu:
        blocker = "CPU has no cuDNN kernel"
    elif spec.cell == "gru" and spec.variant == "reset_before":
        blocker = "reset_after=False has no cuDNN kernel"
    elif use_cudnn is False:
        blocker = "use_cudnn=False"
    elif jit is True:
        blocker = "jit_compile=True: XLA cannot compile the cuDNN kernel"
    if blocker is not None and use_cudnn is True:
        raise ValueError(f"options['use_cudnn']=True: cuDNN cannot run here ({blocker})")
    if blocker is None:  # (jit_compile=True is a blocker above)
        reason = "GPU, tanh/sigmoid, unroll=False, bias" + (", reset_after=True" if spec.cell == "gru" else "")
        return _Plan(True, "cuDNN", reason, False, "off: XLA cannot compile the cuDNN kernel"
                     + ("" if jit == "auto" else " (jit_compile=False)"))
    if jit == "auto":
        on = _CPU_XLA_PAYS if not on_gpu else True
        why = ("auto: measured faster on CPU for the generic loop" if not on_gpu
               else "auto: XLA fuses the generic loop's per-step element-wise ops on GPU (not measured here)")
        return _Plan(False, "generic loop", blocker, on, ("on, " if on else "off, ") + why)
    return _Plan(False, "generic loop", blocker, bool(jit), ("on" if jit else "off") + f" (jit_compile={jit})")


def _graph_ops(concrete: Any) -> set[str]:
    """Op types of a traced function, its nested functions (loop bodies, gradients) included."""
    gdef = concrete.graph.as_graph_def()
    ops = {n.op for n in gdef.node}
    for fn in gdef.library.function:
        ops |= {n.op for n in fn.node_def}
    return ops


class _Program:
    """Keras layers used as a template (``stateless_call``) and the compiled functions over them, for one
    configuration. The weights and optimizer state are *arguments* (``tf.Variable``s of the model), so every model of
    the same configuration shares one trace and one XLA compilation: tracing a Keras RNN's gradient takes seconds."""

    def __init__(self, spec: ModelSpec, dtype: str, device: str, use_cudnn: bool, jit: bool) -> None:
        self.spec, self.dtype, self.device = spec, dtype, device
        self.tf_dtype = tf.as_dtype(dtype)
        Layer = keras.layers.GRU if spec.cell == "gru" else keras.layers.LSTM
        extra = {"reset_after": spec.variant == "reset_after"} if spec.cell == "gru" else {}
        with tf.device("/CPU:0"):  # the template's own variables are never read: keep them off the GPU
            self.layers = []
            for k in range(spec.num_layers):
                seq = k < spec.num_layers - 1 or spec.head == "every"
                layer = Layer(spec.hidden_size, return_sequences=seq, use_cudnn=use_cudnn, dtype=dtype,
                              name=f"{spec.cell}_l{k}", **extra)
                layer.build((None, None, spec.layer_input_size(k)))
                self.layers.append(layer)
            head = keras.layers.Dense(spec.output_size, dtype=dtype, name="head")
            head.build((None, spec.hidden_size))
            self.layers.append(head)
            self.fixed = [[tf.convert_to_tensor(v.value) for v in layer.non_trainable_variables]  # dropout seeds
                          for layer in self.layers]
        self.counts = [len(layer.trainable_variables) for layer in self.layers]
        shapes = convert.keras_shapes(spec)
        assert [[tuple(v.shape) for v in layer.trainable_variables] for layer in self.layers] == shapes, (
            "Keras' layer weights differ from _tf_convert.keras_shapes")
        self.mult = [k for layer_mult in convert.multiplicity(spec) for k in layer_mult]
        self.folded = {3 * k + 2: k for k in range(spec.num_layers)} if convert.folds_bias(spec) else {}
        self._opts = {"jit_compile": jit, "reduce_retracing": True}
        self.forward = tf.function(self._forward, **self._opts)
        self.loss_and_grads = tf.function(self._loss_and_grads, **self._opts)
        self._steps: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ traced bodies
    def _forward(self, params: list, x: Any) -> Any:
        with tf.device(self.device):
            h, i = x, 0  # (B, T, I)
            for layer, n, fixed in zip(self.layers, self.counts, self.fixed):
                h, _ = layer.stateless_call(params[i:i + n], fixed, h)  # (B, T, H) | (B, H); head: (B, O) | (B, T, O)
                i += n
            return h

    def _loss(self, yhat: Any, y: Any) -> Any:
        if self.spec.loss == "mse":
            return tf.reduce_mean(tf.square(yhat - y))  # mean over all elements
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=yhat))

    def _loss_and_grads(self, params: list, x: Any, y: Any) -> tuple[Any, list]:
        with tf.GradientTape() as tape:
            loss = self._loss(self._forward(params, x), y)
        return loss, tape.gradient(loss, params)

    def step(self, optimizer: str) -> Any:
        """The compiled training step for ``optimizer``; hyperparameters are a tensor argument, so one trace serves
        every learning rate, clipping norm, β and ε."""
        if optimizer not in self._steps:
            self._steps[optimizer] = tf.function(functools.partial(self._step, optimizer), **self._opts)
        return self._steps[optimizer]

    def _step(self, optimizer: str, params: list, pairs: list, m: list, v: list, t: Any, hp: Any, x: Any,
              y: Any) -> Any:
        """Forward, backward, canonical global-norm clipping, PyTorch SGD/Adam (formulas in ``spec.py``).

        ``hp`` = float64 ``[lr, clip (inf: none), β1, β2, ε]``. ``pairs[k]`` holds the canonical ``(b_ih, b_hh)``
        (Keras gate order) of layer ``k`` when Keras folds its bias: both move by the update ``u`` of ``dL/db``, and
        the Keras bias is set to their sum."""
        loss, grads = self._loss_and_grads(params, x, y)
        dt = self.tf_dtype
        lr64, clip64, b1_64, b2_64, eps64 = tf.unstack(hp)
        lr, clip, b1, b2, eps = (tf.cast(a, dt) for a in (lr64, clip64, b1_64, b2_64, eps64))
        one = tf.constant(1.0, dt)
        with tf.device(self.device):
            # a folded bias stands for k canonical tensors with its gradient: it counts k times in the norm
            sq = tf.add_n([float(k) * tf.reduce_sum(tf.square(g)) for k, g in zip(self.mult, grads)])
            coef = tf.minimum(one, clip / (tf.sqrt(sq) + tf.constant(1e-6, dt)))  # 1 when clip = inf
            grads = [g * coef for g in grads]
            if optimizer == "adam":
                t = t.assign_add(1.0)
                step_size = tf.cast(lr64 / (1.0 - tf.pow(b1_64, t)), dt)  # lr / (1 − β1^t)
                bc2_sqrt = tf.cast(tf.sqrt(1.0 - tf.pow(b2_64, t)), dt)  # sqrt(1 − β2^t)
                one_b1, one_b2 = tf.cast(1.0 - b1_64, dt), tf.cast(1.0 - b2_64, dt)
            for i, (var, g) in enumerate(zip(params, grads)):
                if optimizer == "sgd":
                    u = lr * g
                else:
                    m_t = m[i].assign(b1 * m[i] + one_b1 * g)
                    v_t = v[i].assign(b2 * v[i] + one_b2 * tf.square(g))
                    u = step_size * m_t / (tf.sqrt(v_t) / bc2_sqrt + eps)
                if i in self.folded:
                    b_ih, b_hh = pairs[self.folded[i]]
                    var.assign(b_ih.assign_sub(u) + b_hh.assign_sub(u))
                else:
                    var.assign_sub(u)
        return loss


@functools.lru_cache(maxsize=64)
def _program(spec: ModelSpec, dtype: str, device: str, use_cudnn: bool, jit: bool, tf32: bool) -> _Program:
    """One program per configuration; ``tf32`` is part of the key because XLA fixes the precision when compiling."""
    return _Program(spec, dtype, device, use_cudnn, jit)


class TFModel:
    """One model: its weights and optimizer state as ``tf.Variable``s on the device, and the shared program."""

    def __init__(self, spec: ModelSpec, weights: Weights, device: str, dtype: str, train: TrainConfig,
                 plan: _Plan) -> None:
        self.spec, self.device, self.dtype, self.train, self.plan = spec, device, dtype, train, plan
        self.tf_device = tf_device(device)
        self.program = _program(spec, dtype, self.tf_device, plan.use_cudnn, plan.jit, plan.tf32)
        self.step_fn = self.program.step(train.optimizer)
        self.perm = convert.gate_perm(spec)
        with tf.device(self.tf_device):
            var = lambda a: tf.Variable(a, trainable=True)  # noqa: E731
            self.params = [var(a) for layer in convert.to_keras(spec, weights) for a in layer]  # Keras order
            self.pairs = [(var(weights[f"bias_ih_l{k}"][self.perm]), var(weights[f"bias_hh_l{k}"][self.perm]))
                          for k in range(spec.num_layers)] if convert.folds_bias(spec) else []
            adam = train.optimizer == "adam"
            self.m = [tf.Variable(tf.zeros_like(p), trainable=False) for p in self.params] if adam else []
            self.v = [tf.Variable(tf.zeros_like(p), trainable=False) for p in self.params] if adam else []
            self.t = tf.Variable(0.0, dtype=tf.float64, trainable=False)  # Adam's step number
            clip = np.inf if train.clip is None else train.clip
            self.hp = tf.constant([train.lr, clip, *train.betas, train.eps], tf.float64)
        self.last_call: tuple[Any, tuple] | None = None  # (function, args) of the latest call, for provenance

    def call(self, fn: Any, *args: Any) -> Any:
        self.last_call = (fn, args)
        if self.tf_device != "/CPU:0" and tf.config.experimental.tensor_float_32_execution_enabled() != self.plan.tf32:
            tf.config.experimental.enable_tensor_float_32_execution(self.plan.tf32)
        with tf.device(self.tf_device):  # an XLA-compiled function runs where it is called, whatever is inside
            return fn(*args)

    # ------------------------------------------------------------------------------------------- data
    def tensor(self, a: Any, what: str) -> Any:
        """NumPy -> a tensor on the model's device (checked); a TF tensor passes unchanged (prepared)."""
        if tf.is_tensor(a):
            return a
        a = np.asarray(a)
        if what == "x":
            check_x_shape(self.spec, a.shape)
        a = a.astype(np.int64 if what == "y" and self.spec.loss == "xent" else self.dtype, copy=False)
        with tf.device(self.tf_device):
            return tf.identity(tf.convert_to_tensor(a))

    def check_y(self, x: Any, y: Any) -> None:
        """``y`` (NumPy, before it becomes a tensor) against ``x``'s batch and steps, the head and the loss."""
        y = np.asarray(y)
        xent = self.spec.loss == "xent"
        bounds = (int(y.min()), int(y.max())) if xent and y.size and y.dtype.kind in "iu" else None
        check_y(self.spec, tuple(x.shape), y.shape, y.dtype, y.dtype.kind, bounds)


class TFBackend(TFDeclared):
    """The backend contract (``base.py``) over Keras 3 / TensorFlow (declarations in ``_tf_decl``)."""

    # --------------------------------------------------------------------------------------- contract
    def available(self, device: str) -> str | None:
        dev = tf_device(device)
        if dev == "/CPU:0":
            return None
        index = int(dev.rsplit(":", 1)[1])
        if not tf.test.is_built_with_cuda():
            return f"device={device!r}: this TensorFlow {tf.__version__} build has no CUDA support (tensorflow-cpu?)"
        gpus = tf.config.list_physical_devices("GPU")
        if index >= len(gpus):
            return f"device={device!r}: TensorFlow sees {len(gpus)} GPU(s)"
        return None

    def make_model(self, spec: ModelSpec, weights: Weights, device: str, dtype: str, train: TrainConfig,
                   options: dict[str, Any]) -> TFModel:
        jit, use_cudnn, tf32 = options["jit_compile"], options["use_cudnn"], options["tf32"]
        plan = dataclasses.replace(_plan(spec, tf_device(device) != "/CPU:0", use_cudnn, jit), tf32=tf32)
        return TFModel(spec, cast_weights(weights, dtype), device, dtype, train, plan)

    def prepare(self, model: TFModel, x: Any, y: Any = None) -> tuple[Any, Any]:
        """``x``/``y`` as tensors on the model's device, once, so timed steps move no data."""
        tx = model.tensor(x, "x")
        if y is None:
            return tx, None
        if not tf.is_tensor(y):  # a prepared tensor was checked when it was prepared
            model.check_y(tx, y)
        return tx, model.tensor(y, "y")

    def train_step(self, model: TFModel, x: Any, y: Any) -> float:
        x, y = self.prepare(model, x, y)
        return float(model.call(model.step_fn, model.params, model.pairs, model.m, model.v, model.t, model.hp, x, y))

    def forward(self, model: TFModel, x: Any) -> np.ndarray:
        return model.call(model.program.forward, model.params, model.tensor(x, "x")).numpy()

    def gradients(self, model: TFModel, x: Any, y: Any) -> Weights:
        x, y = self.prepare(model, x, y)
        _, grads = model.call(model.program.loss_and_grads, model.params, x, y)
        per_layer, i = [], 0
        for layer_mult in convert.multiplicity(model.spec):
            per_layer.append([g.numpy() for g in grads[i:i + len(layer_mult)]])
            i += len(layer_mult)
        return convert.gradients_from_keras(model.spec, per_layer)

    def weights(self, model: TFModel) -> Weights:
        flat, per_layer = [p.numpy() for p in model.params], []
        for n in model.program.counts:
            per_layer, flat = per_layer + [flat[:n]], flat[n:]
        w = convert.from_keras(model.spec, per_layer)
        for k, (b_ih, b_hh) in enumerate(model.pairs):  # the canonical split, kept in Keras gate order
            w[f"bias_ih_l{k}"], w[f"bias_hh_l{k}"] = b_ih.numpy()[model.perm], b_hh.numpy()[model.perm]
        return w

    def sync(self, device: str) -> None:
        if tf_device(device) != "/CPU:0":
            tf.test.experimental.sync_devices()  # GPU work is queued asynchronously; CPU ops run synchronously

    def memory(self, device: str) -> MemoryProbe:
        dev = tf_device(device)
        if dev == "/CPU:0":
            return MemoryProbe(method="none")
        name = dev.lstrip("/")  # "GPU:N"
        return MemoryProbe(
            method="tf.config.experimental.get_memory_info",
            reset=lambda: tf.config.experimental.reset_memory_stats(name),
            peak=lambda: {"allocated": int(tf.config.experimental.get_memory_info(name)["peak"])},
        )

    def set_denormals(self, policy: str) -> dict[str, Any]:
        """Put ``Case.denormals`` ("flush" | "keep") in force in this process (optional; ``_denormals.py``)."""
        from ._denormals import tf_policy

        return tf_policy(policy)

    def set_threads(self, n: int | None) -> dict[str, int]:
        """Intra-op threads = ``n``, inter-op threads = 1 (one op at a time: the recurrence is sequential, and this
        keeps the process at ``n`` busy threads). Only possible before TensorFlow starts its runtime; afterwards the
        settings in force are returned with a warning."""
        n = check_threads(n)
        if n is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(n)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                warnings.warn(f"TensorFlow's runtime is already initialised: cannot set {n} intra-op threads; "
                              f"in force: {threads_in_force(tf)}", RuntimeWarning, stacklevel=2)
        return threads_in_force(tf)

    def provenance(self, model: TFModel) -> dict[str, Any]:
        """What ran: the kernel seen in the traced graph (cuDNN op or a while loop), XLA, oneDNN, threads, versions."""
        if model.last_call is not None:
            fn, args = model.last_call
            concrete = fn.get_concrete_function(*args)  # the cached trace of the latest call
        else:  # nothing ran yet: trace the forward pass symbolically
            concrete = model.program.forward.get_concrete_function(
                model.params, tf.TensorSpec([None, None, model.spec.input_size], model.program.tf_dtype))
        ops = _graph_ops(concrete)
        if ops & set(_CUDNN_OPS):
            kernel = "cuDNN"
        elif ops & set(_LOOP_OPS):
            kernel = "generic loop"
        else:
            kernel = "unknown"
        plan = model.plan
        why = plan.kernel_reason if kernel == plan.kernel else (
            f"predicted {plan.kernel} ({plan.kernel_reason}) but the graph shows {kernel}")
        cell = "GRU" if model.spec.cell == "gru" else "LSTM"
        xla = ", XLA" if plan.jit else ""
        implementation = (f"keras {cell} ({kernel}{xla})" if kernel == "cuDNN"
                          else f"keras {cell} ({kernel}{xla}: {why})")
        onednn, onednn_why = onednn_state()
        compute = {layer.compute_dtype for layer in model.program.layers}
        folded = sum(int(np.prod(b.shape)) for b, _ in model.pairs)
        return {
            "implementation": implementation,
            "kernel": kernel,
            "kernel_reason": why,
            "cudnn": kernel == "cuDNN",
            "xla": plan.jit,
            "xla_reason": plan.jit_reason,
            "onednn": onednn,
            "onednn_reason": onednn_why,
            "tf32": plan.tf32 and model.tf_device != "/CPU:0",
            "threads": threads_in_force(tf),
            "dtype": model.dtype,
            "compute_dtype": ",".join(sorted(compute)),
            "device": model.tf_device,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "cuda_build": bool(tf.test.is_built_with_cuda()),
            "param_count": sum(layer.count_params() for layer in model.program.layers),  # Keras' own count
            "folded_bias_params": folded,  # canonical biases Keras keeps as one (b_ih + b_hh)
            "optimizer": f"{model.train.optimizer} (PyTorch formula, custom tf.function update)",
        }
