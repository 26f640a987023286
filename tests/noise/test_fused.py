"""`noisylayers.noise._fused`: the fused TensorFlow kernels equal the plain ops.

Each fused kernel (the learned kind's perturbation, variance and Normal-prior
KL, with their hand-written gradients) is compared with the `keras.ops`
chain it replaces, values and gradients, on a tensor large enough to be
fused; smaller tensors run the plain chain.
"""

import keras
import numpy as np
import pytest

from noisylayers.noise import _fused
from noisylayers.noise import learned

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="The fused kernels are the TensorFlow backend's.",
)

SHAPE = (128, 160)  # 20480 elements: over `MIN_SIZE`


def _inputs(seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    rho = tf.Variable(rng.uniform(-6.0, 2.0, SHAPE).astype("float32"))
    loc = tf.Variable(rng.normal(0.0, 0.3, SHAPE).astype("float32"))
    eps = tf.constant(rng.normal(size=SHAPE).astype("float32"))
    upstream = tf.constant(rng.normal(size=SHAPE).astype("float32"))
    return rho, loc, eps, upstream


def _value_and_grads(fn, variables):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = fn()
    return out.numpy(), [None if g is None else g.numpy()
                         for g in tape.gradient(out, variables)]


def test_only_tensors_of_min_size_or_unknown_size_are_fused():
    assert _fused.available(SHAPE)
    assert not _fused.available((8, 8))
    assert _fused.available((None, 512))  # the batch is unknown when traced
    assert _fused.available()


def test_perturbation_variance_and_kl_equal_the_plain_ops_and_their_gradients():
    import tensorflow as tf

    rho, loc, eps, upstream = _inputs()
    floor = learned.sigma_floor("float32")

    def sigma():
        return keras.ops.softplus(rho) + floor

    pairs = {
        "perturbation": (
            lambda: _fused.perturbation(rho, eps, floor) * upstream,
            lambda: sigma() * eps * upstream,
        ),
        "variance": (
            lambda: _fused.variance(rho, floor) * upstream,
            lambda: tf.square(sigma()) * upstream,
        ),
        "kl": (
            lambda: _fused.normal_kl_sum(loc, rho, floor, 0.1, 0.5),
            lambda: tf.reduce_sum(
                tf.math.log(0.5 / sigma())
                + (tf.square(sigma()) + tf.square(loc - 0.1)) / (2 * 0.25)
                - 0.5
            ),
        ),
    }
    for name, (fused, plain) in pairs.items():
        got, got_grads = _value_and_grads(fused, [rho, loc])
        want, want_grads = _value_and_grads(plain, [rho, loc])
        # float32: elementwise to 1e-5 relative; the KL sums 20480 terms in
        # another order (float32 rounding of the sum, about 1e-4 relative).
        np.testing.assert_allclose(got, want, rtol=1e-4 if name == "kl" else 1e-5,
                                   atol=1e-6, err_msg=name)
        for g, w, var in zip(got_grads, want_grads, ("rho", "loc")):
            if w is None:
                assert g is None, (name, var)
            else:
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6,
                                           err_msg=f"{name} d/d{var}")


def test_a_learned_layer_is_the_same_function_fused_or_not(monkeypatch):
    """The same layer, weights and normals: equal outputs, KL and gradients
    with the fused kernels and with the plain chain."""
    import tensorflow as tf

    import noisylayers
    from noisylayers import noise
    from noisylayers.noise import sampling

    x = np.random.default_rng(1).normal(size=(4, 128)).astype("float32")

    def fixed_normals(shape, dtype="float32", seed=None):
        size = int(np.prod(shape))
        values = np.sin(np.arange(size, dtype="float64") * 0.7) * 1.7
        return tf.constant(values.reshape(shape), dtype)

    monkeypatch.setattr(sampling, "normal", fixed_normals)

    def run(enabled):
        monkeypatch.setattr(_fused, "ENABLED", enabled)
        keras.utils.set_random_seed(0)
        layer = noisylayers.NoisyDense(
            160, noise=noise.LearnedGaussian(kl_weight=1.0), seed=3)
        layer.build(x.shape)
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            kl = tf.add_n(layer.losses)
            loss = tf.reduce_sum(tf.square(y)) + kl
        grads = tape.gradient(loss, layer.trainable_variables)
        return y.numpy(), float(kl), [g.numpy() for g in grads]

    fused, plain = run(True), run(False)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-4)
    assert len(fused[2]) == len(plain[2]) == 4  # kernel, bias and their rhos
    for g, p in zip(fused[2], plain[2]):
        np.testing.assert_allclose(g, p, rtol=1e-4, atol=1e-4)
