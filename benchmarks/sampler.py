"""Training-step ratios to plain Keras of the exact and table samplers (MLP).

Run: python benchmarks/sampler.py [--jit]   (ROUNDS=N sets the rounds, default 15)
"""

import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np, noisylayers
from noisylayers import noise
jit = "--jit" in sys.argv
def mlp(kind):
    def d(u, a=None):
        layer = keras.layers.Dense(u, activation=a)
        return layer if kind is None else noisylayers.WeightNoise(layer, noise=kind)
    m = keras.Sequential([keras.Input((784,)), d(512, "relu"), d(512, "relu"), d(10)])
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    return m
x = np.random.default_rng(0).random((128, 784), dtype=np.float32); y = np.zeros(128, "int32")
models = {"plain": mlp(None), "exact": mlp(noise.Gaussian(0.01)), "table": mlp(noise.Gaussian(0.01, sampler="table"))}
for m in models.values():
    for _ in range(5): m.train_on_batch(x, y)
ratios = {k: [] for k in models}
for r in range(int(os.environ.get("ROUNDS", 15))):
    t = {}
    for k, m in models.items():
        s = time.perf_counter()
        for _ in range(20): m.train_on_batch(x, y)
        t[k] = time.perf_counter() - s
    for k in models: ratios[k].append(t[k] / t["plain"])
print("jit" if jit else "nojit", {k: round(float(np.median(v)), 3) for k, v in ratios.items()}, "plain step ms", round(t["plain"] / 20 * 1000, 2))
