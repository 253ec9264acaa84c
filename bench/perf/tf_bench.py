"""Train-step timings of the TensorFlow backend, and its harness overhead against hand-written ``tf.function`` loops.

    python bench/perf/tf_bench.py [--batch 64 --seq-len 100 --hidden 128 --threads 2 --steps 30 --rounds 5]

For each cell (GRU reset_after, GRU reset_before, LSTM) and ``jit_compile`` off/on it times, interleaved round by
round so that background load hits all of them alike (median ms per step over all rounds):

* ``backend``:   ``TFBackend.train_step(model, x, y)`` on prepared tensors (what the worker times);
* ``direct``:    the backend's compiled step called directly, ``float(step(x, y))`` (no harness at all);
* ``keras``:     a hand-written loop a Keras user would write: the same layers, ``tf.GradientTape``,
  ``keras.optimizers.Adam(global_clipnorm=1.0)``, the same ``jit_compile``.

``overhead = backend / min(direct, keras)``; the target is ≤ 1.03. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np

from gru_bench.backends.tf_backend import TFBackend, keras, tf
from gru_bench.spec import ModelSpec, init_weights


def _keras_loop(spec: ModelSpec, model: Any, jit: bool) -> Callable[[Any, Any], float]:
    """A user's hand-written step over fresh Keras layers with the same weights and the same XLA setting."""
    Layer = keras.layers.GRU if spec.cell == "gru" else keras.layers.LSTM
    extra = {"reset_after": spec.variant == "reset_after"} if spec.cell == "gru" else {}
    rnn = Layer(spec.hidden_size, use_cudnn=False, dtype=model.dtype, **extra)
    head = keras.layers.Dense(spec.output_size, dtype=model.dtype)
    rnn.build((None, None, spec.input_size))
    head.build((None, spec.hidden_size))
    rnn.set_weights([p.numpy() for p in model.params[:3]])
    head.set_weights([p.numpy() for p in model.params[3:]])
    variables = rnn.trainable_weights + head.trainable_weights
    opt = keras.optimizers.Adam(learning_rate=1e-3, global_clipnorm=1.0)
    opt.build(variables)

    @tf.function(jit_compile=jit)
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(head(rnn(x)) - y))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return lambda x, y: float(step(x, y))


def _time(fn: Callable[[], float], steps: int) -> list[tuple[float, float]]:
    """``steps`` samples of (wall ms, process CPU ms: all threads)."""
    out = []
    for _ in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        out.append(((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--input", type=int, default=1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=30, help="steps per variant per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cells", default="gru:reset_after,gru:reset_before,lstm:standard")
    args = p.parse_args(argv)

    backend = TFBackend()
    threads = backend.set_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq_len, args.input)).astype(args.dtype)
    y = rng.standard_normal((args.batch, 1)).astype(args.dtype)
    runners: dict[tuple[str, bool, str], Callable[[], float]] = {}
    impl: dict[tuple[str, bool], str] = {}
    for item in args.cells.split(","):
        cell, variant = item.split(":")
        spec = ModelSpec(cell, args.input, args.hidden, 1, variant=variant)
        for jit in (False, True):
            model = backend.build(spec, init_weights(spec, 0), args.device, args.dtype,
                                  options={"jit_compile": jit})
            tx, ty = backend.prepare(model, x, y)
            runners[(item, jit, "backend")] = lambda m=model, a=tx, b=ty: backend.train_step(m, a, b)
            runners[(item, jit, "direct")] = lambda m=model, a=tx, b=ty: float(
                m.step_fn(m.params, m.pairs, m.m, m.v, m.t, m.hp, a, b))
            runners[(item, jit, "keras")] = lambda f=_keras_loop(spec, model, jit), a=tx, b=ty: f(a, b)
            for fn in (runners[(item, jit, k)] for k in ("backend", "direct", "keras")):
                for _ in range(3):  # trace, compile, warm up
                    fn()
            impl[(item, jit)] = backend.provenance(model)["implementation"]
    samples: dict[tuple[str, bool, str], list[tuple[float, float]]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        for key, fn in runners.items():
            backend.sync(args.device)
            samples[key] += _time(fn, args.steps)
    print(f"TF {tf.__version__} / Keras {keras.__version__}, threads {threads}, B={args.batch} T={args.seq_len} "
          f"I={args.input} H={args.hidden} {args.dtype}, {args.rounds}×{args.steps} steps each; ms/step: wall "
          f"median (min) and process CPU median; overhead = backend / min(direct, keras) of the wall medians")
    kinds = ("backend", "direct", "keras")
    print(f"{'cell':20} {'xla':4} " + " ".join(f"{k:>22}" for k in kinds) + f" {'overhead':>9}  implementation")
    for item in args.cells.split(","):
        for jit in (False, True):
            wall = {k: [w for w, _ in samples[(item, jit, k)]] for k in kinds}
            cpu = {k: [c for _, c in samples[(item, jit, k)]] for k in kinds}
            med = {k: statistics.median(wall[k]) for k in kinds}
            cells = [f"{med[k]:7.1f} ({min(wall[k]):6.1f}) {statistics.median(cpu[k]):6.1f}" for k in kinds]
            ratio = med["backend"] / min(med["direct"], med["keras"])
            print(f"{item:20} {'on' if jit else 'off':4} " + " ".join(f"{c:>22}" for c in cells)
                  + f" {ratio:9.3f}  {impl[(item, jit)]}")


if __name__ == "__main__":
    main()
