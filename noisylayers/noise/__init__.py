"""Noise kinds: how one weight tensor is perturbed.

Like `keras.initializers`, a kind can be named by an object, a string alias
or a config dict; `get`, `serialize` and `deserialize` convert between them.

| alias                       | class                    | noisy weight                |
|-----------------------------|--------------------------|-----------------------------|
| `"gaussian"`                | `Gaussian(0.01)`         | `w + stddev * eps`          |
| `"multiplicative_gaussian"` | `MultiplicativeGaussian` | `w * (1 + stddev * eps)`    |
| `"dropconnect"`             | `DropConnect(0.5)`       | `w * mask / (1 - rate)`     |
"""

import keras

from noisylayers.noise.base import Noise
from noisylayers.noise.dropconnect import DropConnect
from noisylayers.noise.gaussian import Gaussian
from noisylayers.noise.gaussian import MultiplicativeGaussian

ALIASES = {
    "gaussian": Gaussian,
    "multiplicative_gaussian": MultiplicativeGaussian,
    "dropconnect": DropConnect,
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
            default parameters, or a config dict as produced by `serialize`
            (`{"class_name": "Gaussian", "config": {"stddev": 0.1}}`).

    Returns:
        A `Noise` instance.

    Raises:
        ValueError: for an unknown alias or a malformed config.
        TypeError: for anything else.
    """
    if isinstance(identifier, Noise):
        return identifier
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


__all__ = [
    "Noise",
    "Gaussian",
    "MultiplicativeGaussian",
    "DropConnect",
    "get",
    "serialize",
    "deserialize",
]
