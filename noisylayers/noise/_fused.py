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

The values are those of the unfused ops up to float rounding (the KL sum
may add in another order); the random draws are not touched (they stay
outside XLA, where TensorFlow's Philox kernels are fast). On the other
backends `available()` is False and the kinds run their `keras.ops` chain
(JAX fuses it already).
"""

import functools

import keras


#: Switch for A/B measurements (`benchmarks/`): False runs the plain chain.
#: Read when a function is traced.
ENABLED = True


def available():
    """Whether the fused kernels run on this backend (TensorFlow)."""
    return ENABLED and keras.backend.backend() == "tensorflow"


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

    return perturbation, variance, normal_kl_sum


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
