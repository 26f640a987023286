"""Tests of the adaptive kinds: `AdaptiveGaussian`, `Factorized`, `VariationalDropout`.

Each kind is checked against its defining formula in numpy, in both
`WeightNoise` and `NoisyDense`, through saving, and (variational dropout)
by an actual pruning run on scikit-learn's digits.
"""

import math
import os
import re

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import noisylayers
from noisylayers import noise
from tests.noise_testing import gradients

K1, K2, K3 = 0.63576, 1.87320, 1.48695


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def f64(x):
    return numpy(x).astype("float64")


def sigma_from_rho(x):
    """`softplus(rho) + eps` (eps of float32: the floor of a learned sigma)."""
    return np.logaddexp(0.0, np.asarray(x, "float64")) + np.finfo("float32").eps


def make(kind, kind_noise, units=3, **kwargs):
    if kind == "dense":
        return noisylayers.NoisyDense(units, noise=kind_noise, **kwargs)
    return noisylayers.WeightNoise(layers.Dense(units), noise=kind_noise, **kwargs)


X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
KINDS = ("dense", "wrapper")


# -- AdaptiveGaussian -----------------------------------------------------------


def graves_kl(w, sigma):
    """KL of `N(w, sigma^2)` to Graves' optimal prior of the tensor."""
    w, sigma = np.asarray(w, "float64"), np.asarray(sigma, "float64")
    mu = w.mean()
    s = math.sqrt(np.mean(sigma**2 + (w - mu) ** 2))
    kl = np.log(s / sigma) + (sigma**2 + (w - mu) ** 2) / (2 * s**2) - 0.5
    return float(kl.sum()), mu, s


def adaptive_layer_kl(layer):
    total, moments = 0.0, []
    for v in layer.target_variables:
        sigma = sigma_from_rho(f64(layer.noise_state(v)["rho"].value))
        kl, mu, s = graves_kl(f64(v.value), sigma)
        total += kl
        moments.append((mu, s))
    return total, moments


def test_adaptive_gaussian_kl_is_the_closed_form_to_the_optimal_prior():
    for estimator in ("shared", "flipout", "local_reparameterization"):
        for kind in KINDS:
            layer = make(
                kind,
                noise.AdaptiveGaussian(init_stddev=0.1, kl_weight=0.5),
                estimator=estimator,
                seed=1,
            )
            layer.build((None, 5))
            # At construction the bias is 0 with one sigma: its KL is 0.
            bias = layer.target_variables[1]
            sigma = sigma_from_rho(f64(layer.noise_state(bias)["rho"].value))
            assert graves_kl(f64(bias.value), sigma)[0] == 0.0
            rng = np.random.default_rng(0)
            for v in layer.target_variables:
                rho = layer.noise_state(v)["rho"]
                assert rho.name == f"{v.name}_rho"
                np.testing.assert_allclose(sigma_from_rho(f64(rho.value)), 0.1, rtol=1e-6)
                v.assign(rng.normal(0.3, 1.0, size=v.shape).astype("float32"))
                rho.assign(rng.uniform(-4.0, 0.0, size=v.shape).astype("float32"))
            expected, _ = adaptive_layer_kl(layer)
            layer(X, training=True)
            assert len(layer.losses) == 1, (kind, estimator)
            np.testing.assert_allclose(
                numpy(layer.losses[0]),
                0.5 * expected,
                rtol=1e-5,
                err_msg=f"{kind} {estimator}",
            )


def test_adaptive_gaussian_config_and_invalid_arguments():
    kind = noise.AdaptiveGaussian(init_stddev=0.2, dataset_size=50)
    assert kind.kl_weight == 1.0 / 50
    assert "prior" not in kind.get_config()
    assert noise.get(noise.serialize(kind)) == kind
    assert type(noise.get("adaptive_gaussian")) is noise.AdaptiveGaussian
    for kwargs, message in [
        ({"init_stddev": 0.0}, "init_stddev=0.0"),
        ({"init_stddev": -1.0}, "init_stddev=-1.0"),
        ({"kl_weight": -0.5}, "kl_weight=-0.5"),
        ({"dataset_size": 0}, "dataset_size=0"),
        ({"kl_weight": 0.1, "dataset_size": 5}, "kl_weight=0.1, dataset_size=5"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            noise.AdaptiveGaussian(**kwargs)
    with pytest.raises(TypeError):
        noise.AdaptiveGaussian(prior="normal")


# -- Factorized --------------------------------------------------------------------


def factorized_draws(layer, calls, seed=0):
    """`calls` perturbations (noisy - clean) of each target, stacked."""
    generator = keras.random.SeedGenerator(seed)
    clean = [f64(v.value) for v in layer.target_variables]
    draws = [[] for _ in clean]
    for _ in range(calls):
        for i, (_, noisy) in enumerate(layer.noisy_weights(generator)):
            draws[i].append(f64(noisy) - clean[i])
    return [np.stack(d) for d in draws]


def sigma_of(layer, variable):
    return f64(layer.noise_state(variable)["sigma"].value)


def kernel_of(layer):
    return layer.target_variables[0]


def test_factorized_sigmas_start_at_sigma0_over_sqrt_fan_in():
    cases = [
        (make("dense", noise.Factorized(0.5), units=4), (None, 9), 9),
        (make("wrapper", noise.Factorized(0.8), units=4), (None, 16), 16),
        (
            noisylayers.NoisyConv2D(3, 2, noise=noise.Factorized(0.6)),
            (None, 5, 5, 3),
            12,
        ),
    ]
    for layer, shape, fan_in in cases:
        layer.build(shape)
        sigma0 = layer.noise.sigma0
        names = []
        for v in layer.target_variables:
            sigma = layer.noise_state(v)["sigma"]
            names.append(sigma.name)
            assert sigma.trainable
            assert id(sigma) in {id(w) for w in layer.trainable_weights}
            np.testing.assert_allclose(
                f64(sigma.value), sigma0 / math.sqrt(fan_in), rtol=1e-6
            )
        assert names == ["kernel_sigma", "bias_sigma"]
        assert layer.kl_weight is None


def test_factorized_kernel_noise_is_rank_one():
    for layer in (
        noisylayers.NoisyDense(6, use_bias=False, noise=noise.Factorized(0.5)),
        noisylayers.WeightNoise(
            layers.Dense(6, use_bias=False), noise=noise.Factorized(0.5)
        ),
    ):
        layer.build((None, 10))
        sigma = sigma_of(layer, kernel_of(layer))
        assert np.all(sigma == sigma.flat[0])  # constant at construction
        (draws,) = factorized_draws(layer, 5)
        for pert in draws:
            assert np.linalg.matrix_rank(pert, tol=1e-5 * np.abs(pert).max()) == 1
            # f(eps_i) f(eps_j): an outer product.
            ratio = pert / sigma
            u, s, vt = np.linalg.svd(ratio)
            np.testing.assert_allclose(
                ratio, s[0] * np.outer(u[:, 0], vt[0]), atol=1e-6
            )
        # A new draw every call.
        assert not np.allclose(draws[0], draws[1])


def test_factorized_mean_square_is_two_over_pi_sigma_squared():
    # 400 calls on a 40x25 kernel with random sigmas. Entries of one call
    # share factors, so the standard error comes from the per-call means:
    # mean(pert^2 / sigma^2) per call, whose expectation is
    # E|a| E|b| = 2/pi. Tolerance: 4 standard errors of the mean of 400.
    layer = noisylayers.NoisyDense(25, noise=noise.Factorized(0.5), seed=0)
    layer.build((None, 40))
    rng = np.random.default_rng(1)
    for v in layer.target_variables:
        layer.noise_state(v)["sigma"].assign(
            rng.uniform(0.05, 0.5, size=v.shape).astype("float32")
        )
    kernel_draws, bias_draws = factorized_draws(layer, 400)
    per_call = np.mean(
        kernel_draws**2 / sigma_of(layer, layer.kernel) ** 2, axis=(1, 2)
    )
    se = per_call.std(ddof=1) / math.sqrt(len(per_call))
    assert abs(per_call.mean() - 2.0 / math.pi) < 4.0 * se, (per_call.mean(), se)
    # The bias: sigma_j f(eps_j), E f(eps)^2 = E|eps| = sqrt(2/pi).
    per_call = np.mean(bias_draws**2 / sigma_of(layer, layer.bias) ** 2, axis=1)
    se = per_call.std(ddof=1) / math.sqrt(len(per_call))
    assert abs(per_call.mean() - math.sqrt(2.0 / math.pi)) < 4.0 * se


def test_factorized_bias_shares_the_output_noise_of_the_kernel():
    for kind in KINDS:
        layer = make(kind, noise.Factorized(0.5), units=5, seed=3)
        layer.build((None, 7))
        rng = np.random.default_rng(2)
        for v in layer.target_variables:
            # Zero weights: noisy - clean is the perturbation exactly.
            v.assign(np.zeros(v.shape, "float32"))
            layer.noise_state(v)["sigma"].assign(
                rng.uniform(0.1, 1.0, size=v.shape).astype("float32")
            )
        kernel_draws, bias_draws = factorized_draws(layer, 3)
        k_sigma = sigma_of(layer, layer.target_variables[0])
        b_sigma = sigma_of(layer, layer.target_variables[1])
        for k, b in zip(kernel_draws, bias_draws):
            f_out = b / b_sigma  # f(eps_j)
            ratio = k / k_sigma  # f(eps_i) f(eps_j)
            f_in = ratio[:, 0] / f_out[0]
            np.testing.assert_allclose(
                ratio, np.outer(f_in, f_out), rtol=1e-4, atol=1e-6
            )
            assert np.abs(f_out).max() > 0.1
        assert not np.allclose(bias_draws[0], bias_draws[1])


def test_factorized_noise_stats_stddev_of_the_kernel():
    layer = noisylayers.NoisyDense(4, noise=noise.Factorized(0.5))
    layer.build((None, 9))
    rows = noisylayers.noise_stats(layer)
    kernel = next(r for r in rows if r["weight"] == "kernel")
    assert kernel["stddev"] == pytest.approx(0.5 / 3 * math.sqrt(2 / math.pi), rel=1e-6)
    assert kernel["kl"] is None


def test_factorized_noise_stats_stddev_of_the_bias():
    layer = noisylayers.NoisyDense(4, noise=noise.Factorized(0.5))
    layer.build((None, 9))
    rows = noisylayers.noise_stats(layer)
    bias = next(r for r in rows if r["weight"] == "bias")
    assert bias["stddev"] == pytest.approx(0.5 / 3 * (2 / math.pi) ** 0.25, rel=1e-6)


def test_factorized_training_calls_and_gradients():
    for kind in KINDS:
        layer = make(kind, noise.Factorized(0.5), seed=4)
        layer.build((None, 5))
        assert layer.estimator == "shared"
        first = numpy(layer(X, training=True))
        second = numpy(layer(X, training=True))
        assert not np.allclose(first, second)
        assert layer.losses == []
        plain = numpy(layer(X, training=False))
        np.testing.assert_array_equal(plain, numpy(layer(X, training=False)))
        grads = gradients(layer, X, lambda y: ops.sum(ops.square(y)))
        by_name = {v.path: g for v, g in zip(layer.trainable_variables, grads)}
        for v in layer.target_variables:
            g = by_name[layer.noise_state(v)["sigma"].path]
            assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_factorized_refuses_flipout_and_local_reparameterization():
    for kind in KINDS:
        with pytest.raises(ValueError, match="independent"):
            make(kind, noise.Factorized(), estimator="flipout")
        with pytest.raises(ValueError, match="Gaussian"):
            make(kind, noise.Factorized(), estimator="local_reparameterization")


def test_factorized_config_and_invalid_arguments():
    kind = noise.Factorized(0.3)
    assert noise.get(noise.serialize(kind)) == kind
    assert noise.get("factorized") == noise.Factorized(0.5)
    for value, error in [
        (0.0, ValueError),
        (-0.5, ValueError),
        (math.inf, ValueError),
        ("big", TypeError),
    ]:
        with pytest.raises(error, match=re.escape(f"sigma0={value!r}")):
            noise.Factorized(value)


# -- VariationalDropout -----------------------------------------------------------


def log_alpha_of(layer, variable):
    """Unclipped log alpha, in float64."""
    log_sigma2 = f64(layer.noise_state(variable)["log_sigma2"].value)
    return log_sigma2 - np.log(f64(variable.value) ** 2 + 1e-8)


def vd_kl(log_alpha):
    la = np.clip(np.asarray(log_alpha, "float64"), -8.0, 8.0)
    sigmoid = 1.0 / (1.0 + np.exp(-(K2 + K3 * la)))
    return float(np.sum(K1 - K1 * sigmoid + 0.5 * np.log1p(np.exp(-la))))


def test_variational_dropout_starts_at_init_log_alpha():
    for init in (-4.0, -8.0, 2.5, 8.0):
        cases = [
            make("dense", noise.VariationalDropout(init_log_alpha=init, kl_weight=0.1)),
            make(
                "wrapper", noise.VariationalDropout(init_log_alpha=init, kl_weight=0.1)
            ),
            noisylayers.NoisyConv2D(
                2, 3, noise=noise.VariationalDropout(init_log_alpha=init, kl_weight=0.1)
            ),
        ]
        shapes = [(None, 5), (None, 5), (None, 5, 5, 2)]
        for layer, shape in zip(cases, shapes):
            layer.build(shape)
            # The kernel only: a zero bias would have an infinite alpha.
            assert [v.name for v in layer.target_variables] == ["kernel"]
            state = layer.noise_state(layer.target_variables[0])
            assert state["log_sigma2"].name == "kernel_log_sigma2"
            assert state["log_sigma2"].trainable
            la = log_alpha_of(layer, layer.target_variables[0])
            np.testing.assert_allclose(la, init, atol=1e-5)
            assert np.all((la >= -8.0 - 1e-5) & (la <= 8.0 + 1e-5))
            assert layer.estimator == "local_reparameterization"


def test_variational_dropout_estimators():
    # Local reparameterization where the layer has it, else shared.
    lstm = noisylayers.WeightNoise(
        layers.LSTM(2), noise=noise.VariationalDropout(kl_weight=0.1)
    )
    assert lstm.estimator == "shared"
    for estimator in ("shared", "flipout", "local_reparameterization"):
        layer = make(
            "dense", noise.VariationalDropout(kl_weight=0.1), estimator=estimator
        )
        assert layer.estimator == estimator


def randomize_vd(layer, seed=0):
    rng = np.random.default_rng(seed)
    kernel = layer.target_variables[0]
    kernel.assign(rng.normal(size=kernel.shape).astype("float32"))
    # log alpha in [-10, 10]: some clipped at both ends.
    la = rng.uniform(-10.0, 10.0, size=kernel.shape)
    layer.noise_state(kernel)["log_sigma2"].assign(
        (la + np.log(f64(kernel.value) ** 2 + 1e-8)).astype("float32")
    )


def test_variational_dropout_kl_is_the_molchanov_approximation():
    for estimator in ("local_reparameterization", "shared", "flipout"):
        for kind in KINDS:
            layer = make(
                kind,
                noise.VariationalDropout(kl_weight=0.25),
                estimator=estimator,
                seed=1,
            )
            layer.build((None, 5))
            randomize_vd(layer)
            expected = 0.25 * vd_kl(log_alpha_of(layer, layer.target_variables[0]))
            layer(X, training=True)
            assert len(layer.losses) == 1
            np.testing.assert_allclose(
                numpy(layer.losses[0]),
                expected,
                rtol=1e-5,
                err_msg=f"{kind} {estimator}",
            )
            # The training output is noisy.
            assert not np.allclose(
                numpy(layer(X, training=True)), numpy(layer(X, training=True))
            )


def test_variational_dropout_prunes_at_inference():
    for kind in KINDS:
        layer = make(kind, noise.VariationalDropout(kl_weight=0.1), units=4)
        layer.build((None, 5))
        kernel = layer.target_variables[0]
        rng = np.random.default_rng(3)
        pruned = rng.uniform(size=kernel.shape) < 0.4
        la = np.where(pruned, 5.0, -2.0)  # threshold 3
        log_sigma2 = layer.noise_state(kernel)["log_sigma2"]
        log_sigma2.assign(
            (la + np.log(f64(kernel.value) ** 2 + 1e-8)).astype("float32")
        )
        plain = layers.Dense(4)
        plain.build((None, 5))
        clean_kernel = numpy(kernel.value)
        weights = [np.where(pruned, 0.0, clean_kernel).astype("float32")]
        bias_value = layer.layer.bias if kind == "wrapper" else layer.bias
        bias_value.assign(rng.normal(size=(4,)).astype("float32"))
        weights.append(numpy(bias_value.value))
        plain.set_weights(weights)
        expected = numpy(plain(X))
        for training in (False, None):
            np.testing.assert_array_equal(numpy(layer(X, training=training)), expected)
        # The variable keeps its value: only the inference computation prunes.
        np.testing.assert_array_equal(numpy(kernel.value), clean_kernel)
        rows = noisylayers.noise_stats(layer)
        (row,) = rows
        assert row["sparsity"] == pytest.approx(pruned.mean())
        assert row["kl"] == pytest.approx(vd_kl(log_alpha_of(layer, kernel)), rel=1e-5)


def test_variational_dropout_config_and_invalid_arguments():
    kind = noise.VariationalDropout(
        threshold=2.0, init_log_alpha=-3.0, dataset_size=100
    )
    assert kind.kl_weight == 0.01
    assert noise.get(noise.serialize(kind)) == kind
    assert type(noise.get("variational_dropout")) is noise.VariationalDropout
    for kwargs, message in [
        ({"init_log_alpha": 8.5}, "init_log_alpha=8.5"),
        ({"init_log_alpha": -9.0}, "init_log_alpha=-9.0"),
        ({"threshold": math.nan}, "threshold=nan"),
        ({"threshold": math.inf}, "threshold=inf"),
        ({"kl_weight": -1.0}, "kl_weight=-1.0"),
        ({"dataset_size": 0}, "dataset_size=0"),
        ({"kl_weight": 0.1, "dataset_size": 5}, "kl_weight=0.1, dataset_size=5"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            noise.VariationalDropout(**kwargs)


# -- all three ----------------------------------------------------------------------


def all_kinds_model():
    keras.utils.set_random_seed(0)
    kinds = [
        noise.AdaptiveGaussian(0.1, kl_weight=0.01),
        noise.Factorized(0.4),
        noise.VariationalDropout(kl_weight=0.01),
    ]
    stack = [keras.Input((5,))]
    for i, kind in enumerate(kinds):
        stack.append(
            noisylayers.NoisyDense(6, "tanh", noise=kind, seed=2 * i, name=f"dense_{i}")
        )
        stack.append(
            noisylayers.WeightNoise(
                layers.Dense(6 if i < 2 else 1, activation="tanh" if i < 2 else None),
                noise=kind,
                seed=2 * i + 1,
                name=f"wrapper_{i}",
            )
        )
    return keras.Sequential(stack)


def kind_variables(model):
    """`(layer name, state key, variable, target)` of every kind variable."""
    return [
        (layer.name, name, variable, v)
        for layer in model.layers
        for v in layer.target_variables
        for name, variable in layer.noise_state(v).items()
        if isinstance(variable, keras.Variable)
    ]


def test_all_three_train_in_both_layer_types():
    model = all_kinds_model()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    before = [np.array(numpy(v.value)) for _, _, v, _ in kind_variables(model)]
    # Two layers each: kernel and bias rho, kernel and bias sigma, and
    # kernel log_sigma2 (variational dropout leaves the bias alone).
    assert len(before) == 2 * 2 + 2 * 2 + 2 * 1
    adaptive = [model.get_layer("dense_0"), model.get_layer("wrapper_0")]
    _, moments_before = zip(*(adaptive_layer_kl(layer) for layer in adaptive))
    x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
    y = np.sin(x[:, :1])
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    # Every kind variable received gradients and moved.
    for (layer, name, v, _), b in zip(kind_variables(model), before):
        assert not np.allclose(numpy(v.value), b), (layer, name)
    # Graves' prior (mu, s) of every tensor moved with the weights, and the
    # KL is the closed form to the new optimum.
    kl_after, moments_after = zip(*(adaptive_layer_kl(layer) for layer in adaptive))
    moved = np.abs(np.array(moments_after) - np.array(moments_before))
    assert np.all(moved > 1e-4), moved
    seed = keras.random.SeedGenerator(0)
    kls = [
        sum(
            numpy(layer.noise.kl(v.value, layer.noise_state(v), seed))
            for v in layer.target_variables
        )
        for layer in adaptive
    ]
    np.testing.assert_allclose(kls, kl_after, rtol=1e-5)


def test_keras_round_trip_restores_the_kinds_variables(tmp_path):
    model = all_kinds_model()
    rng = np.random.default_rng(5)
    for _, name, v, target in kind_variables(model):
        value = rng.normal(size=v.shape)
        if name == "sigma":
            value = np.abs(value) * 0.1
        if name == "log_sigma2":  # log alpha uniform in [-6, 6]
            value = rng.uniform(-6.0, 6.0, v.shape) + np.log(f64(target.value) ** 2)
        v.assign(value.astype("float32"))
    path = os.path.join(tmp_path, "adaptive.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [(v.name, tuple(v.shape)) for v in loaded.weights] == [
        (v.name, tuple(v.shape)) for v in model.weights
    ]
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(
            numpy(restored.value), numpy(original.value), err_msg=original.path
        )
    for original, restored in zip(model.layers, loaded.layers):
        assert type(restored.noise) is type(original.noise)
        assert restored.noise.get_config() == original.noise.get_config()
        assert restored.estimator == original.estimator
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    np.testing.assert_array_equal(
        numpy(loaded(x, training=False)), numpy(model(x, training=False))
    )
    # Some weights are pruned (log alpha > 3) in the restored model too.
    rows = noisylayers.noise_stats(loaded, layers=["dense_2", "wrapper_2"])
    assert all(0 < row["sparsity"] < 1 for row in rows)


# -- pruning ---------------------------------------------------------------------------


def backend_log_alpha(layer):
    """The clipped log alpha of the kernel, as the layer computes it."""
    state = layer.noise_state(layer.kernel)
    return numpy(layer.noise.log_alpha(layer.kernel.value, state))


def accuracy(model, x, y):
    """Test accuracy of inference (eager: no compiled evaluate step)."""
    return float(np.mean(np.argmax(numpy(model(x, training=False)), axis=-1) == y))


def test_variational_dropout_prunes_an_mlp_on_digits():
    # scikit-learn's 8x8 digits, 1400 training and 397 test images; a
    # 64-100-100-10 MLP of NoisyDense(VariationalDropout(dataset_size=N)).
    # 20 epochs without KL (kl_weight 0), then 60 epochs with the KL
    # warmed up over 20 (Adam 5e-3, batch 100). Measured (TF and JAX,
    # seeds 0-2): test accuracy 0.980-0.990 before, 0.970-0.980 after
    # (drop 0.003-0.015); overall sparsity 0.876-0.891.
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n = 1400
    x_train, y_train, x_test, y_test = x[:n], y[:n], x[n:], y[n:]
    keras.utils.set_random_seed(0)

    def vd():
        return noise.VariationalDropout(dataset_size=n)

    model = keras.Sequential(
        [
            keras.Input((64,)),
            noisylayers.NoisyDense(100, activation="relu", noise=vd(), seed=1),
            noisylayers.NoisyDense(100, activation="relu", noise=vd(), seed=2),
            noisylayers.NoisyDense(10, noise=vd(), seed=3),
        ]
    )
    model.compile(
        keras.optimizers.Adam(5e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    for layer in model.layers:
        layer.kl_weight = 0.0
    model.fit(x_train, y_train, batch_size=100, epochs=20, verbose=0)
    accuracy_before = accuracy(model, x_test, y_test)
    assert accuracy_before > 0.95
    rows = noisylayers.noise_stats(model)
    assert all(row["sparsity"] < 0.01 for row in rows)
    warmup = noisylayers.callbacks.KLWarmup("linear", start=0.0, end=1.0, duration=20)
    model.fit(
        x_train, y_train, batch_size=100, epochs=60, verbose=0, callbacks=[warmup]
    )
    for layer in model.layers:
        assert layer.kl_weight == pytest.approx(1.0 / n)
    accuracy_after = accuracy(model, x_test, y_test)
    rows = noisylayers.noise_stats(model)
    sizes, pruned = [], []
    for layer, row in zip(model.layers, rows):
        kernel = layer.kernel
        fraction = np.mean(backend_log_alpha(layer) > 3.0)
        assert row["sparsity"] == pytest.approx(fraction, abs=1e-6)
        # (numpy's log alpha may put a few weights on the other side of 3)
        numpy_fraction = np.mean(log_alpha_of(layer, kernel).clip(-8, 8) > 3.0)
        assert numpy_fraction == pytest.approx(fraction, abs=1e-3)
        sizes.append(np.prod(kernel.shape))
        pruned.append(fraction * sizes[-1])
    sparsity = sum(pruned) / sum(sizes)
    assert sparsity > 0.5, sparsity
    assert accuracy_before - accuracy_after < 0.05, (accuracy_before, accuracy_after)
    # Inference is the pruned network: zeroing the pruned weights of plain
    # Dense layers gives the same predictions.
    plain = keras.Sequential(
        [
            keras.Input((64,)),
            layers.Dense(100, "relu"),
            layers.Dense(100, "relu"),
            layers.Dense(10),
        ]
    )
    for noisy, dense in zip(model.layers, plain.layers):
        keep = backend_log_alpha(noisy) <= 3.0
        dense.set_weights(
            [
                np.where(keep, numpy(noisy.kernel.value), 0.0).astype("float32"),
                numpy(noisy.bias.value),
            ]
        )
    np.testing.assert_allclose(
        numpy(plain(x_test)),
        numpy(model(x_test, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
