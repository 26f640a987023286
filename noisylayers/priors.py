"""Priors over weights for the learned noise kinds, and their KL terms.

The priors here are written with `keras.ops`, so they run on every backend:

| prior                                      | KL from a Gaussian posterior |
|--------------------------------------------|------------------------------|
| `Normal(loc=0.0, scale=1.0)` (`"normal"`)  | analytic                     |
| `Laplace(loc=0.0, scale=1.0)` (`"laplace"`)| one-sample Monte Carlo       |
| `ScaleMixtureNormal(pi, scale1, scale2)`   | one-sample Monte Carlo       |
|   (`"scale_mixture_normal"`, Blundell 2015)|                              |

On the TensorFlow backend a scalar `tfp.distributions` object is accepted
too (`tfp.distributions.StudentT(3., 0., 1.)`, a `MixtureSameFamily`, ...),
with TFP's registered analytic KL where it has one and Monte Carlo
otherwise. It is saved as a config (class name and parameters), never
pickled. tensorflow-probability is imported only when such a prior is used.
"""

import math

import keras
from keras import ops

from noisylayers._configurable import Configurable
from noisylayers._registry import Registry
from noisylayers._registry import brief_repr
from noisylayers._validation import check_location
from noisylayers._validation import check_number
from noisylayers._validation import check_scale

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def normal_log_prob(x, loc, scale):
    """Elementwise log density of `N(loc, scale^2)` at `x`."""
    z = (x - loc) / scale
    return -0.5 * ops.square(z) - ops.log(scale) - _HALF_LOG_TWO_PI


class Prior(Configurable):
    """Base class of weight priors: a scalar distribution, applied per weight.

    Subclasses implement `log_prob(x)` (elementwise) and, where it exists in
    closed form, `kl_from_normal(loc, scale)`: the elementwise KL divergence
    `KL(N(loc, scale^2) || prior)`. Without it the KL is estimated by Monte
    Carlo from one weight sample.
    """

    def log_prob(self, x):
        raise NotImplementedError

    def kl_from_normal(self, loc, scale):
        """Elementwise analytic `KL(N(loc, scale^2) || self)`, or `None`."""
        return None



@keras.saving.register_keras_serializable(package="noisylayers")
class Normal(Prior):
    """A Gaussian prior `N(loc, scale^2)`, with an analytic KL.

    Args:
        loc: Float, the mean. Defaults to `0.0`.
        scale: Positive float, the standard deviation. Defaults to `1.0`.

    Raises:
        ValueError: for a `scale` outside `[1e-6, 1e6]` or a `loc` larger
            than 1e6 in size (float32 would overflow or underflow).
    """

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = check_location("loc", loc)
        self.scale = check_scale("scale", scale)

    def log_prob(self, x):
        return normal_log_prob(x, self.loc, self.scale)

    def kl_from_normal(self, loc, scale):
        return normal_kl(loc, scale, self.loc, self.scale)

    def get_config(self):
        return {"loc": self.loc, "scale": self.scale}


@keras.saving.register_keras_serializable(package="noisylayers")
class Laplace(Prior):
    """A Laplace prior with density `exp(-|x - loc| / scale) / (2 scale)`.

    Its KL from a Gaussian posterior is estimated by Monte Carlo.

    Args:
        loc: Float, the location. Defaults to `0.0`.
        scale: Positive float, the scale. Defaults to `1.0`.

    Raises:
        ValueError: for a `scale` outside `[1e-6, 1e6]` or a `loc` larger
            than 1e6 in size (float32 would overflow or underflow).
    """

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = check_location("loc", loc)
        self.scale = check_scale("scale", scale)

    def log_prob(self, x):
        return -ops.abs(x - self.loc) / self.scale - math.log(2.0 * self.scale)

    def get_config(self):
        return {"loc": self.loc, "scale": self.scale}


@keras.saving.register_keras_serializable(package="noisylayers")
class ScaleMixtureNormal(Prior):
    """The scale mixture `pi N(0, scale1^2) + (1 - pi) N(0, scale2^2)`.

    The prior of Bayes by backprop (Blundell et al. 2015), who use e.g.
    `pi=0.5, scale1=1.0, scale2=exp(-6)`. Its KL from a Gaussian posterior
    is estimated by Monte Carlo.

    Args:
        pi: Float in `[0, 1]`, the weight of the first component.
            Defaults to `0.5`.
        scale1: Positive float, the first component's standard deviation.
            Defaults to `1.0`.
        scale2: Positive float, the second component's standard deviation.
            Defaults to `exp(-6)`.

    Raises:
        ValueError: for a `pi` outside `[0, 1]` or a scale outside
            `[1e-6, 1e6]`.
    """

    def __init__(self, pi=0.5, scale1=1.0, scale2=math.exp(-6.0)):
        self.pi = check_number("pi", pi, 0.0, 1.0, high_inclusive=True)
        self.scale1 = check_scale("scale1", scale1)
        self.scale2 = check_scale("scale2", scale2)

    def log_prob(self, x):
        parts = []
        for weight, scale in ((self.pi, self.scale1), (1.0 - self.pi, self.scale2)):
            if weight > 0.0:
                parts.append(math.log(weight) + normal_log_prob(x, 0.0, scale))
        if len(parts) == 1:
            return parts[0]
        return ops.logaddexp(parts[0], parts[1])

    def get_config(self):
        return {"pi": self.pi, "scale1": self.scale1, "scale2": self.scale2}


@keras.saving.register_keras_serializable(package="noisylayers")
class TFPPrior(Prior):
    """A scalar `tfp.distributions` distribution used as a prior (TensorFlow).

    Built by `noisylayers.priors.get` from a distribution object; users
    normally pass the distribution itself as `prior=`. The KL is TFP's
    registered analytic KL from a Normal where there is one, else a
    one-sample Monte Carlo estimate. Saved as the distribution's class name
    and parameters (nested distributions included).

    A config read from a file may name only `tfp.distributions.Distribution`
    subclasses, and its tensors may hold `MAX_TFP_PRIOR_NUMBERS` numbers in
    all (nested distributions included); a distribution with more is
    refused at construction too, so no file is written that cannot load.

    Args:
        distribution: A scalar `tfp.distributions.Distribution`, or its
            config as written by `get_config`.

    Raises:
        ValueError: on a backend other than TensorFlow, for a distribution
            that is not scalar or whose parameters hold more than
            `MAX_TFP_PRIOR_NUMBERS` numbers, or for a config that names
            anything but a distribution class.
    """

    def __init__(self, distribution):
        _require_tensorflow(distribution)
        if isinstance(distribution, dict):
            distribution = _tfp_from_config(distribution)
        elif not isinstance(distribution, _tfp().distributions.Distribution):
            raise ValueError(
                "A TFP prior must be a `tfp.distributions.Distribution`. "
                f"Received: prior={distribution!r}"
            )
        else:
            _tfp_config(distribution)  # refuses one too large to save
        if tuple(distribution.batch_shape) or tuple(distribution.event_shape):
            raise ValueError(
                "A TFP prior must be a scalar distribution (empty batch and "
                "event shapes): it is applied to each weight. Received: "
                f"prior={distribution!r}"
            )
        self.distribution = distribution

    def log_prob(self, x):
        return self.distribution.log_prob(x)

    def kl_from_normal(self, loc, scale):
        tfd = _tfp().distributions
        try:
            return tfd.kl_divergence(tfd.Normal(loc, scale), self.distribution)
        except NotImplementedError:
            return None

    def get_config(self):
        return {"distribution": _tfp_config(self.distribution)}

    def __repr__(self):
        return f"TFPPrior({self.get_config()['distribution']!r})"


def normal_kl(loc_q, scale_q, loc_p, scale_p):
    """Elementwise `KL(N(loc_q, scale_q^2) || N(loc_p, scale_p^2))`."""
    ratio = ops.square(scale_q / scale_p)
    return 0.5 * (
        ratio
        + ops.square((loc_q - loc_p) / scale_p)
        - 1.0
        - ops.log(ratio)
    )


ALIASES = {
    "normal": Normal,
    "laplace": Laplace,
    "scale_mixture_normal": ScaleMixtureNormal,
}
_REGISTRY = Registry(
    what="prior",
    argument="prior",
    base=Prior,
    base_name="noisylayers.priors.Prior",
    aliases=ALIASES,
    classes=(TFPPrior,),
    forms=("None", "(TensorFlow backend) a scalar `tfp.distributions` object"),
)


def serialize(prior):
    """The config of a prior (`None` for no prior)."""
    return _REGISTRY.serialize(prior)


def get(identifier):
    """Retrieves a prior from an object, an alias, a config or a TFP object.

    Args:
        identifier: `None` (no prior), a `Prior`, a string alias (a key of
            `noisylayers.priors.ALIASES`, or its class name: the prior with
            its default parameters), a config dict from `serialize`, or
            (TensorFlow backend) a scalar `tfp.distributions` object.

    Returns:
        A `Prior`, or `None`.

    Raises:
        ValueError: for an unknown alias, a malformed config, or a TFP
            distribution on another backend than TensorFlow.
        TypeError: for anything else.
    """
    if identifier is None:
        return None
    if type(identifier).__module__.startswith("tensorflow_probability"):
        return TFPPrior(identifier)
    return _REGISTRY.get(identifier)


# -- TFP adapter (imported lazily, TensorFlow backend only) ---------------------


def _tfp():
    import tensorflow_probability as tfp

    return tfp


def _require_tensorflow(distribution):
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            "A tensorflow-probability distribution as `prior` works on the "
            f"TensorFlow backend only (this is the {backend} backend: TFP's "
            "JAX substrate does not import with current JAX). Use "
            "`noisylayers.priors.Normal`, `Laplace` or `ScaleMixtureNormal`, "
            f"which run on every backend. Received: prior={distribution!r}"
        )


#: The most numbers the tensors of a TFP prior may hold, nested
#: distributions included: a prior is applied to each weight, so its
#: parameters are a few scalars or a small mixture. Bounds what a file can
#: make the loader allocate.
MAX_TFP_PRIOR_NUMBERS = 10_000
#: How deep distributions may nest in a TFP prior's config.
_MAX_TFP_DEPTH = 8
_NOT_PARAMETERS = ("validate_args", "allow_nan_stats", "name")


def _tfp_config(distribution, counted=None):
    """A JSON-able description of a TFP distribution: class and parameters.

    Raises:
        ValueError: when its tensors hold more than `MAX_TFP_PRIOR_NUMBERS`
            numbers in all (checked before they are copied).
    """
    import numpy as np

    tfd = _tfp().distributions
    counted = [0] if counted is None else counted
    class_name = type(distribution).__name__
    params = {}
    for name, value in distribution.parameters.items():
        if name in _NOT_PARAMETERS or value is None:
            continue
        if isinstance(value, tfd.Distribution):
            params[name] = _tfp_config(value, counted)
        elif isinstance(value, (bool, int, float, str)):
            params[name] = value
        elif hasattr(value, "as_numpy_dtype"):  # a tf.DType
            params[name] = {"dtype": value.name}
        else:
            _count(class_name, name, int(np.size(value)), counted)
            array = np.asarray(value)
            if array.dtype == np.float64:  # Python floats: TFP makes float32
                array = array.astype("float32")
            params[name] = {"tensor": array.tolist(), "dtype": array.dtype.name}
    return {"class_name": class_name, "parameters": params}


def _tfp_from_config(config, counted=None, depth=0):
    """The distribution a config from `_tfp_config` describes, checked.

    Raises:
        ValueError: for a malformed config, a class that is not a
            `tfp.distributions.Distribution`, a tensor of a non-numeric
            dtype, more than `MAX_TFP_PRIOR_NUMBERS` numbers, or
            distributions nested deeper than `_MAX_TFP_DEPTH`.
    """
    import numpy as np
    import tensorflow as tf

    tfd = _tfp().distributions
    counted = [0] if counted is None else counted
    if not (
        isinstance(config, dict)
        and isinstance(config.get("class_name"), str)
        and isinstance(config.get("parameters"), dict)
    ):
        raise ValueError(
            "A TFP prior's config is {'class_name': NAME, 'parameters': "
            f"{{...}}}}. Received: {brief_repr(config)}"
        )
    class_name = config["class_name"]
    if depth > _MAX_TFP_DEPTH:
        raise ValueError(
            f"A TFP prior's distributions may nest {_MAX_TFP_DEPTH} deep at "
            f"most; {class_name} is deeper. Received: {brief_repr(config)}"
        )
    cls = None if class_name.startswith("_") else getattr(tfd, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tfd.Distribution)):
        raise ValueError(
            f"The TFP prior's class_name {class_name!r} is not a "
            "`tfp.distributions.Distribution` subclass: a saved prior names "
            f"a distribution class only. Received: {brief_repr(config)}"
        )
    params = {}
    for name, value in config["parameters"].items():
        where = f"The TFP prior's parameter `{name}` of {class_name}"
        if isinstance(value, dict) and "class_name" in value:
            value = _tfp_from_config(value, counted, depth + 1)
        elif isinstance(value, dict) and "tensor" in value:
            try:
                dtype = np.dtype(value.get("dtype"))
            except TypeError:
                dtype = None
            if dtype is None or dtype.kind not in "biuf":
                raise ValueError(
                    f"{where} has dtype {value.get('dtype')!r}: a saved "
                    "tensor is boolean, integer or floating point."
                )
            _count(class_name, name, _size(value["tensor"]), counted)
            try:
                value = np.asarray(value["tensor"], dtype=dtype)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"{where} is not a {dtype.name} tensor ({e})."
                ) from None
        elif isinstance(value, dict) and "dtype" in value:
            try:
                value = tf.as_dtype(value["dtype"])
            except TypeError as e:
                raise ValueError(f"{where} is not a dtype ({e}).") from None
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(
                f"{where} is {brief_repr(value)}: a saved parameter is a number, "
                "a string, a tensor, a dtype or a distribution."
            )
        params[name] = value
    failures = (AttributeError, KeyError, TypeError, ValueError, tf.errors.OpError)
    try:
        return cls(**params)
    except failures as e:
        raise ValueError(
            f"Could not rebuild the TFP prior {class_name} from its config "
            f"({e}). Received: {brief_repr(config)}"
        ) from e


def _count(class_name, name, size, counted):
    counted[0] += size
    if counted[0] > MAX_TFP_PRIOR_NUMBERS:
        raise ValueError(
            f"The TFP prior's parameter `{name}` of {class_name} brings its "
            f"tensors to {counted[0]} numbers or more; a TFP prior holds at "
            f"most {MAX_TFP_PRIOR_NUMBERS} (it is applied to each weight: "
            "its parameters are a few scalars or a small mixture)."
        )


def _size(nested):
    """How many numbers a nested list holds (stops past the bound)."""
    size, stack = 0, [nested]
    while stack and size <= MAX_TFP_PRIOR_NUMBERS:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            size += 1
    return size + len(stack)
