"""Is the uncertainty any good? Calibration and out-of-distribution detection.

Trains the digits CNN (scikit-learn's 8x8 digits, nothing downloaded) three
ways: plainly, as a Bayes-by-backprop network (`LearnedGaussian` noise on
every weight, flipout estimator) and with sparse variational dropout
(`VariationalDropout`, local reparameterization), each with its KL scaled by
the number of training examples and warmed up (`KLWarmup`) over the first
half of training. Then `noisylayers.uncertainty.evaluate`
scores each on the validation digits: accuracy, negative log-likelihood,
expected calibration error, and how well the predictive entropy tells
in-distribution digits from two kinds of out-of-distribution inputs made
here: the validation digits rotated by 90 degrees, and uniform noise images.
Prints a Markdown table and writes the reliability diagrams and entropy
histograms of the three models as one figure.

Run: python examples/uncertainty.py [--epochs 40] [--samples 30] [--out docs]
(about 3 minutes on 2 CPU cores).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402
from noisylayers import uncertainty  # noqa: E402
from noisylayers.ablation.models import digits_data  # noqa: E402


def cnn(kind=None, estimator=None):
    """The digits CNN; with a noise kind, every weighted layer is noisy."""
    k = keras.layers

    def conv(filters, name):
        if kind is None:
            return k.Conv2D(filters, 3, padding="same", activation="relu", name=name)
        return noisylayers.NoisyConv2D(
            filters, 3, padding="same", activation="relu", noise=kind(),
            estimator=estimator, name=name,
        )

    def dense(units, activation, name):
        if kind is None:
            return k.Dense(units, activation=activation, name=name)
        return noisylayers.NoisyDense(
            units, activation=activation, noise=kind(), estimator=estimator, name=name
        )

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            conv(16, "conv1"),
            conv(32, "conv2"),
            k.MaxPooling2D(2),
            k.Flatten(),
            dense(64, "relu", "dense"),
            dense(10, "softmax", "output"),
        ]
    )


def out_of_distribution(x, seed=0):
    """The digits rotated by 90 degrees, and uniform noise images."""
    rotated = np.rot90(x, k=1, axes=(1, 2)).copy()
    noise_images = np.random.default_rng(seed).uniform(0.0, 1.0, x.shape)
    return rotated, noise_images.astype("float32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.samples < 1:
        parser.error(
            f"--epochs and --samples must be positive. Received: {args.epochs}, "
            f"{args.samples}"
        )

    (x, y), (x_val, y_val) = digits_data()
    rotated, noise_images = out_of_distribution(x_val)
    n = len(x)
    builders = {
        "plain": lambda: cnn(),
        "LearnedGaussian + flipout": lambda: cnn(
            lambda: noise.LearnedGaussian(init_stddev=0.02, dataset_size=n),
            "flipout",
        ),
        "VariationalDropout": lambda: cnn(
            lambda: noise.VariationalDropout(dataset_size=n)
        ),
    }
    reports, rows = {}, []
    for name, build in builders.items():
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(
            keras.optimizers.Adam(3e-3),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        # KL warm-up over the first half: without it, variational dropout's
        # KL prunes the untrained network to chance accuracy.
        warmup = [] if name == "plain" else [
            noisylayers.callbacks.KLWarmup("linear", duration=max(args.epochs // 2, 1))
        ]
        model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, callbacks=warmup)
        report = uncertainty.evaluate(
            model, x_val, y_val, samples=args.samples, ood=rotated, seed=0
        )
        # The second out-of-distribution set, with the same samples' scores.
        if report.settings["deterministic"]:
            draws = model.predict(noise_images, verbose=0)[None]
        else:
            draws = noisylayers.mc_sample(
                model, noise_images, samples=args.samples, seed=0
            )
        noise_entropy = uncertainty.predictive_entropy(draws)
        reports[name] = report
        rows.append(
            [
                name,
                f"{report['accuracy']:.3f}",
                f"{report['nll']:.3f}",
                f"{report['ece']:.3f}",
                f"{report['auroc_entropy']:.3f}",
                f"{uncertainty.auroc(report.entropy, noise_entropy):.3f}",
                f"{report['mutual_information']:.3f}",
            ]
        )
        print(f"\n{name}:\n{report}")

    from noisylayers.ablation.tables import markdown_table

    header = ["model", "accuracy", "NLL", "ECE", "AUROC rotated", "AUROC noise",
              "mean MI"]
    print(
        f"\nValidation digits ({len(x_val)}), {args.samples} Monte Carlo samples; "
        "AUROC of in- vs out-of-distribution inputs by predictive entropy:\n"
    )
    print("\n".join(markdown_table(header, rows)))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(reports), figsize=(4.2 * len(reports), 7.4))
    for column, (name, report) in zip(axes.T, reports.items()):
        uncertainty.draw_reliability(column[0], report)
        column[0].set_title(
            f"{name}\nECE {report['ece']:.3f}, accuracy {report['accuracy']:.3f}",
            fontsize=10,
        )
        uncertainty.draw_entropy(column[1], report)
        column[1].set_title(
            f"entropy: digits vs rotated, AUROC {report['auroc_entropy']:.3f}",
            fontsize=10,
        )
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "uncertainty.png")
    fig.savefig(path, dpi=100)
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
