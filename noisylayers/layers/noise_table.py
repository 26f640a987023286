"""The noise table of a noisy layer, for kinds with `sampler="table"`.

A non-trainable variable of normals that the kind takes windows from
(`noisylayers.noise.sampling`). It is not saved: it is regenerated from the
layer's `seed` when the layer builds.
"""

import keras
import numpy as np

from noisylayers.noise import sampling


def uses_table(noise):
    """Whether the noise kind draws from a noise table."""
    return getattr(noise, "sampler", "exact") == "table"


def add_noise_table(layer, variables, seed):
    """Creates the table of normals of `layer`, sized for `variables`.

    Args:
        layer: The noisy layer that owns the table.
        variables: The weights the table serves (the layer's targets).
        seed: The layer's seed (or `None`), which the table is drawn from.

    Returns:
        The new non-trainable variable, named `noise_table`.
    """
    sizes = [int(np.prod(v.shape)) for v in variables]
    return layer.add_weight(
        name="noise_table",
        shape=(sampling.table_size(sizes),),
        initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=seed),
        dtype="float32",
        trainable=False,
        autocast=False,
    )
