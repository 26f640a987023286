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

`parse("gaussian:0.1")` reads the command line's `KIND[:VALUE | :NAME=VALUE,...]`;
`to_spec` and `short_spec` write it (`noisylayers.noise.spec`).
"""

from noisylayers._registry import Registry
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

#: Every kind shipped here, by string alias (the one list: docs and tests
#: derive theirs from it).
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
_REGISTRY = Registry(
    what="noise kind",
    argument="noise",
    base=Noise,
    base_name="noisylayers.noise.Noise",
    aliases=ALIASES,
    classes=(Noise,),
    forms=("a spec with parameters (such as 'gaussian:0.1')",),
)


def serialize(noise):
    """Returns the config dict of a noise kind (for saving)."""
    return _REGISTRY.serialize(noise)


def deserialize(config, custom_objects=None):
    """Returns the noise kind described by `config` (a dict or an alias)."""
    return _REGISTRY.deserialize(config, custom_objects=custom_objects)


def get(identifier):
    """Retrieves a noise kind from an object, a string alias or a config.

    Args:
        identifier: A `Noise` instance (returned as is), a string alias
            (a key of `noisylayers.noise.ALIASES`, or its class name such
            as `"Gaussian"`) giving the kind with its default parameters, a
            spec with parameters (`"gaussian:0.1"`, see `parse`), or a
            config dict as produced by `serialize`
            (`{"class_name": "Gaussian", "config": {"stddev": 0.1}}`).

    Returns:
        A `Noise` instance.

    Raises:
        ValueError: for an unknown alias, a malformed spec or config.
        TypeError: for anything else.
    """
    if isinstance(identifier, str) and ":" in identifier:
        return parse(identifier)
    return _REGISTRY.get(identifier)


from noisylayers.noise.spec import parse  # noqa: E402
from noisylayers.noise.spec import short_spec  # noqa: E402
from noisylayers.noise.spec import to_spec  # noqa: E402

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
    "ALIASES",
    "parse",
    "to_spec",
    "short_spec",
    "get",
    "serialize",
    "deserialize",
]
