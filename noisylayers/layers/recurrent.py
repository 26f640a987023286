"""`NoisyLSTM`, `NoisyGRU`: recurrent layers with weight noise."""

import functools

import keras

from noisylayers._seeds import derive_seed
from noisylayers.layers.variant import NoisyVariant

_DOC = """A `{base}` layer whose weights are noisy in training.

    Takes every argument of `keras.layers.{base}` (same names and defaults),
    is a `keras.layers.{base}` with the same weights (`kernel`,
    `recurrent_kernel`, `bias`), and adds the noise arguments of
    `noisylayers.WeightNoise`. One perturbation is drawn per call and used
    at every time step of the sequence (Graves 2011; Fortunato et al.
    2017). Inference (`training=False`) is the plain `{base}` layer.

    Args:
        units: Positive integer, the dimensionality of the output space.
        *args: The other positional arguments of `keras.layers.{base}`.
        noise: The noise kind: a `noisylayers.noise.Noise`, a string alias
            (`"gaussian"`, ...) or a config dict. Defaults to `"gaussian"`.
        estimator: `"shared"` (one weight sample per call){flipout}. `None`
            (default) is `"shared"`.
        targets: `None` for the kernel, recurrent kernel and bias, or a list
            of weight names.
        seed: Optional integer seed making the noise (and, through
            a seed derived from it, the layer's dropout masks) reproducible.
        **kwargs: The other keyword arguments of `keras.layers.{base}`.

    Call arguments:
        sequences: A 3D tensor `(batch, timesteps, features)`.
        initial_state: Optional list of initial state tensors.
        mask: Optional boolean tensor `(batch, timesteps)`.
        training: Python boolean. Noise is applied only when True.

    Returns:
        The `{base}` output (and states), with noisy weights in training.

    Raises:
        ValueError: for an estimator that the layer or noise kind does not
            support, or invalid noise arguments.

    Example:

    ```python
    lstm = noisylayers.NoisyLSTM(64, estimator="flipout",
                                 noise=noisylayers.noise.Gaussian(0.02))
    ```
    """

_FLIPOUT = (
    ', or `"flipout"` (the input and recurrent products decorrelated per '
    "example by random signs, drawn once per sequence; with `dropout` and "
    "`recurrent_dropout` applied as Keras applies them)"
)


class _NoisyRNN(NoisyVariant):
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
        # The Keras layer's own `seed` seeds its dropout masks: derived from
        # `seed`, so that dropout and weight noise draw different streams.
        keras_seed = derive_seed(seed, "keras_layer")
        super().__init__(units, *args, seed=keras_seed, **kwargs)
        self._init_noise(noise, estimator, targets, seed)

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape, initial_state_shape)
        self._build_noise()

    def call(self, sequences, initial_state=None, mask=None, training=False):
        call_layer = functools.partial(
            self._keras_class.call,
            self,
            sequences,
            initial_state=initial_state,
            mask=mask,
            training=training,
        )
        return self._noise_call(sequences, training, call_layer)


@keras.saving.register_keras_serializable(package="noisylayers")
class NoisyLSTM(_NoisyRNN, keras.layers.LSTM):
    __doc__ = _DOC.format(base="LSTM", flipout=_FLIPOUT)
    _keras_class = keras.layers.LSTM


@keras.saving.register_keras_serializable(package="noisylayers")
class NoisyGRU(_NoisyRNN, keras.layers.GRU):
    __doc__ = _DOC.format(base="GRU", flipout="")
    _keras_class = keras.layers.GRU
