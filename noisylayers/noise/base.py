"""The base class of every noise kind."""

import keras


class Noise:
    """Base class of weight-noise kinds.

    A noise kind decides *how* one weight tensor is perturbed; the layer that
    uses it (e.g. `noisylayers.WeightNoise`) decides *which* tensors and
    *when*. Subclasses implement `perturbation(value, seed)`, which returns the
    random change to add to `value`; the noisy weight is then
    `value + scale * perturbation`, so `scale=0` gives the clean weight
    exactly, `scale=1` the kind's nominal noise and other values multiply the
    perturbation's magnitude (its expectation stays zero for every kind
    shipped here).

    Kinds are small serializable objects, like Keras initializers: they hold
    their hyper-parameters and implement `get_config`. A kind that learns
    (e.g. a learned per-weight variance) can additionally own variables and
    add a KL loss from the layer that uses it.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_package")
    class Uniform(noisylayers.noise.Noise):
        def __init__(self, width=0.01):
            self.width = width

        def perturbation(self, value, seed):
            return keras.random.uniform(
                keras.ops.shape(value), -self.width, self.width,
                dtype=keras.backend.standardize_dtype(value.dtype),
                seed=seed)

        def get_config(self):
            return {"width": self.width}
    ```
    """

    def perturbation(self, value, seed):
        """Returns a random perturbation of `value` (same shape and dtype).

        Args:
            value: The clean weight tensor.
            seed: A `keras.random.SeedGenerator` to draw from.
        """
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `perturbation()`."
        )

    def __call__(self, value, seed, scale=1.0):
        """Returns the noisy version of `value`.

        Args:
            value: The clean weight tensor.
            seed: A `keras.random.SeedGenerator` to draw from.
            scale: Scalar (Python number or tensor) multiplying the
                perturbation.
        """
        perturbation = self.perturbation(value, seed)
        return value + keras.ops.cast(scale, perturbation.dtype) * perturbation

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.__class__.__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    __hash__ = object.__hash__
