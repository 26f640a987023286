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

`run.py` measures it (unless --no-gradvar) and stores it in its JSON. As a
script this module measures it alone and/or plots it (log variance vs log
batch size, one line per estimator, the fitted slope in the legend):

    python -m benchmarks.gradvar --plot docs/gradient_variance.png
    python -m benchmarks.gradvar --from benchmarks/results/latest-tensorflow.json \
        --plot docs/gradient_variance.png     # re-plot a run.py result
"""

import argparse
import os
import sys

import numpy as np

from benchmarks import env
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


def _variant_gaussian(estimator):
    """The MLP of noisylayers variants (NoisyDense) with one estimator."""

    def make():
        import noisylayers

        from benchmarks.contenders import variant_of

        seeds = iter(range(1, 100))
        model = keras_model(
            MODELS["mlp"],
            wrap=lambda layer: variant_of(
                layer, noisylayers.noise.Gaussian(STDDEV), next(seeds), estimator
            ),
        )
        return _keras_gradient_fn(model, model.layers[0].kernel)

    return make


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
    "nl-variant-flipout-gaussian": (
        "noisylayers NoisyDense, flipout, gaussian", "flipout", False,
        _variant_gaussian("flipout"),
    ),
    "nl-variant-local_reparameterization-gaussian": (
        "noisylayers NoisyDense, local_reparameterization, gaussian",
        "local_reparameterization", False,
        _variant_gaussian("local_reparameterization"),
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


QUICK = (
    "nl-shared-gaussian",
    "nl-variant-flipout-gaussian",
    "nl-variant-local_reparameterization-gaussian",
    "tfp-flipout",
)


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


# --------------------------------------------------------------------------
# The figure, and the script.


def _estimator_note(e):
    return "" if e["estimator"] in e["label"] else f" ({e['estimator']})"


def plot(result, path, title=None):
    """Log variance vs log batch size, one line per estimator, slope in legend.

    Args:
        result: What `run` returns (the "gradient_variance" entry of a
            `run.py` JSON).
        path: The image to write (`.png`, `.svg`, ...).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One colour and marker per estimator; noisylayers solid, others dashed.
    styles = {"shared": ("C0", "o"), "flipout": ("C1", "s"),
              "local_reparameterization": ("C2", "^")}
    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=120)
    batches = np.asarray(result["batches"], dtype="float64")
    for name, e in result["estimators"].items():
        v = np.asarray([e["variance"][str(b)] for b in result["batches"]])
        ours = name.startswith("nl-")
        color, marker = styles.get(e["estimator"], ("C3", "D"))
        ax.plot(batches, v, color=color, marker=marker,
                markerfacecolor=color if ours else "white",
                linestyle="-" if ours else "--", linewidth=2 if ours else 1.2,
                label=f"{e['label']}{_estimator_note(e)}: {e['slope']:+.2f}")
    # A guide of slope -1 (variance ~ 1/B), below every line, for reading
    # the slopes.
    lowest = min(e["variance"][str(result["batches"][-1])]
                 for e in result["estimators"].values())
    ax.plot(batches, 0.4 * lowest * batches[-1] / batches, color="0.5",
            linestyle=":", linewidth=1.2, label="guide: slope -1 (variance ~ 1/B)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches)
    ax.set_xticklabels([str(int(b)) for b in batches])
    ax.set_xlabel("batch size B (log scale)")
    ax.set_ylabel("variance of the minibatch gradient (log scale)")
    ax.set_title(title or (
        f"Gradient variance vs batch size: MLP 784-512-512-10, weight noise "
        f"stddev {result['stddev']},\nd(mean loss)/d(first kernel), "
        f"variance over {result['draws']} noise draws, mean over elements"),
        fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=1, frameon=False, title="estimator: log-log slope "
              "(compare slopes across libraries, not levels: TFP starts from "
              "other weights)", title_fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Gradient variance vs batch size, per estimator.")
    p.add_argument("--backend", default="tensorflow",
                   choices=env.BACKENDS,
                   help="Keras backend (jax: noisylayers estimators only)")
    p.add_argument("--from", dest="source", metavar="RESULTS.json",
                   help="plot the figures of a run.py result (or of this "
                        "script's --out) instead of measuring them")
    p.add_argument("--plot", metavar="PATH", help="write the figure here")
    p.add_argument("--out", metavar="PATH.json", help="write the figures here")
    p.add_argument("--quick", action="store_true",
                   help="fewer batch sizes, draws and estimators")
    p.add_argument("--batches", nargs="+", type=int)
    p.add_argument("--draws", type=int)
    p.add_argument("--estimators", nargs="+", choices=sorted(ESTIMATORS),
                   metavar="NAME", help=f"among {sorted(ESTIMATORS)}")
    args = p.parse_args(argv)

    if args.source:
        import json

        with open(args.source) as f:
            saved = json.load(f)
        # A run.py result, or what this script wrote with --out.
        result = saved if "estimators" in saved else saved.get(
            "gradient_variance")
        if not result:
            p.error(f"{args.source} has no gradient_variance (run.py was "
                    "run with --no-gradvar)")
    else:
        env.setup_backend(args.backend)
        env.quiet_tensorflow()
        batches = args.batches or (
            [16, 64, 256] if args.quick else [16, 32, 64, 128, 256, 512])
        draws = args.draws or (24 if args.quick else 48)
        names = args.estimators or (QUICK if args.quick else None)
        result = run(args.backend, batches, draws, names=names)
        result["backend"] = args.backend
    if args.out:
        import json

        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    for e in result["estimators"].values():
        print(f"{e['label']} ({e['estimator']}): slope {e['slope']:+.2f}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
