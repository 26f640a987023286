"""DropConnect: a Bernoulli mask on the weights."""

import keras

from noisylayers.noise import sampling
from noisylayers.noise.base import Noise
from noisylayers._validation import check_number


@keras.saving.register_keras_serializable(package="noisylayers")
class DropConnect(Noise):
    """DropConnect (Wan et al. 2013): drops each weight with probability `rate`.

    Kept weights are scaled by `1 / (1 - rate)` so that the expected weight is
    the clean weight, as in inverted dropout. The perturbation is
    `w * (mask / (1 - rate) - 1)`; a layer's `scale` multiplies it, so
    `scale=1` is exact DropConnect and `scale=0` the clean weights. The
    perturbation is neither symmetric nor Gaussian, so DropConnect works with
    the `"shared"` estimator only.
    String alias: `"dropconnect"`.

    Args:
        rate: Float in `[0, 1)`, the probability of dropping each weight.
            Defaults to `0.5`.

    Raises:
        TypeError: if `rate` is not a real number.
        ValueError: if `rate` is outside `[0, 1)`.
    """

    def __init__(self, rate=0.5):
        self.rate = check_number("rate", rate, 0.0, 1.0)

    def perturbation(self, value, seed):
        dtype = keras.backend.standardize_dtype(value.dtype)
        uniform = sampling.uniform(keras.ops.shape(value), dtype=dtype, seed=seed)
        keep = keras.ops.cast(uniform >= self.rate, dtype)
        return value * (keep / (1.0 - self.rate) - 1.0)

    def perturbation_stddev(self, value, state=None):
        return keras.ops.abs(value) * (self.rate / (1.0 - self.rate)) ** 0.5

    def get_config(self):
        return {"rate": self.rate}
