"""Random numbers for noise kinds: exact draws, and the noise-table sampler.

`normal` and `uniform` are `keras.random.normal` / `uniform`, except on the
TensorFlow backend, where they call TensorFlow's stateless kernels with the
Philox algorithm explicitly: Keras leaves `alg="auto_select"`, which under
XLA:CPU (`jit_compile=True`) takes about 30x longer for the same numbers.
There, draws of 16k normals or more are Philox uniforms through the
inverse CDF, fused (`_fused.normal_from_uniform`), at about half the cost of
TensorFlow's normal kernel.
Seeds are read as `keras.random` reads them, on every backend (`draw_seed`):
a `keras.random.SeedGenerator` gives its next seed, an integer is a fixed
seed, `None` draws from Keras' global generator (which
`keras.utils.set_random_seed` resets). Under a `tf.distribute` strategy each
replica offsets its seed by its replica id, so replicas draw different noise.

The table sampler (Salimans et al. 2017, "Evolution Strategies as a Scalable
Alternative to Reinforcement Learning") trades exactness across calls for
speed: a noisy layer keeps a block of independent standard normals (a
non-trainable variable that is not saved; it is regenerated from the seed),
and each draw is two windows at random offsets, one from each half of the
block, mixed by a random rotation `cos(t) a + sin(t) b`. The halves are
disjoint, so within one call every drawn tensor is exactly i.i.d. N(0, 1);
across calls windows are reused at random offsets, so the noise of
consecutive calls is only nearly independent.
"""

import math

import keras
import numpy as np
from keras import ops

from noisylayers import _keras_private
from noisylayers.noise import _fused

SAMPLERS = ("exact", "table")
#: The table holds this many times the largest target's size (at least).
TABLE_FACTOR = 4
_MIN_TABLE = 1 << 16


def check_sampler(sampler):
    if sampler not in SAMPLERS:
        raise ValueError(
            f"Argument `sampler` must be one of {list(SAMPLERS)}. "
            f"Received: sampler={sampler!r}"
        )
    return sampler


def check_seed(seed):
    """Validates a draw's `seed` as `keras.random` does (a Keras-style error).

    Accepted: a `keras.random.SeedGenerator`, an integer, `None` or a seed
    tensor of shape `(2,)` (as the backends' own random ops accept).
    """
    if isinstance(seed, np.integer):
        return int(seed)
    if (
        seed is None
        or isinstance(seed, (keras.random.SeedGenerator, int))
        or (ops.is_tensor(seed) and tuple(seed.shape) == (2,))
    ):
        return seed
    raise ValueError(
        "Argument `seed` must be a `keras.random.SeedGenerator`, an integer "
        "or None (Keras' global seed generator), as for `keras.random`. "
        f"Received: seed={seed!r} (of type {type(seed).__name__})"
    )


def _tf_seed(seed):
    """The stateless seed of one draw, read as Keras' `draw_seed` reads it.

    A `SeedGenerator` gives its next seed (and advances); an integer `n`
    the fixed seed `[n, 0]`; `None` a seed drawn from Keras' global seed
    generator, the one `keras.random.normal(shape)` uses (so
    `keras.utils.set_random_seed` makes it reproducible).
    """
    import tensorflow as tf

    seed = check_seed(seed)
    if isinstance(seed, keras.random.SeedGenerator):
        seed = seed.next()
    elif seed is None:
        seed = keras.random.randint((2,), 0, tf.int32.max, dtype="int32")
    elif isinstance(seed, int):
        seed = tf.constant([seed, 0], dtype="int64")
    seed = tf.cast(seed, "int64")
    # Under tf.distribute the generator's state is mirrored: without this
    # every replica would draw the same noise (and the same Flipout signs).
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        replica = tf.cast(context.replica_id_in_sync_group, "int64")
        seed = seed + tf.stack([replica * 1_000_003, replica])
    return tf.cast(tf.math.floormod(seed, tf.int32.max - 1), "int32")


def normal(shape, dtype="float32", seed=None):
    """Standard normals (Philox on TensorFlow, `keras.random` elsewhere).

    On TensorFlow, from 16k numbers on (`_fused.MIN_SIZE`), Philox uniforms
    through the inverse CDF in one fused kernel
    (`_fused.normal_from_uniform`): about half the time of TensorFlow's own
    normal kernel.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        seed = _tf_seed(seed)
        if not _fused.available(shape):
            return tf.random.stateless_normal(
                shape, seed=seed, dtype=dtype, alg="philox"
            )
        wide = "float64" if keras.backend.standardize_dtype(dtype) == "float64" \
            else "float32"
        u = tf.random.stateless_uniform(shape, seed=seed, dtype=wide, alg="philox")
        return tf.cast(_fused.normal_from_uniform(u), dtype)
    return keras.random.normal(shape, dtype=dtype, seed=check_seed(seed))


def uniform(shape, dtype="float32", seed=None):
    """Uniforms on `[0, 1)` (Philox on TensorFlow, `keras.random` elsewhere)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(
            shape, seed=_tf_seed(seed), dtype=dtype, alg="philox"
        )
    return keras.random.uniform(shape, dtype=dtype, seed=check_seed(seed))


def table_size(sizes):
    """The size of a layer's table for targets of the given sizes."""
    return max(_MIN_TABLE, 2 * TABLE_FACTOR * max(sizes))


def standard_normal_like(value, seed, state=None):
    """N(0, 1) noise shaped like `value`: from the table in `state`, if any."""
    dtype = keras.backend.standardize_dtype(value.dtype)
    table = None if state is None else state.get("table")
    if table is None:
        return normal(ops.shape(value), dtype=dtype, seed=seed)
    return ops.cast(table_normal(table, tuple(value.shape), seed), dtype)


def standard_normal(shape, dtype="float32", seed=None, table=None):
    """N(0, 1) noise of `shape`: from `table` (a noise table) when it can.

    The table serves the draw when `shape` is known when the function is
    traced and at most half the table's size; otherwise (a batch size
    unknown until run time, or too many numbers) the draw is exact.
    Used for the draws a layer makes besides its weights' (local
    reparameterization's output noise).
    """
    if table is not None:
        static = _static_shape(shape)
        if static is not None and math.prod(static) <= int(table.shape[0]) // 2:
            return ops.cast(table_normal(table, static, seed), dtype)
    return normal(shape, dtype=dtype, seed=seed)


def _static_shape(shape):
    try:
        static = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None
    return static


def table_normal(table, shape, seed):
    """A draw of standard normals of `shape` from a noise table.

    Two windows at random offsets, one from each half of `table` (so they
    never overlap), mixed by a random rotation: exactly i.i.d. N(0, 1)
    within the draw whatever the offsets.
    """
    n = math.prod(shape)
    half = int(table.shape[0]) // 2
    if n > half:
        raise ValueError(
            f"The noise table ({table.shape[0]} numbers) is too small for a "
            f"weight of {n} numbers: it needs at least {2 * n}."
        )
    u = uniform((3,), dtype="float32", seed=seed)
    span = half - n + 1
    first = ops.cast(ops.floor(u[0] * span), "int32")
    second = ops.cast(ops.floor(u[1] * span), "int32") + half
    angle = u[2] * (2.0 * math.pi)
    values = ops.convert_to_tensor(table)
    mixed = ops.cos(angle) * _window(values, first, n) + ops.sin(
        angle
    ) * _window(values, second, n)
    return ops.reshape(mixed, shape)


def _window(values, start, n):
    """`values[start:start + n]` for a traced `start`."""
    if _keras_private.in_xla_context():
        # TensorFlow's XLA `Slice` needs `begin` at compile time: a random
        # one would recompile the whole step at every call (~45 ms). A
        # gather of consecutive indices compiles once, and is as fast.
        import tensorflow as tf

        return tf.gather(values, start + tf.range(n))
    return ops.slice(values, ops.reshape(start, (1,)), (n,))
