"""`NoisyDense`: a `keras.layers.Dense` with weight noise and its estimators."""

import functools

import keras

from noisylayers.layers.variant import NoisyVariant
from noisylayers.layers.variant import check_no_lora


@keras.saving.register_keras_serializable(package="noisylayers")
class NoisyDense(NoisyVariant, keras.layers.Dense):
    """A `Dense` layer whose kernel and bias are noisy in training.

    Takes every argument of `keras.layers.Dense` (same names and defaults),
    is a `keras.layers.Dense` with the same weights (`kernel`, `bias`), and
    adds the noise arguments of `noisylayers.WeightNoise`. With
    `estimator="shared"` it computes exactly what
    `WeightNoise(Dense(...))` computes with the same weights and seed.
    Inference (`training=False`) is the plain `Dense` layer (except for a
    kind that prunes, `VariationalDropout`, which zeroes pruned weights).

    Args:
        units: Positive integer, the dimensionality of the output space.
        *args: The other positional arguments of `keras.layers.Dense`.
        noise: The noise kind: a `noisylayers.noise.Noise`, a string alias
            (`"gaussian"`, ...) or a config dict. Defaults to `"gaussian"`.
        estimator: `"shared"` (one weight sample per call), `"flipout"`
            (one sample decorrelated per example by random signs) or
            `"local_reparameterization"` (pre-activations drawn from their
            Gaussian marginal, one number per output). `None` (default) is
            `"shared"`, or the kind's preferred estimator.
        targets: `None` for the kernel and bias, or a list of weight names.
        seed: Optional integer seed making the noise reproducible.
        **kwargs: The other keyword arguments of `keras.layers.Dense`.

    Call arguments:
        inputs: The input tensor.
        training: Python boolean. Noise is applied only when True.

    Returns:
        The `Dense` output, computed with noisy weights in training.

    Raises:
        ValueError: for an estimator that this noise kind does not support,
            invalid noise arguments, or `lora_rank` (not supported).

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((784,)),
        noisylayers.NoisyDense(512, activation="relu",
                               noise=noisylayers.noise.Gaussian(0.05),
                               estimator="local_reparameterization"),
        noisylayers.NoisyDense(10, estimator="flipout"),
    ])
    ```
    """

    def __init__(
        self,
        units,
        *args,
        noise="gaussian",
        estimator=None,
        targets=None,
        seed=None,
        **kwargs,
    ):
        check_no_lora(type(self), kwargs)
        super().__init__(units, *args, **kwargs)
        self._init_noise(noise, estimator, targets, seed)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_noise()

    def call(self, inputs, training=None):
        return self._noise_call(
            inputs, training, functools.partial(keras.layers.Dense.call, self, inputs)
        )
