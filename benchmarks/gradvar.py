"""Gradient variance against batch size, per estimator.

For a fixed mini-batch (the first B examples of a fixed random data set)
and fixed clean weights, the only randomness left is the weight noise. We
draw it `draws` times, compute the gradient of the *mean* loss w.r.t. the
first Dense kernel (its clean value, or TFP's posterior mean) each time, and
report the per-element variance over draws, averaged over the kernel. An
estimator that decorrelates the noise across the examples of a batch
(Flipout, local reparameterization) gives variance ~ 1/B (log-log slope near
-1); the shared estimator (one weight sample per batch) does not shrink with B
(slope near 0): that is the price of its generality.
"""

import numpy as np

from benchmarks.models import MODELS
from benchmarks.models import Config
from benchmarks.models import data
from benchmarks.models import keras_model
from benchmarks.models import tf_keras_model

STDDEV = 0.05  # about TFP's default posterior scale, softplus(-3) = 0.049


class _Welford:
    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, g):
        g = np.asarray(g, dtype="float64")
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = g.copy(), np.zeros_like(g)
            return
        delta = g - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (g - self.mean)

    def variance(self):
        return float(np.mean(self.m2 / (self.n - 1)))


def _keras_gradient_fn(model, variable):
    """Returns f(x, y) -> gradient of the mean loss w.r.t. `variable`."""
    import keras

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def grad(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            return tape.gradient(loss, variable)

        return lambda x, y: grad(tf.constant(x), tf.constant(y)).numpy()
    if backend == "jax":
        import jax

        index = [id(v) for v in model.trainable_variables].index(id(variable))

        def loss(trainable, non_trainable, x, y):
            y_pred, non_trainable = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return loss_fn(y, y_pred), non_trainable

        grad = jax.jit(jax.grad(loss, has_aux=True))
        state = {
            "t": [v.value for v in model.trainable_variables],
            "n": [v.value for v in model.non_trainable_variables],
        }

        def f(x, y):
            g, state["n"] = grad(state["t"], state["n"], x, y)
            return np.asarray(g[index])

        return f
    raise NotImplementedError(backend)


def _shared_gaussian():
    import noisylayers

    seeds = iter(range(1, 100))
    model = keras_model(
        MODELS["mlp"],
        wrap=lambda layer: noisylayers.WeightNoise(
            layer, noise=noisylayers.noise.Gaussian(STDDEV), seed=next(seeds)
        ),
    )
    return _keras_gradient_fn(model, model.layers[0].layer.kernel)


def _tfp(layer_name):
    def make():
        import tensorflow as tf
        import tensorflow_probability as tfp
        import tf_keras

        model = tf_keras_model(
            MODELS["mlp"], {"dense": getattr(tfp.layers, layer_name)}
        )
        (loc,) = [
            v
            for v in model.layers[0].trainable_variables
            if "kernel_posterior_loc" in v.name
        ]
        loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function(reduce_retracing=True)
        def grad(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))  # data term only
            return tape.gradient(loss, loc)

        return lambda x, y: grad(tf.constant(x), tf.constant(y)).numpy()

    return make


# name -> (label, estimator, needs TensorFlow, factory)
ESTIMATORS = {
    "nl-shared-gaussian": (
        "noisylayers shared, gaussian", "shared", False, _shared_gaussian
    ),
    "tfp-reparameterization": (
        "tfp.layers DenseReparameterization", "shared", True,
        _tfp("DenseReparameterization"),
    ),
    "tfp-local-reparameterization": (
        "tfp.layers DenseLocalReparameterization", "local_reparameterization",
        True, _tfp("DenseLocalReparameterization"),
    ),
    "tfp-flipout": (
        "tfp.layers DenseFlipout", "flipout", True, _tfp("DenseFlipout")
    ),
}


QUICK = ("nl-shared-gaussian", "tfp-flipout")


def run(backend, batches, draws, names=None, log=print):
    x_all, y_all = data(Config("mlp", max(batches)), seed=1)
    results = {}
    for name, (label, estimator, needs_tf, factory) in ESTIMATORS.items():
        if needs_tf and backend != "tensorflow":
            continue
        if names is not None and name not in names:
            continue
        grad = factory()
        variances = {}
        for b in batches:
            x, y = x_all[:b], y_all[:b]
            grad(x, y)  # compile for this shape
            acc = _Welford()
            for _ in range(draws):
                acc.add(grad(x, y))
            variances[b] = acc.variance()
        slope = float(
            np.polyfit(np.log(batches), np.log(list(variances.values())), 1)[0]
        )
        results[name] = {
            "label": label,
            "estimator": estimator,
            "variance": {str(b): v for b, v in variances.items()},
            "slope": slope,
        }
        log(f"  gradient variance {name}: slope {slope:+.2f}")
    return {
        "model": "mlp",
        "stddev": STDDEV,
        "draws": draws,
        "batches": list(batches),
        "variable": "first Dense kernel (TFP: its posterior mean)",
        "estimators": results,
    }
