"""A tiny model and data set for the ablation tests."""

import keras
import numpy as np

import noisylayers


def build_tiny(names=("a", "b"), stddev=0.3):
    """A compiled MLP, 4 inputs, 3 classes, one noisy Dense layer per name."""
    layers = [keras.Input((4,))]
    for i, name in enumerate(names):
        last = i == len(names) - 1
        layers.append(
            noisylayers.WeightNoise(
                keras.layers.Dense(
                    3 if last else 8, activation="softmax" if last else "relu"
                ),
                noise=noisylayers.noise.Gaussian(stddev),
                name=name,
            )
        )
    model = keras.Sequential(layers)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_data(n=64, seed=0):
    """`n * 3 / 4` training and `n / 4` validation examples, 3 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")
    split = n * 3 // 4
    return (x[:split], y[:split]), (x[split:], y[split:])
