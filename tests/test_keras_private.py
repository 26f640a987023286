"""Pins the Keras internals that `noisylayers._keras_private` relies on.

If a Keras upgrade breaks one of these, fix `_keras_private` (and only it).
"""

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops
from keras.src.backend.common.stateless_scope import get_stateless_scope

from noisylayers import _keras_private


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_scope_mapping_is_a_dict_keyed_by_variable_id():
    v = keras.Variable(np.zeros(2, "float32"))
    with keras.StatelessScope([(v, np.ones(2, "float32"))]) as scope:
        assert get_stateless_scope() is scope
        assert id(v) in scope.state_mapping
        np.testing.assert_array_equal(numpy(v.value), 1.0)
        v.assign(np.full(2, 3.0, "float32"))
        np.testing.assert_array_equal(numpy(scope.state_mapping[id(v)]), 3.0)
    assert get_stateless_scope() is None
    np.testing.assert_array_equal(numpy(v), 0.0)


def test_nested_scope_hides_the_outer_mapping():
    """Why `substitute` extends an outer scope instead of nesting one."""
    a = keras.Variable(np.zeros(2, "float32"))
    b = keras.Variable(np.zeros(2, "float32"))
    with keras.StatelessScope([(a, np.ones(2, "float32"))]):
        with keras.StatelessScope([(b, np.ones(2, "float32"))]):
            np.testing.assert_array_equal(numpy(a.value), 0.0)


def test_flatten_layers_walks_nested_layers():
    inner = layers.Dense(2)
    block = keras.Sequential(
        [keras.Input((4, 3)), layers.Bidirectional(layers.LSTM(2)), inner]
    )
    names = [l.name for l in _keras_private.sublayers(block)]
    assert names[0] == block.name
    assert inner.name in names
    assert any("lstm_cell" in n for n in names)


def test_read_value_ignores_autocast():
    v = keras.Variable(np.full(2, 1 / 3, "float32"))
    with keras.src.backend.AutocastScope("float16"):
        assert keras.backend.standardize_dtype(v.value.dtype) == "float16"
        value = _keras_private.read_value(v)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


def test_substitute_maps_and_writes_back():
    target = keras.Variable(np.zeros(2, "float32"))
    other = keras.Variable(np.zeros(2, "float32"))
    owner = layers.Layer()
    with _keras_private.substitute([(target, np.ones(2, "float32"))], owner):
        np.testing.assert_array_equal(numpy(target.value), 1.0)
        other.assign(np.full(2, 5.0, "float32"))
        owner.add_loss(ops.sum(target.value))
    np.testing.assert_array_equal(numpy(target), 0.0)
    np.testing.assert_array_equal(numpy(other), 5.0)
    assert len(owner.losses) == 1
    np.testing.assert_allclose(numpy(owner.losses[0]), 2.0)


def test_substitute_extends_and_restores_an_outer_scope():
    target = keras.Variable(np.zeros(2, "float32"))
    other = keras.Variable(np.zeros(2, "float32"))
    outer_value = np.full(2, 7.0, "float32")
    with keras.StatelessScope([(target, outer_value), (other, outer_value)]) as outer:
        with _keras_private.substitute([(target, np.ones(2, "float32"))], None):
            assert get_stateless_scope() is outer
            np.testing.assert_array_equal(numpy(target.value), 1.0)
            np.testing.assert_array_equal(numpy(other.value), 7.0)
            other.assign(np.full(2, 2.0, "float32"))
        np.testing.assert_array_equal(numpy(target.value), 7.0)
        np.testing.assert_array_equal(numpy(other.value), 2.0)
        with pytest.raises(RuntimeError):
            with _keras_private.substitute([(target, np.ones(2, "float32"))], None):
                raise RuntimeError("boom")
        np.testing.assert_array_equal(numpy(target.value), 7.0)


def test_substitute_removes_a_mapping_it_added_to_an_outer_scope():
    target = keras.Variable(np.zeros(2, "float32"))
    with keras.StatelessScope() as outer:
        with _keras_private.substitute([(target, np.ones(2, "float32"))], None):
            np.testing.assert_array_equal(numpy(target.value), 1.0)
        assert id(target) not in outer.state_mapping


def test_substitute_leaves_no_scope_after_an_exception():
    target = keras.Variable(np.zeros(2, "float32"))
    with pytest.raises(RuntimeError):
        with _keras_private.substitute([(target, np.ones(2, "float32"))], None):
            raise RuntimeError("boom")
    assert get_stateless_scope() is None
    np.testing.assert_array_equal(numpy(target.value), 0.0)


def test_trace_output_spec_traces_call_past_the_layer_override():
    """`WeightNoise` traces its `call` when the wrapped layer cannot answer."""

    class Doubling(layers.Layer):
        def call(self, x):
            return ops.concatenate([x, x], axis=-1)

        def compute_output_shape(self, input_shape):
            raise NotImplementedError

    layer = Doubling()
    spec = _keras_private.trace_output_spec(layer, keras.KerasTensor((2, 3)))
    assert tuple(spec.shape) == (2, 6)
    # The `Layer` override asks `compute_output_shape` instead.
    with pytest.raises(NotImplementedError):
        layer.compute_output_spec(keras.KerasTensor((2, 3)))


def test_in_xla_context_only_while_tracing_for_xla():
    assert not _keras_private.in_xla_context()
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    def probe():
        return tf.constant(_keras_private.in_xla_context())

    assert not bool(tf.function(probe)())
    assert bool(tf.function(probe, jit_compile=True)())


def test_own_losses_are_cleared_when_an_outermost_call_begins():
    """Why a noisy layer called twice in one step finds its first KL."""

    class AddsLoss(layers.Layer):
        def call(self, x):
            self.add_loss(ops.sum(x))
            return x

    inner = AddsLoss()
    a, b = keras.Input((2,)), keras.Input((2,))
    model = keras.Model([a, b], [inner(a), inner(b)])
    x = [np.ones((1, 2), "float32"), np.full((1, 2), 2.0, "float32")]
    model(x)
    # One outermost call (the model's): both calls' losses are kept.
    assert sorted(float(numpy(l)) for l in _keras_private.own_losses(inner)) == [2.0, 4.0]
    model(x)
    assert len(_keras_private.own_losses(inner)) == 2  # cleared, then two
    with keras.StatelessScope(collect_losses=True) as scope:
        inner(np.ones((1, 2), "float32"))
        assert [id(l) for l in _keras_private.own_losses(inner)] == [
            id(l) for l in scope.losses
        ]
