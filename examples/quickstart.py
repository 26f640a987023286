"""Quickstart: noisy weights on scikit-learn's digits, saved and reloaded.

Trains a small CNN whose convolution and dense layers carry weight noise,
compares it with the same network without noise, saves the noisy model as
a `.keras` file, reloads it (no `custom_objects`: importing noisylayers
registers its classes) and checks the reloaded model predicts the same.

Run: python examples/quickstart.py [--epochs 30] [--out DIR]
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import noisylayers  # noqa: E402
from noisylayers import noise  # noqa: E402


def load_data(seed=0):
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]  # (n, 8, 8, 1)
    y = digits.target.astype("int32")
    return train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)


def build_model(noisy=True, seed=0):
    """A small CNN; with `noisy=True` its weighted layers get weight noise."""

    def maybe_noisy(layer, kind, layer_seed):
        if not noisy:
            return layer
        return noisylayers.WeightNoise(layer, noise=kind, seed=seed + layer_seed)

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            maybe_noisy(
                keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
                noise.MultiplicativeGaussian(0.2),
                1,
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            maybe_noisy(
                keras.layers.Dense(64, activation="relu"),
                noise.DropConnect(0.3),
                2,
            ),
            maybe_noisy(keras.layers.Dense(10), noise.Gaussian(0.02), 3),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="directory for the .keras file")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1. Received: {args.epochs}")

    x_train, x_test, y_train, y_test = load_data()
    results = {}
    for noisy in (False, True):
        model = build_model(noisy=noisy)
        model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        results["weight noise" if noisy else "no noise"] = accuracy
    for name, accuracy in results.items():
        print(f"{name:>13}: test accuracy {accuracy:.4f}")

    # `model` is the noisy one. Inference uses the clean weights.
    out = args.out or tempfile.mkdtemp(prefix="noisylayers-quickstart-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "quickstart.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    _, reloaded_accuracy = reloaded.evaluate(x_test, y_test, verbose=0)
    same = np.array_equal(
        model.predict(x_test, verbose=0), reloaded.predict(x_test, verbose=0)
    )
    print(f"saved to {path}")
    print(
        f"reloaded: test accuracy {reloaded_accuracy:.4f}, "
        f"identical predictions: {same}"
    )
    if not same:
        raise SystemExit("The reloaded model predicts differently.")


if __name__ == "__main__":
    main()
