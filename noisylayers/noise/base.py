"""The base class of every noise kind."""

import keras
import numpy as np

from noisylayers._configurable import Configurable


class Noise(Configurable):
    """Base class of weight-noise kinds.

    A noise kind decides *how* one weight tensor is perturbed; the layer that
    uses it (`noisylayers.WeightNoise` or a variant such as
    `noisylayers.NoisyDense`) decides *which* tensors and *when*. Subclasses
    implement `perturbation(value, seed)`, which returns the random change to
    add to `value`; the noisy weight is then `value + scale * perturbation`,
    so `scale=0` gives the clean weight exactly, `scale=1` the kind's nominal
    noise and other values multiply the perturbation's magnitude. The
    perturbation's expectation is zero for the Gaussian kinds and
    `DropConnect` (which rescales the kept weights), not for `Quantize` (the
    noisy weight is the rounded weight) or `StuckAt` (`(1 - rate) w + rate *
    stuck` on average).

    Kinds are small serializable objects, like Keras initializers: they hold
    their hyper-parameters and implement `get_config`. A kind declares what
    the per-example estimators need:

    - `symmetric`: True when the perturbation is symmetric about zero and
      independent across weights, which is what Flipout needs.
    - `variance(value, state)`: the per-weight variance of a Gaussian
      perturbation (a scalar or a tensor shaped like `value`), or `None` for
      a kind that is not Gaussian; local reparameterization needs it.

    A kind that learns (a per-weight standard deviation, say) overrides
    `build`, which creates its variables on the noisy layer and returns a
    *state* that the layer passes back to `perturbation`, `variance`, `kl`
    and `stats`. A kind with a KL term sets `has_kl` and implements `kl`.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_package")
    class Uniform(noisylayers.noise.Noise):
        symmetric = True  # so Flipout accepts it

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

    #: Symmetric about zero and independent across weights (Flipout).
    symmetric = False
    #: The kind adds a KL term (`kl`) to the layer's losses in training.
    has_kl = False
    #: The estimator a layer uses when `estimator=None` and it has it.
    preferred_estimator = "shared"
    #: The kind learns variables (so it needs a noisy layer to hold them).
    learned = False

    def build(self, layer, variable, fan_in):
        """Creates the kind's variables for one target weight.

        Called once per perturbed weight when the noisy layer builds. A kind
        that learns creates its variables with `layer.add_weight(...)` (so
        they are weights of the noisy layer, trained and saved with it).

        Args:
            layer: The noisy layer that owns the variables.
            variable: The weight to perturb (already initialised).
            fan_in: The number of inputs of each output unit of the layer
                that `variable` belongs to.

        Returns:
            A state (any object, `None` for a kind without variables) that
            the layer passes back to the other methods.
        """
        return None

    def applies_to(self, variable):
        """Whether the kind perturbs `variable` when targets are the default.

        Lets a kind skip weights it does not suit (sparse variational dropout
        leaves the biases alone). Explicit `targets` are always honoured.
        """
        return True

    def perturbation(self, value, seed):
        """Returns a random perturbation of `value` (same shape and dtype).

        Kinds that override `build` take a third argument, the state that
        `build` returned for this weight: `perturbation(value, seed, state)`
        (`sample` passes it).

        Args:
            value: The clean weight tensor.
            seed: A `keras.random.SeedGenerator` to draw from (or, as for
                `keras.random`, an integer or `None`).

        Returns:
            A tensor shaped like `value`, in its dtype.
        """
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `perturbation()`."
        )

    def sample(self, value, seed, state=None):
        """`perturbation(value, seed)`, passing `state` to kinds that build."""
        if state is None:
            return self.perturbation(value, seed)
        return self.perturbation(value, seed, state)

    def perturbations(self, values, seed, states):
        """The perturbations of all the targets of a layer in one call.

        One draw per target, in order. A kind whose draws are shared between
        the weights of a layer (factorised noise) overrides this.
        """
        return [self.sample(v, seed, s) for v, s in zip(values, states)]

    def variance(self, value, state=None):
        """The variance of each weight's perturbation, or `None`.

        Returns a scalar (the same for every weight) or a tensor shaped like
        `value` when the perturbation is Gaussian, else `None`.
        """
        return None

    def perturbation_stddev(self, value, state=None):
        """The standard deviation of each weight's perturbation (a tensor)."""
        variance = self.variance(value, state)
        if variance is None:
            raise NotImplementedError(
                f"{self.__class__.__name__} must implement `perturbation_stddev()`."
            )
        return keras.ops.sqrt(keras.ops.convert_to_tensor(variance))

    def kl(self, value, state, seed, perturbation=None):
        """The KL divergence of the weight's posterior to the prior, summed.

        Args:
            value: The clean (mean) weight.
            state: The state from `build`.
            seed: A `keras.random.SeedGenerator`, for Monte Carlo estimates
                when no `perturbation` is given.
            perturbation: The perturbation drawn in this call (unscaled),
                or `None` when the estimator drew no weight sample.

        Returns:
            A scalar tensor, or `None` for kinds without a KL term.
        """
        return None

    def inference_value(self, value, state):
        """The weight used at inference, or `None` for the clean weight."""
        return None

    def resolution_warning(self, value, dtype):
        """Why most of the noise on `value` vanishes in `dtype`, or `None`.

        A noisy layer whose compute dtype is `"float16"` or `"bfloat16"`
        asks this of each target weight when it builds, and warns with the
        text returned (it prefixes the layer and weight). A perturbation
        proportional to the weight survives the cast; a kind whose noise
        has a fixed magnitude (`Gaussian`) says when it is below the
        dtype's resolution at the weight's magnitude
        (`relative_resolution`). `None` (the default) for no warning.

        Args:
            value: The clean weight tensor.
            dtype: The compute dtype, `"float16"` or `"bfloat16"`.
        """
        return None

    def stats(self, value, state):
        """Extra per-weight figures for `noisylayers.noise_stats` (a dict)."""
        return {}

    def unsupported_reason(self, estimator):
        """Why the kind cannot be used with `estimator` (`None` if it can)."""
        if estimator == "flipout" and not self.symmetric:
            return (
                "Flipout needs a perturbation that is symmetric about zero "
                "and independent across weights"
            )
        if estimator == "local_reparameterization" and not self.gaussian:
            return (
                "local reparameterization needs a Gaussian perturbation "
                "(a kind with a `variance`)"
            )
        return None

    @property
    def gaussian(self):
        """Whether the perturbation is Gaussian (the kind has a variance)."""
        return type(self).variance is not Noise.variance

    def __call__(self, value, seed, scale=1.0, state=None):
        """Returns the noisy version of `value`.

        Args:
            value: The clean weight tensor.
            seed: A `keras.random.SeedGenerator` to draw from.
            scale: Scalar (Python number or tensor) multiplying the
                perturbation.
            state: The state from `build`, for kinds that build variables.
        """
        perturbation = self.sample(value, seed, state)
        return value + keras.ops.cast(scale, perturbation.dtype) * perturbation


def relative_resolution(dtype):
    """The spacing of `dtype` near a number, relative to the number.

    Two consecutive numbers of `dtype` around `x` differ by about
    `relative_resolution(dtype) * |x|`: `2**-10` for float16, `2**-7` for
    bfloat16 (NumPy knows no bfloat16), `2**-23` for float32.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        return 2.0**-7
    return float(np.finfo(dtype).eps)
