"""`LearnedGaussian`: a learned per-weight standard deviation (Bayes by backprop)."""

import math
import warnings
import weakref

import keras
import numpy as np
from keras import ops

from noisylayers import priors as priors_module
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_scale
from noisylayers.noise import _fused
from noisylayers.noise import sampling
from noisylayers.noise.base import Noise


def kl_weight_from(kl_weight, dataset_size, owner):
    """Validates `kl_weight` / `dataset_size` and returns the KL factor."""
    if kl_weight is not None and dataset_size is not None:
        raise ValueError(
            f"{owner} takes `kl_weight` or `dataset_size`, not both: "
            f"`dataset_size=N` means `kl_weight=1/N`. Received: "
            f"kl_weight={kl_weight!r}, dataset_size={dataset_size!r}"
        )
    if dataset_size is not None:
        if isinstance(dataset_size, bool) or not isinstance(
            dataset_size, (int, np.integer)
        ) or dataset_size < 1:
            raise ValueError(
                "Argument `dataset_size` must be a positive integer (the "
                f"number of training examples). Received: "
                f"dataset_size={dataset_size!r}"
            )
        return 1.0 / int(dataset_size)
    if kl_weight is None:
        return 1.0
    return check_magnitude("kl_weight", kl_weight)


#: The noisy layers already warned about an unscaled KL (once per layer).
_WARNED_LAYERS = weakref.WeakSet()


def warn_unscaled_kl(noise, layer):
    """Warns, once per noisy layer, that `noise` adds its full KL term.

    `build` runs once per perturbed weight; one warning per layer says it.
    """
    if noise.kl_weight_given or layer in _WARNED_LAYERS:
        return
    _WARNED_LAYERS.add(layer)
    warnings.warn(
        f"{noise!r} adds its full KL term to the loss (kl_weight=1). For a "
        "loss averaged over N training examples, the evidence lower bound "
        "needs kl_weight=1/N: pass `dataset_size=N` (or `kl_weight=1/N`).",
        stacklevel=3,
    )


def sigma_floor(dtype="float32"):
    """The smallest learned sigma: the machine epsilon of `dtype`.

    `sigma = softplus(rho) + sigma_floor`, as `tfp.layers`' mean-field
    posteriors add `eps` (and Edward2's softplus constraint 1e-7): in
    float32 `softplus(rho)` underflows for `rho` below about -87 (to
    denormals, which CPUs may flush to 0; exactly 0 below -104), and a
    sigma of 0 makes `-log sigma` in the KL infinite and its gradients NaN.
    The floor keeps both finite.
    """
    return float(np.finfo(np.dtype(dtype)).eps)


def stddev_from_rho(rho):
    """The learned standard deviations: `softplus(rho) + sigma_floor`."""
    dtype = keras.backend.standardize_dtype(rho.dtype)
    return ops.softplus(rho) + sigma_floor(dtype)


def softplus_inverse(stddev, dtype="float32", floor=0.0):
    """`rho` with `floor + softplus(rho) == stddev` as closely as `dtype` allows.

    With `floor=sigma_floor(dtype)` it inverts `stddev_from_rho` (the
    initial `rho` of a learned kind); `stddev` must exceed `floor`.
    """
    target = stddev - floor
    rho = target + math.log(-math.expm1(-target))  # log(expm1(t)), no overflow
    scalar = np.dtype(dtype).type
    candidates = [scalar(rho)]
    candidates += [np.nextafter(candidates[0], d) for d in (-np.inf, np.inf)]

    def error(r):
        value = np.logaddexp(scalar(0), r) + scalar(floor)
        return abs(float(value) - stddev)

    return float(min(candidates, key=error))


def _floor_of(rho):
    return sigma_floor(keras.backend.standardize_dtype(rho.dtype))


def weight_dtype(variable):
    dtype = keras.backend.standardize_dtype(variable.dtype)
    return "float64" if dtype == "float64" else "float32"


def normal_like(value, seed):
    return sampling.normal(
        ops.shape(value), dtype=keras.backend.standardize_dtype(value.dtype), seed=seed
    )


@keras.saving.register_keras_serializable(package="noisylayers")
class LearnedGaussian(Noise):
    """A learned standard deviation per weight, with a prior (Bayes by backprop).

    The posterior of each weight is `N(w, sigma^2)`: `w` is the layer's own
    (clean, mean) weight and `sigma = softplus(rho) + eps` is learned, `rho`
    being a variable the noisy layer creates for each perturbed weight (named
    e.g. `kernel_rho`, `bias_rho`), trained and saved with the layer; `eps`,
    the machine epsilon of `rho`'s dtype (`sigma_floor`), keeps sigma and
    the KL finite however negative `rho` gets, as in `tfp.layers`. In
    each training call the layer adds `kl_weight * KL(q || prior)`, summed
    over all its perturbed weights, to its losses (once). Inference uses the
    mean weights `w`: the plain layer, deterministic; Monte Carlo prediction
    is `noisylayers.mc_predict`.

    **The KL weight.** Bayes by backprop minimises
    `E[-log p(data | w)] + KL(q || prior)`. Keras losses are averaged over
    the examples, so the KL must be divided by the number of training
    examples `N`: pass `dataset_size=N` (or `kl_weight=1/N`). Without
    either, the full KL is used (`kl_weight=1`) and a warning says so. The
    KL weight is a variable of the layer (`layer.kl_weight`), so
    `noisylayers.callbacks.KLWarmup` can ramp it during `fit`.

    **Initial sigma.** Every `sigma` starts at `init_stddev` (default
    `0.05`, i.e. `rho = -2.97`, near `tfp.layers`' mean-field default).
    Much smaller starts (the `rho = -7`, sigma ~ 1e-3, of some tutorials)
    are a known cause of collapsed predictive variance.

    Works with every estimator (shared, flipout, local reparameterization).
    With `prior=None` there is no KL (NoisyNet's "independent" noise).
    String alias: `"learned_gaussian"`.

    Args:
        init_stddev: Positive float, every `sigma` at construction.
            Defaults to `0.05`.
        prior: The prior: `"normal"` (`N(0, 1)`, default), a
            `noisylayers.priors.Prior` (`Normal`, `Laplace`,
            `ScaleMixtureNormal`), on the TensorFlow backend a scalar
            `tfp.distributions` object, or `None` for no KL term. Normal
            priors have an analytic KL, the others a one-sample Monte Carlo
            estimate `log q(w) - log p(w)` at the drawn weights.
        kl_weight: Non-negative float multiplying the KL. Defaults to `1`
            unless `dataset_size` is given.
        dataset_size: Positive integer `N`, the number of training
            examples: sets `kl_weight = 1 / N`.
        sampler: `"exact"` (default) or `"table"` (see
            `noisylayers.noise.Gaussian`) for the weight draws.

    Raises:
        ValueError: for `init_stddev` outside `[1e-6, 1e6]`, a negative
            `kl_weight`, a `dataset_size` below 1, both `kl_weight` and
            `dataset_size`, or an unknown prior.

    Example:

    ```python
    layer = noisylayers.NoisyDense(
        64, activation="relu", estimator="flipout",
        noise=noisylayers.noise.LearnedGaussian(
            init_stddev=0.05, prior="normal", dataset_size=len(x_train)))
    mean, std = noisylayers.mc_predict(model, x_test, samples=50)
    ```
    """

    symmetric = True
    learned = True

    def __init__(
        self,
        init_stddev=0.05,
        prior="normal",
        kl_weight=None,
        dataset_size=None,
        sampler="exact",
    ):
        self.sampler = sampling.check_sampler(sampler)
        self.init_stddev = check_scale("init_stddev", init_stddev)
        self.prior = priors_module.get(prior)
        self._kl_weight_arg = kl_weight
        self.dataset_size = dataset_size
        self.kl_weight = kl_weight_from(kl_weight, dataset_size, type(self).__name__)
        self.kl_weight_given = kl_weight is not None or dataset_size is not None
        self.has_kl = self.prior is not None

    def build(self, layer, variable, fan_in):
        if self.has_kl:
            warn_unscaled_kl(self, layer)
        dtype = weight_dtype(variable)
        rho = layer.add_weight(
            name=f"{variable.name}_rho",
            shape=tuple(variable.shape),
            dtype=dtype,
            initializer=keras.initializers.Constant(
                softplus_inverse(self.init_stddev, dtype, sigma_floor(dtype))
            ),
            trainable=True,
            autocast=False,
        )
        state = {"rho": rho}
        if self.sampler == "table":
            state["table"] = layer.noise_table
        return state

    def sigma(self, state):
        """The per-weight standard deviations, `softplus(rho) + eps`."""
        return stddev_from_rho(state["rho"].value)

    def perturbation(self, value, seed, state):
        eps = sampling.standard_normal_like(value, seed, state)
        rho = state["rho"].value
        if _fused.available(rho.shape) and rho.dtype == eps.dtype:
            # One fused kernel for softplus, floor and product (and one for
            # the gradient), instead of a pass over the weights per op.
            return _fused.perturbation(rho, eps, _floor_of(rho))
        sigma = ops.cast(self.sigma(state), value.dtype)
        return sigma * eps

    def variance(self, value, state=None):
        rho = state["rho"].value
        if _fused.available(rho.shape):
            return _fused.variance(rho, _floor_of(rho))
        return ops.square(self.sigma(state))

    def perturbation_stddev(self, value, state=None):
        return self.sigma(state)

    def prior_for(self, value, sigma):
        """The prior of one weight tensor (fixed here; per tensor in Graves')."""
        return self.prior

    def kl(self, value, state, seed, perturbation=None):
        if not self.has_kl:
            return None
        value = ops.cast(value, state["rho"].dtype)
        if (
            _fused.available(state["rho"].shape)
            and type(self.prior) is priors_module.Normal
            and type(self).prior_for is LearnedGaussian.prior_for
        ):
            rho = state["rho"].value
            return _fused.normal_kl_sum(
                value, rho, _floor_of(rho), self.prior.loc, self.prior.scale
            )
        sigma = self.sigma(state)
        prior = self.prior_for(value, sigma)
        kl = prior.kl_from_normal(value, sigma)
        if kl is None:
            if perturbation is None:
                perturbation = sigma * normal_like(value, seed)
            w = value + ops.cast(perturbation, value.dtype)
            kl = priors_module.normal_log_prob(w, value, sigma) - prior.log_prob(w)
        return ops.sum(kl)

    def get_config(self):
        return {
            "init_stddev": self.init_stddev,
            "prior": priors_module.serialize(self.prior),
            "kl_weight": self._kl_weight_arg,
            "dataset_size": self.dataset_size,
            **({"sampler": self.sampler} if self.sampler != "exact" else {}),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "prior" in config:
            config["prior"] = priors_module.get(config["prior"])
        return cls(**config)

    def __repr__(self):
        config = self.get_config()
        if "prior" in config:
            config["prior"] = self.prior
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{self.__class__.__name__}({args})"
