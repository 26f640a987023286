"""`NoisyVariant`: a Keras layer class turned into a noisy variant of itself."""

from noisylayers.layers import saving
from noisylayers.layers.base import NoisyLayer


class NoisyVariant(NoisyLayer):
    """Mixin turning a Keras layer class into a noisy variant of itself.

    The variant *is* its Keras layer (same arguments, weights and
    computation in inference) plus the noise. Keras' `Dense` and `Conv`
    save only their kernel and bias, so the variant saves and loads every
    variable it owns (`enabled`, `scale`, a learned kind's variables) the
    way a generic `Layer` does (`NoisyLayer.save_own_variables`).

    A variant class lists `NoisyVariant` first, then its Keras layer, and
    follows the `NoisyLayer` contract:

    ```python
    class NoisyDense(NoisyVariant, keras.layers.Dense):
        def __init__(self, units, *args, noise="gaussian", estimator=None,
                     targets=None, seed=None, **kwargs):
            check_no_lora(type(self), kwargs)
            super().__init__(units, *args, **kwargs)
            self._init_noise(noise, estimator, targets, seed)

        def build(self, input_shape):
            super().build(input_shape)
            self._build_noise()

        def call(self, inputs, training=None):
            return self._noise_call(
                inputs, training,
                functools.partial(keras.layers.Dense.call, self, inputs))
    ```
    """

    def perturbed_layer(self):
        return self

    def _refuse(self, what):
        raise ValueError(
            f"Layer '{self.name}' of type {type(self).__name__} does not "
            f"support {what}: its noise is defined on the float kernel. Use "
            f"`noisylayers.unwrap` to get the plain Keras layer first."
        )

    def enable_lora(self, *args, **kwargs):
        self._refuse("LoRA")

    def quantize(self, *args, **kwargs):
        self._refuse("quantization")

    def get_config(self):
        return {**super().get_config(), **self._noise_config()}

    @classmethod
    def from_config(cls, config):
        with saving.loading(cls, config) as config:
            return super().from_config(config)


def check_no_lora(cls, kwargs):
    """Refuses a `lora_rank` argument to a variant's constructor."""
    if kwargs.get("lora_rank"):
        raise ValueError(
            f"{cls.__name__} does not support LoRA: its noise is defined on "
            f"the float kernel. Received: lora_rank={kwargs['lora_rank']!r}"
        )
