"""Checks that `run_layer_test` lacks, shared by the tests of every noisy layer.

The gradient helpers work on the TensorFlow and JAX backends: with JAX they
differentiate `layer.stateless_call`, which also exercises the path where
the wrapper runs inside an enclosing stateless scope (as under `fit`).
"""

import inspect

import keras
import numpy as np
from keras import ops
from keras.src import testing


def gradients(layer, inputs, loss_fn, training=True):
    """Gradients of `loss_fn(layer(inputs))` w.r.t. `layer.trainable_variables`.

    Returns a list of numpy arrays, one per trainable variable.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(layer(inputs, training=training))
        grads = tape.gradient(loss, [v.value for v in layer.trainable_variables])
        return [ops.convert_to_numpy(tf.convert_to_tensor(g)) for g in grads]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        # `stateless_call` passes keyword arguments to `call` as they are.
        takes_training = "training" in inspect.signature(layer.call).parameters
        kwargs = {"training": training} if takes_training else {}

        def loss(values):
            outputs, _ = layer.stateless_call(
                values, non_trainable, inputs, **kwargs
            )
            return loss_fn(outputs)

        return [np.asarray(g) for g in jax.grad(loss)(trainable)]
    raise NotImplementedError(f"No gradient helper for backend {backend}.")


def snapshot(layer):
    """Numpy copies of all of `layer`'s variables (seed states included)."""
    return [np.array(ops.convert_to_numpy(v.value)) for v in layer.variables]


class NoiseLayerTestCase(testing.TestCase):
    """`keras.src.testing.TestCase` plus the checks every noisy layer needs."""

    def assert_noisy_in_training_exact_in_inference(self, layer, plain, inputs):
        """Training calls differ call to call; inference equals `plain`."""
        expected = ops.convert_to_numpy(plain(inputs))
        first = ops.convert_to_numpy(layer(inputs, training=True))
        second = ops.convert_to_numpy(layer(inputs, training=True))
        self.assertFalse(np.allclose(first, second))
        self.assertFalse(np.allclose(first, expected))
        for training in (False, None):
            np.testing.assert_array_equal(
                ops.convert_to_numpy(layer(inputs, training=training)), expected
            )

    def assert_variables_unchanged(self, layer, inputs, loss_fn):
        """A noisy forward/backward pass leaves the weights bit-identical."""
        before = [np.array(ops.convert_to_numpy(v.value)) for v in layer.weights]
        gradients(layer, inputs, loss_fn)
        after = [np.array(ops.convert_to_numpy(v.value)) for v in layer.weights]
        for b, a in zip(before, after):
            np.testing.assert_array_equal(a, b)
