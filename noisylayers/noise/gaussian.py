"""Additive and multiplicative Gaussian weight noise."""

import keras

from noisylayers.noise.base import Noise
from noisylayers._validation import check_number


def _normal_like(value, stddev, seed):
    return keras.random.normal(
        keras.ops.shape(value),
        stddev=stddev,
        dtype=keras.backend.standardize_dtype(value.dtype),
        seed=seed,
    )


@keras.saving.register_keras_serializable(package="noisylayers")
class Gaussian(Noise):
    """Additive Gaussian weight noise: `w + stddev * eps`, `eps ~ N(0, 1)`.

    The noise is independent for every weight and has the same magnitude for
    every weight, whatever the weight's own size (Graves 2011, "fixed" weight
    noise). Works with every estimator. String alias: `"gaussian"`.

    Args:
        stddev: Non-negative float, the standard deviation of the noise.
            Defaults to `0.01`.

    Raises:
        TypeError: if `stddev` is not a real number.
        ValueError: if `stddev` is negative, infinite or NaN.

    Example:

    >>> layer = noisylayers.WeightNoise(
    ...     keras.layers.Dense(4), noise=noisylayers.noise.Gaussian(0.05))
    """

    symmetric = True

    def __init__(self, stddev=0.01):
        self.stddev = check_number("stddev", stddev, 0.0)

    def perturbation(self, value, seed):
        return _normal_like(value, self.stddev, seed)

    def variance(self, value, state=None):
        return self.stddev**2

    def get_config(self):
        return {"stddev": self.stddev}


@keras.saving.register_keras_serializable(package="noisylayers")
class MultiplicativeGaussian(Noise):
    """Multiplicative Gaussian weight noise: `w * (1 + stddev * eps)`.

    The noise is proportional to each weight, so it leaves zero weights alone
    and keeps the relative perturbation equal across layers of different
    scales. With `stddev = sqrt(rate / (1 - rate))` it matches the variance
    of DropConnect at `rate` (Gaussian DropConnect, Wang & Manning 2013).
    Works with every estimator. String alias: `"multiplicative_gaussian"`.

    Args:
        stddev: Non-negative float, the standard deviation of the relative
            noise. Defaults to `0.1`.

    Raises:
        TypeError: if `stddev` is not a real number.
        ValueError: if `stddev` is negative, infinite or NaN.
    """

    symmetric = True

    def __init__(self, stddev=0.1):
        self.stddev = check_number("stddev", stddev, 0.0)

    def perturbation(self, value, seed):
        return value * _normal_like(value, self.stddev, seed)

    def variance(self, value, state=None):
        return self.stddev**2 * keras.ops.square(value)

    def get_config(self):
        return {"stddev": self.stddev}
