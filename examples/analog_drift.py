"""Accuracy over time on analog hardware: does hardware-aware training last?

Trains the digits CNN twice, plainly and with `RelativeGaussian` weight
noise (additive noise relative to each tensor's weight range, the usual
hardware-aware-training recipe), then programs each trained model onto
simulated phase-change-memory devices with `noisylayers.hardware` (aihwkit's
PCM model: programming noise, conductance drift, 1/f read noise) and
evaluates it from 1 second to 1 year after programming, with and without
global drift compensation, over several programmings. Prints a Markdown
table and saves the figure.

Run: python examples/analog_drift.py [--epochs 20] [--repeats 10] [--out docs]
(a few minutes on 2 CPU cores).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402
from noisylayers.ablation.models import digits_data  # noqa: E402
from noisylayers.ablation.tables import markdown_table  # noqa: E402

#: 1 s, 1 hour, 1 day, 1 month, 1 year after programming.
TIMES = noisylayers.hardware.DEFAULT_TIMES


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


def table(results, columns, metric):
    """Header and rows: `metric` per time, one column per model and setting."""
    header = ["time since programming"] + [
        f"{name}, {'compensated' if c else 'uncompensated'}" for name, c in columns
    ]
    body = [["exact weights (digital)"] + [
        f"{results[key].reference[metric]:.3f}" for key in columns
    ]]
    for i, row in enumerate(results[columns[0]].rows):
        cells = [row["label"]]
        for key in columns:
            r = results[key].rows[i]
            sd = r[f"{metric}_sd"]
            mean = r[f"{metric}_mean"]
            cells.append(f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}"))
        body.append(cells)
    return header, body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--stddev", type=float, default=0.06)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error(
            f"--epochs and --repeats must be positive. Received: {args.epochs}, "
            f"{args.repeats}"
        )

    kind = noise.RelativeGaussian(args.stddev)
    (x, y), (x_val, y_val) = digits_data()
    keras.utils.set_random_seed(0)
    plain = compile_model(plain_cnn())
    # The same network with noise on every weighted layer, same initial weights.
    aware = compile_model(noisylayers.wrap(plain, noise=kind, seed=0))
    models = {"plain training": plain, "hardware-aware training": aware}
    results = {}
    for name, model in models.items():
        model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
        for compensation in ("global", None):
            result = noisylayers.hardware.accuracy_over_time(
                model, (x_val, y_val), times=TIMES, repeats=args.repeats,
                compensation=compensation,
            )
            results[name, compensation] = result
            print(f"\n{name}: {result}")

    # Markdown tables: accuracy and loss (mean ± sd over the programmings).
    columns = [
        (name, compensation)
        for name in models
        for compensation in ("global", None)
    ]
    print(
        f"\nOn PCM (aihwkit's model, per-tensor ranges, digital biases), mean ± sd "
        f"over {args.repeats} programmings; hardware-aware training: {kind!r} in "
        f"every layer; {args.epochs} epochs."
    )
    for metric in ("accuracy", "loss"):
        print(f"\nValidation {metric}:\n")
        print("\n".join(markdown_table(*table(results, columns, metric))))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharey="row", sharex=True)
    for row, metric in zip(axes, ("accuracy", "loss")):
        for ax, compensation in zip(row, ("global", None)):
            ax.set_title(
                f"{metric}, "
                + ("with global drift compensation" if compensation
                   else "without drift compensation"),
                fontsize=10,
            )
            for name, color in zip(models, ("tab:red", "tab:blue")):
                results[name, compensation].plot(
                    ax=ax, metric=metric, label=name, color=color
                )
            ax.set_ylabel(f"validation {metric}")
            if ax is not axes[0, 0]:
                ax.get_legend().remove()
    axes[0, 0].legend(fontsize=8, loc="lower left")
    for ax in axes[0]:
        ax.set_xlabel("")
    fig.suptitle(
        f"Digits CNN on simulated PCM over time (mean ± sd over {args.repeats} "
        "programmings; dotted: exact weights)"
    )
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "analog_drift.png")
    fig.savefig(path, dpi=110)
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
