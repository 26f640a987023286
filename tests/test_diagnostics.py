"""Tests of `noisylayers.mc_sample`, `mc_predict`, `noisylayers.noise_stats` and the
`NoiseStats` callback."""

import math
import os
import sys
import re

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers.callbacks import NoiseStats

X = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def snapshot(model):
    return [np.array(numpy(v.value)) for v in model.weights]


def seed_states(model):
    return [
        np.array(numpy(layer.seed_generator.state.value))
        for layer in noisylayers.noise_layers(model)
    ]


def bn_dropout_model():
    """Noisy layers around BatchNormalization and Dropout."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.NoisyDense(
                8,
                activation="relu",
                noise=noise.LearnedGaussian(kl_weight=0.1),
                estimator="local_reparameterization",
                seed=1,
                name="hidden",
            ),
            layers.BatchNormalization(name="bn"),
            layers.Dropout(0.5, name="dropout"),
            noisylayers.WeightNoise(
                layers.Dense(3), noise=noise.Gaussian(0.05), seed=2, name="head"
            ),
        ]
    )
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.moving_mean.assign(rng.normal(size=(8,)).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=(8,)).astype("float32"))
    bn.gamma.assign(rng.uniform(0.5, 1.5, size=(8,)).astype("float32"))
    return model


# -- mc_predict ---------------------------------------------------------------


def test_mc_predict_samples_the_noise_and_changes_nothing():
    model = bn_dropout_model()
    model.get_layer("head").scale = 0.7
    before = snapshot(model)
    mean, std = noisylayers.mc_predict(model, X, samples=20)
    assert isinstance(mean, np.ndarray) and isinstance(std, np.ndarray)
    assert mean.shape == std.shape == (10, 3)
    assert np.all(std > 0)
    # Every weight is as it was: BatchNormalization statistics, the
    # learned sigmas, enabled, scale and kl_weight.
    names = [v.name for v in model.weights]
    assert {"moving_mean", "moving_variance", "kernel_rho", "noise_scale"} <= set(names)
    for name, b, a in zip(names, before, snapshot(model)):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert model.get_layer("head").scale == pytest.approx(0.7)
    assert all(layer.enabled for layer in noisylayers.noise_layers(model))
    # The layers' `sample_at_inference` is reset: inference is
    # deterministic again afterwards.
    np.testing.assert_array_equal(
        numpy(model(X, training=False)), numpy(model(X, training=False))
    )


def test_mc_predict_without_noise_is_deterministic_inference():
    # Dropout off and BatchNormalization on its moving statistics: with the
    # noise disabled every sample equals plain inference.
    model = bn_dropout_model()
    noisylayers.set_noise(model, enabled=False)
    expected = numpy(model(X, training=False))
    # (A training call would differ, through Dropout and the batch
    # statistics, even without weight noise; it is not run here, since it
    # would also update the moving statistics.)
    mean, std = noisylayers.mc_predict(model, X, samples=5)
    # Identical samples: std 0 up to the float32 rounding of their mean
    # (see the exact test below).
    np.testing.assert_allclose(std, 0.0, atol=1e-6)
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-6)
    assert not any(layer.enabled for layer in noisylayers.noise_layers(model))
    noisylayers.set_noise(model, enabled=True, scale=0.0)
    mean, std = noisylayers.mc_predict(model, X, samples=5)
    np.testing.assert_allclose(std, 0.0, atol=1e-6)
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-6)


def test_mc_predict_std_is_exactly_zero_without_noise():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.NoisyDense(50, noise=noise.Gaussian(0.1), seed=0),
        ]
    )
    noisylayers.set_noise(model, enabled=False)
    x = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    _, std = noisylayers.mc_predict(model, x, samples=7)
    np.testing.assert_array_equal(std, 0.0)


def test_mc_predict_seed():
    model = bn_dropout_model()
    states = seed_states(model)
    first = noisylayers.mc_predict(model, X, samples=6, seed=3)
    # With a seed the layers' own noise streams are left where they were.
    for b, a in zip(states, seed_states(model)):
        np.testing.assert_array_equal(a, b)
    second = noisylayers.mc_predict(model, X, samples=6, seed=3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = noisylayers.mc_predict(model, X, samples=6, seed=4)
    assert not np.allclose(first[0], other[0])
    # Without a seed the streams advance and two calls differ.
    unseeded = noisylayers.mc_predict(model, X, samples=6)
    again = noisylayers.mc_predict(model, X, samples=6)
    assert not np.allclose(unseeded[0], again[0])
    assert any(not np.array_equal(a, b) for a, b in zip(states, seed_states(model)))


def test_mc_predict_batches_and_several_inputs():
    a = keras.Input((4,), name="a")
    b = keras.Input((2,), name="b")
    hidden = noisylayers.NoisyDense(5, noise=noise.Gaussian(0.1), seed=0)(a)
    outputs = layers.Concatenate()([hidden, b])
    model = keras.Model([a, b], outputs)
    xb = np.ones((10, 2), "float32")
    mean, std = noisylayers.mc_predict(model, [X, xb], samples=4, batch_size=3)
    assert mean.shape == std.shape == (10, 7)
    assert np.all(std[:, :5] > 0)
    np.testing.assert_array_equal(std[:, 5:], 0.0)
    np.testing.assert_array_equal(mean[:, 5:], 1.0)


def test_mc_predict_invalid_arguments():
    model = bn_dropout_model()
    for kwargs, error, message in [
        ({"samples": 0}, ValueError, "samples=0"),
        ({"samples": 2.5}, TypeError, "samples=2.5"),
        ({"batch_size": -1}, ValueError, "batch_size=-1"),
        ({"seed": -1}, ValueError, "seed=-1"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            noisylayers.mc_predict(model, X, **kwargs)
    plain = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="no noisy layers"):
        noisylayers.mc_predict(plain, X)


# -- mc_sample ----------------------------------------------------------------


def test_mc_sample_is_what_mc_predict_summarises():
    model = bn_dropout_model()
    before = snapshot(model)
    states = seed_states(model)
    draws = noisylayers.mc_sample(model, X, samples=6, seed=3)
    assert isinstance(draws, np.ndarray) and draws.shape == (6, 10, 3)
    # Every sample differs from every other (new noise per pass).
    for i in range(6):
        for j in range(i):
            assert not np.allclose(draws[i], draws[j])
    np.testing.assert_array_equal(noisylayers.mc_sample(model, X, samples=6, seed=3), draws)
    mean, std = noisylayers.mc_predict(model, X, samples=6, seed=3)
    np.testing.assert_allclose(mean, draws.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(std, draws.std(axis=0, dtype=np.float64), rtol=1e-5)
    # No weight changes, the layers' streams where they were, and
    # deterministic inference afterwards.
    for name, b, a in zip([v.path for v in model.weights], before, snapshot(model)):
        np.testing.assert_array_equal(a, b, err_msg=name)
    for b, a in zip(states, seed_states(model)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        model.predict(X, verbose=0), model.predict(X, verbose=0)
    )
    np.testing.assert_allclose(
        model.predict(X, verbose=0), numpy(model(X, training=False)), atol=1e-6
    )


class CountingLayer(layers.Layer):
    """Identity that counts how often its Python `call` runs."""

    calls = 0

    def call(self, x):
        CountingLayer.calls += 1
        return x


def test_mc_sample_runs_compiled_with_new_noise_per_batch():
    # One input repeated: the batches differ only by their noise.
    x = np.repeat(X[:1], 12, axis=0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            CountingLayer(),
            noisylayers.NoisyDense(5, noise=noise.Gaussian(0.5), seed=0),
        ]
    )
    cached = model.predict(x, verbose=0)
    function = model.predict_function
    CountingLayer.calls = 0
    draws = noisylayers.mc_sample(model, x, samples=4, batch_size=4)
    # The shared estimator: one weight draw per batch of 4.
    assert draws.shape == (4, 12, 5)
    for sample in draws:
        for batch in sample.reshape(3, 4, 5):
            np.testing.assert_allclose(batch, batch[:1].repeat(4, 0), rtol=1e-6)
        assert not np.allclose(sample[0], sample[4])
        assert not np.allclose(sample[4], sample[8])
    assert not np.allclose(draws[0], draws[1])
    # Traced, not called eagerly 4 x 3 times; the next call reuses the trace.
    assert 1 <= CountingLayer.calls <= 2
    unseeded = noisylayers.mc_sample(model, x, samples=4, batch_size=4)
    assert CountingLayer.calls <= 2
    assert not np.allclose(unseeded, draws)  # the streams advanced
    # The model's own predict function is back, deterministic.
    assert model.predict_function is function
    np.testing.assert_array_equal(model.predict(x, verbose=0), cached)


def test_mc_sample_several_outputs_and_datasets():
    a = keras.Input((4,), name="a")
    b = keras.Input((2,), name="b")
    hidden = noisylayers.NoisyDense(5, noise=noise.Gaussian(0.1), seed=0)(a)
    both = layers.Concatenate()([hidden, b])
    listed = keras.Model([a, b], [hidden, both])
    named = keras.Model([a, b], {"hidden": hidden, "both": both})
    xb = np.ones((10, 2), "float32")
    draws = noisylayers.mc_sample(listed, [X, xb], samples=3, batch_size=5, seed=0)
    assert [d.shape for d in draws] == [(3, 10, 5), (3, 10, 7)]
    np.testing.assert_array_equal(draws[1][..., :5], draws[0])
    mean, std = noisylayers.mc_predict(listed, [X, xb], samples=3, batch_size=5, seed=0)
    assert [m.shape for m in mean] == [(10, 5), (10, 7)]
    np.testing.assert_allclose(std[0], draws[0].std(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(std[1][:, 5:], 0.0)
    by_name = noisylayers.mc_sample(named, [X, xb], samples=3, batch_size=5, seed=0)
    assert set(by_name) == {"hidden", "both"}
    np.testing.assert_array_equal(by_name["hidden"], draws[0])
    # A tf.data.Dataset and a PyDataset of the same batches: the same draws.
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(((X, xb), np.zeros(10))).batch(5)
    np.testing.assert_array_equal(
        noisylayers.mc_sample(listed, dataset, samples=3, seed=0)[0], draws[0]
    )

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return ((X[5 * i : 5 * i + 5], xb[5 * i : 5 * i + 5]),)

    mean_py, _ = noisylayers.mc_predict(listed, Batches(), samples=3, seed=0)
    np.testing.assert_array_equal(mean_py[0], mean[0])


def test_mc_sample_invalid_arguments():
    model = bn_dropout_model()
    for kwargs, error, message in [
        ({"samples": 0}, ValueError, "samples=0"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"seed": 1.5}, TypeError, "seed=1.5"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            noisylayers.mc_sample(model, X, **kwargs)
    with pytest.raises(TypeError, match="keras.Model"):
        noisylayers.mc_sample(model.get_layer("head"), X)
    plain = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="no noisy layers"):
        noisylayers.mc_sample(plain, X)


# -- noise_stats --------------------------------------------------------------


def fixed_kinds_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.WeightNoise(
                layers.Dense(5), noise=noise.Gaussian(0.1), name="additive"
            ),
            noisylayers.NoisyDense(
                5, noise=noise.MultiplicativeGaussian(0.2), name="multiplicative"
            ),
            noisylayers.NoisyDense(
                2, noise=noise.DropConnect(0.25), name="dropconnect"
            ),
        ]
    )


def mean_abs(variable):
    return float(np.mean(np.abs(numpy(variable.value).astype("float64"))))


def test_noise_stats_of_fixed_kinds():
    model = fixed_kinds_model()
    for layer in model.layers:
        layer.target_variables[1].assign(
            np.full((layer.target_variables[1].shape[0],), 0.5, "float32")
        )
    model.get_layer("multiplicative").scale = 0.5
    rows = noisylayers.noise_stats(model)
    assert [(r["layer"], r["weight"]) for r in rows] == [
        (name, weight)
        for name in ("additive", "multiplicative", "dropconnect")
        for weight in ("kernel", "bias")
    ]
    by_layer = {}
    for row, (layer, variable) in zip(
        rows,
        [(layer, v) for layer in model.layers for v in layer.target_variables],
    ):
        by_layer.setdefault(row["layer"], []).append(row)
        assert row["kl"] is None
        assert "sparsity" not in row
        assert row["kind"] == type(layer.noise).__name__
        assert row["enabled"] is True
        assert row["scale"] == pytest.approx(layer.scale)
        expected = {
            "additive": 0.1,
            "multiplicative": 0.2 * mean_abs(variable),
            "dropconnect": mean_abs(variable) * math.sqrt(0.25 / 0.75),
        }[row["layer"]]
        assert row["stddev"] == pytest.approx(expected, rel=1e-5)
        assert row["snr"] == pytest.approx(mean_abs(variable) / row["stddev"], rel=1e-5)
    assert by_layer["multiplicative"][0]["scale"] == 0.5


def test_noise_stats_of_a_learned_kind():
    layer = noisylayers.NoisyDense(
        3, noise=noise.LearnedGaussian(kl_weight=0.5), name="learned"
    )
    model = keras.Sequential([keras.Input((4,)), layer])
    rng = np.random.default_rng(0)
    for v in layer.target_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))
        layer.noise_state(v)["rho"].assign(
            rng.uniform(-4, 0, v.shape).astype("float32")
        )
    rows = noisylayers.noise_stats(model)
    assert [r["weight"] for r in rows] == ["kernel", "bias"]
    for row, v in zip(rows, layer.target_variables):
        mu = numpy(v.value).astype("float64")
        sigma = np.logaddexp(
            0.0, numpy(layer.noise_state(v)["rho"].value).astype("float64")
        )
        assert row["stddev"] == pytest.approx(sigma.mean(), rel=1e-5)
        assert row["snr"] == pytest.approx(np.abs(mu).mean() / sigma.mean(), rel=1e-5)
        # The KL without kl_weight.
        kl = np.sum(-np.log(sigma) + (sigma**2 + mu**2) / 2 - 0.5)
        assert row["kl"] == pytest.approx(kl, rel=1e-5)


def test_noise_stats_table_and_selection():
    model = fixed_kinds_model()
    text = str(noisylayers.noise_stats(model))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "weight", "kind", "stddev", "snr", "kl"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + 6
    for name in ("additive", "multiplicative", "dropconnect"):
        assert name in text
    assert "0.1" in lines[2]
    rows = noisylayers.noise_stats(model, layers="multi*")
    assert {r["layer"] for r in rows} == {"multiplicative"}
    plain = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="no noisy layers"):
        noisylayers.noise_stats(plain)
    unbuilt = noisylayers.NoisyDense(2, noise=noise.Gaussian(0.1))
    with pytest.raises(ValueError, match="not built"):
        noisylayers.noise_stats(unbuilt)


# -- the NoiseStats callback ----------------------------------------------------


def has_tensorboard():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_noise_stats_callback_logs_every_epoch(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.NoisyDense(
                5,
                activation="tanh",
                noise=noise.LearnedGaussian(kl_weight=0.01),
                name="noisy_dense",
            ),
            # Named like the layer it wraps, as `wrap` names it: the keys
            # read "wrapper/kernel/...", as for a variant, not
            # "wrapper/wrapper/kernel/...".
            noisylayers.WeightNoise(
                layers.Dense(1, name="wrapper"),
                noise=noise.Gaussian(0.02),
                name="wrapper",
            ),
        ]
    )
    model.compile(keras.optimizers.Adam(0.05), "mse")
    log_dir = None
    if keras.backend.backend() == "tensorflow" and has_tensorboard():
        log_dir = os.path.join(tmp_path, "logs")
    y = X[:, :1] ** 2
    history = model.fit(
        X, y, batch_size=5, epochs=3, verbose=0, callbacks=[NoiseStats(log_dir=log_dir)]
    ).history
    keys = [
        "noisy_dense/kernel/stddev",
        "noisy_dense/kernel/snr",
        "noisy_dense/kernel/kl",
        "noisy_dense/bias/stddev",
        "wrapper/kernel/stddev",
        "wrapper/bias/snr",
    ]
    for key in keys:
        assert len(history[key]) == 3, key
    assert "wrapper/kernel/kl" not in history
    assert history["wrapper/kernel/stddev"] == pytest.approx([0.02] * 3)
    # The learned sigmas moved, and the last entries are today's figures.
    assert (
        history["noisy_dense/kernel/stddev"][0]
        != history["noisy_dense/kernel/stddev"][-1]
    )
    rows = {(r["layer"], r["weight"]): r for r in noisylayers.noise_stats(model)}
    for key in keys:
        layer, weight, figure = key.split("/")
        assert history[key][-1] == pytest.approx(
            rows[(layer, weight)][figure], rel=1e-5
        )
    if log_dir is None:
        # TensorBoard event files: TensorFlow backend, with the
        # `tensorboard` package (TensorFlow 2.21 does not depend on it).
        return
    import tensorflow as tf

    files = [f for f in os.listdir(log_dir) if "tfevents" in f]
    assert files
    tags = {}
    for name in files:
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    for key in keys:
        assert sorted(tags[key]) == [0, 1, 2], key


def test_noise_stats_callback_without_tensorboard_says_so_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails
    with pytest.raises(ImportError, match=r"noisylayers\[tensorboard\].*log_dir='logs'"):
        NoiseStats(log_dir="logs")
    assert NoiseStats().log_dir is None  # History only: no tensorboard needed
