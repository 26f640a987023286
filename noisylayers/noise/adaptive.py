"""Adaptive kinds: Graves' adaptive weight noise, NoisyNet, variational dropout."""

import math

import keras
import numpy as np
from keras import ops

from noisylayers import priors as priors_module
from noisylayers._keras_private import read_value
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_number
from noisylayers.noise import sampling
from noisylayers.noise.base import Noise
from noisylayers.noise.learned import LearnedGaussian
from noisylayers.noise.learned import kl_weight_from
from noisylayers.noise.learned import normal_like
from noisylayers.noise.learned import warn_unscaled_kl
from noisylayers.noise.learned import weight_dtype


class _OptimalPrior(priors_module.Prior):
    """`N(loc, scale^2)` with tensor parameters (not serialized)."""

    def __init__(self, loc, scale):
        self.loc = loc
        self.scale = scale

    def kl_from_normal(self, loc, scale):
        return priors_module.normal_kl(loc, scale, self.loc, self.scale)


@keras.saving.register_keras_serializable(package="noisylayers")
class AdaptiveGaussian(LearnedGaussian):
    """Graves' adaptive weight noise: learned sigma, prior fitted per tensor.

    Like `LearnedGaussian` (posterior `N(w, sigma^2)` per weight,
    `sigma = softplus(rho) + eps` learned), but the prior `N(mu, s^2)` is not
    fixed: in every training call it is the closed-form optimum for each
    perturbed weight tensor (Graves 2011, "Practical variational inference
    for neural networks"): `mu = mean(w)`, `s^2 = mean(sigma^2 + (w - mu)^2)`.
    The layer adds `kl_weight * KL(q || N(mu, s^2))`, summed over the
    tensor's entries (and over its perturbed tensors), to its losses. The
    prior follows the weights as they train, so no prior scale needs tuning.
    String alias: `"adaptive_gaussian"`.

    Args:
        init_stddev: Positive float, every `sigma` at construction.
            Defaults to `0.05`.
        kl_weight: Non-negative float multiplying the KL (1 / number of
            training examples for a loss averaged over examples).
        dataset_size: Positive integer `N`: sets `kl_weight = 1 / N`.
        sampler: `"exact"` (default) or `"table"`, as for `LearnedGaussian`.

    Raises:
        ValueError: for `init_stddev` outside `[1e-6, 1e6]`, a negative
            `kl_weight` or a `dataset_size` below 1.
    """

    def __init__(
        self, init_stddev=0.05, kl_weight=None, dataset_size=None, sampler="exact"
    ):
        super().__init__(
            init_stddev=init_stddev,
            prior="normal",
            kl_weight=kl_weight,
            dataset_size=dataset_size,
            sampler=sampler,
        )
        self.prior = None

    def prior_for(self, value, sigma):
        return _OptimalPrior(*optimal_prior(value, sigma))

    def get_config(self):
        config = super().get_config()
        del config["prior"]
        return config


def optimal_prior(value, sigma):
    """Graves' optimal Gaussian prior for a tensor: `(mu, s)`."""
    mu = ops.mean(value)
    variance = ops.mean(ops.square(sigma) + ops.square(value - mu))
    return mu, ops.sqrt(variance)


def _f(x):
    return ops.sign(x) * ops.sqrt(ops.abs(x))


@keras.saving.register_keras_serializable(package="noisylayers")
class Factorized(Noise):
    """NoisyNet's factorised Gaussian noise with learned scales.

    Fortunato et al. 2017, "Noisy Networks for Exploration": for a kernel of
    `p` inputs and `q` outputs, `w_ij + sigma_ij * f(eps_i) f(eps_j)` with
    `f(x) = sign(x) sqrt(|x|)`, and for the bias `b_j + sigma_j * f(eps_j)`
    (the same `eps_j` as the kernel's outputs): `p + q` random numbers per
    call instead of `p * q`. The `sigma`s are variables of the noisy layer
    (`kernel_sigma`, `bias_sigma`), learned, initialised to
    `sigma0 / sqrt(p)`. A new draw in every training call; no manual reset,
    no KL. (The paper also initialises the mean weights from
    `U(-1/sqrt(p), 1/sqrt(p))`: pass that `kernel_initializer` to the layer.)

    The perturbation is not independent across weights, so Flipout refuses
    it; it is not Gaussian, so local reparameterization refuses it too.
    String alias: `"factorized"`.

    Args:
        sigma0: Positive float. Defaults to `0.5`.

    Raises:
        ValueError: if `sigma0` is not positive.
    """

    learned = True

    def __init__(self, sigma0=0.5):
        self.sigma0 = check_magnitude("sigma0", sigma0)
        if self.sigma0 == 0.0 or math.isinf(self.sigma0):
            raise ValueError(
                "Argument `sigma0` must be a positive finite number. "
                f"Received: sigma0={sigma0!r}"
            )

    def build(self, layer, variable, fan_in):
        sigma = layer.add_weight(
            name=f"{variable.name}_sigma",
            shape=tuple(variable.shape),
            dtype=weight_dtype(variable),
            initializer=keras.initializers.Constant(self.sigma0 / math.sqrt(fan_in)),
            trainable=True,
            autocast=False,
        )
        return {"sigma": sigma, "group": variable.path.rsplit("/", 1)[0]}

    def _noise(self, shape, dtype, seed):
        return _f(sampling.normal(shape, dtype=dtype, seed=seed))

    def perturbations(self, values, seed, states):
        # Kernels first, so that a bias reuses its kernel's output noise.
        outputs = {}
        results = [None] * len(values)
        order = sorted(range(len(values)), key=lambda i: len(values[i].shape) < 2)
        for i in order:
            value, state = values[i], states[i]
            shape = tuple(value.shape)
            dtype = keras.backend.standardize_dtype(value.dtype)
            if len(shape) >= 2:
                f_in = self._noise((int(np.prod(shape[:-1])), 1), dtype, seed)
                f_out = self._noise((1, shape[-1]), dtype, seed)
                outputs.setdefault((state["group"], shape[-1]), f_out[0])
                eps = ops.reshape(f_in * f_out, shape)
            else:
                eps = outputs.get((state["group"], shape[-1]))
                if eps is None:
                    eps = self._noise(shape, dtype, seed)
            results[i] = ops.cast(state["sigma"].value, dtype) * eps
        return results

    def perturbation(self, value, seed, state):
        return self.perturbations([value], seed, [state])[0]

    def perturbation_stddev(self, value, state=None):
        # E[f(a)^2 f(b)^2] = E|a| E|b| = 2 / pi for standard normals a, b;
        # a bias has one factor only: E[f(a)^2] = E|a| = sqrt(2 / pi).
        sigma = ops.abs(state["sigma"].value)
        if len(value.shape) >= 2:
            return sigma * math.sqrt(2.0 / math.pi)
        return sigma * (2.0 / math.pi) ** 0.25

    def unsupported_reason(self, estimator):
        if estimator == "flipout":
            return (
                "Flipout needs a perturbation independent across weights, "
                "and factorised noise is not (it is a rank-one product)"
            )
        return super().unsupported_reason(estimator)

    def get_config(self):
        return {"sigma0": self.sigma0}


# Molchanov et al. 2017, eq. 14.
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695
_LOG_ALPHA_RANGE = (-8.0, 8.0)
_EPS = 1e-8


@keras.saving.register_keras_serializable(package="noisylayers")
class VariationalDropout(Noise):
    """Sparse variational dropout (Molchanov et al. 2017), with pruning.

    Each perturbed weight `w` gets a learned `log sigma^2` (a variable of
    the noisy layer named e.g. `kernel_log_sigma2`); its dropout rate is
    `log alpha = log sigma^2 - log w^2`, clipped to `[-8, 8]`, and its
    perturbation `N(0, alpha w^2)`. The KL is the paper's approximation,
    `-KL ~= k1 sigmoid(k2 + k3 log alpha) - 0.5 log1p(1 / alpha) - k1` with
    `k1 = 0.63576`, `k2 = 1.87320`, `k3 = 1.48695`, summed over weights and
    times `kl_weight`. Training uses local reparameterization where the
    layer has it (the default estimator for this kind).

    At inference, weights with `log alpha > threshold` are exactly zero
    (pruned) and the others are their mean `w`: the layer then computes with
    a sparse kernel. `noisylayers.noise_stats` reports the pruned fraction as
    `"sparsity"`, and `noisylayers.unwrap` writes the pruned weights as zeros.

    By default it perturbs kernels and embeddings, not biases (the paper's
    choice; a zero-initialised bias would have an infinite `alpha`); name
    `targets` explicitly to include them. String alias:
    `"variational_dropout"`.

    Args:
        threshold: Float, the `log alpha` above which a weight is pruned.
            Defaults to `3.0` (alpha ~ 20, the paper's).
        init_log_alpha: Float in `[-8, 8]`, every `log alpha` at
            construction. Defaults to `-4.0` (alpha ~ 0.018, about the
            paper's `log sigma^2 = -10` for weights near 0.05).
        kl_weight: Non-negative float multiplying the KL (1 / number of
            training examples for a loss averaged over examples).
        dataset_size: Positive integer `N`: sets `kl_weight = 1 / N`.

    Raises:
        ValueError: for an `init_log_alpha` outside `[-8, 8]`, a
            non-finite `threshold`, a negative `kl_weight` or a
            `dataset_size` below 1.
    """

    symmetric = True
    has_kl = True
    learned = True
    preferred_estimator = "local_reparameterization"

    def __init__(
        self, threshold=3.0, init_log_alpha=-4.0, kl_weight=None, dataset_size=None
    ):
        self.threshold = check_number("threshold", threshold, -math.inf)
        self.init_log_alpha = check_number(
            "init_log_alpha", init_log_alpha, -8.0, 8.0, high_inclusive=True
        )
        self._kl_weight_arg = kl_weight
        self.dataset_size = dataset_size
        self.kl_weight = kl_weight_from(kl_weight, dataset_size, type(self).__name__)
        self.kl_weight_given = kl_weight is not None or dataset_size is not None

    def applies_to(self, variable):
        return len(variable.shape) >= 2

    def build(self, layer, variable, fan_in):
        warn_unscaled_kl(self, layer)
        log_sigma2 = layer.add_weight(
            name=f"{variable.name}_log_sigma2",
            shape=tuple(variable.shape),
            dtype=weight_dtype(variable),
            initializer="zeros",
            trainable=True,
            autocast=False,
        )
        value = ops.cast(read_value(variable), log_sigma2.dtype)
        log_sigma2.assign(self.init_log_alpha + ops.log(ops.square(value) + _EPS))
        return {"log_sigma2": log_sigma2}

    def log_alpha(self, value, state):
        """The clipped `log alpha` of each weight."""
        log_sigma2 = state["log_sigma2"].value
        value = ops.cast(value, log_sigma2.dtype)
        return ops.clip(
            log_sigma2 - ops.log(ops.square(value) + _EPS), *_LOG_ALPHA_RANGE
        )

    def variance(self, value, state=None):
        log_alpha = self.log_alpha(value, state)
        return ops.exp(log_alpha) * ops.square(ops.cast(value, log_alpha.dtype))

    def perturbation(self, value, seed, state):
        std = ops.sqrt(self.variance(value, state) + 1e-16)
        return ops.cast(std, value.dtype) * normal_like(value, seed)

    def kl(self, value, state, seed, perturbation=None):
        return ops.sum(vd_kl(self.log_alpha(value, state)))

    def inference_value(self, value, state):
        keep = self.log_alpha(value, state) <= self.threshold
        return ops.where(keep, value, ops.zeros_like(value))

    def stats(self, value, state):
        pruned = self.log_alpha(value, state) > self.threshold
        return {"sparsity": float(ops.convert_to_numpy(ops.mean(ops.cast(pruned, "float32"))))}

    def get_config(self):
        return {
            "threshold": self.threshold,
            "init_log_alpha": self.init_log_alpha,
            "kl_weight": self._kl_weight_arg,
            "dataset_size": self.dataset_size,
        }


def vd_kl(log_alpha):
    """Elementwise KL approximation of Molchanov et al. 2017 (eq. 14)."""
    return (
        _K1
        - _K1 * ops.sigmoid(_K2 + _K3 * log_alpha)
        + 0.5 * ops.log1p(ops.exp(-log_alpha))
    )
