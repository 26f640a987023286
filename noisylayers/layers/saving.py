"""Saving noisy layers: their config fields, format version and variables.

A noisy layer adds its noise fields (`noise_config`) to its Keras layer's
config, with the `FORMAT_VERSION` they were written in; `loading` checks
them when a file is read. It saves every variable it owns (`enabled`,
`scale`, a learned kind's variables) except the noise table, which is
regenerated from the seed.
"""

import contextlib

from noisylayers import _keras_private
from noisylayers import noise as noise_module

#: Version of the noisylayers fields in saved layer configs. Files written
#: with an older version keep loading (tests/fixtures holds one).
FORMAT_VERSION = 1


def noise_config(layer):
    """The config fields of a noisy layer's noise (saved with its config)."""
    return {
        "format_version": FORMAT_VERSION,
        "noise": noise_module.serialize(layer.noise),
        "estimator": layer.estimator,
        "targets": None if layer.targets is None else list(layer.targets),
        "seed": layer.seed,
    }


@contextlib.contextmanager
def loading(cls, config):
    """Checks a saved config's format; names the layer in any error.

    Within the block, the config (a copy, without `format_version`) is
    turned into a layer of class `cls`.

    Example:

    ```python
    @classmethod
    def from_config(cls, config):
        with saving.loading(cls, config) as config:
            return super().from_config(config)
    ```

    Raises:
        ValueError: for a config of a newer format, one without a noise,
            or one the block fails to load (`ValueError`, `TypeError`,
            `KeyError`), naming the layer.
    """
    config = dict(config)
    name = config.get("name", "?")
    version = config.pop("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"Cannot load noisy layer '{name}' ({cls.__name__}): it was "
            f"saved in noisylayers config format {version!r}, newer than "
            f"this version's ({FORMAT_VERSION}). Upgrade noisylayers. "
            f"Received: format_version={version!r}"
        )
    missing = [k for k in ("noise",) if k not in config]
    if missing:
        raise ValueError(
            f"Cannot load noisy layer '{name}' ({cls.__name__}): its saved "
            f"config lacks the field(s) {missing}. Received: "
            f"{sorted(config)}"
        )
    try:
        yield config
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(
            f"Cannot load noisy layer '{name}' ({cls.__name__}) from its "
            f"saved config: {e}"
        ) from e


def saved_variables(layer):
    """The variables `layer` saves itself: its own, without the noise table
    (regenerated from the seed)."""
    return [
        v
        for v in _keras_private.own_variables(layer)
        if v is not layer.noise_table
    ]


def save_own_variables(layer, store):
    """Like `Layer.save_own_variables`, without the noise table."""
    for i, v in enumerate(saved_variables(layer)):
        store[str(i)] = v


def load_own_variables(layer, store):
    """Like `Layer.load_own_variables`, without the noise table.

    A file written before layers with a KL term had their `kl_log` (the
    running KL of `fit`'s `kl` entry) holds one variable fewer: it loads,
    and the log starts at zero.
    """
    variables = saved_variables(layer)
    log = layer.kl_log_variable
    if log is not None and len(store.keys()) == len(variables) - 1:
        variables = [v for v in variables if v is not log]
    if len(store.keys()) != len(variables):
        raise ValueError(
            f"Layer '{layer.name}' expected {len(variables)} variables, "
            f"but received {len(store.keys())} variables during loading. "
            f"Expected: {[v.name for v in variables]}"
        )
    for i, v in enumerate(variables):
        v.assign(store[str(i)])
