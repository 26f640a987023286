"""Property-based tests (Hypothesis) over layers, shapes, kinds and estimators.

Two properties, for every layer type, noise kind and estimator:

- Finite inputs and parameters never give NaN or Inf: not in the outputs of
  training and inference calls, not in the layer losses (KL terms), not in
  the gradients of the clean weights and the noise parameters.
- An invalid configuration raises a `ValueError` or `TypeError` when the
  kind or the layer is made or built, never in the first training step.

Each test runs a bounded number of examples (`max_examples`) without a
deadline: every example builds Keras layers and runs them eagerly.
"""

import inspect
import math
import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import layers
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers import priors
from tests.noise_testing import gradients

# On JAX every example's eager calls cost about 3x what they cost on
# TensorFlow: it runs fewer of the same (derandomized) examples.
EXAMPLES = 25 if keras.backend.backend() == "tensorflow" else 10

PROPERTY = settings(
    # PROPERTY_EXAMPLES=N explores N random examples instead.
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", EXAMPLES)),
    deadline=None,
    derandomize="PROPERTY_EXAMPLES" not in os.environ,  # reproducible CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Valid parameters of each kind (finite, in range): one strategy per alias
# of `noise.ALIASES` (`test_every_kind_has_a_strategy` checks the keys).
POSITIVE = st.floats(1e-4, 2.0)
KINDS = {
    "gaussian": st.builds(noise.Gaussian, POSITIVE, st.sampled_from(["exact", "table"])),
    "multiplicative_gaussian": st.builds(
        noise.MultiplicativeGaussian, POSITIVE, st.sampled_from(["exact", "table"])
    ),
    "dropconnect": st.builds(noise.DropConnect, st.floats(0.0, 0.95)),
    "learned_gaussian": st.builds(
        noise.LearnedGaussian,
        init_stddev=POSITIVE,
        prior=st.sampled_from(["normal", "laplace", "scale_mixture_normal"]),
        kl_weight=st.floats(0.0, 1.0),
    ),
    "adaptive_gaussian": st.builds(
        noise.AdaptiveGaussian, init_stddev=POSITIVE, kl_weight=st.floats(0.0, 1.0)
    ),
    "factorized": st.builds(noise.Factorized, st.floats(0.0, 2.0)),
    "variational_dropout": st.builds(
        noise.VariationalDropout,
        threshold=st.floats(-5.0, 5.0),
        init_log_alpha=st.floats(-8.0, 8.0),
        kl_weight=st.floats(0.0, 1.0),
    ),
    "relative_gaussian": st.builds(
        noise.RelativeGaussian, POSITIVE, st.sampled_from(["tensor", "channel"])
    ),
    "polynomial_gaussian": st.builds(
        noise.PolynomialGaussian,
        st.lists(st.floats(0.0, 0.5), min_size=1, max_size=3),
        st.sampled_from(["tensor", "channel"]),
    ),
    "quantize": st.builds(
        noise.Quantize, st.integers(2, 16), st.sampled_from(["tensor", "channel"]),
        st.floats(0.0, 0.5),
    ),
    "stuck_at": st.builds(noise.StuckAt, st.floats(0.0, 1.0), st.sampled_from(["zero", "max"])),
}


# Layer makers: `(units, **noise_arguments)`, the noise arguments being
# `noise`, `estimator`, `seed` and optionally `targets`.
def _dense(units, **kwargs):
    return noisylayers.NoisyDense(units, **kwargs)


def _wrapped_dense(units, **kwargs):
    return noisylayers.WeightNoise(layers.Dense(units), **kwargs)


def _conv1d(units, **kwargs):
    return noisylayers.NoisyConv1D(units, 2, **kwargs)


def _conv2d(units, **kwargs):
    return noisylayers.NoisyConv2D(units, 2, padding="same", **kwargs)


def _lstm(units, **kwargs):
    return noisylayers.NoisyLSTM(units, **kwargs)


def _gru(units, **kwargs):
    return noisylayers.NoisyGRU(units, **kwargs)


def _embedding(units, **kwargs):
    return noisylayers.WeightNoise(layers.Embedding(7, units), **kwargs)


# Layer maker and the input shape (without the batch axis), given `size`.
LAYERS = {
    "dense": (_dense, lambda n: (n,)),
    "wrapped_dense": (_wrapped_dense, lambda n: (n,)),
    "conv1d": (_conv1d, lambda n: (n + 1, 2)),
    "conv2d": (_conv2d, lambda n: (n, n, 2)),
    "lstm": (_lstm, lambda n: (n, 3)),
    "gru": (_gru, lambda n: (n, 3)),
    "embedding": (_embedding, lambda n: (n,)),
}


def _inputs(name, batch, size, magnitude, seed):
    rng = np.random.default_rng(seed)
    shape = (batch, *LAYERS[name][1](size))
    if name == "embedding":
        return rng.integers(0, 7, size=shape).astype("int32")
    return (magnitude * rng.standard_normal(shape)).astype("float32")


def _make(name, units, kind, estimator, seed):
    """The layer, or None when this combination is refused at construction."""
    try:
        return LAYERS[name][0](units, noise=kind, estimator=estimator, seed=seed)
    except ValueError as e:
        # Only the estimator may make a valid kind unusable, and the message
        # says so.
        assert estimator is not None and "estimator" in str(e), e
        return None


def _assert_finite(what, values):
    for value in values:
        value = np.asarray(ops.convert_to_numpy(value))
        assert np.all(np.isfinite(value)), f"{what} is not finite: {value}"


def test_every_kind_has_a_strategy():
    # A kind added to the registry must be added to the properties here.
    assert sorted(KINDS) == sorted(noise.ALIASES)


@PROPERTY
@given(
    name=st.sampled_from(sorted(LAYERS)),
    kind=st.sampled_from(sorted(KINDS)).flatmap(lambda k: KINDS[k]),
    estimator=st.sampled_from([None, "shared", "flipout", "local_reparameterization"]),
    batch=st.integers(1, 4),
    size=st.integers(1, 4),
    units=st.integers(1, 4),
    magnitude=st.sampled_from([0.0, 1e-3, 1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_finite_inputs_and_parameters_give_finite_outputs_losses_and_gradients(
    name, kind, estimator, batch, size, units, magnitude, seed
):
    keras.backend.clear_session()
    layer = _make(name, units, kind, estimator, seed)
    if layer is None:
        return
    x = _inputs(name, batch, size, magnitude, seed)
    _assert_finite("inference output", [layer(x, training=False)])
    _assert_finite("training output", [layer(x, training=True)])
    _assert_finite("layer losses", layer.losses)
    grads = gradients(layer, x, lambda y: ops.sum(ops.square(y)))
    _assert_finite("gradients", grads)


# Hostile parameter values: wrong types, out of range, NaN, infinities.
HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 20),
    st.sampled_from([None, True, "1", "tensor", "channel", "zero", [], [0.1, math.nan]]),
)


def _parameters(cls):
    """The keyword parameters of a class's constructor."""
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


KIND_PARAMETERS = {alias: _parameters(cls) for alias, cls in noise.ALIASES.items()}
PRIOR_PARAMETERS = {alias: _parameters(cls) for alias, cls in priors.ALIASES.items()}
# What a hostile value goes into: a kind's parameter, the parameter of a
# learned kind's prior, or a noisy layer's own argument.
ARGUMENTS = (
    [("kind", k, p) for k, ps in KIND_PARAMETERS.items() for p in ps]
    + [("prior", k, p) for k, ps in PRIOR_PARAMETERS.items() for p in ps]
    + [("layer", None, p) for p in ("seed", "targets", "estimator")]
)


def _configure(where, owner, parameter, value):
    """The noise arguments of a layer, with `value` put where it was drawn."""
    if where == "kind":
        return {"noise": noise.ALIASES[owner](**{parameter: value})}
    if where == "prior":
        prior = priors.ALIASES[owner](**{parameter: value})
        return {"noise": noise.LearnedGaussian(prior=prior, kl_weight=0.01)}
    return {"noise": "gaussian", parameter: value}


@PROPERTY
@given(
    argument=st.sampled_from(ARGUMENTS),
    value=HOSTILE,
    name=st.sampled_from(["dense", "wrapped_dense", "conv2d", "lstm"]),
    estimator=st.sampled_from([None, "shared", "flipout", "local_reparameterization"]),
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_invalid_configuration_raises_before_the_first_training_step(
    argument, value, name, estimator
):
    keras.backend.clear_session()
    try:
        kwargs = {"estimator": estimator, "seed": 1, **_configure(*argument, value)}
        layer = LAYERS[name][0](2, **kwargs)
        x = _inputs(name, 2, 3, 1.0, 0)
        layer.build(x.shape)
    except (ValueError, TypeError):
        return  # refused where it should be
    # Accepted: then it trains, with finite numbers.
    _assert_finite("training output", [layer(x, training=True)])
    _assert_finite("layer losses", layer.losses)
