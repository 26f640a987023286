"""The `kl` entry of `fit`'s logs (`noisylayers/layers/kl_log.py`)."""

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import noise

X = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
Y = X[:, :1] ** 2


def weighted_kl(model):
    """The weighted KL of the model's current weights (analytic Normal prior)."""
    total = 0.0
    for layer in noisylayers.noise_layers(model):
        rows = noisylayers.noise_stats(model, layers=layer)
        total += layer.kl_weight * sum(r["kl"] for r in rows)
    return total


def two_kl_layers():
    inputs = keras.Input((4,))
    shared = noisylayers.NoisyDense(
        6, activation="tanh", noise=noise.LearnedGaussian(kl_weight=0.01), name="shared"
    )
    # Called twice: its KL is counted once per step, as in the loss.
    h = shared(inputs) + shared(inputs * 0.5)
    outputs = noisylayers.WeightNoise(
        keras.layers.Dense(1, name="head"),
        noise=noise.LearnedGaussian(kl_weight=0.02),
        name="head",
    )(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


class _AtEpochBegin(keras.callbacks.Callback):
    """Records the weighted KL and the clean data loss of each epoch's start."""

    def __init__(self):
        super().__init__()
        self.kl, self.data_loss = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.kl.append(weighted_kl(self.model))
        y = keras.ops.convert_to_numpy(self.model(X, training=False))
        self.data_loss.append(float(np.mean((y - Y) ** 2)))


def test_fit_logs_the_weighted_kl_of_each_step():
    keras.utils.set_random_seed(0)
    model = two_kl_layers()
    # Noise off, so that the data term is the clean loss; the KL still counts.
    noisylayers.set_noise(model, enabled=False)
    at_begin = _AtEpochBegin()
    # One step per epoch: each epoch's entry is the KL of the weights that
    # step started from (analytic, so exact up to float32 sums).
    history = model.fit(
        X, Y, batch_size=32, epochs=2, verbose=0, validation_data=(X, Y),
        callbacks=[at_begin],
    ).history
    np.testing.assert_allclose(history["kl"], at_begin.kl, rtol=1e-4)
    assert at_begin.kl[0] != pytest.approx(at_begin.kl[1], rel=1e-6)  # it trained
    # The training loss is the data loss plus the KL ...
    np.testing.assert_allclose(
        np.subtract(history["loss"], history["kl"]), at_begin.data_loss, rtol=1e-4
    )
    # ... validation (inference) calls add no KL, as `val_loss` has none, and
    # `evaluate` keeps its usual return value: no `kl` entry outside training.
    assert "val_kl" not in history
    assert np.isscalar(model.evaluate(X, Y, verbose=0))


def test_no_kl_entry_without_a_kl_term_and_the_log_round_trips(tmp_path):
    plain = keras.Sequential(
        [keras.Input((4,)), noisylayers.WeightNoise(keras.layers.Dense(1))]
    )
    plain.compile("sgd", "mse")
    assert "kl" not in plain.fit(X, Y, epochs=1, verbose=0).history
    model = two_kl_layers()
    model.fit(X, Y, epochs=1, verbose=0)
    layer = model.get_layer("shared")
    assert float(keras.ops.convert_to_numpy(layer.kl_log_variable)[1]) > 0
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(restored), keras.ops.convert_to_numpy(original)
        )
