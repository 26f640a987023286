"""Does the table sampler train as well as exact sampling? The digits ablation.

Runs the training ablation of `noisylayers ablate --model mlp` (scikit-learn's
digits; configurations baseline, all, only:L and without:L) over SEEDS seeds,
once with exact Gaussian noise and once with `sampler="table"`, and prints
each configuration's validation accuracy (mean ± sd over the seeds) for both,
the difference of the means and its standard error. A printout, not a test.

Run: python -m benchmarks.sampler_outcome   (SEEDS=N, EPOCHS=N; defaults 5, 10)
"""

import os
import tempfile

from benchmarks import env

env.setup_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from noisylayers.ablation import run_ablation  # noqa: E402

SEEDS = int(os.environ.get("SEEDS", 5))
EPOCHS = int(os.environ.get("EPOCHS", 10))
NOISE = "gaussian:stddev=0.1,sampler={}"


def accuracies(sampler, out_dir):
    report = run_ablation(
        model="mlp",
        noise=NOISE.format(sampler),
        epochs=EPOCHS,
        seeds=SEEDS,
        sensitivity_scales=[1.0],
        draws=1,
        out_dir=out_dir,
        progress=False,
    )
    by_config = {}
    for record in report.training.records:
        by_config.setdefault(record["configuration"], []).append(
            record["metrics"]["accuracy"]
        )
    return by_config


def main():
    with tempfile.TemporaryDirectory() as tmp:
        exact = accuracies("exact", os.path.join(tmp, "exact"))
        table = accuracies("table", os.path.join(tmp, "table"))
    print(
        f"Digits MLP, {NOISE.format('...')}, {EPOCHS} epochs, {SEEDS} seeds, "
        f"{keras.backend.backend()} backend: validation accuracy, mean ± sd"
    )
    print(f"| configuration | exact | table | difference ± SE |")
    print("|---|---|---|---|")
    for config in exact:
        e, t = np.array(exact[config]), np.array(table[config])
        se = np.sqrt(e.var(ddof=1) / len(e) + t.var(ddof=1) / len(t))
        print(
            f"| {config} | {e.mean():.4f} ± {e.std(ddof=1):.4f} "
            f"| {t.mean():.4f} ± {t.std(ddof=1):.4f} "
            f"| {t.mean() - e.mean():+.4f} ± {se:.4f} |"
        )


if __name__ == "__main__":
    main()
