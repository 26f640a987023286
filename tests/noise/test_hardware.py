"""The hardware-shaped noise kinds: RelativeGaussian, PolynomialGaussian,
Quantize and StuckAt (`noisylayers/noise/hardware.py`).

Statistical checks state their number of draws and their tolerance in
standard errors (SE) next to the assertion; every draw is seeded.
"""

import itertools
import json
import math

import keras
import numpy as np
import pytest
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers.noise.hardware import PCM_COEFFICIENTS
from tests.noise_testing import gradients

HARDWARE_KINDS = [
    noise.RelativeGaussian(0.1),
    noise.RelativeGaussian(0.1, per="channel"),
    noise.PolynomialGaussian(),
    noise.PolynomialGaussian((0.02, 0.1, -0.05), per="channel"),
    noise.Quantize(3),
    noise.Quantize(4, per="tensor", stddev=0.01),
    noise.StuckAt(0.3),
    noise.StuckAt(0.3, value="max"),
]
# Fewer for the layer checks (each new op costs a compilation on JAX).
LAYER_KINDS = [
    noise.RelativeGaussian(0.1),
    noise.RelativeGaussian(0.1, per="channel"),
    noise.PolynomialGaussian(),
    noise.Quantize(3),
    noise.Quantize(4, per="tensor", stddev=0.01),
    noise.StuckAt(0.3, value="max"),
]
GAUSSIAN_KINDS = [
    noise.RelativeGaussian(0.1, per="channel"),
    noise.PolynomialGaussian((0.05, 0.2, -0.1), per="channel"),
]
NON_GAUSSIAN_KINDS = [noise.Quantize(4), noise.StuckAt(0.1)]


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def channel_scaled(shape, seed=0, zeros=True):
    """Normal weights whose output channels (last axis) differ in range."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape)
    w *= np.linspace(0.25, 2.0, shape[-1])
    if zeros:
        w.reshape(-1)[::7] = 0.0
    return w.astype("float32")


def abs_max(w, per):
    if per == "channel" and w.ndim >= 2:
        return np.abs(w).max(axis=tuple(range(w.ndim - 1)), keepdims=True)
    return np.abs(w).max()


def noisy_and_gradient(kind, w, seed=3):
    """`kind(w)` with a fixed draw (integer seed) and d sum(noisy) / dw."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        value = tf.constant(w)
        with tf.GradientTape() as tape:
            tape.watch(value)
            noisy = kind(value, seed, 1.0)
        grad = tape.gradient(noisy, value)  # d sum(noisy) / dw
        return numpy(noisy), numpy(grad)
    if backend == "jax":
        import jax

        noisy, vjp = jax.vjp(lambda v: kind(v, seed, 1.0), jax.numpy.asarray(w))
        (grad,) = vjp(jax.numpy.ones_like(noisy))
        return numpy(noisy), numpy(grad)
    pytest.skip(f"no gradient helper for backend {backend}")


def draws_per_weight(kind, w, replicas, draws, seed=11):
    """`draws * replicas` samples of `kind(w) - w`, shaped `(n,) + w.shape`.

    The weights are replicated along the first axis, which leaves the
    maximum of the tensor and of each output channel unchanged; each of the
    `draws` calls draws every replica independently.
    """
    tiled = ops.convert_to_tensor(np.concatenate([w] * replicas, axis=0))
    generator = keras.random.SeedGenerator(seed)
    samples = [
        numpy(kind(tiled, generator, 1.0)).reshape((replicas,) + w.shape) - w
        for _ in range(draws)
    ]
    return np.concatenate(samples)


# -- construction, aliases, configs ------------------------------------------


def test_documented_defaults():
    assert noise.RelativeGaussian() == noise.RelativeGaussian(0.02, per="tensor")
    assert noise.PolynomialGaussian().coefficients == list(PCM_COEFFICIENTS)
    assert noise.PolynomialGaussian().per == "tensor"
    assert PCM_COEFFICIENTS == pytest.approx(
        (0.26348 / 25, 1.9650 / 25, -1.1731 / 25), rel=1e-12
    )
    assert noise.Quantize() == noise.Quantize(8, per="channel", stddev=0.0)
    assert noise.StuckAt() == noise.StuckAt(0.01, value="zero")


def test_string_aliases():
    for alias, cls in [
        ("relative_gaussian", noise.RelativeGaussian),
        ("polynomial_gaussian", noise.PolynomialGaussian),
        ("quantize", noise.Quantize),
        ("stuck_at", noise.StuckAt),
        ("RelativeGaussian", noise.RelativeGaussian),
        ("PolynomialGaussian", noise.PolynomialGaussian),
        ("Quantize", noise.Quantize),
        ("StuckAt", noise.StuckAt),
    ]:
        kind = noise.get(alias)
        assert type(kind) is cls and kind == cls(), alias


def test_config_round_trip():
    for kind in HARDWARE_KINDS:
        config = kind.get_config()
        assert type(kind).from_config(config) == kind
        serialized = noise.serialize(kind)
        assert serialized["class_name"] == type(kind).__name__
        assert noise.deserialize(serialized) == kind
        assert noise.get(serialized) == kind
        # Plain data: JSON-able and deserializable by Keras alone.
        assert keras.saving.deserialize_keras_object(
            json.loads(json.dumps(serialized))
        ) == kind
        assert repr(kind).startswith(type(kind).__name__ + "(")


SPECS = [
        ("relative_gaussian:0.05,per=channel", noise.RelativeGaussian(0.05, per="channel")),
        ("relative_gaussian:0.05", noise.RelativeGaussian(0.05)),
        ("relative_gaussian:stddev=1,per='tensor'", noise.RelativeGaussian(1.0)),
        ("polynomial_gaussian", noise.PolynomialGaussian()),
        ("polynomial_gaussian:per=channel", noise.PolynomialGaussian(per="channel")),
        ("polynomial_gaussian:coefficients=[0.01]", noise.PolynomialGaussian([0.01])),
        ("quantize:4", noise.Quantize(4)),
        ("quantize:bits=6,per=tensor,stddev=0.01", noise.Quantize(6, "tensor", 0.01)),
        ("stuck_at:0.1", noise.StuckAt(0.1)),
        ("stuck_at:0.2,value=max", noise.StuckAt(0.2, value="max")),
]


def test_parse_specs():
    for spec, expected in SPECS:
        assert noise.parse(spec) == expected, spec
        assert noise.get(spec) == expected, spec


def test_spec_round_trip():
    for kind in [
        noise.RelativeGaussian(0.05, per="channel"),
        noise.Quantize(4, stddev=0.01),
        noise.StuckAt(0.2, value="max"),
        noise.PolynomialGaussian([0.01]),
    ]:
        assert noise.parse(noise.to_spec(kind)) == kind, kind


def test_spec_round_trip_with_several_coefficients():
    kind = noise.PolynomialGaussian()
    assert noise.parse(noise.to_spec(kind)) == kind


INVALID = [
        (lambda: noise.RelativeGaussian(-0.1), r"`stddev`.*Received: stddev=-0\.1"),
        (lambda: noise.RelativeGaussian(per="row"), r"`per`.*Received: per='row'"),
        (lambda: noise.PolynomialGaussian(per="row"), r"`per`.*Received: per='row'"),
        (
            lambda: noise.PolynomialGaussian((0.01, -0.1)),
            r"`coefficients`.*negative.*Received: coefficients=\[0\.01, -0\.1\]",
        ),
        (lambda: noise.PolynomialGaussian(()), r"`coefficients`.*Received: coefficients=\[\]"),
        (lambda: noise.PolynomialGaussian("abc"), r"`coefficients`.*Received: coefficients='abc'"),
        (
            lambda: noise.PolynomialGaussian((0.1, float("nan"))),
            r"`coefficients`.*Received: coefficients=\[0\.1, nan\]",
        ),
        (lambda: noise.Quantize(bits=1), r"`bits`.*Received: bits=1"),
        (lambda: noise.Quantize(bits=4.0), r"`bits`.*Received: bits=4\.0"),
        (lambda: noise.Quantize(per="row"), r"`per`.*Received: per='row'"),
        (lambda: noise.Quantize(stddev=-1.0), r"`stddev`.*Received: stddev=-1\.0"),
        (lambda: noise.StuckAt(rate=1.5), r"`rate`.*Received: rate=1\.5"),
        (lambda: noise.StuckAt(rate=-0.1), r"`rate`.*Received: rate=-0\.1"),
        (lambda: noise.StuckAt(value="one"), r"`value`.*Received: value='one'"),
        (lambda: noise.parse("relative_gaussian:-1"), r"Received: stddev=-1"),
        (lambda: noise.parse("quantize:1"), r"Received: bits=1"),
        (lambda: noise.parse("stuck_at:value=one"), r"Received: value='one'"),
        (lambda: noise.parse("relative_gaussian:per=row"), r"Received: per='row'"),
]


def test_invalid_parameters_name_the_argument_and_value():
    for i, (build, message) in enumerate(INVALID):
        with pytest.raises(ValueError, match=message):
            build()


def test_boundary_parameters_are_accepted():
    noise.RelativeGaussian(0.0)
    noise.Quantize(2)
    noise.StuckAt(0.0)
    noise.StuckAt(1.0)
    noise.PolynomialGaussian((0.0,))
    # Negative coefficients are fine while the stddev stays >= 0 on [0, 1].
    noise.PolynomialGaussian((0.0, 0.2, -0.2))


# -- per-weight moments --------------------------------------------------------


def check_moments(kind, w, expected):
    """`kind(w) - w` has mean 0 and stddev `expected` per weight."""
    # 20 draws x 1000 replicas = 20000 samples per weight. The sample stddev
    # has a relative SE of 1/sqrt(2 * 20000) = 0.5%: tolerance 2.5% = 5 SE.
    # The mean has SE sigma / sqrt(20000): tolerance 5 SE. A zero stddev
    # must be exactly zero.
    samples = draws_per_weight(kind, w, replicas=1000, draws=20)
    n = samples.shape[0]
    expected = np.broadcast_to(expected, w.shape)
    np.testing.assert_allclose(
        samples.std(axis=0), expected, rtol=0.025, atol=1e-12, err_msg=repr(kind)
    )
    assert np.all(np.abs(samples.mean(axis=0)) <= 5 * expected / math.sqrt(n) + 1e-12)
    # The declared variance (for local reparameterization) is the same.
    np.testing.assert_allclose(
        np.broadcast_to(numpy(kind.variance(ops.convert_to_tensor(w))), w.shape),
        expected**2,
        rtol=1e-4,
        atol=1e-12,
        err_msg=repr(kind),
    )


@pytest.mark.parametrize("per", ["tensor", "channel"])
def test_relative_gaussian_moments(per):
    for shape in [(6, 4), (2, 2, 2, 3)]:  # Dense and Conv2D kernels
        w = channel_scaled(shape)
        check_moments(noise.RelativeGaussian(0.1, per=per), w, 0.1 * abs_max(w, per))


@pytest.mark.parametrize("per", ["tensor", "channel"])
def test_polynomial_gaussian_moments(per):
    w = channel_scaled((2, 2, 2, 3))
    maximum = abs_max(w, per)
    relative = np.abs(w) / maximum
    for coefficients in [
        PCM_COEFFICIENTS,
        (0.0, 0.1),  # proportional to |w|: zero weights stay put
        (0.02, 0.1, -0.05),
    ]:
        expected = maximum * sum(c * relative**k for k, c in enumerate(coefficients))
        check_moments(noise.PolynomialGaussian(coefficients, per=per), w, expected)


def test_draws_differ_call_to_call_and_scale_zero_is_exact():
    w = ops.convert_to_tensor(channel_scaled((8, 5), zeros=False))
    for kind in HARDWARE_KINDS:
        generator = keras.random.SeedGenerator(0)
        first = numpy(kind(w, generator))
        second = numpy(kind(w, generator))
        if isinstance(kind, noise.Quantize) and kind.stddev == 0:
            np.testing.assert_array_equal(first, second)  # deterministic rounding
        else:
            assert not np.array_equal(first, second), kind
        np.testing.assert_array_equal(numpy(kind(w, generator, scale=0.0)), numpy(w))
        assert first.shape == (8, 5) and first.dtype == np.float32


def test_zero_tensor_stays_zero():
    for kind in HARDWARE_KINDS:
        out = numpy(kind(ops.zeros((4, 3)), keras.random.SeedGenerator(0)))
        np.testing.assert_array_equal(out, np.zeros((4, 3)), err_msg=repr(kind))


# -- gradients -------------------------------------------------------------------


def test_gradient_of_the_sum_is_one():
    """The maximum (and the rounding) are constants for the gradient."""
    w = channel_scaled((6, 4))
    for kind in GAUSSIAN_KINDS + [
        noise.RelativeGaussian(0.5),
        noise.PolynomialGaussian(),
        noise.Quantize(3),
        noise.Quantize(2, per="tensor", stddev=0.2),
    ]:
        noisy, grad = noisy_and_gradient(kind, w)
        assert not np.array_equal(noisy, w), kind
        np.testing.assert_array_equal(grad, np.ones_like(w), err_msg=repr(kind))


def test_stuck_weights_get_no_gradient():
    w = channel_scaled((20, 5), zeros=False)
    for value in ("zero", "max"):
        noisy, grad = noisy_and_gradient(noise.StuckAt(0.3, value=value), w)
        stuck = noisy != w
        assert 0 < stuck.sum() < stuck.size
        np.testing.assert_array_equal(grad[stuck], 0.0)
        np.testing.assert_array_equal(grad[~stuck], 1.0)


def test_layer_gradients_are_straight_through():
    """In a noisy Dense, d sum(y) / dW is sum_n x_n, as for the clean layer."""
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    for kind in [
        noise.RelativeGaussian(0.1, per="channel"),
        noise.PolynomialGaussian(),
        noise.Quantize(3),
    ]:
        layer = noisylayers.WeightNoise(keras.layers.Dense(3), noise=kind, seed=1)
        layer.build((None, 4))
        layer.layer.kernel.assign(channel_scaled((4, 3)))
        layer.layer.bias.assign(np.array([0.3, -0.2, 0.1], "float32"))
        kernel_grad, bias_grad = gradients(layer, x, ops.sum)
        np.testing.assert_allclose(
            kernel_grad, np.repeat(x.sum(0)[:, None], 3, 1), rtol=1e-5, err_msg=repr(kind)
        )
        np.testing.assert_allclose(bias_grad, np.full(3, 5.0), rtol=1e-6)


# -- Quantize --------------------------------------------------------------------


def test_quantize_rounds_to_the_symmetric_grid():
    for bits, per, shape in itertools.product(
        [2, 3, 4, 8], ["tensor", "channel"], [(16, 6), (3, 3, 2, 5)]
    ):
        case = f"bits={bits}, per={per}, shape={shape}"
        w = channel_scaled(shape, seed=bits)
        kind = noise.Quantize(bits, per=per)
        out = numpy(kind(ops.convert_to_tensor(w), keras.random.SeedGenerator(0)))
        maximum = np.broadcast_to(abs_max(w, per), w.shape)
        levels = 2 ** (bits - 1) - 1
        step = maximum / levels
        # Float32 arithmetic: allow a few ulps of the range.
        ulps = 4 * np.spacing(maximum)
        k = np.round(out / step)
        assert np.all(np.abs(k) <= levels), case
        assert np.all(np.abs(out - k * step) <= ulps), case  # on the grid
        assert np.all(np.abs(out - w) <= step / 2 + ulps), case  # the nearest point
        if bits == 2:
            assert set(np.unique(k)) == {-1.0, 0.0, 1.0}, case  # -max, 0, max
        np.testing.assert_array_equal(out[w == 0], 0.0)


def test_quantize_maps_the_maximum_exactly():
    w = np.random.default_rng(0).normal(size=(64, 32)).astype("float32")
    wrong = []
    for bits in range(2, 9):
        for per in ("tensor", "channel"):
            out = numpy(noise.Quantize(bits, per=per)(ops.convert_to_tensor(w), keras.random.SeedGenerator(0)))
            maximum = np.broadcast_to(abs_max(w, per), w.shape)
            at_max = np.abs(w) == maximum
            if not np.array_equal(out[at_max], w[at_max]):
                wrong.append((bits, per))
    assert not wrong, f"the maximum does not map to itself for (bits, per) in {wrong}"


def test_quantize_zero_channel_stays_zero():
    w = channel_scaled((6, 4))
    w[:, 2] = 0.0
    out = numpy(noise.Quantize(3, per="channel")(ops.convert_to_tensor(w), keras.random.SeedGenerator(0)))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 2], 0.0)
    assert not np.array_equal(out[:, 0], w[:, 0])


def test_quantize_noise_after_rounding():
    w = channel_scaled((8, 3))
    kind = noise.Quantize(3, per="tensor", stddev=0.1)
    rounded = numpy(noise.Quantize(3, per="tensor")(ops.convert_to_tensor(w), keras.random.SeedGenerator(0)))
    # 4 draws x 2500 replicas = 10000 samples per weight: the stddev of the
    # noise about the rounded weight is 0.1 * max|w| within 5 SE (relative
    # SE 1/sqrt(20000) = 0.7%, tolerance 3.5%); its mean within 5 SE.
    samples = draws_per_weight(kind, w, replicas=2500, draws=4) + w - rounded
    sigma = 0.1 * np.abs(w).max()
    np.testing.assert_allclose(samples.std(axis=0), sigma, rtol=0.035)
    assert np.all(np.abs(samples.mean(axis=0)) <= 5 * sigma / math.sqrt(10000))


# -- StuckAt ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["zero", "max"])
def test_stuck_at_fraction_values_and_fresh_draws(value):
    w = np.random.default_rng(2).normal(size=(400, 250)).astype("float32")
    kind = noise.StuckAt(0.1, value=value)
    generator = keras.random.SeedGenerator(5)
    masks = []
    for _ in range(2):
        out = numpy(kind(ops.convert_to_tensor(w), generator))
        stuck = out != w
        target = 0.0 if value == "zero" else np.sign(w) * np.abs(w).max()
        np.testing.assert_array_equal(np.broadcast_to(target, w.shape)[stuck], out[stuck])
        np.testing.assert_array_equal(out[~stuck], w[~stuck])
        masks.append(stuck)
    n = w.size  # 100000 weights per draw
    # Stuck fraction: SE sqrt(0.1 * 0.9 / 1e5) = 0.00095, tolerance 5 SE.
    for stuck in masks:
        assert abs(stuck.mean() - 0.1) <= 5 * math.sqrt(0.09 / n)
    # Drawn anew per call, independently: both stuck with probability 0.01,
    # SE sqrt(0.01 * 0.99 / 1e5) = 0.00031, tolerance 5 SE.
    both = (masks[0] & masks[1]).mean()
    assert abs(both - 0.01) <= 5 * math.sqrt(0.0099 / n)


def test_stuck_at_rates_zero_and_one():
    w = channel_scaled((6, 4), zeros=False)
    value = ops.convert_to_tensor(w)
    generator = keras.random.SeedGenerator(0)
    np.testing.assert_array_equal(numpy(noise.StuckAt(0.0)(value, generator)), w)
    np.testing.assert_array_equal(numpy(noise.StuckAt(1.0)(value, generator)), 0.0)
    np.testing.assert_array_equal(
        numpy(noise.StuckAt(1.0, "max")(value, generator)), np.sign(w) * np.abs(w).max()
    )


# -- in layers -------------------------------------------------------------------


# name: (build(kind, **noise_arguments), input shape, plain Keras twin)
LAYERS = {
    "WeightNoise(Dense)": (
        lambda kind, **kw: noisylayers.WeightNoise(keras.layers.Dense(5), noise=kind, seed=1, **kw),
        (6, 4),
        lambda: keras.layers.Dense(5),
    ),
    "NoisyDense": (
        lambda kind, **kw: noisylayers.NoisyDense(5, noise=kind, seed=1, **kw),
        (6, 4),
        lambda: keras.layers.Dense(5),
    ),
    "NoisyConv2D": (
        lambda kind, **kw: noisylayers.NoisyConv2D(4, 3, noise=kind, seed=1, **kw),
        (2, 6, 6, 3),
        lambda: keras.layers.Conv2D(4, 3),
    ),
}


def _plain_twin(name, layer, shape):
    plain = LAYERS[name][2]()
    plain.build(shape)
    plain.set_weights([numpy(v) for v in (layer.kernel, layer.bias)])
    return plain


def _kernel_and_bias(layer):
    return layer.layer if isinstance(layer, noisylayers.WeightNoise) else layer


@pytest.mark.parametrize(
    "names", [["NoisyDense", "WeightNoise(Dense)"], ["NoisyConv2D"]], ids=["dense", "conv"]
)
def test_training_calls_are_noisy_inference_is_exact(names):
    # Dense layers together: on JAX, the second reuses the first's compiled ops.
    for name, kind in itertools.product(names, LAYER_KINDS):
        check_training_and_inference(name, kind)


def check_training_and_inference(name, kind):
    build, shape, _ = LAYERS[name]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = build(kind)
    layer.build(shape)
    weights = _kernel_and_bias(layer)
    weights.bias.assign(np.linspace(-0.5, 0.5, weights.bias.shape[0]).astype("float32"))
    plain = _plain_twin(name, weights, shape)
    expected = numpy(plain(x))
    first = numpy(layer(x, training=True))
    second = numpy(layer(x, training=True))
    assert not np.allclose(first, expected)
    if isinstance(kind, noise.Quantize) and kind.stddev == 0:
        # Deterministic: the layer with its weights quantized.
        np.testing.assert_array_equal(first, second)
        generator = keras.random.SeedGenerator(0)
        plain.set_weights(
            [numpy(kind(ops.convert_to_tensor(numpy(v)), generator)) for v in (weights.kernel, weights.bias)]
        )
        np.testing.assert_allclose(first, numpy(plain(x)), rtol=1e-5, atol=1e-6)
    else:
        assert not np.allclose(first, second)
    for training in (False, None):
        np.testing.assert_array_equal(numpy(layer(x, training=training)), expected)


@pytest.mark.parametrize("estimator", ["flipout", "local_reparameterization"])
def test_per_example_estimators(estimator):
    for name, kind in itertools.product(sorted(LAYERS), GAUSSIAN_KINDS):
        check_per_example_estimator(name, estimator, kind)


def check_per_example_estimator(name, estimator, kind):
    build, shape, _ = LAYERS[name]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = build(kind, estimator=estimator)
    assert layer.estimator == estimator
    layer.build(shape)
    plain = _plain_twin(name, _kernel_and_bias(layer), shape)
    expected = numpy(plain(x))
    first = numpy(layer(x, training=True))
    second = numpy(layer(x, training=True))
    assert np.all(np.isfinite(first))
    assert not np.allclose(first, expected)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(numpy(layer(x, training=False)), expected)
    assert estimator in layer.available_estimators()


def test_non_gaussian_kinds_refuse_per_example_estimators():
    for name, estimator, kind in itertools.product(
        sorted(LAYERS), ["flipout", "local_reparameterization"], NON_GAUSSIAN_KINDS
    ):
        build = LAYERS[name][0]
        with pytest.raises(
            ValueError,
            match=rf"Estimator '{estimator}' cannot be used.*{type(kind).__name__}",
        ):
            build(kind, estimator=estimator)
        assert build(kind).available_estimators() == ["shared"]


def test_local_reparameterization_variance_per_output():
    for kind in [
        noise.RelativeGaussian(0.2, per="channel"),
        noise.RelativeGaussian(0.2, per="tensor"),
        noise.PolynomialGaussian((0.05, 0.3, -0.15), per="channel"),
    ]:
        check_local_reparameterization_variance(kind)


def check_local_reparameterization_variance(kind):
    """Var(y_j) = sum_i x_i^2 sd(W_ij)^2 + sd(b_j)^2; for RelativeGaussian
    per channel, sd(W_ij) = s * max_i |W_ij|."""
    layer = noisylayers.NoisyDense(
        3, noise=kind, estimator="local_reparameterization", seed=4
    )
    layer.build((None, 4))
    kernel = channel_scaled((4, 3), zeros=False)
    # Equal magnitudes: the bias' maximum is the same per tensor or per element.
    bias = np.array([0.5, -0.5, 0.5], "float32")
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    x = np.array([0.5, -1.0, 1.5, 2.0], "float32")
    if isinstance(kind, noise.RelativeGaussian):
        kernel_sd = kind.stddev * np.broadcast_to(abs_max(kernel, kind.per), kernel.shape)
        bias_sd = kind.stddev * 0.5
    else:
        maximum = abs_max(kernel, kind.per)
        r = np.abs(kernel) / maximum
        kernel_sd = maximum * sum(c * r**k for k, c in enumerate(kind.coefficients))
        bias_sd = 0.5 * sum(kind.coefficients)
    expected = (x**2) @ kernel_sd**2 + bias_sd**2
    # Every row is an independent draw: 20000 draws per output. The sample
    # variance has relative SE sqrt(2 / 20000) = 1%: tolerance 5% = 5 SE.
    # The mean has SE sqrt(var / 20000): tolerance 5 SE.
    n = 20000
    y = numpy(layer(np.tile(x, (n, 1)), training=True)).astype("float64")
    np.testing.assert_allclose(y.var(axis=0), expected, rtol=0.05)
    assert np.all(np.abs(y.mean(axis=0) - (x @ kernel + bias)) <= 5 * np.sqrt(expected / n))


# -- training and saving ---------------------------------------------------------


def test_fit_save_and_load(tmp_path):
    """Every kind trains inside `fit` (traced) and survives `.keras` saving."""
    kinds = {
        "conv": (noise.RelativeGaussian(0.05, per="channel"), "local_reparameterization"),
        "dense": (noise.PolynomialGaussian(), "flipout"),
        "stuck": (noise.StuckAt(0.05, value="max"), "shared"),
        "head": (noise.Quantize(4), "shared"),
    }
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5, 5, 1)),
            noisylayers.NoisyConv2D(
                2, 3, activation="relu", noise=kinds["conv"][0],
                estimator=kinds["conv"][1], seed=1, name="conv",
            ),
            keras.layers.Flatten(),
            noisylayers.NoisyDense(
                6, activation="relu", noise=kinds["dense"][0],
                estimator=kinds["dense"][1], seed=2, name="dense",
            ),
            noisylayers.NoisyDense(4, noise=kinds["stuck"][0], seed=3, name="stuck"),
            noisylayers.WeightNoise(
                keras.layers.Dense(2), noise=kinds["head"][0], seed=4, name="head"
            ),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5, 5, 1)).astype("float32")
    t = rng.normal(size=(32, 2)).astype("float32")
    model.compile("adam", "mse")
    before = [numpy(v) for v in model.trainable_weights]
    history = model.fit(x, t, epochs=1, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for b, v in zip(before, model.trainable_weights):
        assert not np.array_equal(b, numpy(v)), v.path
    predictions = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), predictions)

    path = str(tmp_path / "hardware.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), predictions, rtol=1e-6, atol=1e-7)
    for name, (kind, estimator) in kinds.items():
        layer = loaded.get_layer(name)
        assert type(layer.noise) is type(kind) and layer.noise == kind, name
        assert layer.estimator == estimator, name
        assert layer.noise == model.get_layer(name).noise
