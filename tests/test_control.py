import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import WeightNoise
from noisylayers import noise_layers
from noisylayers import noise_scope
from noisylayers import set_noise


def noisy(layer, name, stddev=1.0):
    return WeightNoise(layer, noise=noisylayers.noise.Gaussian(stddev), name=name)


def nested_model():
    """Noisy layers at the top, in a nested model, inside wrappers."""
    inner = keras.Sequential(
        [
            keras.Input((6,)),
            noisy(keras.layers.Dense(6), "inner_1"),
            keras.layers.Dense(6, name="inner_plain"),
            noisy(keras.layers.Dense(6), "inner_2"),
        ],
        name="inner",
    )
    inputs = keras.Input((5, 4))
    x = noisy(keras.layers.Dense(6), "conv_first")(inputs)
    x = noisy(keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)), "recurrent")(x)
    x = keras.layers.TimeDistributed(inner, name="per_step")(x)
    x = keras.layers.Flatten()(x)
    outputs = noisy(keras.layers.Dense(2), "conv_last")(x)
    return keras.Model(inputs, outputs, name="outer")


def state(model):
    return {l.name: (l.enabled, l.scale) for l in noise_layers(model)}


def test_noise_layers_in_order_through_nesting_and_wrappers():
    model = nested_model()
    names = [layer.name for layer in noise_layers(model)]
    assert names == ["conv_first", "recurrent", "inner_1", "inner_2", "conv_last"]
    assert all(isinstance(l, WeightNoise) for l in noise_layers(model))
    # A noisy layer by itself, and a model without any.
    layer = noisy(keras.layers.Dense(2), "alone")
    assert noise_layers(layer) == [layer]
    assert noise_layers(keras.Sequential([keras.layers.Dense(2)])) == []


def test_noise_layers_inside_wrappers_of_layers():
    wrapped = keras.layers.TimeDistributed(noisy(keras.layers.Dense(2), "td"))
    assert [l.name for l in noise_layers(wrapped)] == ["td"]


def test_a_shared_layer_is_listed_once():
    shared = noisy(keras.layers.Dense(4), "shared")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert noise_layers(model) == [shared]


def test_select_by_name_glob_and_object():
    model = nested_model()
    layers = {l.name: l for l in noise_layers(model)}
    assert noise_layers(model, "inner_1") == [layers["inner_1"]]
    assert [l.name for l in noise_layers(model, "conv_*")] == ["conv_first", "conv_last"]
    assert [l.name for l in noise_layers(model, ["inner_?", layers["recurrent"]])] == [
        "recurrent", "inner_1", "inner_2",
    ]
    set_noise(model, enabled=False, layers="conv*")
    set_noise(model, scale=0.25, layers=[layers["inner_2"], "recurrent"])
    assert state(model) == {
        "conv_first": (False, 1.0),
        "recurrent": (True, 0.25),
        "inner_1": (True, 1.0),
        "inner_2": (True, 0.25),
        "conv_last": (False, 1.0),
    }
    changed = set_noise(model, enabled=True)
    assert len(changed) == 5 and all(l.enabled for l in changed)


def test_unknown_names_list_the_noisy_layers():
    model = nested_model()
    before = state(model)
    with pytest.raises(ValueError) as info:
        set_noise(model, enabled=False, layers=["inner_1", "dense_9"])
    message = str(info.value)
    assert "'dense_9'" in message
    assert "['conv_first', 'recurrent', 'inner_1', 'inner_2', 'conv_last']" in message
    assert state(model) == before  # nothing changed
    with pytest.raises(ValueError, match="named 'inner_plain'"):
        set_noise(model, enabled=False, layers="inner_plain")


def test_layer_objects_must_be_noisy_layers_of_the_model():
    model = nested_model()
    plain = model.get_layer("per_step")
    with pytest.raises(ValueError, match="is not a noisy layer"):
        set_noise(model, enabled=False, layers=[plain])
    other = noisy(keras.layers.Dense(2), "elsewhere")
    with pytest.raises(ValueError, match="is not in model 'outer'"):
        set_noise(model, enabled=False, layers=other)
    with pytest.raises(TypeError, match="Received: 3"):
        set_noise(model, enabled=False, layers=[3])
    with pytest.raises(TypeError, match="layers"):
        set_noise(model, enabled=False, layers=[])


def test_argument_checks():
    model = nested_model()
    with pytest.raises(ValueError, match="Received: scale=-1"):
        set_noise(model, scale=-1)
    with pytest.raises(TypeError, match="Received: scale='big'"):
        set_noise(model, scale="big")
    with pytest.raises(TypeError, match="Received: enabled=1"):
        set_noise(model, enabled=1)
    with pytest.raises(TypeError, match="model"):
        noise_layers("model")
    with pytest.raises(ValueError, match="no noisy layers"):
        set_noise(keras.Sequential([keras.layers.Dense(2)]), enabled=False)
    with pytest.raises(ValueError, match="Received: scale=-1"):
        with noise_scope(model, scale=-1):
            pass


def zero_model():
    """The loss is 0 exactly unless layer `b` is noisy.

    `b` has a zero kernel and the target is zero; `a` feeds it non-zero
    inputs whether `a` is noisy or not.
    """
    model = keras.Sequential(
        [
            keras.Input((4,)),
            noisy(keras.layers.Dense(4, use_bias=False, kernel_initializer="ones"), "a"),
            noisy(keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"), "b"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


X = np.ones((64, 4), "float32")
Y = np.zeros((64, 1), "float32")


def test_set_noise_acts_inside_compiled_fit():
    """Changed from a callback, after compile, without recompiling."""

    class Switch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                set_noise(self.model, enabled=False, layers="b")
            if epoch == 2:
                set_noise(self.model, enabled=True, scale=0.0)
            if epoch == 3:
                set_noise(self.model, scale=1.0, layers="b")

    model = zero_model()
    history = model.fit(X, Y, epochs=4, batch_size=8, verbose=0, callbacks=[Switch()])
    loss = history.history["loss"]
    assert loss[0] > 0.1
    assert loss[1] == 0.0
    assert loss[2] == 0.0
    assert loss[3] > 0.1


def test_noise_scope_in_fit_and_evaluate():
    model = zero_model()
    with noise_scope(model, enabled=False):
        assert model.fit(X, Y, epochs=1, batch_size=8, verbose=0).history["loss"] == [0.0]
    assert model.fit(X, Y, epochs=1, batch_size=8, verbose=0).history["loss"][0] > 0.1
    with noise_scope(model, scale=0.0, layers="b"):
        assert model.fit(X, Y, epochs=1, batch_size=8, verbose=0).history["loss"] == [0.0]
    # Noise is for training only: evaluate is clean either way.
    assert model.evaluate(X, Y, verbose=0) == 0.0


def test_noise_scope_restores_the_previous_state():
    model = nested_model()
    set_noise(model, scale=0.7, layers="inner_1")
    set_noise(model, enabled=False, layers="conv_last")
    before = state(model)
    with noise_scope(model, enabled=True, scale=3.0, layers="*_?") as changed:
        assert [l.name for l in changed] == ["inner_1", "inner_2"]
        assert state(model)["inner_1"] == (True, 3.0)
        set_noise(model, enabled=False, layers="inner_2")  # changed inside too
    assert state(model) == before


def test_noise_scope_restores_after_an_exception():
    model = nested_model()
    before = state(model)
    with pytest.raises(RuntimeError, match="boom"):
        with noise_scope(model, enabled=False, scale=0.0):
            assert all(s == (False, 0.0) for s in state(model).values())
            raise RuntimeError("boom")
    assert state(model) == before
