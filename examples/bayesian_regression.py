"""Bayesian regression: learned weight noise gives honest uncertainty.

Trains a small MLP of `NoisyDense` layers with `LearnedGaussian` noise (Bayes
by backprop: a learned standard deviation per weight, a N(0, 1) prior, the KL
scaled by 1 / number of examples) on a 1-D toy problem with data in two
clusters, then draws Monte Carlo predictions with `noisylayers.mc_predict`
and saves a plot of the predictive mean with +-2 std bands: narrow where
there is data, wide between and beyond the clusters.

Run: python examples/bayesian_regression.py [--epochs 300] [--out docs]
(about 1 minute on 2 CPU cores).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402


def make_data(n=1000, seed=0):
    """y = sin(3x) + noise, for x in [-1, -0.3] and [0.3, 1]."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-1.0, -0.3, n // 2), rng.uniform(0.3, 1.0, n // 2)])
    y = np.sin(3.0 * x) + rng.normal(0.0, 0.1, n)
    return x[:, None].astype("float32"), y[:, None].astype("float32")


def build_model(n, seed=0):
    def kind():
        return noise.LearnedGaussian(init_stddev=0.05, prior="normal", dataset_size=n)

    model = keras.Sequential(
        [
            keras.Input((1,)),
            noisylayers.NoisyDense(
                32, activation="relu", noise=kind(), estimator="flipout", seed=seed
            ),
            noisylayers.NoisyDense(
                32, activation="relu", noise=kind(), estimator="flipout", seed=seed + 1
            ),
            noisylayers.NoisyDense(1, noise=kind(), estimator="flipout", seed=seed + 2),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer. Received: {args.epochs}")

    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = build_model(len(x))
    model.fit(x, y, epochs=args.epochs, batch_size=128, verbose=0)

    grid = np.linspace(-2.0, 2.0, 201, dtype="float32")[:, None]
    mean, std = noisylayers.mc_predict(model, grid, samples=100, batch_size=256, seed=0)
    inside = (np.abs(grid[:, 0]) >= 0.3) & (np.abs(grid[:, 0]) <= 1.0)
    outside = np.abs(grid[:, 0]) >= 1.5
    print(f"mean predictive std inside the data:   {std[inside].mean():.3f}")
    print(f"mean predictive std outside (|x| >= 1.5):  {std[outside].mean():.3f}")
    print(noisylayers.noise_stats(model))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(
        grid[:, 0], (mean - 2 * std)[:, 0], (mean + 2 * std)[:, 0],
        color="tab:blue", alpha=0.25, label="mean ± 2 std (mc_predict, 100 samples)",
    )
    ax.plot(grid[:, 0], mean[:, 0], color="tab:blue", label="predictive mean")
    ax.plot(grid[:, 0], np.sin(3 * grid[:, 0]), "k--", lw=1, label="sin(3x)")
    ax.scatter(x[:, 0], y[:, 0], s=8, color="tab:orange", label="training data")
    ax.set_ylim(-3, 3)
    ax.set_xlabel("x")
    ax.set_title("NoisyDense + LearnedGaussian (Bayes by backprop, flipout)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bayesian_regression.png")
    fig.savefig(path, dpi=110)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
