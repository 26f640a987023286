"""`NoisyConv1D`, `NoisyConv2D`, `NoisyConv3D`: convolutions with weight noise."""

import keras

from noisylayers.layers.variant import NoisyVariant
from noisylayers.layers.variant import check_no_lora

_DOC = """A `{base}` layer whose kernel and bias are noisy in training.

    Takes every argument of `keras.layers.{base}` (same names and defaults),
    is a `keras.layers.{base}` with the same weights (`kernel`, `bias`), and
    adds the noise arguments of `noisylayers.WeightNoise`. With
    `estimator="shared"` it computes exactly what
    `WeightNoise({base}(...))` computes with the same weights and seed.
    Inference (`training=False`) is the plain `{base}` layer (except for a
    kind that prunes, `VariationalDropout`, which zeroes pruned weights).

    Args:
        filters: Positive integer, the number of output channels.
        kernel_size: Integer or tuple, the size of the convolution window.
        *args: The other positional arguments of `keras.layers.{base}`.
        noise: The noise kind: a `noisylayers.noise.Noise`, a string alias
            (`"gaussian"`, ...) or a config dict. Defaults to `"gaussian"`.
        estimator: `"shared"` (one weight sample per call), `"flipout"`
            (signs per example and channel, broadcast over space) or
            `"local_reparameterization"` (each output element drawn from its
            Gaussian marginal; outputs at different positions are treated
            as independent). `None` (default) is `"shared"`, or the kind's
            preferred estimator.
        targets: `None` for the kernel and bias, or a list of weight names.
        seed: Optional integer seed making the noise reproducible.
        **kwargs: The other keyword arguments of `keras.layers.{base}`.

    Call arguments:
        inputs: The input tensor.
        training: Python boolean. Noise is applied only when True.

    Returns:
        The `{base}` output, computed with noisy weights in training.

    Raises:
        ValueError: for an estimator that this noise kind does not support,
            invalid noise arguments, or `lora_rank` (not supported).

    Example:

    ```python
    conv = noisylayers.NoisyConv2D(
        32, 3, activation="relu", estimator="flipout",
        noise=noisylayers.noise.Gaussian(0.02))
    ```
    """


class _NoisyConv(NoisyVariant):
    def __init__(
        self,
        filters,
        kernel_size,
        *args,
        noise="gaussian",
        estimator=None,
        targets=None,
        seed=None,
        **kwargs,
    ):
        check_no_lora(type(self), kwargs)
        super().__init__(filters, kernel_size, *args, **kwargs)
        self._init_noise(noise, estimator, targets, seed)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_noise()

    def call(self, inputs, training=None):
        base = self._keras_class

        def call_layer():
            return base.call(self, inputs)

        return self._noise_call(inputs, training, call_layer)


@keras.saving.register_keras_serializable(package="noisylayers")
class NoisyConv1D(_NoisyConv, keras.layers.Conv1D):
    __doc__ = _DOC.format(base="Conv1D")
    _keras_class = keras.layers.Conv1D


@keras.saving.register_keras_serializable(package="noisylayers")
class NoisyConv2D(_NoisyConv, keras.layers.Conv2D):
    __doc__ = _DOC.format(base="Conv2D")
    _keras_class = keras.layers.Conv2D


@keras.saving.register_keras_serializable(package="noisylayers")
class NoisyConv3D(_NoisyConv, keras.layers.Conv3D):
    __doc__ = _DOC.format(base="Conv3D")
    _keras_class = keras.layers.Conv3D
