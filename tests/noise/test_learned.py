"""Tests of `noisylayers.noise.LearnedGaussian` (Bayes by backprop).

Covers the contract of the kind (sigma = softplus(rho) + eps per weight,
variables on the noisy layer, the KL term added once per training call), the layer's
`kl_weight` variable and `KLWarmup`, saving, and two checks that the learned
sigmas mean something: predictive spread away from the data, and sigmas
that follow how much the data constrains each weight.
"""

import math
import os
import re
import warnings

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers import priors
from noisylayers.callbacks import KLWarmup
from tests.noise_testing import gradients

ESTIMATORS = ["shared", "flipout", "local_reparameterization"]


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def sigma_from_rho(x):
    """`softplus(rho) + eps` (eps of float32: the floor of a learned sigma)."""
    return np.logaddexp(0.0, np.asarray(x, "float64")) + np.finfo("float32").eps


def rho_of(layer, variable):
    return layer.noise_state(variable)["rho"]


def sigma_of(layer, variable):
    """The sigmas of a target weight, computed in float64 from `rho`."""
    return sigma_from_rho(numpy(rho_of(layer, variable).value))


def normal_kl(mu_q, s_q, mu_p, s_p):
    """Summed `KL(N(mu_q, s_q^2) || N(mu_p, s_p^2))`, in float64."""
    mu_q, s_q = np.asarray(mu_q, "float64"), np.asarray(s_q, "float64")
    return float(
        np.sum(np.log(s_p / s_q) + (s_q**2 + (mu_q - mu_p) ** 2) / (2.0 * s_p**2) - 0.5)
    )


def layer_kl(layer, loc=0.0, scale=1.0):
    """The numpy KL of all the targets of `layer` to `N(loc, scale^2)`."""
    return sum(
        normal_kl(numpy(v.value), sigma_of(layer, v), loc, scale)
        for v in layer.target_variables
    )


def make_dense(kind, learned, units=3, **kwargs):
    if kind == "dense":
        return noisylayers.NoisyDense(units, noise=learned, **kwargs)
    return noisylayers.WeightNoise(layers.Dense(units), noise=learned, **kwargs)


def randomize(layer, seed=0, rho_range=(-4.0, -1.0)):
    """Gives the targets and their `rho`s varied values (so sigma varies)."""
    rng = np.random.default_rng(seed)
    for v in layer.target_variables:
        v.assign(rng.normal(size=v.shape).astype(v.dtype))
        rho_of(layer, v).assign(rng.uniform(*rho_range, size=v.shape).astype("float32"))


X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")


# -- construction ---------------------------------------------------------------


def build_kind(kind, learned):
    """A built noisy layer of `kind` and the names of its targets."""
    if kind == "conv":
        layer = noisylayers.NoisyConv2D(2, 3, noise=learned)
        layer.build((None, 5, 5, 2))
        return layer, ["kernel", "bias"]
    if kind == "lstm":
        layer = noisylayers.NoisyLSTM(3, noise=learned)
        layer.build((None, 4, 2))
        return layer, ["kernel", "recurrent_kernel", "bias"]
    layer = make_dense(kind, learned)
    layer.build((None, 5))
    return layer, ["kernel", "bias"]


def test_every_sigma_starts_at_init_stddev():
    cases = [
        (kind, s) for kind in ("dense", "wrapper") for s in (1e-4, 0.05, 3.0, 40.0)
    ]
    cases += [("conv", 0.5), ("lstm", 0.05)]
    for kind, init_stddev in cases:
        learned = noise.LearnedGaussian(init_stddev=init_stddev, kl_weight=0.1)
        layer, names = build_kind(kind, learned)
        assert [v.name for v in layer.target_variables] == names
        for v in layer.target_variables:
            rho = rho_of(layer, v)
            assert rho.name == f"{v.name}_rho"
            assert tuple(rho.shape) == tuple(v.shape)
            np.testing.assert_allclose(
                sigma_of(layer, v),
                init_stddev,
                rtol=1e-6,
                atol=0,
                err_msg=f"{kind} {v.name}",
            )
            # The backend's softplus agrees (what the layer uses).
            np.testing.assert_allclose(
                numpy(layer.noise.sigma(layer.noise_state(v))),
                init_stddev,
                rtol=1e-6,
                atol=0,
                err_msg=f"{kind} {v.name}",
            )


def test_rho_variables_are_trainable_weights_of_the_noisy_layer():
    for kind in ("dense", "wrapper", "conv", "lstm"):
        layer, names = build_kind(kind, noise.LearnedGaussian(kl_weight=0.1))
        rhos = [rho_of(layer, v) for v in layer.target_variables]
        assert [r.name for r in rhos] == [f"{n}_rho" for n in names]
        trainable = {id(v) for v in layer.trainable_weights}
        for rho in rhos:
            assert rho.trainable
            assert id(rho) in trainable
            assert rho.path.startswith(layer.name + "/")
        if kind == "wrapper":
            inner = {id(v) for v in layer.layer.weights}
            assert not any(id(r) in inner for r in rhos)
            assert len(layer.layer.trainable_weights) == 2
        # The targets and their rhos; enabled, scale and kl_weight.
        assert len(layer.trainable_weights) == 2 * len(names)
        assert sorted(v.name for v in layer.non_trainable_weights) == [
            "kl_log",  # the running weighted KL of `fit`'s `kl` entry
            "kl_weight",
            "noise_enabled",
            "noise_scale",
        ]


def test_rho_receives_gradients():
    for kind, estimator in [
        ("wrapper", "shared"),
        ("dense", "flipout"),
        ("dense", "local_reparameterization"),
    ]:
        layer = make_dense(
            kind, noise.LearnedGaussian(kl_weight=0.1), estimator=estimator, seed=3
        )
        layer.build((None, 5))
        grads = gradients(layer, X, lambda y: ops.sum(ops.square(y)))
        by_path = {v.path: g for v, g in zip(layer.trainable_variables, grads)}
        for v in layer.target_variables:
            for variable in (v, rho_of(layer, v)):
                g = by_path[variable.path]
                assert np.all(np.isfinite(g)), (estimator, variable.path)
                assert np.any(g != 0), (estimator, variable.path)


def test_float16_compute_keeps_float32_rho():
    keras.config.set_dtype_policy("mixed_float16")
    layer = noisylayers.NoisyDense(3, noise=noise.LearnedGaussian(kl_weight=0.1))
    y = layer(X, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    for v in layer.target_variables:
        assert rho_of(layer, v).dtype == "float32"
    (loss,) = layer.losses
    assert np.isfinite(numpy(loss))
    np.testing.assert_allclose(numpy(loss), 0.1 * layer_kl(layer), rtol=1e-5)


# -- the KL term -------------------------------------------------------------------


def test_kl_is_added_once_and_equals_the_closed_form():
    for estimator in ESTIMATORS:
        for kind in ("dense", "wrapper"):
            layer = make_dense(
                kind,
                noise.LearnedGaussian(prior=priors.Normal(0.3, 1.5), kl_weight=0.25),
                estimator=estimator,
                seed=1,
            )
            layer.build((None, 5))
            randomize(layer)
            # Summed over kernel and bias.
            expected = 0.25 * layer_kl(layer, 0.3, 1.5)
            for _ in range(2):
                layer(X, training=True)
                assert len(layer.losses) == 1, (kind, estimator)
                np.testing.assert_allclose(
                    numpy(layer.losses[0]),
                    expected,
                    rtol=1e-5,
                    err_msg=f"{kind} {estimator}",
                )
            layer(X, training=False)
            assert layer.losses == []


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tensorflow-probability is used on the TensorFlow backend only",
)
def test_kl_matches_tfp():
    tfd = pytest.importorskip("tensorflow_probability").distributions
    for prior in ("normal", priors.Normal(-0.2, 0.7)):
        layer = noisylayers.NoisyDense(
            4, noise=noise.LearnedGaussian(prior=prior, kl_weight=1.0), seed=2
        )
        layer.build((None, 5))
        randomize(layer, seed=4)
        p = priors.get(prior)
        expected = sum(
            float(
                np.sum(
                    numpy(
                        tfd.kl_divergence(
                            tfd.Normal(
                                v.value, layer.noise.sigma(layer.noise_state(v))
                            ),
                            tfd.Normal(p.loc, p.scale),
                        )
                    )
                )
            )
            for v in layer.target_variables
        )
        layer(X, training=True)
        np.testing.assert_allclose(numpy(layer.losses[0]), expected, rtol=1e-5)
        np.testing.assert_allclose(expected, layer_kl(layer, p.loc, p.scale), rtol=1e-5)


def test_prior_none_has_no_kl_term():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no "unscaled KL" warning
        layer = noisylayers.NoisyDense(3, noise=noise.LearnedGaussian(prior=None))
        layer.build((None, 5))
    assert layer.noise.has_kl is False
    assert layer.kl_weight is None
    assert "kl_weight" not in [v.name for v in layer.weights]
    layer(X, training=True)
    assert layer.losses == []
    with pytest.raises(ValueError, match="has no KL term"):
        layer.kl_weight = 1.0
    # The sigmas are still learned variables.
    assert [v.name for v in layer.trainable_weights] == [
        "kernel",
        "bias",
        "kernel_rho",
        "bias_rho",
    ]


def test_kl_weight_from_dataset_size_or_one_with_a_warning():
    learned = noise.LearnedGaussian(dataset_size=200)
    assert learned.kl_weight == 1.0 / 200
    layer = noisylayers.NoisyDense(3, noise=learned, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.build((None, 5))
    assert layer.kl_weight == pytest.approx(1.0 / 200, rel=1e-7)
    layer(X, training=True)
    np.testing.assert_allclose(numpy(layer.losses[0]), layer_kl(layer) / 200, rtol=1e-5)
    # Neither given: the full KL, and a warning that says how to scale it.
    learned = noise.LearnedGaussian()
    assert learned.kl_weight == 1.0
    layer = noisylayers.NoisyDense(3, noise=learned)
    with pytest.warns(UserWarning, match="dataset_size"):
        layer.build((None, 5))
    assert layer.kl_weight == 1.0


INVALID = [
    ({"init_stddev": 0.0}, ValueError, "init_stddev=0.0"),
    ({"init_stddev": -0.1}, ValueError, "init_stddev=-0.1"),
    ({"init_stddev": math.inf}, ValueError, "init_stddev=inf"),
    ({"init_stddev": math.nan}, ValueError, "init_stddev=nan"),
    # 0 in float32 (tests/test_properties.py found it).
    ({"init_stddev": 9e-263}, ValueError, "init_stddev=9e-263"),
    ({"init_stddev": "big"}, TypeError, "init_stddev='big'"),
    ({"kl_weight": -1.0}, ValueError, "kl_weight=-1.0"),
    ({"dataset_size": 0}, ValueError, "dataset_size=0"),
    ({"dataset_size": 10.5}, ValueError, "dataset_size=10.5"),
    (
        {"kl_weight": 0.1, "dataset_size": 10},
        ValueError,
        "kl_weight=0.1, dataset_size=10",
    ),
    ({"prior": "gauss"}, ValueError, "prior='gauss'"),
    ({"prior": 3}, TypeError, "prior=3"),
]


def test_invalid_arguments():
    for kwargs, error, message in INVALID:
        with pytest.raises(error, match=re.escape(message)):
            noise.LearnedGaussian(**kwargs)


def test_huge_init_stddev_builds():
    layer = noisylayers.NoisyDense(2, noise=noise.LearnedGaussian(800.0, kl_weight=0.1))
    layer.build((None, 3))
    np.testing.assert_allclose(sigma_of(layer, layer.kernel), 800.0, rtol=1e-6)


def test_config_round_trip_and_alias():
    learned = noise.LearnedGaussian(
        init_stddev=0.1, prior=priors.Laplace(0.0, 0.5), dataset_size=100
    )
    config = noise.serialize(learned)
    restored = noise.get(config)
    assert restored == learned
    assert restored.prior == priors.Laplace(0.0, 0.5)
    assert restored.kl_weight == 0.01
    assert type(noise.get("learned_gaussian")) is noise.LearnedGaussian
    assert noise.get("learned_gaussian").prior == priors.Normal(0.0, 1.0)
    parsed = noise.parse("learned_gaussian:init_stddev=0.1,dataset_size=100")
    assert parsed.init_stddev == 0.1 and parsed.kl_weight == 0.01
    assert noise.get(noise.serialize(noise.LearnedGaussian(prior=None))).prior is None


# -- inference ---------------------------------------------------------------------


def test_inference_is_the_plain_layer_with_the_mean_weights():
    for estimator in ESTIMATORS:
        for kind in ("dense", "wrapper"):
            layer = make_dense(
                kind, noise.LearnedGaussian(kl_weight=0.1), estimator=estimator, seed=5
            )
            layer.build((None, 5))
            randomize(layer, rho_range=(-2.0, 0.0))
            plain = layers.Dense(3)
            plain.build((None, 5))
            plain.set_weights([numpy(v.value) for v in layer.target_variables])
            expected = numpy(plain(X))
            for training in (False, None, False):
                np.testing.assert_array_equal(
                    numpy(layer(X, training=training)), expected
                )
            first = numpy(layer(X, training=True))
            second = numpy(layer(X, training=True))
            assert not np.allclose(first, expected), (kind, estimator)
            assert not np.allclose(first, second), (kind, estimator)


# -- the kl_weight variable and the training loss ------------------------------------


def test_kl_weight_is_a_settable_non_trainable_variable():
    layer = noisylayers.NoisyDense(3, noise=noise.LearnedGaussian(kl_weight=0.5))
    layer.build((None, 5))
    (variable,) = [v for v in layer.weights if v.name == "kl_weight"]
    assert not variable.trainable
    assert id(variable) in {id(v) for v in layer.non_trainable_weights}
    assert layer.kl_weight == 0.5
    layer(X, training=True)
    full = numpy(layer.losses[0])
    layer.kl_weight = 0.125
    assert layer.kl_weight == 0.125
    assert float(numpy(variable.value)) == 0.125
    assert layer.noise.kl_weight == 0.5  # the kind's own weight is unchanged
    layer(X, training=True)
    np.testing.assert_allclose(numpy(layer.losses[0]), full / 4, rtol=1e-6)
    layer.kl_weight = 0
    layer(X, training=True)
    assert float(numpy(layer.losses[0])) == 0.0
    with pytest.raises(ValueError, match=re.escape("kl_weight=-1.0")):
        layer.kl_weight = -1.0


def kl_model():
    """Three learned layers, one per estimator, two priors.

    With the noise `scale` at 0 the data loss is deterministic, and with
    SGD(0) nothing moves, so the losses of two steps differ by the KL only.
    """
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            noisylayers.NoisyDense(
                4,
                activation="tanh",
                noise=noise.LearnedGaussian(kl_weight=1.0),
                estimator="flipout",
                name="first",
                seed=1,
            ),
            noisylayers.WeightNoise(
                layers.Dense(3, activation="tanh", name="dense"),
                noise=noise.LearnedGaussian(
                    prior=priors.Normal(0.2, 0.5), kl_weight=1.0
                ),
                estimator="local_reparameterization",
                name="second",
                seed=2,
            ),
            noisylayers.NoisyDense(
                1,
                noise=noise.LearnedGaussian(kl_weight=1.0),
                estimator="shared",
                name="third",
                seed=3,
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    for i, layer in enumerate(model.layers):
        randomize(layer, seed=10 + i)
    noisylayers.set_noise(model, scale=0.0)
    kls = [layer_kl(model.layers[0]), layer_kl(model.layers[1], 0.2, 0.5)]
    kls.append(layer_kl(model.layers[2]))
    return model, kls


def test_kl_enters_the_compiled_training_loss():
    model, kls = kl_model()
    y = np.random.default_rng(1).normal(size=(8, 1)).astype("float32")

    def set_weights(*weights):
        for layer, weight in zip(model.layers, weights):
            layer.kl_weight = weight

    set_weights(0.0, 0.0, 0.0)
    # The `kl` entry is a metric: train_on_batch returns [loss, kl].
    without = float(model.train_on_batch(X, y, return_dict=True)["loss"])
    set_weights(1.0, 1.0, 1.0)
    with_kl = float(model.train_on_batch(X, y, return_dict=True)["loss"])
    np.testing.assert_allclose(with_kl - without, sum(kls), rtol=1e-4)
    # Per layer: only the second layer's KL, at half weight.
    set_weights(0.0, 0.5, 0.0)
    partial = float(model.train_on_batch(X, y, return_dict=True)["loss"])
    np.testing.assert_allclose(partial - without, 0.5 * kls[1], rtol=1e-4)
    # (`fit`: see the KLWarmup test, whose epoch losses include the KL.)


class _RecordKLWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append([layer.kl_weight for layer in self.model.layers])


def test_kl_warmup_scales_each_layers_kl_weight_per_epoch():
    model, kls = kl_model()
    # Different configured weights: the factor multiplies each one.
    base = [0.5, 0.01, 0.2]
    for layer, weight in zip(model.layers, base):
        layer.noise.kl_weight = weight
    y = np.zeros((8, 1), "float32")
    record = _RecordKLWeights()
    history = model.fit(
        X,
        y,
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[KLWarmup("linear", start=0.0, end=1.0, duration=3), record],
    ).history
    factors = [0.0, 0.5, 1.0, 1.0]
    assert history["kl_factor"] == pytest.approx(factors)
    np.testing.assert_allclose(
        record.values, [[f * b for b in base] for f in factors], rtol=1e-6
    )
    # The compiled step used each epoch's weights (SGD(0): nothing moves).
    data = history["loss"][0]
    full = sum(b * kl for b, kl in zip(base, kls))
    np.testing.assert_allclose(
        history["loss"], [data + f * full for f in factors], rtol=1e-4
    )
    # A model without a KL term has nothing to warm up.
    plain = keras.Sequential(
        [
            keras.Input((5,)),
            noisylayers.NoisyDense(1, noise=noise.LearnedGaussian(prior=None)),
        ]
    )
    plain.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no noisy layer with a KL term"):
        plain.fit(X, y, verbose=0, callbacks=[KLWarmup("linear", duration=2)])


# -- saving --------------------------------------------------------------------------


def test_keras_round_trip_restores_every_variable(tmp_path):
    model, _ = kl_model()
    x = np.random.default_rng(2).normal(size=(16, 5)).astype("float32")
    noisylayers.set_noise(model, scale=0.7)
    model.layers[1].kl_weight = 0.05
    path = os.path.join(tmp_path, "learned.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [(v.name, tuple(v.shape)) for v in loaded.weights] == [
        (v.name, tuple(v.shape)) for v in model.weights
    ]
    names = [v.name for v in loaded.weights]
    assert names.count("kernel_rho") == 3 and names.count("bias_rho") == 3
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(
            numpy(restored.value), numpy(original.value), err_msg=original.path
        )
    for original, restored in zip(model.layers, loaded.layers):
        assert type(restored.noise) is noise.LearnedGaussian
        assert restored.noise == original.noise
        assert restored.noise.get_config() == original.noise.get_config()
        assert restored.estimator == original.estimator
        assert restored.kl_weight == original.kl_weight
        assert restored.scale == pytest.approx(0.7)
    np.testing.assert_array_equal(
        numpy(loaded(x, training=False)), numpy(model(x, training=False))
    )
    # The restored rhos are the ones the loaded layers use.
    for layer in loaded.layers:
        for v in layer.target_variables:
            assert id(rho_of(layer, v)) in {id(w) for w in layer.trainable_weights}


# -- the learned sigmas mean something ---------------------------------------------


def test_predictive_spread_grows_away_from_the_data():
    # y = sin(3x) + N(0, 0.05^2) on x in [-1, 1], N = 256; three learned
    # layers (32-32-1, Flipout), KL weight 1/N, Adam(1e-2), 300 full-batch
    # steps. Measured over 10 seeds on each backend: mean MC std (50
    # samples) 0.27-0.30 on [-1, 1] and 1.19-1.53 on [2.5, 3], ratio
    # 4.2-5.4; training MSE 0.047-0.068 (Var[sin(3x)] is about 0.5).
    n = 256
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (n, 1)).astype("float32")
    y = (np.sin(3.0 * x) + 0.05 * rng.normal(size=x.shape)).astype("float32")
    keras.utils.set_random_seed(0)

    def learned():
        return noise.LearnedGaussian(dataset_size=n)

    model = keras.Sequential(
        [
            keras.Input((1,)),
            noisylayers.NoisyDense(
                32, "relu", noise=learned(), estimator="flipout", seed=1
            ),
            noisylayers.NoisyDense(
                32, "relu", noise=learned(), estimator="flipout", seed=2
            ),
            noisylayers.NoisyDense(1, noise=learned(), estimator="flipout", seed=3),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    # One epoch of 300 full batches (cheaper than 300 epochs).
    model.fit(
        np.tile(x, (300, 1)),
        np.tile(y, (300, 1)),
        batch_size=n,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    mse = float(np.mean((numpy(model(x, training=False)) - y) ** 2))
    assert mse < 0.15
    inside = np.linspace(-1.0, 1.0, 50, dtype="float32")[:, None]
    outside = np.linspace(2.5, 3.0, 20, dtype="float32")[:, None]
    _, std = noisylayers.mc_predict(
        model, np.concatenate([inside, outside]), samples=50, batch_size=70, seed=0
    )
    std_in, std_out = std[:50].mean(), std[50:].mean()
    assert std_out > 2.0 * std_in, (std_in, std_out)


def test_learned_sigmas_follow_how_much_the_data_says_about_each_weight():
    # y = 3 x0 + N(0, 0.1^2); x1 is useless; x2 is useless and non-zero in
    # only 8 of the N = 256 rows. For `mse + KL(q || N(0, 1)) / N` the
    # optimal sigma of a linear weight is 1 / sqrt(1 + 2 N mean(x_i^2)):
    # it depends on how much data constrains the weight, not on whether
    # the weight is useful (x0 and x1: ~0.044 both; x2: ~0.25). What tells
    # the informative weight from the useless one is its signal-to-noise
    # ratio |w| / sigma. Measured (4 seeds, both backends; local
    # reparameterization, 400 full-batch Adam(0.03) steps from sigma 0.2):
    # sigmas within 12% of the optimum; |w0|/sigma0 > 60, |w1|/sigma1 < 0.1,
    # sigma2 / sigma0 > 3.2.
    n = 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    x[rng.permutation(n)[8:], 2] = 0.0
    y = (3.0 * x[:, :1] + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    layer = noisylayers.NoisyDense(
        1,
        noise=noise.LearnedGaussian(
            init_stddev=0.2, prior=priors.Normal(0.0, 1.0), dataset_size=n
        ),
        estimator="local_reparameterization",
        seed=0,
    )
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(keras.optimizers.Adam(0.03), "mse")
    model.fit(
        np.tile(x, (400, 1)),
        np.tile(y, (400, 1)),
        batch_size=n,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    w = numpy(layer.kernel.value)[:, 0]
    sigma = sigma_of(layer, layer.kernel)[:, 0]
    optimum = 1.0 / np.sqrt(1.0 + 2.0 * n * np.mean(x**2, axis=0))
    np.testing.assert_allclose(sigma, optimum, rtol=0.25)
    snr = np.abs(w) / sigma
    assert snr[0] > 20.0
    assert snr[1] < 2.0
    assert sigma[2] > 3.0 * sigma[0]
    assert sigma[2] > 3.0 * sigma[1]


@pytest.mark.parametrize(
    "learned",
    [
        noise.LearnedGaussian(kl_weight=1.0),
        noise.LearnedGaussian(prior="laplace", kl_weight=1.0),
        noise.AdaptiveGaussian(kl_weight=1.0),
    ],
    ids=repr,
)
def test_a_very_negative_rho_gives_finite_sigma_kl_and_gradients(learned):
    # softplus(-100) is 0 in float32: without a floor sigma would be 0 and
    # the KL (a -log sigma term) infinite, its gradients NaN.
    layer = noisylayers.NoisyDense(3, noise=learned, seed=0)
    model = keras.Sequential([keras.Input((5,)), layer])
    rng = np.random.default_rng(0)
    for v in layer.target_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))
        rho_of(layer, v).assign(np.full(v.shape, -100.0, "float32"))
    floor = np.finfo("float32").eps
    for v in layer.target_variables:
        sigma = numpy(learned.perturbation_stddev(v.value, layer.noise_state(v)))
        np.testing.assert_allclose(sigma, floor, rtol=1e-6)
    layer(X, training=True)
    assert np.isfinite(numpy(layer.losses[0]))
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    logs = model.train_on_batch(X, np.zeros((8, 3), "float32"), return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["kl"])
    for v in model.weights:
        assert np.isfinite(numpy(v.value)).all(), v.path  # finite gradients


def test_the_unscaled_kl_warning_comes_once_per_layer():
    shared = noise.LearnedGaussian()
    makers = [
        lambda: noisylayers.NoisyDense(3, noise=shared),  # kernel, bias
        lambda: noisylayers.NoisyDense(3, noise=shared),  # the same kind again
        lambda: noisylayers.WeightNoise(
            layers.Dense(3), noise=noise.AdaptiveGaussian()
        ),
        lambda: noisylayers.NoisyLSTM(  # kernel, recurrent kernel
            3, noise=noise.VariationalDropout()
        ),
    ]
    shapes = [(None, 5), (None, 5), (None, 5), (None, 4, 5)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for make, shape in zip(makers, shapes):
            make().build(shape)
    unscaled = [w for w in caught if "full KL term" in str(w.message)]
    assert len(unscaled) == len(makers), [str(w.message) for w in unscaled]
