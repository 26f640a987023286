"""Noise kinds: how one weight tensor is perturbed.

Like `keras.initializers`, a kind can be named by an object, a string alias
or a config dict; `get`, `serialize` and `deserialize` convert between them.

| alias                       | class                    | noisy weight                |
|-----------------------------|--------------------------|-----------------------------|
| `"gaussian"`                | `Gaussian(0.01)`         | `w + stddev * eps`          |
| `"multiplicative_gaussian"` | `MultiplicativeGaussian` | `w * (1 + stddev * eps)`    |
| `"dropconnect"`             | `DropConnect(0.5)`       | `w * mask / (1 - rate)`     |
| `"learned_gaussian"`        | `LearnedGaussian`        | `w + softplus(rho) * eps`   |
| `"adaptive_gaussian"`       | `AdaptiveGaussian`       | same, Graves' optimal prior |
| `"factorized"`              | `Factorized(0.5)`        | `w + sigma * f(e_i) f(e_j)` |
| `"variational_dropout"`     | `VariationalDropout`     | `w + sqrt(alpha) w eps`     |
| `"relative_gaussian"`       | `RelativeGaussian(0.02)` | `w + s max|w| eps`          |
| `"polynomial_gaussian"`     | `PolynomialGaussian`     | PCM programming noise       |
| `"quantize"`                | `Quantize(8)`            | `w` rounded, straight-through|
| `"stuck_at"`                | `StuckAt(0.01)`          | some `w` stuck at 0 or max  |

`parse("gaussian:0.1")` reads the command line's `KIND[:VALUE | :NAME=VALUE,...]`.
"""

import ast
import inspect

import keras

from noisylayers.noise.adaptive import AdaptiveGaussian
from noisylayers.noise.adaptive import Factorized
from noisylayers.noise.adaptive import VariationalDropout
from noisylayers.noise.base import Noise
from noisylayers.noise.dropconnect import DropConnect
from noisylayers.noise.gaussian import Gaussian
from noisylayers.noise.gaussian import MultiplicativeGaussian
from noisylayers.noise.hardware import PolynomialGaussian
from noisylayers.noise.hardware import Quantize
from noisylayers.noise.hardware import RelativeGaussian
from noisylayers.noise.hardware import StuckAt
from noisylayers.noise.learned import LearnedGaussian

ALIASES = {
    "gaussian": Gaussian,
    "multiplicative_gaussian": MultiplicativeGaussian,
    "dropconnect": DropConnect,
    "learned_gaussian": LearnedGaussian,
    "adaptive_gaussian": AdaptiveGaussian,
    "factorized": Factorized,
    "variational_dropout": VariationalDropout,
    "relative_gaussian": RelativeGaussian,
    "polynomial_gaussian": PolynomialGaussian,
    "quantize": Quantize,
    "stuck_at": StuckAt,
}
_CLASSES = {cls.__name__: cls for cls in (Noise, *ALIASES.values())}


def serialize(noise):
    """Returns the config dict of a noise kind (for saving)."""
    return keras.saving.serialize_keras_object(noise)


def deserialize(config, custom_objects=None):
    """Returns the noise kind described by `config` (a dict or an alias)."""
    return keras.saving.deserialize_keras_object(
        config,
        module_objects={**_CLASSES, **ALIASES},
        custom_objects=custom_objects,
        printable_module_name="noise kind",
    )


def get(identifier):
    """Retrieves a noise kind from an object, a string alias or a config.

    Args:
        identifier: A `Noise` instance (returned as is), a string alias
            (`"gaussian"`, `"multiplicative_gaussian"`, `"dropconnect"`,
            or a class name such as `"Gaussian"`) giving the kind with its
            default parameters, a spec with parameters (`"gaussian:0.1"`,
            see `parse`), or a config dict as produced by `serialize`
            (`{"class_name": "Gaussian", "config": {"stddev": 0.1}}`).

    Returns:
        A `Noise` instance.

    Raises:
        ValueError: for an unknown alias or a malformed config.
        TypeError: for anything else.
    """
    if isinstance(identifier, Noise):
        return identifier
    if isinstance(identifier, str) and ":" in identifier:
        return parse(identifier)
    if isinstance(identifier, str):
        cls = ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None or cls is Noise:
            raise ValueError(
                "Unknown noise kind. Expected one of "
                f"{sorted(ALIASES)} or a `noisylayers.noise.Noise` instance. "
                f"Received: noise={identifier!r}"
            )
        return cls()
    if isinstance(identifier, dict):
        try:
            obj = deserialize(identifier)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Could not build a noise kind from the config. "
                f"Received: noise={identifier!r} ({e})"
            ) from e
        if not isinstance(obj, Noise):
            raise ValueError(
                "The config does not describe a `noisylayers.noise.Noise`. "
                f"Received: noise={identifier!r}"
            )
        return obj
    raise TypeError(
        "Argument `noise` must be a `noisylayers.noise.Noise` instance, a "
        f"string alias ({sorted(ALIASES)}) or a config dict. "
        f"Received: noise={identifier!r} (of type {type(identifier).__name__})"
    )


def parse(text):
    """Reads a noise spec such as `"gaussian:0.1"` as a noise kind.

    The spec is `KIND`, `KIND:VALUE` (the kind's first parameter, e.g. the
    stddev of `gaussian` or the rate of `dropconnect`) or
    `KIND:NAME=VALUE,NAME=VALUE` (any parameters, e.g.
    `learned_gaussian:init_stddev=0.05,dataset_size=1000`); both forms
    mix (`variational_dropout:3,kl_weight=1e-4`). Values are Python
    literals (numbers, `None`, quoted strings) or bare words (`normal`).

    Args:
        text: The spec.

    Returns:
        A `Noise` instance.

    Raises:
        ValueError: for an unknown kind, parameter or malformed value.
    """
    if not isinstance(text, str):
        raise TypeError(f"A noise spec must be a string. Received: {text!r}")
    kind, colon, rest = text.partition(":")
    noise = get(kind.strip())
    if not colon:
        return noise
    names = [
        p.name
        for p in inspect.signature(type(noise).__init__).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    kwargs = {}
    for i, part in enumerate(p.strip() for p in _split_top_level(rest)):
        name, equals, value = part.partition("=")
        if not equals:
            if i != 0 or not names:
                raise ValueError(
                    "A noise spec is KIND, KIND:VALUE or KIND:NAME=VALUE,... "
                    f"Received: {text!r}"
                )
            name, value = names[0], part
        name = name.strip()
        if name not in names:
            raise ValueError(
                f"Noise kind {kind!r} has no parameter {name!r}; its "
                f"parameters are {names}. Received: {text!r}"
            )
        value = _literal(value.strip())
        default = getattr(noise, name, None)
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        kwargs[name] = value
    config = {**noise.get_config(), **kwargs}
    try:
        return type(noise).from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid noise spec {text!r}: {e}") from None


def _split_top_level(text):
    """Splits on the commas that are not inside brackets or quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def to_spec(noise):
    """The spec of a noise kind, as `parse` reads it."""
    noise = get(noise)
    alias = next((a for a, c in ALIASES.items() if type(noise) is c), None)
    if alias is None:
        raise ValueError(f"No spec for a kind without an alias: {noise!r}")
    params = []
    for name, value in noise.get_config().items():
        if isinstance(value, dict):
            value = _prior_alias(value)
            if value is None:
                raise ValueError(
                    f"No spec for a kind with nested parameters: {noise!r}"
                )
        params.append(f"{name}={value!r}" if not isinstance(value, _Bare) else f"{name}={value}")
    return f"{alias}:{','.join(params)}" if params else alias


class _Bare(str):
    """A string written without quotes in a spec (an alias)."""


def _prior_alias(config):
    from noisylayers import priors

    prior = priors.get(config)
    for alias, cls in priors.ALIASES.items():
        if prior == cls():
            return _Bare(alias)
    return None


__all__ = [
    "Noise",
    "Gaussian",
    "MultiplicativeGaussian",
    "DropConnect",
    "LearnedGaussian",
    "AdaptiveGaussian",
    "Factorized",
    "VariationalDropout",
    "RelativeGaussian",
    "PolynomialGaussian",
    "Quantize",
    "StuckAt",
    "parse",
    "to_spec",
    "get",
    "serialize",
    "deserialize",
]
