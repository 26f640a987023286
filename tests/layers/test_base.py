"""`NoisyLayer`: the subclass contract, its public helpers and its KL term."""

import ast
import pathlib
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers.layers.variant import NoisyVariant

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent check, run once",
)


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


# -- the subclass contract -----------------------------------------------------


class _NoBuildNoise(NoisyVariant, keras.layers.Dense):
    """Forgets `_build_noise()` in `build`."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self._init_noise("gaussian", None, None, None)

    def call(self, inputs, training=None):
        return self._noise_call(
            inputs, training, lambda: keras.layers.Dense.call(self, inputs)
        )


class _NoInitNoise(NoisyVariant, keras.layers.Dense):
    """Forgets `_init_noise(...)` in `__init__`."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_noise()


def test_the_contract_is_enforced_with_errors_naming_the_missing_step():
    x = np.ones((2, 3), "float32")
    with pytest.raises(RuntimeError, match="ran `_noise_call` before `_build_noise`"):
        _NoBuildNoise(2)(x, training=True)
    with pytest.raises(RuntimeError, match="ran `_build_noise` before `_init_noise`"):
        _NoInitNoise(2)(x)
    layer = _NoBuildNoise(2)
    with pytest.raises(RuntimeError, match="`_init_noise` twice"):
        layer._init_noise("gaussian", None, None, None)


def test_public_helpers_of_a_built_layer():
    dense = keras.layers.Dense(3, name="fc")
    wrapper = noisylayers.WeightNoise(
        dense, noise=noise.LearnedGaussian(kl_weight=1.0), seed=0
    )
    assert wrapper.noise_states is None  # before build
    wrapper.build((None, 4))
    assert wrapper.perturbed_layer() is dense
    assert [v.name for v in wrapper.candidate_weights()] == ["kernel", "bias"]
    states = wrapper.noise_states
    assert [s["rho"].name for s in states] == ["kernel_rho", "bias_rho"]
    assert wrapper.inference_mapping() == []  # inference uses the mean weights
    variant = noisylayers.NoisyDense(3)
    variant.build((None, 4))
    assert variant.perturbed_layer() is variant


def test_sample_at_inference_samples_in_inference_calls():
    layer = noisylayers.NoisyDense(3, noise=noise.Gaussian(0.5), seed=0)
    x = np.ones((2, 4), "float32")
    clean = numpy(layer(x))
    assert layer.sample_at_inference is False
    layer.sample_at_inference = True
    assert not np.allclose(numpy(layer(x, training=False)), clean)
    layer.sample_at_inference = False
    np.testing.assert_array_equal(numpy(layer(x, training=False)), clean)
    with pytest.raises(TypeError, match="Received: sample_at_inference=1"):
        layer.sample_at_inference = 1


# -- one KL per layer per step ---------------------------------------------------


def _shared_layer_model(layer):
    """A functional model calling `layer` on two inputs (shared weights)."""
    a, b = keras.Input((3,)), keras.Input((3,))
    return keras.Model([a, b], [layer(a), layer(b)])


@pytest.mark.parametrize("kind", ["variant", "wrapper"])
def test_a_layer_called_twice_adds_its_kl_once_per_step(kind):
    # Regression: the KL was added once per call (twice per step) on
    # TensorFlow and in eager calls, while the L2 regularizer of the same
    # weights is added once. The KL of a Normal prior is in closed form, so
    # both calls of a step would add the same value.
    kl_noise = noise.LearnedGaussian(kl_weight=1.0)
    if kind == "variant":
        layer = noisylayers.NoisyDense(
            2, noise=kl_noise, kernel_regularizer="l2", seed=0
        )
        dense = layer
    else:
        dense = keras.layers.Dense(2, kernel_regularizer="l2")
        layer = noisylayers.WeightNoise(dense, noise=kl_noise, seed=0)
    model = _shared_layer_model(layer)
    x = [np.ones((4, 3), "float32"), np.full((4, 3), 2.0, "float32")]
    expected_kl = sum(
        float(numpy(kl_noise.kl(v.value, state, None)))
        for v, state in zip(layer.target_variables, layer.noise_states)
    )
    expected_l2 = 0.01 * float(np.sum(numpy(dense.kernel) ** 2))

    model(x, training=True)
    losses = sorted(float(numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(losses, sorted([expected_kl, expected_l2]), rtol=1e-5)

    # Under `fit` (the JAX trainer collects the losses in a stateless
    # scope): with a data loss of 0 and a learning rate of 0, the step's
    # loss is the KL plus the L2, each once.
    model.compile(
        keras.optimizers.SGD(0.0), loss=lambda y, p: 0.0 * ops.mean(p)
    )
    zeros = np.zeros((4, 2), "float32")
    logs = model.train_on_batch(x, [zeros, zeros], return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected_kl + expected_l2, rtol=1e-5)


# -- the low-precision warning --------------------------------------------------


class _Loud(noise.Gaussian):
    """A kind whose resolution hook always answers."""

    def resolution_warning(self, value, dtype):
        return f"hook saw {tuple(value.shape)} in {dtype}"


def test_the_low_precision_warning_is_a_hook_of_the_kind():
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = noisylayers.NoisyDense(4, noise=_Loud(0.1), name="fc")
    with pytest.warns(UserWarning, match=r"Layer 'fc', weight 'fc/kernel': hook saw \(3, 4\) in bfloat16"):
        layer.build((None, 3))
    # Kinds without the hook (a noise relative to the weight) stay quiet.
    quiet = noisylayers.NoisyDense(
        4, noise=noise.MultiplicativeGaussian(1e-6), kernel_initializer="ones"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.build((None, 3))


@pytest.mark.parametrize("kind", ["variant", "wrapper"])
def test_the_float16_check_raises_no_deprecation_warning(kind):
    # Regression: under mixed_float16 on TensorFlow, the check converted a
    # variable with `np.array`, which NumPy 2 deprecates (`__array__`
    # without `copy`).
    keras.config.set_dtype_policy("mixed_float16")
    if kind == "variant":
        layer = noisylayers.NoisyDense(
            4, noise=noise.Gaussian(0.1), kernel_initializer="ones"
        )
    else:
        layer = noisylayers.WeightNoise(
            keras.layers.Dense(4, kernel_initializer="ones"),
            noise=noise.Gaussian(0.1),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.build((None, 3))
    loud = noisylayers.NoisyDense(
        4, noise=noise.Gaussian(1e-5), kernel_initializer="ones"
    )
    with pytest.warns(UserWarning, match="below the resolution of float16"):
        loud.build((None, 3))


# -- arrows one way --------------------------------------------------------------


@TF_ONLY
def test_noise_kinds_do_not_import_the_layers():
    package = pathlib.Path(noisylayers.__file__).parent / "noise"
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("noisylayers.layers"), path.name
