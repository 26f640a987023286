"""`noisylayers.wrap` and `noisylayers.unwrap`."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import layers

import noisylayers
from noisylayers._seeds import derive_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def sequential():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(4, 3, activation="relu", name="conv1"),
            layers.BatchNormalization(name="bn"),
            layers.Conv2D(4, 3, name="conv2"),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(3, name="out"),
        ]
    )


def functional_nested_shared():
    block = keras.Sequential(
        [keras.Input((16,)), layers.Dense(8, activation="tanh", name="inner")],
        name="block",
    )
    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(4, 3, name="conv1")(inputs)
    h = layers.GlobalAveragePooling2D()(h)
    shared = layers.Dense(16, name="shared")
    h = shared(shared(layers.Dense(16, name="pre")(h)))
    h = block(h)
    outputs = layers.Dense(3, name="out")(h)
    return keras.Model(inputs, outputs)


def lstm_functional():
    inputs = keras.Input((5, 3))
    h = layers.LSTM(4, return_sequences=True, name="lstm")(inputs)
    h = layers.GRU(4, name="gru")(h)
    return keras.Model(inputs, layers.Dense(2, name="out")(h))


def wrapper_layers():
    inputs = keras.Input((5, 3))
    h = layers.Bidirectional(
        layers.LSTM(4, return_sequences=True, name="lstm"), name="bi"
    )(inputs)
    h = layers.TimeDistributed(layers.Dense(3, name="td_dense"), name="td")(h)
    h = layers.Bidirectional(layers.SimpleRNN(2, name="rnn"), name="bi_rnn")(h)
    return keras.Model(inputs, layers.Dense(2, name="out")(h))


BUILDERS = {
    "sequential": (sequential, (8, 8, 1)),
    "functional": (functional_nested_shared, (8, 8, 1)),
    "recurrent": (lstm_functional, (5, 3)),
}


def _data(shape, n=6):
    return np.random.default_rng(0).normal(size=(n, *shape)).astype("float32")


def _plain_layers(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _plain_layers(layer)
        elif not isinstance(layer, layers.InputLayer):  # cloning renames them
            found.append(layer)
    return found


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_wrap_keeps_inference_and_adds_noise(kind):
    build, shape = BUILDERS[kind]
    model = build()
    x = _data(shape)
    before = [numpy(v) for v in model.weights]
    expected = numpy(model.predict(x, verbose=0))
    noisy = noisylayers.wrap(model, seed=3)
    np.testing.assert_array_equal(numpy(noisy.predict(x, verbose=0)), expected)
    assert not np.allclose(numpy(noisy(x, training=True)), expected)
    # The original is untouched and has no noisy layer.
    assert not noisylayers.noise_layers(model)
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(numpy(v), b)
    # Each wrapper takes the name of the layer it wraps; selections by the
    # old names keep working.
    wrapped = [layer.name for layer in noisylayers.noise_layers(noisy)]
    plain = [l.name for l in _plain_layers(model) if l.weights and "bn" not in l.name]
    assert sorted(wrapped) == sorted(plain)
    selected = noisylayers.set_noise(noisy, scale=0.5, layers=plain[0])
    assert [layer.name for layer in selected] == [plain[0]]


def test_wrap_seeds_layers_differently_and_reproducibly():
    model = functional_nested_shared()  # no Dropout, whose own seed differs
    x = _data((8, 8, 1))
    a = noisylayers.wrap(model, seed=7)
    b = noisylayers.wrap(model, seed=7)
    # One salted derivation per layer name (noisylayers._seeds), not seed + i.
    seeds = [l.seed for l in noisylayers.noise_layers(a)]
    assert seeds == [derive_seed(7, ("wrap", l.name)) for l in noisylayers.noise_layers(a)]
    assert len(set(seeds)) == len(seeds) and 7 not in seeds
    np.testing.assert_array_equal(numpy(a(x, training=True)), numpy(b(x, training=True)))


def test_wrap_selects_by_glob_and_object_with_kind_and_estimator():
    model = sequential()
    noisy = noisylayers.wrap(
        model, noise="gaussian:0.2", layers="conv*", estimator="flipout"
    )
    found = noisylayers.noise_layers(noisy)
    assert [l.name for l in found] == ["conv1", "conv2"]
    assert all(l.estimator == "flipout" and l.noise.stddev == 0.2 for l in found)
    assert type(noisy.get_layer("out")) is layers.Dense
    noisy = noisylayers.wrap(model, layers=[model.get_layer("out")])
    assert [l.name for l in noisylayers.noise_layers(noisy)] == ["out"]


def test_wrap_leaves_noisy_layers_and_refuses_bad_selections():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.NoisyDense(3, noise="dropconnect", name="noisy"),
            layers.Dense(2, name="plain"),
        ]
    )
    noisy = noisylayers.wrap(model)
    assert type(noisy.get_layer("noisy")) is noisylayers.NoisyDense
    assert noisy.get_layer("noisy").noise == noisylayers.noise.DropConnect()
    assert type(noisy.get_layer("plain")) is noisylayers.WeightNoise
    with pytest.raises(ValueError, match="No layer of model .* is named 'nope'"):
        noisylayers.wrap(model, layers="nope")
    with pytest.raises(TypeError, match="Received: model of type"):
        noisylayers.wrap("model")


def test_subclassed_models_are_refused_with_advice():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.ones((1, 3), "float32"))
    for function in (noisylayers.wrap, noisylayers.unwrap):
        with pytest.raises(ValueError, match="subclassed model.*WeightNoise"):
            function(model)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_unwrap_of_wrap_is_the_original_layer_by_layer(kind):
    build, shape = BUILDERS[kind]
    model = build()
    x = _data(shape)
    noisy = noisylayers.wrap(model, noise="multiplicative_gaussian")
    plain = noisylayers.unwrap(noisy)
    assert not noisylayers.noise_layers(plain)
    original, back = _plain_layers(model), _plain_layers(plain)
    assert [type(l) for l in back] == [type(l) for l in original]
    for a, b in zip(original, back):
        assert a.get_config() == b.get_config()
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(
        numpy(plain.predict(x, verbose=0)), numpy(model.predict(x, verbose=0))
    )


def test_unwrap_variants_and_learned_kinds_keeps_the_mean_weights():
    x = _data((5, 3))
    inputs = keras.Input((5, 3))
    h = noisylayers.NoisyLSTM(4, estimator="flipout", name="lstm")(inputs)
    h = noisylayers.NoisyDense(
        6, activation="relu", noise=noisylayers.noise.LearnedGaussian(kl_weight=0.1)
    )(h)
    outputs = noisylayers.WeightNoise(
        layers.Dense(2), noise="factorized", name="head"
    )(h)
    model = keras.Model(inputs, outputs)
    plain = noisylayers.unwrap(model)
    assert [type(l).__name__ for l in plain.layers[1:]] == ["LSTM", "Dense", "Dense"]
    assert plain.layers[-1].name == "head"
    np.testing.assert_allclose(
        numpy(plain.predict(x, verbose=0)), numpy(model.predict(x, verbose=0)), atol=1e-6
    )


def test_unwrap_writes_pruned_weights_as_zeros():
    kind = noisylayers.noise.VariationalDropout(threshold=3.0, kl_weight=0.1)
    model = keras.Sequential([keras.Input((5,)), noisylayers.NoisyDense(4, noise=kind)])
    layer = model.layers[0]
    log_sigma2 = layer.noise_state(layer.kernel)["log_sigma2"]
    pruned = np.zeros((5, 4), bool)
    pruned[::2] = True
    log_sigma2.assign(np.where(pruned, 20.0, -20.0).astype("float32"))
    plain = noisylayers.unwrap(model)
    kernel = plain.layers[0].get_weights()[0]
    np.testing.assert_array_equal(kernel[pruned], 0.0)
    np.testing.assert_array_equal(kernel[~pruned], numpy(layer.kernel)[~pruned])
    x = _data((5,))
    np.testing.assert_array_equal(
        numpy(plain.predict(x, verbose=0)), numpy(model.predict(x, verbose=0))
    )


@pytest.mark.parametrize(
    "build, shape", [(functional_nested_shared, (8, 8, 1)), (wrapper_layers, (5, 3))]
)
def test_unwrapped_model_loads_without_noisylayers(tmp_path, build, shape):
    model = noisylayers.wrap(build(), noise="learned_gaussian")
    x = _data(shape)
    plain = noisylayers.unwrap(model)
    path = str(tmp_path / "plain.keras")
    plain.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", numpy(model.predict(x, verbose=0)))
    script = textwrap.dedent(
        """
        import sys
        sys.modules["noisylayers"] = None  # importing it now fails
        import numpy as np, keras
        model = keras.models.load_model(sys.argv[1])
        y = model.predict(np.load(sys.argv[2]), verbose=0)
        np.testing.assert_allclose(y, np.load(sys.argv[3]), atol=1e-6)
        print("LOADED")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, path, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED" in result.stdout


def test_wrap_and_unwrap_look_into_wrapper_layers():
    model = wrapper_layers()
    x = _data((5, 3))
    noisy = noisylayers.wrap(model, seed=1)
    found = {l.name: type(l).__name__ for l in noisylayers.noise_layers(noisy)}
    # Bidirectional keeps recurrent layers (the variants); TimeDistributed
    # holds a WeightNoise; a Bidirectional SimpleRNN (no variant) is wrapped whole.
    assert found == {
        "forward_lstm": "NoisyLSTM",
        "backward_lstm": "NoisyLSTM",
        "td_dense": "WeightNoise",
        "bi_rnn": "WeightNoise",
        "out": "WeightNoise",
    }
    assert type(noisy.get_layer("bi")) is layers.Bidirectional
    expected = numpy(model.predict(x, verbose=0))
    np.testing.assert_array_equal(numpy(noisy.predict(x, verbose=0)), expected)
    plain = noisylayers.unwrap(noisy)
    assert not noisylayers.noise_layers(plain)
    assert type(plain.get_layer("bi").forward_layer) is layers.LSTM
    assert type(plain.get_layer("td").layer) is layers.Dense
    np.testing.assert_array_equal(numpy(plain.predict(x, verbose=0)), expected)


def test_wrap_falls_back_per_layer_or_refuses_before_building():
    inputs = keras.Input((6, 6, 2))
    h = layers.DepthwiseConv2D(3, name="dw")(inputs)
    h = layers.Conv2D(3, 3, name="conv")(h)
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.Flatten()(h)))
    with pytest.warns(UserWarning, match=r"layers \['dw'\] do not have estimator 'flipout'"):
        noisy = noisylayers.wrap(model, estimator="flipout")
    estimators = {l.name: l.estimator for l in noisylayers.noise_layers(noisy)}
    assert estimators == {"dw": "shared", "conv": "flipout", "out": "flipout"}
    with pytest.raises(ValueError, match="'dw' \\(DepthwiseConv2D\\).*fallback=None"):
        noisylayers.wrap(model, estimator="flipout", fallback=None)
    with pytest.raises(ValueError, match="Received: fallback='flipout'"):
        noisylayers.wrap(model, fallback="flipout")


def test_wrap_never_stacks_noise_on_a_noisy_layer():
    noisy = noisylayers.wrap(sequential(), noise="dropconnect")
    # Default selection keeps the existing noises (nothing is left to wrap).
    again = noisylayers.wrap(noisy, noise="gaussian")
    assert {type(l.noise).__name__ for l in noisylayers.noise_layers(again)} == {
        "DropConnect"
    }
    assert all(
        not isinstance(l.layer, noisylayers.NoisyLayer)
        for l in noisylayers.noise_layers(again)
    )
    with pytest.raises(ValueError, match=r"\['conv1'\] .* noisy already"):
        noisylayers.wrap(noisy, layers="conv1")
