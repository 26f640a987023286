"""Tests of `noisylayers.priors`: the priors, their KL terms and saving.

The Monte Carlo KL of the non-Gaussian priors is checked against exact
values: a closed form for a Laplace prior, and a fine numerical integral
for the scale mixture. TFP priors are checked on the TensorFlow backend.
"""

import json
import math
import os
import re

import keras
import numpy as np
import pytest
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers import priors

ON_TF = keras.backend.backend() == "tensorflow"
tf_only = pytest.mark.skipif(
    not ON_TF,
    reason="tensorflow-probability priors work on the TensorFlow backend only",
)


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def phi(z):
    """The standard normal CDF."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def normal_entropy(s):
    return 0.5 * math.log(2.0 * math.pi * math.e * s**2)


def laplace_kl(mu, s, m, b):
    """Exact `KL(N(mu, s^2) || Laplace(m, b))`: `-H(q) + E_q[-log p]`."""
    d = mu - m
    mean_abs = s * math.sqrt(2.0 / math.pi) * math.exp(
        -(d**2) / (2.0 * s**2)
    ) + d * (1.0 - 2.0 * phi(-d / s))
    return -normal_entropy(s) + math.log(2.0 * b) + mean_abs / b


def np_normal_log_prob(x, loc, scale):
    x = np.asarray(x, "float64")
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)


def np_log_prob(prior, x):
    """The log density of a noisylayers prior, in float64 numpy."""
    x = np.asarray(x, "float64")
    if isinstance(prior, priors.Normal):
        return np_normal_log_prob(x, prior.loc, prior.scale)
    if isinstance(prior, priors.Laplace):
        return -np.abs(x - prior.loc) / prior.scale - math.log(2.0 * prior.scale)
    parts = [
        math.log(w) + np_normal_log_prob(x, 0.0, s)
        for w, s in ((prior.pi, prior.scale1), (1.0 - prior.pi, prior.scale2))
        if w > 0
    ]
    return np.logaddexp(*parts) if len(parts) == 2 else parts[0]


def integrated_kl(prior, mu, s):
    """`KL(N(mu, s^2) || prior)` by the trapezoid rule on a fine grid."""
    x = np.linspace(mu - 12.0 * s, mu + 12.0 * s, 400_001)
    q = np.exp(np_normal_log_prob(x, mu, s))
    return -normal_entropy(s) - np.trapezoid(q * np_log_prob(prior, x), x)


#: The floor of a learned sigma in float32: sigma = softplus(rho) + eps.
EPS = float(np.finfo("float32").eps)


def softplus_inverse(s):
    """`rho` with `softplus(rho) + eps == s`."""
    return math.log(math.expm1(s - EPS))


# -- the priors themselves -------------------------------------------------------


def test_aliases_and_defaults():
    assert priors.get("normal") == priors.Normal(0.0, 1.0)
    assert priors.get("Normal") == priors.Normal()
    assert priors.get("laplace") == priors.Laplace(0.0, 1.0)
    mixture = priors.get("scale_mixture_normal")
    assert mixture == priors.ScaleMixtureNormal(0.5, 1.0, math.exp(-6.0))
    assert priors.get(None) is None
    p = priors.Laplace(1.0, 2.0)
    assert priors.get(p) is p
    assert noise.LearnedGaussian().prior == priors.Normal()


PRIORS = [
    priors.Normal(0.3, 2.0),
    priors.Laplace(-0.5, 0.25),
    priors.ScaleMixtureNormal(0.25, 1.5, 0.01),
    priors.ScaleMixtureNormal(1.0, 0.5, 0.01),
]


def test_config_round_trip():
    for p in PRIORS:
        assert type(p).from_config(p.get_config()) == p
        config = priors.serialize(p)
        json.dumps(config)  # plain data
        assert priors.get(config) == p
        assert priors.get(json.loads(json.dumps(config))) == p
        assert keras.saving.deserialize_keras_object(config) == p
        assert p != type(p)()
        # And nested in a noise kind.
        learned = noise.LearnedGaussian(prior=p, kl_weight=0.1)
        assert noise.get(noise.serialize(learned)).prior == p
    assert priors.serialize(None) is None
    assert repr(priors.Normal(0.5, 2.0)) == "Normal(loc=0.5, scale=2.0)"


INVALID = [
    (lambda: priors.Normal(scale=0.0), ValueError, "scale=0.0"),
    (lambda: priors.Normal(scale=-1.0), ValueError, "scale=-1.0"),
    (lambda: priors.Normal(loc=math.nan), ValueError, "loc=nan"),
    (lambda: priors.Normal(scale="1"), TypeError, "scale='1'"),
    (lambda: priors.Laplace(scale=0.0), ValueError, "scale=0.0"),
    (lambda: priors.Laplace(scale=math.inf), ValueError, "scale=inf"),
    # Beyond float32's reach (tests/test_properties.py found these).
    (lambda: priors.Normal(loc=-1e7), ValueError, "loc=-10000000.0"),
    (lambda: priors.Laplace(scale=1e-7), ValueError, "scale=1e-07"),
    (lambda: priors.ScaleMixtureNormal(scale1=3e38), ValueError, "scale1=3e+38"),
    (lambda: priors.ScaleMixtureNormal(pi=1.5), ValueError, "pi=1.5"),
    (lambda: priors.ScaleMixtureNormal(pi=-0.1), ValueError, "pi=-0.1"),
    (lambda: priors.ScaleMixtureNormal(scale1=0.0), ValueError, "scale1=0.0"),
    (lambda: priors.ScaleMixtureNormal(scale2=-2.0), ValueError, "scale2=-2.0"),
    (lambda: priors.get("gauss"), ValueError, "prior='gauss'"),
    (lambda: priors.get("TFPPrior"), ValueError, "prior='TFPPrior'"),
    (lambda: priors.get(3), TypeError, "prior=3"),
    (
        lambda: priors.get({"class_name": "Nope", "config": {}}),
        ValueError,
        "Received: prior={'class_name': 'Nope'",
    ),
    (
        lambda: noise.LearnedGaussian(prior="student"),
        ValueError,
        "prior='student'",
    ),
]


def test_invalid_arguments():
    for make, error, message in INVALID:
        with pytest.raises(error, match=re.escape(message)):
            make()


def test_log_prob_matches_numpy():
    x = np.linspace(-3.0, 3.0, 61).astype("float32")
    for p in PRIORS + [priors.ScaleMixtureNormal(0.0, 1.0, 0.2)]:
        np.testing.assert_allclose(
            numpy(p.log_prob(x)),
            np_log_prob(p, x),
            rtol=2e-5,
            atol=1e-5,
            err_msg=repr(p),
        )
    # A mixture with pi=1 is its first component.
    np.testing.assert_allclose(
        numpy(priors.ScaleMixtureNormal(1.0, 0.5, 0.01).log_prob(x)),
        numpy(priors.Normal(0.0, 0.5).log_prob(x)),
        rtol=1e-6,
    )


def test_normal_kl_from_normal_is_the_closed_form():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=20).astype("float32")
    scale = rng.uniform(0.01, 2.0, size=20).astype("float32")
    p = priors.Normal(0.3, 1.5)
    expected = (
        np.log(1.5 / scale.astype("float64"))
        + (scale.astype("float64") ** 2 + (loc - 0.3) ** 2) / (2 * 1.5**2)
        - 0.5
    )
    np.testing.assert_allclose(
        numpy(p.kl_from_normal(loc, scale)), expected, rtol=1e-5, atol=1e-6
    )
    # The others have no closed form: the KL is estimated by Monte Carlo.
    assert priors.Laplace().kl_from_normal(loc, scale) is None
    assert priors.ScaleMixtureNormal().kl_from_normal(loc, scale) is None


def test_reference_laplace_kl_matches_numerical_integration():
    # Checks this file's closed form against a quadrature.
    for mu, s, m, b in [
        (0.0, 1.0, 0.0, 1.0),
        (0.7, 0.2, -0.1, 0.5),
        (-2.0, 0.05, 0.0, 1.0),
    ]:
        assert laplace_kl(mu, s, m, b) == pytest.approx(
            integrated_kl(priors.Laplace(m, b), mu, s), rel=1e-6, abs=1e-7
        )


# -- the Monte Carlo KL of a layer --------------------------------------------------

# Four columns of the kernel, each with its own posterior (mu, sigma).
COLUMNS = [(0.0, 0.05), (0.5, 0.3), (-1.2, 0.8), (2.0, 0.02)]
N_IN = 500


def mc_layer(prior, kl_weight=1.0, estimator="shared"):
    """A NoisyDense whose kernel column j has posterior N(mu_j, sigma_j^2)."""
    layer = noisylayers.NoisyDense(
        len(COLUMNS),
        use_bias=False,
        noise=noise.LearnedGaussian(prior=prior, kl_weight=kl_weight),
        estimator=estimator,
        seed=7,
    )
    layer.build((None, N_IN))
    mu = np.array([m for m, _ in COLUMNS], "float32")
    rho = np.array([softplus_inverse(s) for _, s in COLUMNS], "float32")
    layer.kernel.assign(np.tile(mu, (N_IN, 1)))
    layer.noise_state(layer.kernel)["rho"].assign(np.tile(rho, (N_IN, 1)))
    return layer


def exact_layer_kl(layer, exact):
    """The exact KL summed over the kernel, from the actual float32 sigmas."""
    rho = numpy(layer.noise_state(layer.kernel)["rho"].value)[0]
    sigma = np.logaddexp(0.0, rho) + EPS
    mu = numpy(layer.kernel.value)[0]
    return N_IN * sum(exact(float(m), float(s)) for m, s in zip(mu, sigma))


def assert_converges(samples, exact):
    # `samples` are M independent one-sample estimates of the summed KL
    # (each a sum over 2000 weights). Tolerance: 4 standard errors of
    # their mean (plus a float32 summation allowance).
    samples = np.asarray(samples, "float64")
    se = samples.std(ddof=1) / math.sqrt(len(samples))
    assert se > 0
    assert abs(samples.mean() - exact) < 4.0 * se + 1e-5 * abs(exact), (
        samples.mean(),
        exact,
        se,
    )


MC_CASES = {
    "laplace": (
        priors.Laplace(0.1, 0.7),
        lambda p, m, s: laplace_kl(m, s, p.loc, p.scale),
    ),
    "scale_mixture": (
        priors.ScaleMixtureNormal(0.5, 1.0, math.exp(-6.0)),
        lambda p, m, s: integrated_kl(p, m, s),
    ),
    "scale_mixture_wide": (
        priors.ScaleMixtureNormal(0.25, 2.0, 0.1),
        lambda p, m, s: integrated_kl(p, m, s),
    ),
}


@pytest.mark.parametrize("case", sorted(MC_CASES))
def test_monte_carlo_kl_converges_to_the_exact_value(case):
    # 200 calls of `noise.kl` on 2000 weights (400,000 one-sample terms).
    prior, exact = MC_CASES[case]
    layer = mc_layer(prior)
    expected = exact_layer_kl(layer, lambda m, s: exact(prior, m, s))
    seed = keras.random.SeedGenerator(123)
    state = layer.noise_state(layer.kernel)
    samples = [
        float(numpy(layer.noise.kl(layer.kernel.value, state, seed)))
        for _ in range(200)
    ]
    assert_converges(samples, expected)
    # Each call draws anew (float32 sums may coincide now and then).
    assert len(set(samples)) > 0.9 * len(samples)


@pytest.mark.parametrize("estimator", ["shared", "local_reparameterization"])
def test_layer_loss_averages_to_the_exact_kl(estimator):
    # 150 training calls; the loss is kl_weight * the one-sample KL.
    prior = priors.Laplace(0.0, 0.5)
    layer = mc_layer(prior, kl_weight=0.5, estimator=estimator)
    expected = 0.5 * exact_layer_kl(layer, lambda m, s: laplace_kl(m, s, 0.0, 0.5))
    x = np.ones((2, N_IN), "float32")
    samples = []
    for _ in range(150):
        layer(x, training=True)
        assert len(layer.losses) == 1
        samples.append(float(numpy(layer.losses[0])))
    assert_converges(samples, expected)


def test_monte_carlo_kl_is_evaluated_at_the_weights_drawn_for_the_call():
    prior = priors.Laplace(0.2, 0.3)
    layer = noisylayers.NoisyDense(
        3, noise=noise.LearnedGaussian(prior=prior, kl_weight=2.0), seed=4
    )
    layer.build((None, 6))
    rng = np.random.default_rng(0)
    for v in layer.target_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))
        layer.noise_state(v)["rho"].assign(
            rng.uniform(-3, 0, v.shape).astype("float32")
        )
    start = np.array(numpy(layer.seed_generator.state.value))
    layer(np.ones((2, 6), "float32"), training=True)
    loss = float(numpy(layer.losses[0]))
    # Redraw the call's perturbations from the same seed state.
    layer.seed_generator.state.assign(start)
    values = [v.value for v in layer.target_variables]
    states = [layer.noise_state(v) for v in layer.target_variables]
    drawn = layer.noise.perturbations(values, layer.seed_generator, states)
    expected = 0.0
    for v, state, p in zip(layer.target_variables, states, drawn):
        mu = numpy(v.value).astype("float64")
        sigma = np.logaddexp(0.0, numpy(state["rho"].value).astype("float64")) + EPS
        w = mu + numpy(p).astype("float64")
        expected += np.sum(np_normal_log_prob(w, mu, sigma) - np_log_prob(prior, w))
    np.testing.assert_allclose(loss, 2.0 * expected, rtol=1e-4, atol=1e-4)


# -- tensorflow-probability priors --------------------------------------------------


def tfp_distributions():
    return pytest.importorskip("tensorflow_probability").distributions


def tfp_prior(name):
    tfd = tfp_distributions()
    if name == "laplace":
        return tfd.Laplace(0.0, 1.0)
    if name == "student_t":
        return tfd.StudentT(3.0, 0.0, 1.0)
    if name == "normal":
        return tfd.Normal(0.1, 0.8)
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=[0.3, 0.7]),
        components_distribution=tfd.Normal(loc=[0.0, 0.0], scale=[1.0, 0.1]),
    )


@tf_only
def test_tfp_priors_work_in_a_layer_and_survive_saving(tmp_path):
    # One layer per TFP prior: Laplace, StudentT, a Normal (analytic KL)
    # and a MixtureSameFamily of two Normals.
    names = ["laplace", "student_t", "normal", "mixture"]
    stack = [keras.Input((4,))]
    for i, name in enumerate(names):
        learned = noise.LearnedGaussian(prior=tfp_prior(name), kl_weight=0.1)
        assert type(learned.prior) is priors.TFPPrior
        json.dumps(priors.serialize(learned.prior))
        stack.append(
            noisylayers.NoisyDense(
                3 if i < 3 else 1, activation="tanh", noise=learned, seed=i, name=name
            )
        )
    model = keras.Sequential(stack)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for v in layer.target_variables:
            v.assign(rng.normal(size=v.shape).astype("float32"))
            layer.noise_state(v)["rho"].assign(
                rng.uniform(-3.0, 0.0, size=v.shape).astype("float32")
            )
    x = rng.normal(size=(8, 4)).astype("float32")
    model(x, training=True)
    assert len(model.losses) == 4
    assert all(np.isfinite(numpy(loss)) for loss in model.losses)
    path = os.path.join(tmp_path, "tfp.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        numpy(loaded(x, training=False)), numpy(model(x, training=False))
    )
    assert len(loaded.weights) == len(model.weights)
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(numpy(restored.value), numpy(original.value))
    for name, original, restored in zip(names, model.layers, loaded.layers):
        assert restored.noise.prior.get_config() == original.noise.prior.get_config()
        assert type(restored.noise.prior.distribution) is type(
            original.noise.prior.distribution
        ), name
    # The loaded layers' KL terms are those of the same priors.
    loaded(x, training=True)
    for name, a, b in zip(names, model.losses, loaded.losses):
        if name == "normal":  # analytic: identical
            np.testing.assert_allclose(numpy(b), numpy(a), rtol=1e-6)
        assert np.isfinite(numpy(b))


@tf_only
def test_tfp_mixture_config_round_trip():
    # Categorical's `dtype` parameter (a tf.DType) and the tensors'
    # dtypes survive the JSON config.
    p = priors.get(tfp_prior("mixture"))
    config = json.loads(json.dumps(priors.serialize(p)))
    restored = priors.get(config)
    assert restored.get_config() == p.get_config()
    mixture = restored.distribution.mixture_distribution
    assert mixture.dtype == p.distribution.mixture_distribution.dtype
    x = np.linspace(-2.0, 2.0, 9).astype("float32")
    np.testing.assert_allclose(
        numpy(restored.log_prob(x)), numpy(p.log_prob(x)), rtol=1e-6
    )


@tf_only
def test_tfp_normal_prior_uses_the_analytic_kl():
    layer = noisylayers.NoisyDense(
        3, noise=noise.LearnedGaussian(prior=tfp_prior("normal"), kl_weight=1.0), seed=0
    )
    layer.build((None, 4))
    rng = np.random.default_rng(1)
    for v in layer.target_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    x = np.ones((2, 4), "float32")
    losses = []
    for _ in range(2):
        layer(x, training=True)
        losses.append(float(numpy(layer.losses[0])))
    expected = 0.0
    for v in layer.target_variables:
        mu = numpy(v.value).astype("float64")
        s = np.logaddexp(
            0.0, numpy(layer.noise_state(v)["rho"].value).astype("float64")
        ) + EPS
        expected += np.sum(
            np.log(0.8 / s) + (s**2 + (mu - 0.1) ** 2) / (2 * 0.8**2) - 0.5
        )
    # Analytic: the same value in every call.
    assert losses[0] == losses[1]
    np.testing.assert_allclose(losses[0], expected, rtol=1e-5)


@tf_only
def test_tfp_laplace_monte_carlo_kl_converges():
    # TFP has no KL(Normal || Laplace): one-sample Monte Carlo, 200 calls.
    tfd = tfp_distributions()
    layer = mc_layer(tfd.Laplace(0.1, 0.7))
    expected = exact_layer_kl(layer, lambda m, s: laplace_kl(m, s, 0.1, 0.7))
    seed = keras.random.SeedGenerator(5)
    state = layer.noise_state(layer.kernel)
    samples = [
        float(numpy(layer.noise.kl(layer.kernel.value, state, seed)))
        for _ in range(200)
    ]
    assert_converges(samples, expected)


@tf_only
def test_tfp_prior_must_be_scalar():
    tfd = tfp_distributions()
    with pytest.raises(ValueError, match="scalar distribution"):
        noise.LearnedGaussian(prior=tfd.Normal([0.0, 1.0], 1.0))


@pytest.mark.skipif(ON_TF, reason="checks the refusal on other backends")
def test_tfp_prior_is_refused_off_tensorflow():
    try:
        import tensorflow_probability as tfp
    except Exception as e:  # TFP may not import at all next to JAX
        pytest.skip(f"tensorflow_probability does not import here: {e}")
    with pytest.raises(ValueError, match="TensorFlow"):
        noise.LearnedGaussian(prior=tfp.distributions.Laplace(0.0, 1.0))
    config = {
        "class_name": "TFPPrior",
        "config": {
            "distribution": {
                "class_name": "Laplace",
                "parameters": {"loc": 0.0, "scale": 1.0},
            }
        },
    }
    with pytest.raises(ValueError, match="TensorFlow"):
        priors.get(config)


def _tfp_prior_config(distribution):
    return {"class_name": "TFPPrior", "config": {"distribution": distribution}}


def _tensor(values):
    return {"tensor": values, "dtype": "float32"}


def _normal_config(loc=0.0, scale=1.0):
    return {"class_name": "Normal", "parameters": {"loc": loc, "scale": scale}}


@tf_only
def test_a_tfp_prior_config_may_name_only_distribution_classes():
    tfp_distributions()
    # `tfd.kl_divergence` is a function of `tfd`, not a distribution: a
    # file must not make the loader call it (or anything else in `tfd`).
    call = {
        "class_name": "kl_divergence",
        "parameters": {
            "distribution_a": _normal_config(),
            "distribution_b": _normal_config(0.5),
        },
    }
    for config in (call, {"class_name": "_private", "parameters": {}}):
        with pytest.raises(ValueError, match="not a `tfp.distributions.Distribution`"):
            priors.get(_tfp_prior_config(config))
    # A dtype that is not numeric is refused, naming the parameter.
    config = _normal_config({"tensor": [0.0], "dtype": "object"})
    with pytest.raises(ValueError, match=r"`loc` of Normal.*dtype"):
        priors.get(_tfp_prior_config(config))


@tf_only
def test_a_tfp_prior_holds_a_bounded_number_of_numbers():
    tfd = tfp_distributions()
    n = priors.MAX_TFP_PRIOR_NUMBERS // 2 + 1
    # A scalar mixture whose parameters hold 3n numbers: too many, both from
    # a file and at construction (so no file is written that cannot load).
    config = {
        "class_name": "MixtureSameFamily",
        "parameters": {
            "mixture_distribution": {
                "class_name": "Categorical",
                "parameters": {"logits": _tensor([0.0] * n)},
            },
            "components_distribution": _normal_config(
                _tensor([0.0] * n), _tensor([1.0] * n)
            ),
        },
    }
    with pytest.raises(ValueError, match=r"`(loc|scale)` of Normal.*at most"):
        priors.get(_tfp_prior_config(config))
    big = tfd.MixtureSameFamily(
        tfd.Categorical(logits=np.zeros(n, "float32")),
        tfd.Normal(np.zeros(n, "float32"), np.ones(n, "float32")),
    )
    with pytest.raises(ValueError, match=r"at most"):
        noise.LearnedGaussian(prior=big)
    # Within the bound a mixture round-trips (tests above check more).
    small = tfd.MixtureSameFamily(
        tfd.Categorical(logits=np.zeros(50, "float32")),
        tfd.Normal(np.zeros(50, "float32"), np.ones(50, "float32")),
    )
    prior = priors.get(small)
    assert priors.get(json.loads(json.dumps(priors.serialize(prior)))) == prior
