"""Training-step ratios to plain Keras of the exact and table samplers (MLP).

MLP 784-512-512-10, batch 128, additive Gaussian noise (stddev 0.01) on every
layer through `WeightNoise`. Each round trains each model for one epoch of 20
batches with `fit` (as users train: on JAX the state stays on the device
between steps, which `train_on_batch` would not show), interleaved; the
printed figure per model is the median over the rounds of its time over
plain's time in the same round.

Run: python -m benchmarks.sampler [--jit]   (ROUNDS=N sets the rounds, default 15;
KERAS_BACKEND=jax for JAX)
`--jit` compiles with `jit_compile=True` on TensorFlow; JAX always compiles
with XLA, so the flag changes nothing there.
"""

import os
import sys
import time

from benchmarks import env

env.setup_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402

JIT = "--jit" in sys.argv
BATCHES = 20


def mlp(kind):
    def dense(units, activation=None):
        layer = keras.layers.Dense(units, activation=activation)
        return layer if kind is None else noisylayers.WeightNoise(layer, noise=kind)

    model = keras.Sequential(
        [keras.Input((784,)), dense(512, "relu"), dense(512, "relu"), dense(10)]
    )
    # "auto" is XLA on JAX, a plain graph on TensorFlow.
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True if JIT else "auto",
    )
    return model


def main():
    rng = np.random.default_rng(0)
    x = rng.random((128 * BATCHES, 784), dtype=np.float32)
    y = rng.integers(0, 10, 128 * BATCHES).astype("int32")
    models = {
        "plain": mlp(None),
        "exact": mlp(noise.Gaussian(0.01)),
        "table": mlp(noise.Gaussian(0.01, sampler="table")),
    }

    def epoch(model):
        start = time.perf_counter()
        model.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - start

    for model in models.values():
        epoch(model)  # compile
    ratios = {name: [] for name in models}
    steps = []
    for _ in range(int(os.environ.get("ROUNDS", 15))):
        seconds = {name: epoch(model) for name, model in models.items()}
        for name in models:
            ratios[name].append(seconds[name] / seconds["plain"])
        steps.append(seconds["plain"] / BATCHES * 1000)
    medians = {name: round(float(np.median(r)), 3) for name, r in ratios.items()}
    mode = "jit_compile=True" if JIT else "default compile"
    print(
        f"{keras.backend.backend()}, {mode}: {medians}; "
        f"plain step {np.median(steps):.2f} ms"
    )


if __name__ == "__main__":
    main()
