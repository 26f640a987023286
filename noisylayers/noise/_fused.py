"""Fused element-wise kernels of the learned kinds, on the TensorFlow backend.

On a TensorFlow graph every element-wise op of `LearnedGaussian`'s
per-weight chain (softplus, the multiply by the draw, the KL's logs and
squares, and each of their gradients) is a separate kernel and a separate
pass over every weight. Here each chain is one `tf.custom_gradient` op whose
forward and backward halves are XLA-compiled functions (one fused loop
each), with the gradient written out by hand:

- `perturbation(rho, eps, floor)`: `(softplus(rho) + floor) * eps`,
  gradient `g * eps * sigmoid(rho)` for `rho`.
- `variance(rho, floor)`: `(softplus(rho) + floor)^2`,
  gradient `2 g sigma sigmoid(rho)`.
- `normal_kl_sum(loc_q, rho, floor, loc_p, scale_p)`: the summed analytic
  `KL(N(loc_q, sigma^2) || N(loc_p, scale_p^2))`, with
  `sigma = softplus(rho) + floor`.
- `normal_from_uniform(u)`: standard normals from Philox uniforms by the
  inverse CDF, `sqrt(2) erfinv(2u - 1)`, in one fused loop. TensorFlow's own
  normal kernel (Box-Muller) takes almost twice as long as the uniforms plus
  this loop (5.6 against 3.1 ms for 670k numbers on 2 cores).

Each runs only for tensors of `MIN_SIZE` elements or more (`available`).

The values are those of the unfused ops up to float rounding (the KL sum
may add in another order). The random bits stay outside XLA, where
TensorFlow's Philox kernels are fast. On the other
backends `available()` is False and the kinds run their `keras.ops` chain
(JAX fuses it already).
"""

import functools
import math

import keras


#: Switch for A/B measurements (`benchmarks/`): False runs the plain chain.
#: Read when a function is traced.
ENABLED = True


#: Below this many elements (known when traced) the plain ops run: each
#: fused kernel is a compiled call with a fixed cost (about 20 us), more than
#: a few element-wise passes over a small tensor cost.
MIN_SIZE = 1 << 14


def available(shape=None):
    """Whether the fused kernels run on this backend (TensorFlow) and pay
    for a tensor of `shape` (None, a shape tensor or dimensions unknown when
    traced: assumed large)."""
    if not (ENABLED and keras.backend.backend() == "tensorflow"):
        return False
    if shape is None or keras.ops.is_tensor(shape):
        return True
    try:
        size = math.prod(int(d) for d in shape)
    except (TypeError, ValueError):  # a dimension unknown until run time
        return True
    return size >= MIN_SIZE


@functools.lru_cache(maxsize=None)
def _kernels():
    import tensorflow as tf

    def sigma_of(rho, floor):
        return tf.nn.softplus(rho) + floor

    @tf.function(jit_compile=True, autograph=False)
    def perturbation_fwd(rho, eps, floor):
        return sigma_of(rho, floor) * eps

    @tf.function(jit_compile=True, autograph=False)
    def perturbation_bwd(rho, eps, g):
        return g * eps * tf.math.sigmoid(rho)

    @tf.function(jit_compile=True, autograph=False)
    def variance_fwd(rho, floor):
        return tf.square(sigma_of(rho, floor))

    @tf.function(jit_compile=True, autograph=False)
    def variance_bwd(rho, floor, g):
        return 2.0 * g * sigma_of(rho, floor) * tf.math.sigmoid(rho)

    @tf.function(jit_compile=True, autograph=False)
    def kl_fwd(loc_q, rho, floor, loc_p, scale_p):
        ratio = tf.square(sigma_of(rho, floor) / scale_p)
        z = (loc_q - loc_p) / scale_p
        return 0.5 * tf.reduce_sum(ratio + tf.square(z) - 1.0 - tf.math.log(ratio))

    @tf.function(jit_compile=True, autograph=False)
    def kl_bwd(loc_q, rho, floor, loc_p, scale_p, g):
        sigma = sigma_of(rho, floor)
        inv_var_p = 1.0 / tf.square(scale_p)
        d_loc = g * (loc_q - loc_p) * inv_var_p
        d_rho = g * (sigma * inv_var_p - 1.0 / sigma) * tf.math.sigmoid(rho)
        return d_loc, d_rho

    @tf.custom_gradient
    def perturbation(rho, eps, floor):
        def grad(g):
            return perturbation_bwd(rho, eps, g), None, None

        return perturbation_fwd(rho, eps, floor), grad

    @tf.custom_gradient
    def variance(rho, floor):
        def grad(g):
            return variance_bwd(rho, floor, g), None

        return variance_fwd(rho, floor), grad

    @tf.custom_gradient
    def normal_kl_sum(loc_q, rho, floor, loc_p, scale_p):
        def grad(g):
            d_loc, d_rho = kl_bwd(loc_q, rho, floor, loc_p, scale_p, g)
            return d_loc, d_rho, None, None, None

        return kl_fwd(loc_q, rho, floor, loc_p, scale_p), grad

    @tf.function(jit_compile=True, autograph=False)
    def from_uniform(u, offset):
        return math.sqrt(2.0) * tf.math.erfinv(2.0 * u - 1.0 + offset)

    return perturbation, variance, normal_kl_sum, from_uniform


def _constant(x, dtype):
    import tensorflow as tf

    return tf.constant(x, dtype=dtype)


def perturbation(rho, eps, floor):
    """`(softplus(rho) + floor) * eps`, one fused op (gradient for `rho`)."""
    import tensorflow as tf

    eps = tf.stop_gradient(tf.cast(eps, rho.dtype))
    return _kernels()[0](rho, eps, _constant(floor, rho.dtype))


def variance(rho, floor):
    """`(softplus(rho) + floor)^2`, one fused op."""
    return _kernels()[1](rho, _constant(floor, rho.dtype))


def normal_kl_sum(loc_q, rho, floor, loc_p, scale_p):
    """The summed KL of `N(loc_q, sigma^2)` from `N(loc_p, scale_p^2)`."""
    import tensorflow as tf

    dtype = rho.dtype
    return _kernels()[2](
        tf.cast(loc_q, dtype),
        rho,
        _constant(floor, dtype),
        _constant(loc_p, dtype),
        _constant(scale_p, dtype),
    )


def normal_from_uniform(u):
    """Standard normals from uniforms `u` on `[0, 1)` as TensorFlow draws
    them (multiples of 2^-23 in float32, 2^-52 in float64).

    Each `u` is moved to the middle of its step, so no value is 0 and the
    grid is symmetric about 1/2: float32 normals reach +-5.3 standard
    deviations (TensorFlow's Box-Muller reaches 5.7; the mass beyond 5.3 is
    1e-7).
    """
    return _kernels()[3](u, _offset(u.dtype))


def _offset(dtype):
    """Half a step of TensorFlow's uniforms, doubled: `2u - 1 + offset` is
    symmetric about 0 and never -1."""
    return _constant(2.0 ** -(52 if dtype.size == 8 else 23), dtype)
