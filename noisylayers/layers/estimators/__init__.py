"""The estimators: how a noisy layer samples in a training call.

Each estimator is an object with one `apply(...)` (see `Estimator`),
registered here by name; `NoisyLayer` looks up its `estimator` argument in
this registry. The estimators and the layer families that offer them:

| family                 | estimators                                  |
|------------------------|---------------------------------------------|
| Dense                  | shared, flipout, local_reparameterization   |
| Conv1D, Conv2D, Conv3D | shared, flipout, local_reparameterization   |
| LSTM                   | shared, flipout                             |
| anything else          | shared                                      |

- `"shared"` (`Shared`): one weight sample per call, for any layer.
- `"flipout"` (`Flipout`): the sample decorrelated per example by signs.
- `"local_reparameterization"` (`LocalReparameterization`): the
  pre-activations drawn from their Gaussian marginal.

A noise kind says which estimators it cannot serve
(`Noise.unsupported_reason(name)`); it knows them by name only, so that
the noise kinds never import the layers.
"""

from noisylayers.layers.estimators.base import Estimator
from noisylayers.layers.estimators.flipout import Flipout
from noisylayers.layers.estimators.local_reparameterization import (
    LocalReparameterization,
)
from noisylayers.layers.estimators.shared import Shared

_REGISTRY = {e.name: e for e in (Shared(), Flipout(), LocalReparameterization())}

#: The names of the estimators, in the order they are documented.
ESTIMATORS = tuple(_REGISTRY)


def get(name):
    """The estimator registered under `name`.

    Args:
        name: One of `ESTIMATORS`.

    Returns:
        An `Estimator`.

    Raises:
        ValueError: for an unknown name.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown estimator. Expected one of {list(ESTIMATORS)}. "
            f"Received: estimator={name!r}"
        ) from None
