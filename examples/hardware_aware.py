"""Hardware-aware training: does training with device-like noise pay off?

Trains the digits CNN twice, plainly and with `RelativeGaussian` weight noise
(additive noise relative to each output channel's weight range, the usual
hardware-aware-training recipe for analog in-memory computing), then
measures each model's per-layer sensitivity to that noise at inference with
`noisylayers.ablation.sensitivity_ablation(..., noise=...)` (which works on
the plain model too), and plots both models' curves in one figure: the
picture that tells a hardware user whether noise-aware training paid off.

Run: python examples/hardware_aware.py [--epochs 20] [--out docs]
(about 2 minutes on 2 CPU cores).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402
from noisylayers.ablation.models import digits_data  # noqa: E402

SCALES = [0.5, 1.0, 2.0, 4.0, 8.0]


def plain_cnn():
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(10, activation="softmax", name="output"),
        ],
        name="cnn",
    )


def compile_model(model):
    model.compile(
        keras.optimizers.Adam(3e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.draws < 1:
        parser.error(
            f"--epochs and --draws must be positive. Received: {args.epochs}, "
            f"{args.draws}"
        )

    kind = noise.RelativeGaussian(0.05, per="channel")
    (x, y), (x_val, y_val) = digits_data()
    keras.utils.set_random_seed(0)
    plain = compile_model(plain_cnn())
    # The same network with noise on every weighted layer, same initial weights.
    noisy = compile_model(noisylayers.wrap(plain, noise=kind, seed=0))
    results = {}
    for name, model in (("plain training", plain), ("noise-aware training", noisy)):
        model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
        results[name] = noisylayers.ablation.sensitivity_ablation(
            model, (x_val, y_val), scales=SCALES, draws=args.draws, noise=kind,
            progress=False,
        )
        print(f"\n{name}: {results[name]}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = results["plain training"].spec["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), sharey=True)
    for ax, layer in zip(axes, layers):
        for (name, result), color in zip(results.items(), ("tab:red", "tab:blue")):
            rows = [r for r in result.rows if r["layer"] == layer]
            mean = np.array([r["accuracy_mean"] for r in rows])
            std = np.array([r["accuracy_std"] or 0.0 for r in rows])
            ax.errorbar(SCALES, mean, yerr=std, color=color, marker="o", capsize=3,
                        label=name)
            ax.axhline(result.spec["clean"]["accuracy"], color=color, ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_title(layer)
        ax.set_xlabel(f"noise scale (x {kind.stddev:g} max|w| per channel)")
    axes[0].set_ylabel("validation accuracy")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Per-layer sensitivity to RelativeGaussian weight noise "
                 "(dotted: without noise)")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "hardware_aware.png")
    fig.savefig(path, dpi=110)
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
