"""Analog in-memory hardware over time: PCM programming, drift, read noise.

A trained model's weights, programmed once onto phase-change-memory (PCM)
devices and read back at any time after programming, as IBM's aihwkit
simulates them for inference (its `PCMLikeNoiseModel` with the
`SinglePairConductanceConverter` and `GlobalDriftCompensation`):

- `PCM`: the device model (a config object, like the noise kinds).
- `program(model, ...)`: programs the model's weights once and returns a
  `Chip`; `chip.weights_at(t)` reads them `t` seconds later (drift, a fresh
  read-noise draw, drift compensation) and `with chip.at(t): ...` puts them
  into the model for the block.
- `accuracy_over_time(model, data, ...)`: the model's compiled metrics at
  1 s, 1 h, 1 day, 1 month and 1 year after programming, over several
  programmings, as a `DriftResult` (a table, JSON and a plot).

The device model, per weight tensor (or per output channel, `per="channel"`:
the last axis of a kernel). Reference: aihwkit's
`src/aihwkit/inference/noise/pcm.py`, `inference/converter/conductance.py`
and `inference/compensation/drift.py`, and Nandakumar et al., "Phase-change
memory models for deep learning training and inference", ICECS 2019.

1. Mapping (`SinglePairConductanceConverter`): `scale = g_max / max|W|`;
   each weight is a pair of devices, `g+ = max(w, 0) * scale` and
   `g- = max(-w, 0) * scale` (microsiemens). The device of the pair that
   targets 0 is programmed too, and gets the noise of a zero conductance:
   this shifts small weights' mean toward zero after drift and noise.
2. Programming, once per device:
   `g_prog = max(g_target + sigma_prog * N(0, 1), 0)`, with
   `sigma_prog = prog_noise_scale * (c0 + c1 x + c2 x^2) * g_max / 25`,
   `x = g_target / g_max` (the coefficients are in uS at the 25 uS of the
   fit).
3. Drift exponent, once per device: `nu = drift_scale * |mu + sd N(0, 1)|`,
   `mu = clip(-0.0155 ln x + 0.0244, 0.049, 0.1)`,
   `sd = clip(-0.0125 ln x - 0.0059, 0.008, 0.045)`, `x` floored at `1e-7`.
4. Reading at `t` seconds after programming, `t' = t + t0`: drift
   `g_drift = g_prog (t' / t0)^(-nu)`; read (1/f) noise of relative stddev
   `sigma_read = read_noise_scale * q * sqrt(ln((t' + t_read) / (2 t_read)))`,
   `q = min(0.0088 / max((g_prog / g_max)^0.65, 1e-3), 0.2)`;
   `g = max(g_drift + |g_drift| sigma_read N(0, 1), 0)`; the weight read is
   `(g+ - g-) / scale`. Read noise applies at `t = 0` too.
5. Global drift compensation (`compensation="global"`), per weight tensor:
   `alpha = mean|W_programmed| / mean|W_read(t)|`, and the weights used are
   `alpha * W_read(t)`.

Biases stay exact by default (`digital_bias=True`, as aihwkit keeps them
digital). An all-zero tensor or channel maps to no conductance and stays
zero. The simulation is vectorised NumPy on the host (a model of 10 million
weights programs and reads in seconds) and draws its normals from NumPy
generators seeded through `noisylayers._seeds.derive_seed`: the same seeds
give the same weights on every backend.

Measured with the defaults on 16 x 16 tiles of Gaussian weights: the weight
error (std relative to `max|W|`, after global compensation) is about 0.037
right after programming, 0.041 after an hour, 0.047 after a day and 0.061
after a year, with `alpha` about 1.29, 1.51 and 2.01 at an hour, a day and
a year (`tests/test_hardware.py` checks these numbers).
"""

import contextlib
import json
import math
import numbers
import os
import re

import keras
import numpy as np

from noisylayers import _keras_private
from noisylayers import control
from noisylayers._configurable import Configurable
from noisylayers._seeds import derive_seed
from noisylayers._validation import MAX_MAGNITUDE
from noisylayers._validation import check_coefficients
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_number
from noisylayers._validation import check_positive_int
from noisylayers._validation import check_seed
from noisylayers.layers.targets import DEFAULT_TARGETS
from noisylayers.layers.targets import matches

__all__ = [
    "PCM",
    "Chip",
    "Reading",
    "DriftResult",
    "program",
    "accuracy_over_time",
    "parse_duration",
    "format_duration",
    "DEFAULT_TIMES",
]

#: The evaluation times of `accuracy_over_time`, in seconds: 1 s, 1 hour,
#: 1 day, 1 month (30 days) and 1 year (365 days), as in aihwkit's examples.
DEFAULT_TIMES = (1, 3600, 86400, 2592000, 31536000)

#: aihwkit's programming-noise fit, in uS at `g_max = 25` uS (pcm.py).
PCM_PROG_COEFFICIENTS = (0.26348, 1.9650, -1.1731)
#: The conductance range of that fit, in uS.
_FIT_G_MAX = 25.0
#: Normalised conductances are floored here for `ln x` (aihwkit's _ZERO_CLIP).
_ZERO_CLIP = 1e-7

_PER = ("tensor", "channel")
_COMPENSATIONS = ("global", None)

# -- durations ----------------------------------------------------------------

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "y": 365 * 86400.0}
_DURATION = re.compile(
    r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([smhdy]?)\s*", re.IGNORECASE
)


def parse_duration(text):
    """Reads a duration: a number with a unit `s`, `m`, `h`, `d` or `y`.

    `y` is 365 days; a plain number is seconds.

    Args:
        text: A string such as `"1s"`, `"1h"`, `"30d"`, `"1y"`, `"1.5h"` or
            `"3600"`, or a non-negative number of seconds.

    Returns:
        The duration in seconds, a float.

    Raises:
        ValueError: for anything else (a negative or infinite duration, an
            unknown unit), naming the value.

    Example:

    >>> [parse_duration(t) for t in ("1s", "1h", "1d", "30d", "1y")]
    [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0]
    """
    if isinstance(text, numbers.Real) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"Cannot read {text!r} as a duration: expected a number of "
                "seconds or a number with a unit s, m, h, d or y (y = 365 d), "
                f"e.g. 1s 1h 1d 30d 1y. Received: {text!r}"
            )
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not 0.0 <= seconds < math.inf:
        raise ValueError(
            f"A duration must be a non-negative finite number of seconds. "
            f"Received: {text!r}"
        )
    return seconds


def format_duration(seconds):
    """A duration in the largest unit that divides it: `"1 h"`, `"30 d"`.

    Args:
        seconds: A non-negative number of seconds.

    Returns:
        A string: `"1 s"`, `"1 h"`, `"1 d"`, `"30 d"`, `"1 y"`, or the
        number of seconds (`"1.5 s"`) when no unit divides it.
    """
    seconds = float(seconds)
    for unit in ("y", "d", "h", "m"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == round(count):
            return f"{count:g} {unit}"
    return f"{seconds:g} s"


# -- the device ----------------------------------------------------------------


def _check_positive(name, value):
    number = check_number(name, value, 0.0, MAX_MAGNITUDE, high_inclusive=True)
    if number == 0.0:
        raise ValueError(
            f"Argument `{name}` must be positive. Received: {name}={value!r}"
        )
    return number


@keras.saving.register_keras_serializable(package="noisylayers")
class PCM(Configurable):
    """Phase-change-memory devices: programming noise, drift and read noise.

    aihwkit's `PCMLikeNoiseModel` (`src/aihwkit/inference/noise/pcm.py`),
    fitted on a million measured PCM devices (Nandakumar et al., ICECS
    2019), with conductances in microsiemens. The formulas are in the
    module's docstring; the methods below evaluate them on NumPy arrays of
    conductances, and `program` applies them to a model. Two `PCM`s with
    the same arguments are equal.

    Args:
        g_max: Positive float, the conductance (uS) that `max|W|` maps to.
            Defaults to `25.0`.
        t0: Positive float, the drift's reference time in seconds (the
            first read after programming). Defaults to `20.0`.
        t_read: Positive float, the read duration of the 1/f noise fit, in
            seconds. Defaults to `250e-9`.
        prog_coefficients: The programming-noise polynomial
            `(c0, c1, c2, ...)` in uS at a range of 25 uS (rescaled to
            `g_max`); it must be non-negative on `[0, 1]`. Defaults to
            aihwkit's `(0.26348, 1.9650, -1.1731)`.
        prog_noise_scale: Non-negative float multiplying the programming
            noise. Defaults to `1.0`.
        read_noise_scale: Non-negative float multiplying the read noise.
            Defaults to `1.0`.
        drift_scale: Non-negative float multiplying the drift exponents.
            Defaults to `1.0`.

    Raises:
        ValueError: for a value out of range (naming the argument).
        TypeError: for a non-number.

    Example:

    >>> device = noisylayers.hardware.PCM(read_noise_scale=0.0)
    >>> chip = noisylayers.hardware.program(model, device=device, seed=0)
    """

    def __init__(
        self,
        g_max=25.0,
        t0=20.0,
        t_read=250e-9,
        prog_coefficients=PCM_PROG_COEFFICIENTS,
        prog_noise_scale=1.0,
        read_noise_scale=1.0,
        drift_scale=1.0,
    ):
        self.g_max = _check_positive("g_max", g_max)
        self.t0 = _check_positive("t0", t0)
        self.t_read = _check_positive("t_read", t_read)
        self.prog_coefficients = tuple(
            check_coefficients(
                "prog_coefficients",
                prog_coefficients,
                what="programming-noise standard deviation",
            )
        )
        self.prog_noise_scale = check_magnitude("prog_noise_scale", prog_noise_scale)
        self.read_noise_scale = check_magnitude("read_noise_scale", read_noise_scale)
        self.drift_scale = check_magnitude("drift_scale", drift_scale)

    def short_repr(self):
        """`PCM(...)` with only the arguments that differ from the defaults."""
        defaults = PCM().get_config()
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items() if v != defaults[k]
        )
        return f"PCM({args})"

    def get_config(self):
        return {
            "g_max": self.g_max,
            "t0": self.t0,
            "t_read": self.t_read,
            "prog_coefficients": list(self.prog_coefficients),
            "prog_noise_scale": self.prog_noise_scale,
            "read_noise_scale": self.read_noise_scale,
            "drift_scale": self.drift_scale,
        }

    def programming_stddev(self, g_target):
        """The programming noise's standard deviation (uS) per device.

        `prog_noise_scale * sum_k c_k x^k * g_max / 25`, `x = g_target /
        g_max` (aihwkit's `apply_programming_noise_to_conductance`).

        Args:
            g_target: Array of target conductances in uS.

        Returns:
            An array of the same shape.
        """
        x = np.asarray(g_target) / np.float32(self.g_max)
        sigma = np.zeros_like(x)
        for c in reversed(self.prog_coefficients):  # Horner
            sigma = sigma * x + np.float32(c)
        return sigma * np.float32(
            self.prog_noise_scale * self.g_max / _FIT_G_MAX
        )

    def drift_moments(self, g_target):
        """The drift exponent's location and spread per device, `(mu, sd)`.

        `nu = drift_scale * |mu + sd N(0, 1)|` (aihwkit's
        `generate_drift_coefficients`).

        Args:
            g_target: Array of target conductances in uS.

        Returns:
            Two arrays of the same shape.
        """
        x = np.maximum(np.asarray(g_target) / np.float32(self.g_max), _ZERO_CLIP)
        log_x = np.log(x)
        mu = np.clip(np.float32(-0.0155) * log_x + np.float32(0.0244), 0.049, 0.1)
        sd = np.clip(np.float32(-0.0125) * log_x - np.float32(0.0059), 0.008, 0.045)
        return mu, sd

    def read_noise_q(self, g_prog):
        """The 1/f noise amplitude `q` per device, from its programmed value.

        `min(0.0088 / max((g_prog / g_max)^0.65, 1e-3), 0.2)`.
        """
        relative = np.abs(np.asarray(g_prog)) / np.float32(self.g_max)
        return np.minimum(
            np.float32(0.0088) / np.maximum(relative**np.float32(0.65), 1e-3),
            np.float32(0.2),
        )

    def read_noise_stddev(self, g_prog, t):
        """The read noise's relative standard deviation at `t` (per device).

        `read_noise_scale * q * sqrt(ln((t + t0 + t_read) / (2 t_read)))`
        (aihwkit's `apply_drift_noise_to_conductance`); it multiplies
        `|g_drift|`.

        Args:
            g_prog: Array of programmed conductances in uS.
            t: Seconds since programming (non-negative).

        Returns:
            An array of the shape of `g_prog`.
        """
        return self.read_noise_q(g_prog) * np.float32(self._read_factor(t))

    def _read_factor(self, t):
        total = float(t) + self.t0
        return self.read_noise_scale * math.sqrt(
            math.log((total + self.t_read) / (2.0 * self.t_read))
        )

    def drift_factor(self, nu, t):
        """`((t + t0) / t0)^(-nu)`: the conductances' drift at `t` seconds.

        Args:
            nu: Array of drift exponents.
            t: Seconds since programming (non-negative).
        """
        log_ratio = np.float32(math.log((float(t) + self.t0) / self.t0))
        return np.exp(-np.asarray(nu) * log_ratio)


def _check_device(device):
    if device is None:
        return PCM()
    if not isinstance(device, PCM):
        raise TypeError(
            "Argument `device` must be None or a `noisylayers.hardware.PCM`. "
            f"Received: device={device!r} (of type {type(device).__name__})"
        )
    return device


def _check_time(t):
    return check_number("t", t, 0.0, math.inf)


# -- programming -----------------------------------------------------------------


class Reading(dict):
    """The weights read at a time: a dict from variable path to NumPy array.

    Programmed weights are read (drift, read noise, compensation); digital
    biases are their exact values.

    Attributes:
        t: The time of the reading, in seconds after programming.
        alphas: Dict from the path of each programmed weight to its drift
            compensation factor (`1.0` without compensation).
    """

    def __init__(self, weights, t, alphas):
        super().__init__(weights)
        self.t = t
        self.alphas = alphas

    @property
    def alpha(self):
        """The mean compensation factor over the programmed weights (`None`
        when nothing is programmed)."""
        if not self.alphas:
            return None
        return float(np.mean(list(self.alphas.values())))


#: Devices are programmed and read in blocks of rows of about this many
#: weights: the temporaries stay in cache instead of costing page faults.
_BLOCK = 1 << 16


def _blocks(shape):
    """Slices of the first axis, each of about `_BLOCK` weights."""
    rows = shape[0]
    step = max(1, _BLOCK // max(1, math.prod(shape[1:])))
    return [slice(start, start + step) for start in range(0, rows, step)]


class _Devices:
    """The programmed devices of one weight tensor.

    `g_prog`, `nu` and `q` have shape `(2, *shape)`: the devices of the
    positive and of the negative part (float32). Normals are drawn block
    by block, in a fixed order, from the tensor's own generator.
    """

    def __init__(self, variable, value, device, per, rng):
        self.path = variable.path
        self.dtype = value.dtype
        self.shape = value.shape
        w = value.astype(np.float32).reshape(value.shape or (1,))
        if not np.all(np.isfinite(w)):
            raise ValueError(
                f"Cannot program weight '{self.path}': it holds non-finite "
                "values (NaN or infinity)."
            )
        if per == "channel" and w.ndim >= 2:
            axes = tuple(range(w.ndim - 1))
        else:
            axes = None
        maximum = np.max(np.abs(w), axis=axes, keepdims=True, initial=0.0)
        live = (maximum > 0).astype(np.float32)
        self.scale = (np.float32(device.g_max) / np.where(maximum > 0, maximum, 1.0))
        self.scale = self.scale.astype(np.float32)
        self.g_prog = np.empty((2, *w.shape), np.float32)
        self.nu = np.empty_like(self.g_prog)
        self.q = np.empty_like(self.g_prog)
        drift_scale = np.float32(device.drift_scale)
        total = 0.0
        for rows in _blocks(w.shape):
            scaled = w[rows] * self.scale
            g_target = np.stack([np.maximum(scaled, 0.0), np.maximum(-scaled, 0.0)])
            z = rng.standard_normal(g_target.shape, dtype=np.float32)
            g = g_target + device.programming_stddev(g_target) * z
            np.maximum(g, 0.0, out=g)
            g *= live  # an all-zero tensor or channel is not mapped: stays 0
            self.g_prog[:, rows] = g
            mu, sd = device.drift_moments(g_target)
            z = rng.standard_normal(g_target.shape, dtype=np.float32)
            self.nu[:, rows] = np.abs(mu + sd * z) * drift_scale
            self.q[:, rows] = device.read_noise_q(g)
            total += float(np.sum(np.abs((g[0] - g[1]) / self.scale), dtype=np.float64))
        #: mean|W_programmed|: the reference of the global drift compensation.
        self.reference = total / max(1, w.size)

    def read(self, device, t, rng, compensation):
        """The weight read at `t`, and its compensation factor."""
        drift = t > 0 and device.drift_scale > 0
        factor = np.float32(device._read_factor(t))
        out = np.empty(self.g_prog.shape[1:], np.float32)
        total = 0.0
        for rows in _blocks(out.shape):
            g = self.g_prog[:, rows]
            g = g * device.drift_factor(self.nu[:, rows], t) if drift else g.copy()
            if factor > 0:
                z = rng.standard_normal(g.shape, dtype=np.float32)
                z *= self.q[:, rows]
                z *= factor
                z *= np.abs(g)
                g += z
                np.maximum(g, 0.0, out=g)
            w = (g[0] - g[1]) / self.scale
            out[rows] = w
            total += float(np.sum(np.abs(w), dtype=np.float64))
        alpha = 1.0
        if compensation == "global":
            current = total / max(1, out.size)
            if current > 0 and self.reference > 0:
                alpha = self.reference / current
                out *= np.float32(alpha)
        return out.reshape(self.shape).astype(self.dtype, copy=False), alpha


def _noise_owned(model):
    """The ids of the noisy layers' own variables (never programmed)."""
    owned = set()
    for layer in control.noise_layers(model):
        clean = {id(v) for v in layer.candidate_weights()}
        owned.update(id(v) for v in layer.weights if id(v) not in clean)
    return owned


def _programmable(layer, owned):
    return [
        v
        for v in layer.weights
        if id(v) not in owned
        and any(matches(v, t) for t in DEFAULT_TARGETS)
        and keras.backend.is_float_dtype(v.dtype)
    ]


def _is_bias(variable):
    return matches(variable, "bias")


def _selected_variables(model, layers):
    """`(layer names, variables)` that `layers` selects, in model order."""
    owned = _noise_owned(model)
    candidates = [
        layer for layer in control.leaf_layers(model) if _programmable(layer, owned)
    ]
    if not candidates:
        raise ValueError(
            f"Model '{model.name}' has no weights to program (kernels, biases, "
            f"recurrent kernels, depthwise/pointwise kernels or embeddings): "
            "build it (call it on data, or give it an `Input`) first."
        )
    if layers is not None:
        candidates = control.select_layers(
            model, candidates, layers, "layer with weights"
        )
    variables, seen = [], set()
    for layer in candidates:
        for v in _programmable(layer, owned):
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
    paths = [v.path for v in variables]
    if len(set(paths)) != len(paths):
        raise ValueError(
            f"The weights of model '{model.name}' must have distinct paths: "
            f"the readings refer to them by path. Received: {paths}"
        )
    return [layer.name for layer in candidates], variables


def _value(variable):
    return np.array(keras.ops.convert_to_numpy(_keras_private.read_value(variable)))


class Chip:
    """A model's weights programmed onto analog devices: what `program` returns.

    Holds each programmed weight's conductance pair, drift exponents and
    read-noise amplitudes, and reads them at any time after programming.
    The model itself is changed only inside `with chip.at(t): ...`.

    Attributes:
        model: The programmed model.
        device: The device model (a `PCM`).
        per: `"tensor"` or `"channel"`.
        compensation: `"global"` or `None`.
        digital_bias: Whether biases are kept exact.
        seed: The programming seed.
        layers: The names of the programmed layers, in model order.
        paths: The paths of the programmed weights.
        digital: The paths of the weights kept exact (biases).
    """

    def __init__(self, model, device, per, compensation, digital_bias, seed,
                 layers, variables):
        self.model = model
        self.device = device
        self.per = per
        self.compensation = compensation
        self.digital_bias = digital_bias
        self.seed = seed
        self.layers = layers
        self._variables = list(variables)
        self._devices = {}
        self._digital = {}
        for v in self._variables:
            value = _value(v)
            if digital_bias and _is_bias(v):
                self._digital[v.path] = value
                continue
            rng = np.random.default_rng(derive_seed(seed, ("hardware.program", v.path)))
            self._devices[v.path] = _Devices(v, value, device, per, rng)
        self._reads = np.random.default_rng(derive_seed(seed, "hardware.read"))

    @property
    def paths(self):
        """The paths of the programmed weights, in model order."""
        return list(self._devices)

    @property
    def digital(self):
        """The paths of the weights kept exact (the biases), in model order."""
        return list(self._digital)

    def __repr__(self):
        weights = sum(d.g_prog[0].size for d in self._devices.values())
        return (
            f"<Chip of model '{self.model.name}': {weights} weights in "
            f"{len(self._devices)} tensors on {self.device!r}, per={self.per!r}, "
            f"compensation={self.compensation!r}, digital_bias="
            f"{self.digital_bias}>"
        )

    def weights_at(self, t, seed=None):
        """The weights read `t` seconds after programming.

        Each programmed weight is read with drift to `t`, a fresh draw of
        read noise and (with `compensation="global"`) its drift
        compensation; digital biases are their exact values.

        Args:
            t: Non-negative number, seconds since programming.
            seed: `None` (a new read-noise draw on every call, from the
                chip's own generator) or a non-negative integer: the same
                seed gives the same reading.

        Returns:
            A `Reading`: a dict from variable path to NumPy array (in the
            variable's dtype), with the compensation factors in
            `reading.alphas`.

        Raises:
            ValueError: for a negative `t` or `seed`.
            TypeError: for a non-number `t` or non-integer `seed`.
        """
        t = _check_time(t)
        seed = check_seed(seed)
        if seed is None:
            seed = int(self._reads.integers(2**31))
        weights, alphas = {}, {}
        for v in self._variables:
            if v.path in self._digital:
                weights[v.path] = self._digital[v.path].copy()
                continue
            rng = np.random.default_rng(derive_seed(seed, ("hardware.read", v.path)))
            weights[v.path], alphas[v.path] = self._devices[v.path].read(
                self.device, t, rng, self.compensation
            )
        return Reading(weights, t, alphas)

    @contextlib.contextmanager
    def at(self, t, seed=None):
        """Within the block, the model's weights are the ones read at `t`.

        On exit, also when the block raises, every programmed (and digital)
        weight gets back, bit for bit, the value it had on entry.

        Args:
            t, seed: As in `weights_at`.

        Yields:
            The `Reading` put into the model.

        Example:

        ```python
        chip = noisylayers.hardware.program(model, seed=0)
        with chip.at(86400):                 # one day after programming
            print(model.evaluate(x, y, return_dict=True))
        ```
        """
        reading = self.weights_at(t, seed)
        saved = [(v, _value(v)) for v in self._variables]
        try:
            for v in self._variables:
                v.assign(reading[v.path])
            yield reading
        finally:
            for v, value in saved:
                v.assign(value)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


def program(
    model,
    device=None,
    seed=0,
    layers=None,
    per="tensor",
    compensation="global",
    digital_bias=True,
):
    """Programs a model's weights onto analog devices, once.

    Every selected layer's clean weights (kernels, biases, recurrent,
    depthwise and pointwise kernels, embeddings; never a noisy layer's own
    variables) are mapped to pairs of devices and programmed with
    programming noise; each device draws its drift exponent. Works for
    plain Keras models and noisy ones alike. The model is not modified:
    read the weights with the returned chip's `weights_at(t)` or `at(t)`.

    Args:
        model: A built `keras.Model` (or layer).
        device: The device model; `None` for `PCM()`.
        seed: Non-negative integer seeding the programming (each weight
            tensor draws from its own stream, so selecting other layers does
            not change a tensor's devices), or `None` for fresh draws.
        layers: Which layers to program: `None` for every layer with
            weights, or a layer name, glob pattern (`"conv*"`) or layer, or
            a list of these (as in `noisylayers.set_noise`).
        per: `"tensor"` (one `max|W|` per weight tensor) or `"channel"` (one
            per output channel: the last axis of a kernel).
        compensation: `"global"` (aihwkit's `GlobalDriftCompensation`: one
            factor per weight tensor) or `None` (no compensation).
        digital_bias: Whether biases stay exact (not programmed).

    Returns:
        A `Chip`.

    Raises:
        TypeError: for a `model` that is not a Keras layer, a `device` that
            is not a `PCM`, or a malformed `layers`.
        ValueError: for an unknown `per` or `compensation`, a model without
            weights, a selection that matches no layer with weights, or
            non-finite weights.

    Example:

    ```python
    chip = noisylayers.hardware.program(model, seed=0, per="channel")
    weights = chip.weights_at(3600)          # a dict: path -> array
    with chip.at(31536000):                  # one year later
        model.evaluate(x, y)
    ```
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a Keras model or layer. "
            f"Received: model={model!r} (of type {type(model).__name__})"
        )
    device = _check_device(device)
    seed = check_seed(seed)
    per = _check_choice("per", per, _PER)
    compensation = _check_choice("compensation", compensation, _COMPENSATIONS)
    if not isinstance(digital_bias, (bool, np.bool_)):
        raise TypeError(
            "Argument `digital_bias` must be a boolean. "
            f"Received: digital_bias={digital_bias!r}"
        )
    names, variables = _selected_variables(model, layers)
    return Chip(model, device, per, compensation, bool(digital_bias), seed,
                names, variables)


# -- accuracy over time -----------------------------------------------------------------


def _check_times(times):
    if isinstance(times, (str, bytes)) or not hasattr(times, "__iter__"):
        raise TypeError(
            f"Argument `times` must be a list of durations. Received: times={times!r}"
        )
    values = []
    for t in times:
        try:
            values.append(parse_duration(t))
        except ValueError as e:
            raise ValueError(
                f"Argument `times` must hold non-negative numbers of seconds "
                f"(or durations such as '1h'): {e} Received: times={list(times)!r}"
            ) from None
    if not values or len(set(values)) != len(values):
        raise ValueError(
            "Argument `times` must be a non-empty list of distinct times. "
            f"Received: times={list(times)!r}"
        )
    return values


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), sd


def accuracy_over_time(
    model,
    data,
    device=None,
    times=DEFAULT_TIMES,
    repeats=5,
    seed=0,
    layers=None,
    per="tensor",
    compensation="global",
    batch_size=256,
    digital_bias=True,
):
    """The model's compiled metrics over time after programming it on PCM.

    Each repeat programs the model anew (`program`), then evaluates it with
    `model.evaluate` with the weights read at each time (`chip.at(t)`).
    The model's weights are restored afterwards, bit for bit.

    Args:
        model: A compiled, built `keras.Model` (plain or noisy).
        data: `(x, y)`, or anything `model.evaluate` takes as `x` (a
            `tf.data.Dataset`, a `keras.utils.PyDataset`).
        device: The device model; `None` for `PCM()`.
        times: Distinct non-negative times after programming, in seconds
            (or durations such as `"1h"`). Defaults to 1 s, 1 hour, 1 day,
            30 days and 365 days.
        repeats: Positive integer, the number of programmings.
        seed: Non-negative integer (or `None`) seeding the programmings and
            reads.
        layers, per, compensation, digital_bias: As in `program`.
        batch_size: Positive integer, for `evaluate` with `(x, y)`.

    Returns:
        A `DriftResult`: one row per time with each metric's mean and sd
        over the repeats and the mean compensation factor, and the metrics
        of the model with its exact weights (`reference`).

    Raises:
        TypeError, ValueError: for invalid arguments, as `program`, and for
            an uncompiled model.

    Example:

    ```python
    result = noisylayers.hardware.accuracy_over_time(model, (x_val, y_val))
    print(result)
    result.plot("drift.png")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. "
            f"Received: model={model!r} (of type {type(model).__name__})"
        )
    if not getattr(model, "compiled", False):
        raise ValueError(
            "Argument `model` must be compiled: `accuracy_over_time` scores it "
            "with its compiled loss and metrics. "
            f"Received: the uncompiled model '{model.name}'"
        )
    device = _check_device(device)
    times = _check_times(times)
    repeats = check_positive_int("repeats", repeats)
    seed = check_seed(seed)
    batch_size = check_positive_int("batch_size", batch_size)
    per = _check_choice("per", per, _PER)
    compensation = _check_choice("compensation", compensation, _COMPENSATIONS)
    names, _ = _selected_variables(model, layers)
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(
                "Argument `data` must be a pair (x, y) or a dataset. "
                f"Received: a {type(data).__name__} of length {len(data)}"
            )
        x, y = data
        kwargs = {"x": x, "y": y, "batch_size": batch_size}
    else:
        kwargs = {"x": data}

    def evaluate():
        metrics = model.evaluate(**kwargs, verbose=0, return_dict=True)
        return {k: float(v) for k, v in metrics.items()}

    reference = evaluate()
    records = []
    for repeat in range(repeats):
        chip = program(
            model,
            device,
            seed=derive_seed(seed, ("accuracy_over_time", repeat)),
            layers=layers,
            per=per,
            compensation=compensation,
            digital_bias=digital_bias,
        )
        for i, t in enumerate(times):
            read_seed = derive_seed(seed, ("accuracy_over_time.read", repeat, i))
            with chip.at(t, seed=read_seed) as reading:
                metrics = evaluate()
            records.append(
                {
                    "repeat": repeat,
                    "time": t,
                    "metrics": metrics,
                    "alpha": reading.alpha if compensation else None,
                }
            )
    spec = {
        "kind": "drift",
        "device": device.short_repr(),
        "device_config": device.get_config(),
        "times": times,
        "repeats": repeats,
        "seed": seed,
        "layers": names,
        "per": per,
        "compensation": compensation,
        "digital_bias": digital_bias,
        "metadata": {},
    }
    return DriftResult(spec, reference, records)


class DriftResult:
    """The result of `accuracy_over_time`: metrics per time after programming.

    Attributes:
        spec: The settings (device, times, repeats, seed, layers, per,
            compensation, digital_bias, metadata).
        reference: The metrics of the model with its exact weights.
        records: One dict per repeat and time: `repeat`, `time`, `metrics`,
            `alpha` (the mean compensation factor; `None` without
            compensation).
        rows: One dict per time: `time` (seconds), `label` (`"1 h"`),
            `repeats`, `alpha` (mean over weights and repeats), and for
            each metric `m`: `m_mean`, `m_sd` (sample sd over the repeats,
            `None` for one repeat) and `m_delta` (mean minus reference).
        metric: The main metric: the first compiled metric other than the
            loss, or `"loss"`.
    """

    kind = "drift"

    def __init__(self, spec, reference, records):
        self.spec = spec
        self.reference = dict(reference)
        self.records = list(records)
        names = list(self.reference)
        self.metric_names = sorted(names, key=lambda name: name != "loss")
        self.metric = next((n for n in self.metric_names if n != "loss"), "loss")
        self.rows = self._rows()

    @property
    def times(self):
        return list(self.spec["times"])

    def _rows(self):
        rows = []
        for t in self.spec["times"]:
            group = [r for r in self.records if r["time"] == t]
            row = {"time": t, "label": format_duration(t), "repeats": len(group)}
            for name in self.metric_names:
                mean, sd = _stats([r["metrics"].get(name) for r in group])
                row[f"{name}_mean"] = mean
                row[f"{name}_sd"] = sd
                row[f"{name}_delta"] = None if mean is None else mean - self.reference[name]
            row["alpha"] = _stats([r["alpha"] for r in group])[0]
            rows.append(row)
        return rows

    def _table(self):
        header = ["time"]
        for name in self.metric_names:
            header += [f"{name} (mean ± sd)", f"Δ {name}"]
        header.append("alpha")
        body = []
        for row in self.rows:
            cells = [row["label"]]
            for name in self.metric_names:
                mean, sd = row[f"{name}_mean"], row[f"{name}_sd"]
                cells.append(
                    "-" if mean is None
                    else f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"
                )
                delta = row[f"{name}_delta"]
                cells.append("-" if delta is None else f"{delta:+.4f}")
            cells.append("-" if row["alpha"] is None else f"{row['alpha']:.3f}")
            body.append(cells)
        return header, body

    def _title(self):
        compensation = self.spec["compensation"] or "no"
        return (
            f"Accuracy over time on analog hardware: {self.spec['device']}, "
            f"per {self.spec['per']}, {compensation} drift compensation"
        )

    def _legend(self):
        reference = ", ".join(f"{k} {v:.4f}" for k, v in self.reference.items())
        return (
            f"mean ± sd: over {self.spec['repeats']} programming(s). Δ: "
            f"difference to the exact weights ({reference}). alpha: the global "
            "drift compensation factor (mean over the weight tensors and "
            "programmings). Time: since programming."
        )

    def to_string(self):
        """The table as aligned plain text, for a terminal."""
        from noisylayers.ablation.tables import text_table

        header, body = self._table()
        return "\n".join([self._title(), "", *text_table(header, body), "",
                          self._legend()])

    def __str__(self):
        return self.to_string()

    def to_markdown(self):
        """The table as a Markdown document (title, table, legend)."""
        from noisylayers.ablation.tables import markdown_table

        header, body = self._table()
        return "\n".join(
            [f"## {self._title()}", "", *markdown_table(header, body), "",
             self._legend(), ""]
        )

    def to_dict(self):
        """Everything as JSON-compatible data."""
        return {
            "kind": self.kind,
            "spec": self.spec,
            "metric": self.metric,
            "reference": self.reference,
            "rows": self.rows,
            "records": self.records,
        }

    def to_json(self, path):
        """Writes `to_dict()` as JSON (atomically).

        Args:
            path: Path of the `.json` file to write.
        """
        from noisylayers.ablation.store import write_atomic

        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def plot(self, path=None, metric=None, ax=None, label=None, color=None):
        """Plots a metric against the time since programming, on a log axis.

        The mean over the repeats with a band of one sd, and the metric of
        the exact weights as a dashed line. Needs matplotlib.

        Args:
            path: Optional path of an image file to write (PNG for `.png`).
            metric: The metric to plot; defaults to `self.metric`.
            ax: Optional matplotlib `Axes` to draw on (to overlay several
                results); by default a new figure.
            label: The line's legend label; defaults to a description of
                the compensation.
            color: Optional matplotlib color of the line.

        Returns:
            The `matplotlib.figure.Figure`.

        Raises:
            ValueError: for an unknown `metric`.
        """
        from noisylayers.ablation.optional import require

        metric = self.metric if metric is None else metric
        if metric not in self.metric_names:
            raise ValueError(
                f"Unknown metric. Expected one of {self.metric_names}. "
                f"Received: metric={metric!r}"
            )
        if ax is None:
            Figure = require("matplotlib.figure", "plots").Figure
            fig = Figure(figsize=(7.0, 4.5), layout="constrained")
            ax = fig.subplots()
        fig = ax.figure
        order = sorted(range(len(self.rows)), key=lambda i: self.rows[i]["time"])
        rows = [self.rows[i] for i in order]
        times = np.array([r["time"] for r in rows], dtype=float)
        mean = np.array([r[f"{metric}_mean"] for r in rows], dtype=float)
        sd = np.array([r[f"{metric}_sd"] or 0.0 for r in rows])
        if label is None:
            label = (
                f"{self.spec['compensation']} compensation"
                if self.spec["compensation"] else "no compensation"
            )
        (line,) = ax.plot(times, mean, "o-", label=label, color=color)
        ax.fill_between(times, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
        ax.axhline(self.reference[metric], color=line.get_color(), linestyle=":",
                   linewidth=1)
        if times.min() > 0:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=max(float(times[times > 0].min(initial=1.0)), 1e-9))
        ax.set_xticks(times, [r["label"] for r in rows])
        ax.minorticks_off()
        ax.set_xlabel("time since programming (log scale)")
        ax.set_ylabel(metric)
        if not ax.get_title():
            ax.set_title(
                f"{metric} over time on {self.spec['device'].split('(')[0]} "
                f"(mean over {self.spec['repeats']} programmings, band: ± sd; "
                "dotted: exact weights)",
                fontsize=9,
            )
        ax.legend()
        ax.grid(alpha=0.3)
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig

    def save(self, directory, name="drift"):
        """Writes `name.md`, `name.json` and `name.png` into `directory`.

        Returns:
            The list of the paths written.
        """
        from noisylayers.ablation.store import write_atomic

        paths = [os.path.join(directory, f"{name}.{ext}") for ext in ("md", "json", "png")]
        write_atomic(paths[0], self.to_markdown())
        self.to_json(paths[1])
        self.plot(paths[2])
        return paths
