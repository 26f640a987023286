"""Noise shaped like hardware: relative, conductance-dependent, quantized, stuck.

These kinds model what happens to weights on analog in-memory computing
chips and on low-precision or faulty hardware. Their magnitudes are relative
to the largest absolute weight (of the tensor, or of each output channel:
the last axis of a Dense or Conv kernel), the range that is mapped onto the
device; that maximum is a constant for the gradient, as in hardware-aware
training (IBM aihwkit).
"""

import numbers

import keras
from keras import ops

from noisylayers._validation import check_coefficients
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_number
from noisylayers.noise import sampling
from noisylayers.noise.base import Noise

_PER = ("tensor", "channel")


def _check_per(per):
    if per not in _PER:
        raise ValueError(
            f"Argument `per` must be one of {list(_PER)}. Received: per={per!r}"
        )
    return per


def abs_max(value, per):
    """`max |w|` of the tensor or of each output channel; no gradient."""
    magnitude = ops.abs(value)
    if per == "channel" and len(value.shape) >= 2:
        axes = tuple(range(len(value.shape) - 1))
        result = ops.max(magnitude, axis=axes, keepdims=True)
    else:
        result = ops.max(magnitude)
    return ops.stop_gradient(result)


def _safe(maximum):
    """The maximum, with 1 where it is 0 (an all-zero tensor or channel)."""
    return ops.where(maximum > 0, maximum, ops.ones_like(maximum))


def _normal(value, seed):
    return sampling.normal(
        ops.shape(value), dtype=keras.backend.standardize_dtype(value.dtype), seed=seed
    )


def _full(variance, value):
    return variance if len(variance.shape) == 0 else ops.broadcast_to(
        variance, ops.shape(value)
    )


@keras.saving.register_keras_serializable(package="noisylayers")
class RelativeGaussian(Noise):
    """Additive Gaussian noise relative to the weight range: `stddev * max|w|`.

    The common hardware-aware-training recipe: the noise is relative to the
    largest absolute weight of the tensor (`per="tensor"`) or of each output
    channel (`per="channel"`), the range mapped onto the device's
    conductances. The maximum is a constant for the gradient. Works with
    every estimator. String alias: `"relative_gaussian"`.

    Args:
        stddev: Non-negative float, the noise's standard deviation as a
            fraction of `max|w|`. Defaults to `0.02`.
        per: `"tensor"` (default) or `"channel"`.

    Raises:
        ValueError: for a negative `stddev` or an unknown `per`.

    Example:

    >>> noisylayers.NoisyConv2D(
    ...     32, 3, noise=noisylayers.noise.RelativeGaussian(0.05, per="channel"))
    """

    symmetric = True

    def __init__(self, stddev=0.02, per="tensor"):
        self.stddev = check_magnitude("stddev", stddev)
        self.per = _check_per(per)

    def perturbation(self, value, seed):
        return self.stddev * abs_max(value, self.per) * _normal(value, seed)

    def variance(self, value, state=None):
        return _full(ops.square(self.stddev * abs_max(value, self.per)), value)

    def get_config(self):
        return {"stddev": self.stddev, "per": self.per}


# Nandakumar et al., "Phase-change memory models for deep learning training
# and inference", ICECS 2019: programming noise stddev (uS) =
# 0.26348 + 1.9650 g + -1.1731 g^2, g the target conductance over
# g_max = 25 uS (the fit used by IBM aihwkit's PCMLikeNoiseModel). Divided by
# 25 uS it is relative to the conductance range, i.e. to max|w|.
PCM_COEFFICIENTS = (0.26348 / 25.0, 1.9650 / 25.0, -1.1731 / 25.0)


@keras.saving.register_keras_serializable(package="noisylayers")
class PolynomialGaussian(Noise):
    """Gaussian noise whose stddev grows with the weight: programming noise.

    Standard deviation per weight: `max|w| * sum_k c_k (|w| / max|w|)^k`,
    with `max|w|` of the tensor or of each output channel (a constant for
    the gradient, like the whole stddev). The default coefficients are the
    phase-change-memory programming-noise fit of Nandakumar et al.,
    "Phase-change memory models for deep learning training and inference"
    (ICECS 2019), as used by IBM aihwkit: `(0.26348, 1.9650, -1.1731)` uS at
    `g_max = 25` uS, i.e. `(0.01054, 0.0786, -0.04692)` relative to the
    range. Works with every estimator. String alias: `"polynomial_gaussian"`.

    Which `c_1`: these defaults follow aihwkit's inference noise model
    (`src/aihwkit/inference/noise/pcm.py`, `PCMLikeNoiseModel`), whose
    linear coefficient is 1.9650 uS, i.e. `1.9650 / 25 = 0.0786`. aihwkit's
    training-time `POLY` weight modifier (`WeightModifierParameter.coeffs`
    in `simulator/parameters/inference.py`) defaults to
    `[0.0105392, 0.0768, -0.046925]`, with `c_1 = 0.0768`; pass those to
    match it. This kind is programming noise only, at the moment of
    programming: for drift and read noise over time after programming, see
    `noisylayers.hardware`.

    Args:
        coefficients: Sequence of floats `c_0, c_1, ...`. The resulting
            stddev must be non-negative on `[0, 1]` (checked on a grid).
            Defaults to the PCM fit above.
        per: `"tensor"` (default) or `"channel"`.

    Raises:
        ValueError: for no coefficients, non-numbers, a polynomial negative
            somewhere on `[0, 1]`, or an unknown `per`.
    """

    symmetric = True

    def __init__(self, coefficients=PCM_COEFFICIENTS, per="tensor"):
        self.coefficients = check_coefficients("coefficients", coefficients)
        self.per = _check_per(per)

    def _stddev(self, value):
        maximum = abs_max(value, self.per)
        relative = ops.stop_gradient(ops.abs(value)) / _safe(maximum)
        total = ops.zeros_like(relative)
        for k, c in enumerate(self.coefficients):
            total = total + c * relative**k
        return maximum * total

    def perturbation(self, value, seed):
        return self._stddev(value) * _normal(value, seed)

    def variance(self, value, state=None):
        return ops.square(self._stddev(value))

    def get_config(self):
        return {"coefficients": list(self.coefficients), "per": self.per}


@keras.saving.register_keras_serializable(package="noisylayers")
class Quantize(Noise):
    """Symmetric uniform quantization, with straight-through gradients.

    Weights are rounded to `2^(bits-1) - 1` levels per side over `max|w|`
    (of the tensor or of each output channel), plus optional relative
    Gaussian noise of standard deviation `stddev * max|w|` after rounding.
    The gradient passes straight through the rounding. A zero tensor (or
    channel) stays zero. The layer's `scale` multiplies the whole change
    (`scale=1` is exact quantization). Not symmetric or Gaussian: the
    `"shared"` estimator only. String alias: `"quantize"`.

    Args:
        bits: Integer >= 2. Defaults to `8`.
        per: `"channel"` (default) or `"tensor"`.
        stddev: Non-negative float, relative noise after rounding.
            Defaults to `0.0`.

    Raises:
        ValueError: for `bits` below 2, a negative `stddev` or an unknown
            `per`.
    """

    def __init__(self, bits=8, per="channel", stddev=0.0):
        if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or bits < 2:
            raise ValueError(
                f"Argument `bits` must be an integer >= 2. Received: bits={bits!r}"
            )
        self.bits = int(bits)
        self.per = _check_per(per)
        self.stddev = check_magnitude("stddev", stddev)

    def perturbation(self, value, seed):
        maximum = abs_max(value, self.per)
        safe = _safe(maximum)
        levels = 2 ** (self.bits - 1) - 1
        # Level q is q / levels * max: the top level is exactly +-max.
        q = ops.round(ops.stop_gradient(value) / (safe / levels))
        rounded = q / levels * safe
        change = ops.stop_gradient(rounded - value)
        if self.stddev > 0:
            change = change + self.stddev * maximum * _normal(value, seed)
        return change

    def perturbation_stddev(self, value, state=None):
        # Rounding error is uniform on +-step/2: stddev step / sqrt(12).
        step = abs_max(value, self.per) / (2 ** (self.bits - 1) - 1)
        spread = ops.sqrt(
            ops.square(step) / 12.0 + ops.square(self.stddev * abs_max(value, self.per))
        )
        return ops.broadcast_to(spread, ops.shape(value))

    def get_config(self):
        return {"bits": self.bits, "per": self.per, "stddev": self.stddev}


_STUCK = ("zero", "max")


@keras.saving.register_keras_serializable(package="noisylayers")
class StuckAt(Noise):
    """Stuck-at faults: each weight stuck at 0 or at `±max|w|` with a rate.

    Every training call draws anew which weights are stuck (each one
    independently with probability `rate`): fault-tolerance training. A
    weight stuck at `"max"` keeps its sign (`sign(w) * max|w|`, `max` over
    the tensor). Stuck weights get no gradient in that call. The shared
    estimator only. String alias: `"stuck_at"`.

    Args:
        rate: Float in `[0, 1]`, the probability of each weight being stuck.
            Defaults to `0.01`.
        value: `"zero"` (default) or `"max"`.

    Raises:
        ValueError: for a `rate` outside `[0, 1]` or an unknown `value`.
    """

    def __init__(self, rate=0.01, value="zero"):
        self.rate = check_number("rate", rate, 0.0, 1.0, high_inclusive=True)
        if value not in _STUCK:
            raise ValueError(
                f"Argument `value` must be one of {list(_STUCK)}. "
                f"Received: value={value!r}"
            )
        self.value = value

    def _stuck_value(self, value):
        if self.value == "zero":
            return ops.zeros_like(value)
        return ops.stop_gradient(ops.sign(value) * abs_max(value, "tensor"))

    def perturbation(self, value, seed):
        dtype = keras.backend.standardize_dtype(value.dtype)
        uniform = sampling.uniform(ops.shape(value), dtype=dtype, seed=seed)
        stuck = uniform < self.rate
        return ops.where(stuck, self._stuck_value(value) - value, ops.zeros_like(value))

    def perturbation_stddev(self, value, state=None):
        gap = self._stuck_value(value) - value
        return ops.sqrt(self.rate * (1.0 - self.rate)) * ops.abs(gap)

    def get_config(self):
        return {"rate": self.rate, "value": self.value}
