"""Robustness: mixed precision, XLA, export, nothing lost, errors mid-call."""

import functools

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import noise

# One example of every kind of the registry (`noise.ALIASES`), with these
# arguments where its defaults do not suit a short noisy training run, and
# the table sampler.
ARGUMENTS = {
    "gaussian": {"stddev": 0.05},
    "multiplicative_gaussian": {"stddev": 0.1},
    "dropconnect": {"rate": 0.2},
    "learned_gaussian": {"kl_weight": 1e-3},
    "adaptive_gaussian": {"kl_weight": 1e-3},
    "variational_dropout": {"kl_weight": 1e-3},
    "relative_gaussian": {"stddev": 0.05, "per": "channel"},
    "quantize": {"bits": 4},
    "stuck_at": {"rate": 0.05},
}
KINDS = {
    alias: functools.partial(cls, **ARGUMENTS.get(alias, {}))
    for alias, cls in noise.ALIASES.items()
}
KINDS["table"] = lambda: noise.Gaussian(0.05, sampler="table")


def test_the_examples_are_of_registered_kinds():
    assert set(ARGUMENTS) <= set(noise.ALIASES)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def supports(kind, estimator):
    return kind().unsupported_reason(estimator) is None


def every_kind_model(estimator):
    """NoisyConv2D, NoisyLSTM, then one NoisyDense per kind that supports
    `estimator` (the LSTM has no local reparameterization: shared there)."""
    recurrent = "shared" if estimator == "local_reparameterization" else estimator
    dense = [
        noisylayers.NoisyDense(4, noise=kind(), estimator=estimator, seed=i, name=name)
        for i, (name, kind) in enumerate(sorted(KINDS.items()))
        if supports(kind, estimator)
    ]
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            noisylayers.NoisyConv2D(
                3, 3, noise=KINDS["learned_gaussian"](), estimator=estimator
            ),
            keras.layers.Reshape((-1, 3)),
            noisylayers.NoisyLSTM(
                4, noise=KINDS["relative_gaussian"](), estimator=recurrent
            ),
            *dense,
            noisylayers.NoisyDense(3, estimator=estimator),
            keras.layers.Activation("linear", dtype="float32"),
        ]
    )


def data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), np.zeros((n, 3), "float32")


@pytest.mark.parametrize("estimator", ["shared", "flipout", "local_reparameterization"])
def test_mixed_precision_trains_finite_with_every_kind(estimator):
    # float16 matmuls are TensorFlow's; bfloat16 runs on JAX's CPU.
    policy = "mixed_float16" if keras.backend.backend() == "tensorflow" else "mixed_bfloat16"
    keras.config.set_dtype_policy(policy)
    x, y = data()
    model = every_kind_model(estimator)
    model.compile("adam", "mse")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for v in model.weights:
        assert np.isfinite(numpy(v)).all(), v.path
    for layer in model.layers[3:-2]:
        # Outputs in the compute dtype; weights and noise parameters float32.
        out = layer(np.ones((2, 4), "float32"), training=True)
        assert keras.backend.standardize_dtype(out.dtype) == policy[6:], layer.name
        for v in layer.trainable_weights:
            assert v.dtype == "float32", v.path


class Counting(noisylayers.NoisyDense):
    """A NoisyDense that counts how often its Python `call` runs."""

    calls = 0

    def call(self, inputs, training=None):
        type(self).calls += 1
        return super().call(inputs, training=training)


@pytest.mark.parametrize("estimator", ["shared", "flipout", "local_reparameterization"])
def test_jit_compile_trains_and_traces_once(estimator):
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    Counting.calls = 0
    model = keras.Sequential(
        [
            keras.Input((5,)),
            Counting(8, activation="relu", estimator=estimator, seed=1,
                     noise=noise.LearnedGaussian(kl_weight=1e-3)),
            noisylayers.NoisyDense(1, estimator=estimator, seed=2),
        ]
    )
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0)  # 16 steps
    assert np.isfinite(history.history["loss"]).all()
    # Traced for the symbolic build and the train step, not once per step.
    assert Counting.calls <= 3, Counting.calls


def test_scale_zero_training_equals_plain_keras_training_exactly():
    """No residual noise: with scale 0 the optimizer sees the plain model."""
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.random.default_rng(1).normal(size=(32, 2)).astype("float32")

    def pair():
        keras.utils.set_random_seed(7)
        plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, "tanh"), keras.layers.Dense(2)])
        noisy = noisylayers.wrap(plain, noise="gaussian:0.5")
        noisy.layers[0].layer.set_weights(plain.layers[0].get_weights())
        noisylayers.set_noise(noisy, scale=0.0)
        return plain, noisy

    for jit in (False, True):
        plain, noisy = pair()
        for model in (plain, noisy):
            model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit)
            model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        for a, b in zip(plain.weights, noisylayers.unwrap(noisy).weights):
            np.testing.assert_allclose(numpy(a), numpy(b), rtol=1e-6, atol=1e-7)


def test_custom_gradient_loop_updates_only_through_the_optimizer():
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    layer = noisylayers.NoisyDense(3, noise="gaussian:0.3", seed=0)
    layer.build(x.shape)
    before = [numpy(v) for v in layer.trainable_variables]
    from tests.noise_testing import gradients

    grads = gradients(layer, x, lambda y: keras.ops.sum(keras.ops.square(y)))
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.apply(grads, layer.trainable_variables)
    for v, b, g in zip(layer.trainable_variables, before, grads):
        np.testing.assert_allclose(numpy(v), b - 0.1 * g, rtol=1e-6, atol=1e-7)


class Flaky(keras.layers.Layer):
    """A Dense-like layer whose call raises while `fail` is set."""

    fail = False

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")

    def call(self, inputs):
        if self.fail:
            raise RuntimeError("boom")
        return keras.ops.matmul(inputs, self.kernel)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (2,)


def test_an_error_inside_a_noisy_call_loses_nothing():
    x = np.ones((2, 3), "float32")
    inner = Flaky()
    layer = noisylayers.WeightNoise(inner, seed=0)
    layer.build(x.shape)
    layer.scale = 0.5
    before = [numpy(v) for v in layer.weights]
    Flaky.fail = True
    try:
        with pytest.raises(RuntimeError, match="boom"):
            layer(x, training=True)
    finally:
        Flaky.fail = False
    for v, b in zip(layer.weights, before):
        np.testing.assert_array_equal(numpy(v), b)
    assert layer.enabled and layer.scale == 0.5
    # Usable afterwards: inference reads the real kernel again.
    np.testing.assert_array_equal(numpy(layer(x)), x @ before[0])
    assert not np.allclose(numpy(layer(x, training=True)), x @ before[0])


def test_export_serves_predict_without_random_ops(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("model.export writes a TensorFlow SavedModel.")
    import tensorflow as tf

    x, _ = data(4)
    model = every_kind_model("local_reparameterization")
    model.layers[0].scale = 2.0
    path = str(tmp_path / "exported")
    model.export(path, verbose=False)
    served = tf.saved_model.load(path)
    np.testing.assert_allclose(
        numpy(served.serve(x)), numpy(model.predict(x, verbose=0)), atol=1e-5
    )
    graph = served.serve.get_concrete_function(
        tf.TensorSpec((None, 6, 6, 2), tf.float32)
    ).graph
    ops = set()
    for function in graph.as_graph_def().library.function:
        ops.update(node.op for node in function.node_def)
    ops.update(node.op for node in graph.as_graph_def().node)
    assert not [op for op in ops if "Random" in op], sorted(ops)


@pytest.mark.parametrize("change", ["lora", "int8"])
def test_lora_or_quantization_after_wrapping_is_refused_before_a_file_is_lost(
    change, tmp_path
):
    """Regression: both used to train and save, then fail to load."""
    model = keras.Sequential(
        [keras.Input((4,)), noisylayers.WeightNoise(keras.layers.Dense(3), name="w")]
    )
    if change == "lora":
        model.layers[0].layer.enable_lora(2)
        message = "LoRA is enabled"
    else:
        model.quantize("int8")
        message = "quantized"
    with pytest.raises(ValueError, match=message):
        model(np.ones((1, 4), "float32"), training=True)
    with pytest.raises(ValueError, match=message):
        model.save(str(tmp_path / "m.keras"))  # refused: no file that cannot load


def test_noise_below_the_compute_dtype_resolution_warns():
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = noisylayers.NoisyDense(
        4, noise=noise.Gaussian(1e-4), kernel_initializer="ones"
    )
    with pytest.warns(UserWarning, match="below the resolution of bfloat16"):
        layer.build((None, 3))
    quiet = noisylayers.NoisyDense(4, noise=noise.Gaussian(0.1), kernel_initializer="ones")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        quiet.build((None, 3))


def test_wrapper_forwards_reset_state_of_a_stateful_rnn(tmp_path):
    """Regression: `hasattr(layer, "reset_state")` loops skipped the wrapper."""
    layer = noisylayers.WeightNoise(keras.layers.LSTM(3, stateful=True), seed=0)
    model = keras.Sequential([keras.Input((4, 2), batch_size=2), layer])
    x = np.ones((2, 4, 2), "float32")
    first = numpy(model(x))
    assert not np.allclose(numpy(model(x)), first)  # the state carried over
    assert hasattr(layer, "reset_state")
    for sub in model.layers:
        if hasattr(sub, "reset_state"):
            sub.reset_state()
    np.testing.assert_allclose(numpy(model(x)), first, atol=1e-6)
    assert not hasattr(noisylayers.WeightNoise(keras.layers.Dense(2)), "reset_state")
    model.save(str(tmp_path / "stateful.keras"))
