"""Additive and multiplicative Gaussian weight noise."""

import keras

from noisylayers._validation import check_magnitude
from noisylayers.noise import sampling
from noisylayers.noise.base import Noise
from noisylayers.noise.base import relative_resolution


class _Sampled(Noise):
    """A Gaussian kind with a `sampler`: exact draws or a noise table."""

    def build(self, layer, variable, fan_in):
        if self.sampler == "table":
            return {"table": layer.noise_table}
        return None

    def get_config(self):
        config = {"stddev": self.stddev}
        if self.sampler != "exact":
            config["sampler"] = self.sampler
        return config


@keras.saving.register_keras_serializable(package="noisylayers")
class Gaussian(_Sampled):
    """Additive Gaussian weight noise: `w + stddev * eps`, `eps ~ N(0, 1)`.

    The noise is independent for every weight and has the same magnitude for
    every weight, whatever the weight's own size (Graves 2011, "fixed" weight
    noise). Works with every estimator. String alias: `"gaussian"`.

    Args:
        stddev: Non-negative float, the standard deviation of the noise.
            Defaults to `0.01`.
        sampler: `"exact"` (default): fresh normals in every call; or
            `"table"`: windows of a per-layer table of normals
            (`noisylayers.noise.sampling`), much cheaper per weight, exactly
            N(0, 1) within a call, nearly independent across calls.

    Raises:
        TypeError: if `stddev` is not a real number.
        ValueError: if `stddev` is negative, infinite or NaN.

    Example:

    >>> layer = noisylayers.WeightNoise(
    ...     keras.layers.Dense(4), noise=noisylayers.noise.Gaussian(0.05))
    """

    symmetric = True

    def __init__(self, stddev=0.01, sampler="exact"):
        self.stddev = check_magnitude("stddev", stddev)
        self.sampler = sampling.check_sampler(sampler)

    def perturbation(self, value, seed, state=None):
        return self.stddev * sampling.standard_normal_like(value, seed, state)

    def variance(self, value, state=None):
        return self.stddev**2

    def resolution_warning(self, value, dtype):
        # A fixed stddev below half the dtype's step at the weight's
        # magnitude mostly rounds away when the noisy weight is cast.
        magnitude = float(
            keras.ops.convert_to_numpy(keras.ops.mean(keras.ops.abs(value)))
        )
        step = relative_resolution(dtype)
        if self.stddev >= 0.5 * step * magnitude:
            return None
        return (
            f"noise of stddev {self.stddev:g} is below the resolution of "
            f"{dtype} at the magnitude of this weight (mean |w| "
            f"{magnitude:.3g}, step {step * magnitude:.3g}): most of it "
            "vanishes when the noisy weight is cast for compute. Use a "
            "larger stddev, a relative kind (`MultiplicativeGaussian`, "
            "`RelativeGaussian`) or a float32 policy for this layer."
        )


@keras.saving.register_keras_serializable(package="noisylayers")
class MultiplicativeGaussian(_Sampled):
    """Multiplicative Gaussian weight noise: `w * (1 + stddev * eps)`.

    The noise is proportional to each weight, so it leaves zero weights alone
    and keeps the relative perturbation equal across layers of different
    scales. With `stddev = sqrt(rate / (1 - rate))` it matches the variance
    of DropConnect at `rate` (Gaussian DropConnect, Wang & Manning 2013).
    Works with every estimator. String alias: `"multiplicative_gaussian"`.

    Args:
        stddev: Non-negative float, the standard deviation of the relative
            noise. Defaults to `0.1`.
        sampler: `"exact"` (default) or `"table"`, as for `Gaussian`.

    Raises:
        TypeError: if `stddev` is not a real number.
        ValueError: if `stddev` is negative, infinite or NaN.
    """

    symmetric = True

    def __init__(self, stddev=0.1, sampler="exact"):
        self.stddev = check_magnitude("stddev", stddev)
        self.sampler = sampling.check_sampler(sampler)

    def perturbation(self, value, seed, state=None):
        noise = sampling.standard_normal_like(value, seed, state)
        return value * (self.stddev * noise)

    def variance(self, value, state=None):
        return self.stddev**2 * keras.ops.square(value)
