"""`noisylayers evaluate MODEL.keras --data DATA.npz [--ood OOD.npz]`."""

import json
import os

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import noise
from noisylayers import uncertainty
from noisylayers_cli import main

FILES = ("evaluation.md", "evaluation.json", "evaluation.png")


# Each command loads the model again: on JAX, compile its steps once.
pytestmark = pytest.mark.usefixtures("jax_compilation_cache")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved noisy classifier (logits), a plain one, data and bad files."""
    root = tmp_path_factory.mktemp("evaluate-cli")
    keras.utils.set_random_seed(0)
    noisy = keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.NoisyDense(
                8, activation="relu", noise=noise.Gaussian(0.3), seed=1, name="hidden"
            ),
            noisylayers.NoisyDense(3, noise=noise.Gaussian(0.3), seed=2, name="out"),
        ],
        name="noisy",
    )
    plain = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="softmax")], name="plain"
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = rng.integers(0, 3, size=24)
    paths = {name: str(root / name) for name in (
        "noisy.keras", "plain.keras", "test.npz", "xy.npz", "ood.npz", "no_x.npz",
        "wide.npz", "labels.npz", "text.npz",
    )}
    noisy.save(paths["noisy.keras"])
    plain.save(paths["plain.keras"])
    np.savez(paths["test.npz"], x_test=x, y_test=y)
    np.savez(paths["xy.npz"], x=x, y=np.eye(3)[y])
    np.savez(paths["ood.npz"], x=4.0 * rng.normal(size=(16, 4)).astype("float32"))
    np.savez(paths["no_x.npz"], inputs=x)
    np.savez(paths["wide.npz"], x=np.ones((24, 7), "float32"), y=y)
    np.savez(paths["labels.npz"], x=x, y=y + 5)
    with open(paths["text.npz"], "w") as f:
        f.write("not an archive\n")
    paths["missing.keras"] = str(root / "missing.keras")
    paths["x"], paths["y"] = x, y
    return paths


def test_noisy_model_end_to_end(files, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = ["evaluate", files["noisy.keras"], "--data", files["test.npz"],
            "--ood", files["ood.npz"], "--samples", "4", "--seed", "2", "--out", out]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "4 Monte Carlo samples (seed 2)" in stdout
    for metric in ("accuracy", "nll", "brier", "ece", "auroc_entropy"):
        assert f"| {metric} |" in stdout
    written = stdout.split("\nWrote:\n", 1)[1].split()
    assert written == [os.path.join(out, name) for name in FILES]
    with open(os.path.join(out, "evaluation.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "evaluation.md")) as f:
        assert "| auroc_mutual_information |" in f.read()
    with open(os.path.join(out, "evaluation.json")) as f:
        saved = json.load(f)
    assert saved["settings"]["samples"] == 4 and saved["settings"]["seed"] == 2
    assert saved["settings"]["from_logits"] is True
    # The numbers are the library's on the same model, data and seed.
    model = keras.models.load_model(files["noisy.keras"])
    ood = np.load(files["ood.npz"])["x"]
    report = uncertainty.evaluate(
        model, files["x"], files["y"], samples=4, ood=ood, seed=2
    )
    assert saved["metrics"] == pytest.approx(report.metrics, rel=1e-5)


def test_plain_model_with_x_and_y(files, tmp_path, capsys):
    out = str(tmp_path / "plain")
    assert main(["evaluate", files["plain.keras"], "--data", files["xy.npz"],
                 "--out", out]) == 0
    stdout = capsys.readouterr().out
    assert "one deterministic pass" in stdout and "no noisy layers" in stdout
    assert sorted(os.listdir(out)) == sorted(FILES)


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.keras", "--data", "test.npz"], "no such file"),
        (["noisy.keras", "--data", "text.npz"], "cannot read it"),
        (["noisy.keras", "--data", "no_x.npz"],
         "must hold arrays 'x_test' and 'y_test' or 'x' and 'y'"),
        (["noisy.keras", "--data", "test.npz", "--ood", "no_x.npz"], "--ood"),
        (["noisy.keras", "--data", "wide.npz"], "does not fit MODEL"),
        (["noisy.keras", "--data", "labels.npz"], "y does not fit the 3 classes"),
        (["noisy.keras", "--data", "test.npz", "--samples", "0"], "--samples"),
        (["noisy.keras", "--data", "test.npz", "--seed", "-1"], "--seed"),
        (["text.npz", "--data", "test.npz"], "cannot load it as a Keras model"),
    ],
)
def test_bad_files_and_arguments_exit_2_with_one_line(files, args, message, capsys):
    argv = ["evaluate"] + [files[a] if a.endswith((".keras", ".npz")) else a for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("noisylayers evaluate: error:")]
    assert len(lines) == 1, err


def test_help(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("MODEL.keras", "--data", "--ood", "--samples", "--seed", "--out"):
        assert option in text
    assert main(["--help"]) == 0
    assert "evaluate" in capsys.readouterr().out
