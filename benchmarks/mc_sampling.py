"""Monte Carlo sampling against plain `predict`: what does `mc_sample` cost?

Two Bayes-by-backprop classifiers of `NoisyDense` / `NoisyConv2D` layers
with `LearnedGaussian` noise and the flipout estimator: the MLP
784-512-512-10 and the Keras MNIST convnet (28x28x1, two Conv2D and a
Dense), 2000 inputs, batch 32 (`--batch`). Each round times
`noisylayers.mc_sample(model, x, samples=10)` and ten `model.predict(x)`
calls of the same model (deterministic inference: the floor), interleaved;
the figure is the median over the rounds of their ratio, after a first call
of each (the first `mc_sample` call traces and compiles its predict
function: its time is shown apart). `--eager` also times the former
implementation of `mc_predict` (the model called eagerly batch by batch).

Run: python benchmarks/mc_sampling.py [--eager] [--rounds 3] [--models mlp cnn] [--batch 32]
     KERAS_BACKEND=jax python benchmarks/mc_sampling.py
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402

SAMPLES = 10
INPUTS = 2000
BATCH = 32  # --batch


def bayesian(model):
    kind = noise.LearnedGaussian(dataset_size=60000)

    def dense(units, activation=None):
        return noisylayers.NoisyDense(
            units, activation=activation, noise=kind, estimator="flipout"
        )

    def conv(filters):
        return noisylayers.NoisyConv2D(
            filters, 3, activation="relu", noise=kind, estimator="flipout"
        )

    if model == "mlp":
        layers = [keras.Input((784,)), dense(512, "relu"), dense(512, "relu"), dense(10)]
    else:
        pool = keras.layers.MaxPooling2D
        layers = [keras.Input((28, 28, 1)), conv(32), pool(2), conv(64), pool(2),
                  keras.layers.Flatten(), dense(10)]
    return keras.Sequential(layers, name=model)


def eager_samples(model, x):
    """The former `mc_predict`: the model called eagerly, batch by batch."""
    layers = noisylayers.noise_layers(model)
    for layer in layers:
        layer.sample_at_inference = True
    try:
        return np.stack(
            [
                np.concatenate(
                    [
                        keras.ops.convert_to_numpy(
                            model(x[i : i + BATCH], training=False)
                        )
                        for i in range(0, len(x), BATCH)
                    ]
                )
                for _ in range(SAMPLES)
            ]
        )
    finally:
        for layer in layers:
            layer.sample_at_inference = False


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(name, rounds, eager):
    keras.utils.set_random_seed(0)
    model = bayesian(name)
    x = np.random.default_rng(0).random(
        (INPUTS,) + tuple(model.input_shape[1:]), dtype=np.float32
    )
    floor = f"{SAMPLES} predict calls"
    contenders = {
        floor: lambda: [
            model.predict(x, batch_size=BATCH, verbose=0) for _ in range(SAMPLES)
        ],
        f"mc_sample, {SAMPLES} samples": lambda: noisylayers.mc_sample(
            model, x, samples=SAMPLES, batch_size=BATCH
        ),
    }
    if eager:
        contenders[f"eager loop, {SAMPLES} samples"] = lambda: eager_samples(model, x)
    first = {name: timed(function) for name, function in contenders.items()}
    seconds = {name: [] for name in contenders}
    for _ in range(rounds):
        for key, function in contenders.items():
            seconds[key].append(timed(function))
    print(f"\n{name} ({model.count_params()} parameters)\n")
    print("| | first call | then (median) | ratio to predict |\n|---|---|---|---|")
    for key, times in seconds.items():
        ratio = np.median(np.array(times) / np.array(seconds[floor]))
        print(
            f"| {key} | {first[key]:.2f} s | {np.median(times):.2f} s | "
            f"{ratio:.2f}x |"
        )


def main(argv=None):
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    BATCH = args.batch
    print(
        f"Backend {keras.backend.backend()}: {INPUTS} inputs, batch {BATCH}, "
        f"medians over {args.rounds} interleaved rounds"
    )
    for name in args.models:
        measure(name, args.rounds, args.eager)


if __name__ == "__main__":
    main()
