"""The models and data of `noisylayers ablate`: small, and nothing to download.

- `"cnn"`: a small convolutional network on scikit-learn's digits (8x8
  images of handwritten digits, 1797 examples shipped with scikit-learn).
- `"mlp"`: a multilayer perceptron on the same digits, flattened.
- `"lstm"`: an LSTM on a generated sequence task: tell the frequency of a
  noisy sine wave.

Every layer with weights is wrapped in `noisylayers.WeightNoise`, with the
same noise kind and estimator, and has a name, so that the ablation tables are readable.
The models have no Dropout or BatchNormalization.
"""

import dataclasses

import keras
import numpy as np

from noisylayers.ablation.optional import require
from noisylayers.layers import WeightNoise


def _split(x, y, samples, validation_split, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    if samples is not None:
        order = order[:samples]
    n_val = max(1, int(round(len(order) * validation_split)))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def digits_data(flat=False, samples=None, validation_split=0.2, seed=0):
    """scikit-learn's digits, scaled to [0, 1], split at random.

    Args:
        flat: Whether to return vectors of 64 pixels instead of images of
            shape `(8, 8, 1)`.
        samples: Optional number of examples to use (of 1797), for a quick
            trial.
        validation_split: Fraction of the examples kept for validation.
        seed: Seed of the split.

    Returns:
        `((x_train, y_train), (x_val, y_val))`, float32 inputs and int32
        labels 0-9.
    """
    digits = require("sklearn.datasets", "the digits data").load_digits()
    x = (digits.images / 16.0).astype("float32")
    x = x.reshape(len(x), -1) if flat else x[..., None]
    return _split(x, digits.target.astype("int32"), samples, validation_split, seed)


def sequence_data(
    samples=None, length=24, classes=4, noise=0.5, validation_split=0.2, seed=0
):
    """A generated sequence task: which frequency is this noisy sine wave?

    Class `k` is a sine wave with `k + 1` periods over the sequence, random
    phase and amplitude in [0.5, 1.5], plus Gaussian noise of standard
    deviation `noise`.

    Args:
        samples: Number of sequences (default 2000).
        length: Number of time steps.
        classes: Number of classes (frequencies).
        noise: Standard deviation of the added noise.
        validation_split: Fraction of the sequences kept for validation.
        seed: Seed of the generator and of the split.

    Returns:
        `((x_train, y_train), (x_val, y_val))`, float32 inputs of shape
        `(length, 1)` and int32 labels.
    """
    samples = 2000 if samples is None else samples
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, samples).astype("int32")
    t = np.arange(length) / length
    phase = rng.uniform(0, 2 * np.pi, (samples, 1))
    amplitude = rng.uniform(0.5, 1.5, (samples, 1))
    x = amplitude * np.sin(2 * np.pi * (y[:, None] + 1) * t + phase)
    x = x + rng.normal(0.0, noise, x.shape)
    return _split(x[..., None].astype("float32"), y, None, validation_split, seed)


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def cnn(noise="gaussian", learning_rate=3e-3, estimator=None):
    """A small CNN for 8x8 images, 10 classes: conv1, conv2, dense, output.

    Args:
        noise: The noise kind of every `WeightNoise` layer (see
            `noisylayers.noise.get`).
        learning_rate: Adam's learning rate.
        estimator: The estimator of every noisy layer (see
            `noisylayers.WeightNoise`); `None` for the kind's default.

    Returns:
        A compiled `keras.Model`.
    """
    layers = keras.layers
    return _compile(
        keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                WeightNoise(
                    layers.Conv2D(16, 3, padding="same", activation="relu"),
                    noise=noise,
                    estimator=estimator,
                    name="conv1",
                ),
                WeightNoise(
                    layers.Conv2D(32, 3, padding="same", activation="relu"),
                    noise=noise,
                    estimator=estimator,
                    name="conv2",
                ),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                WeightNoise(
                    layers.Dense(64, activation="relu"), noise=noise,
                    estimator=estimator, name="dense"
                ),
                WeightNoise(
                    layers.Dense(10, activation="softmax"),
                    noise=noise,
                    estimator=estimator,
                    name="output",
                ),
            ],
            name="cnn",
        ),
        learning_rate,
    )


def mlp(noise="gaussian", learning_rate=3e-3, estimator=None):
    """An MLP for 64 inputs, 10 classes: hidden1, hidden2, output.

    Args:
        noise: The noise kind of every `WeightNoise` layer.
        learning_rate: Adam's learning rate.
        estimator: The estimator of every noisy layer (see
            `noisylayers.WeightNoise`); `None` for the kind's default.

    Returns:
        A compiled `keras.Model`.
    """
    dense = keras.layers.Dense
    return _compile(
        keras.Sequential(
            [
                keras.Input((64,)),
                WeightNoise(
                    dense(128, activation="relu"), noise=noise,
                    estimator=estimator, name="hidden1"
                ),
                WeightNoise(
                    dense(64, activation="relu"), noise=noise,
                    estimator=estimator, name="hidden2"
                ),
                WeightNoise(
                    dense(10, activation="softmax"), noise=noise,
                    estimator=estimator, name="output"
                ),
            ],
            name="mlp",
        ),
        learning_rate,
    )


def lstm(
    noise="gaussian", length=24, classes=4, learning_rate=1e-2, estimator=None
):
    """An LSTM sequence classifier: lstm, dense, output.

    Args:
        noise: The noise kind of every `WeightNoise` layer (the LSTM's
            kernel, recurrent kernel and bias get one draw per sequence).
        length: Number of time steps of the inputs.
        classes: Number of classes.
        learning_rate: Adam's learning rate.
        estimator: The estimator of every noisy layer (see
            `noisylayers.WeightNoise`); `None` for the kind's default.

    Returns:
        A compiled `keras.Model`.
    """
    layers = keras.layers
    return _compile(
        keras.Sequential(
            [
                keras.Input((length, 1)),
                WeightNoise(layers.LSTM(32), noise=noise,
                    estimator=estimator, name="lstm"),
                WeightNoise(
                    layers.Dense(32, activation="relu"), noise=noise,
                    estimator=estimator, name="dense"
                ),
                WeightNoise(
                    layers.Dense(classes, activation="softmax"),
                    noise=noise,
                    estimator=estimator,
                    name="output",
                ),
            ],
            name="lstm",
        ),
        learning_rate,
    )


@dataclasses.dataclass(frozen=True)
class Task:
    """A model and its data, for `noisylayers ablate --model NAME`.

    Attributes:
        name: The `--model` name.
        description: One line for the report; `noisylayers ablate --help`
            shows it too (its front end restates it without importing
            Keras, and a test pins the two equal).
        build: Function `build(noise, estimator=None)` returning a new
            compiled model.
        data: Function `data(samples=None)` returning
            `((x_train, y_train), (x_val, y_val))`.
    """

    name: str
    description: str
    build: object
    data: object


def _digits_images(samples=None):
    return digits_data(samples=samples)


def _digits_flat(samples=None):
    return digits_data(flat=True, samples=samples)


TASKS = {
    task.name: task
    for task in (
        Task("cnn", "a small CNN on scikit-learn's 8x8 digits", cnn, _digits_images),
        Task("mlp", "an MLP on scikit-learn's 8x8 digits", mlp, _digits_flat),
        Task(
            "lstm",
            "an LSTM on generated noisy sine waves (4 frequencies)",
            lstm,
            sequence_data,
        ),
    )
}
