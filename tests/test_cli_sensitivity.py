"""`noisylayers sensitivity MODEL.keras --data DATA.npz`: any saved model."""

import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from noisylayers_cli import main
from tests.ablation.tiny import build_tiny
from tests.ablation.tiny import make_data

FILES = ("sensitivity.csv", "sensitivity.json", "sensitivity.md", "sensitivity.png")


# Each command loads the model again: on JAX, compile its steps once.
pytestmark = pytest.mark.usefixtures("jax_compilation_cache")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Saved models, data and bad files, shared by the module's tests."""
    root = tmp_path_factory.mktemp("sensitivity-cli")
    (x_train, y_train), (x_val, y_val) = make_data()
    keras.utils.set_random_seed(0)
    plain = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    plain.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    plain.fit(x_train, y_train, epochs=2, batch_size=16, verbose=0)
    paths = {name: str(root / name) for name in (
        "plain.keras", "noisy.keras", "uncompiled.keras", "data.npz", "no_xy.npz",
        "text.txt", "text.keras",
    )}
    plain.save(paths["plain.keras"])
    noisy = build_tiny(names=("a", "b"))
    noisy.fit(x_train, y_train, epochs=1, batch_size=16, verbose=0)
    noisy.save(paths["noisy.keras"])
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    uncompiled.save(paths["uncompiled.keras"])
    np.savez(paths["data.npz"], x=x_val, y=y_val)
    np.savez(paths["no_xy.npz"], inputs=x_val, targets=y_val)
    for name in ("text.txt", "text.keras"):
        with open(paths[name], "w") as f:
            f.write("not a model\n")
    paths["missing.keras"] = str(root / "missing.keras")
    paths["missing.npz"] = str(root / "missing.npz")
    paths["root"] = str(root)
    return paths


def announced(stdout):
    """The files listed after 'Wrote:'."""
    lines = stdout.split("\nWrote:\n", 1)[1].splitlines()
    return [line.strip() for line in lines if line.startswith("  ")]


def test_help(capsys):
    assert main(["sensitivity", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("MODEL.keras", "--data", "--noise", "--layers", "--scales",
                   "--draws", "--out", "--no-progress"):
        assert option in text
    assert main(["--help"]) == 0
    assert "sensitivity" in capsys.readouterr().out


def test_plain_model_end_to_end(files, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = ["sensitivity", files["plain.keras"], "--data", files["data.npz"],
            "--noise", "relative_gaussian:0.05,per=channel", "--scales", "0", "4",
            "--draws", "2", "--out", out, "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    # The table: one line per layer and scale.
    for layer, scale in [("hidden", "0"), ("hidden", "4"), ("out", "0"), ("out", "4")]:
        assert re.search(rf"^{layer}\s+{scale}\s+2\s", captured.out, re.M), (layer, scale)
    assert "RelativeGaussian(stddev=0.05, per='channel')" in captured.out
    assert announced(captured.out) == [os.path.join(out, name) for name in FILES]
    for name in FILES:
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "sensitivity.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "sensitivity.json")) as f:
        saved = json.load(f)
    spec = saved["spec"]
    assert spec["layers"] == ["hidden", "out"]
    assert spec["scales"] == [0.0, 4.0]
    assert spec["draws"] == 2
    assert spec["noise"] == {
        "hidden": "RelativeGaussian(stddev=0.05, per='channel')",
        "out": "RelativeGaussian(stddev=0.05, per='channel')",
    }
    assert spec["metadata"] == {
        "model": os.path.abspath(files["plain.keras"]),
        "data": os.path.abspath(files["data.npz"]),
    }
    assert len(saved["records"]) == 2 * 2 * 2
    with open(os.path.join(out, "sensitivity.csv")) as f:
        header, *rows = f.read().splitlines()
    assert header.startswith("layer,scale,")
    assert len(rows) == 4
    # The saved model is untouched.
    model = keras.models.load_model(files["plain.keras"])
    x = np.load(files["data.npz"])["x"]
    assert model.predict(x, verbose=0).shape == (len(x), 3)


def test_layers_scales_and_default_noise_of_a_noisy_model(files, tmp_path, capsys):
    out = str(tmp_path / "noisy")
    argv = ["sensitivity", files["noisy.keras"], "--data", files["data.npz"],
            "--layers", "b", "--scales", "0.5,2", "--draws", "1", "--out", out,
            "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    with open(os.path.join(out, "sensitivity.json")) as f:
        spec = json.load(f)["spec"]
    assert spec["layers"] == ["b"]
    assert spec["scales"] == [0.5, 2.0]
    assert spec["noise"] == {"b": "Gaussian(stddev=0.3)"}  # the layer's own kind
    # --noise replaces the noisy layers' own kind; globs select layers.
    out2 = str(tmp_path / "noisy2")
    argv = ["sensitivity", files["noisy.keras"], "--data", files["data.npz"],
            "--noise", "quantize:4", "--layers", "[ab]", "--scales", "1",
            "--draws", "1", "--out", out2, "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    with open(os.path.join(out2, "sensitivity.json")) as f:
        spec = json.load(f)["spec"]
    assert spec["layers"] == ["a", "b"]
    assert set(spec["noise"].values()) == {"Quantize(bits=4, per='channel', stddev=0.0)"}


def test_default_out_directory(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["sensitivity", files["plain.keras"], "--data", files["data.npz"],
            "--noise", "stuck_at:0.1", "--layers", "out", "--scales", "1",
            "--draws", "1", "--no-progress"]
    assert main(argv) == 0
    (made,) = os.listdir(tmp_path)
    assert re.fullmatch(r"sensitivity-\d{8}-\d{6}", made)
    assert sorted(os.listdir(tmp_path / made)) == sorted(FILES)
    assert os.path.join(made, "sensitivity.png") in capsys.readouterr().out


BAD_FILES = [
    ("missing model", dict(model="missing.keras"), ["--noise", "relative_gaussian"],
     r"MODEL \S*missing\.keras: no such file"),
    ("text as model", dict(model="text.txt"), ["--noise", "relative_gaussian"],
     r"MODEL \S*text\.txt: cannot load it as a Keras model"),
    ("text named .keras", dict(model="text.keras"), ["--noise", "relative_gaussian"],
     r"MODEL \S*text\.keras: cannot load it as a Keras model"),
    ("npz as model", dict(model="data.npz"), ["--noise", "relative_gaussian"],
     r"MODEL \S*data\.npz: cannot load it as a Keras model"),
    ("missing data", dict(data="missing.npz"), ["--noise", "relative_gaussian"],
     r"--data \S*missing\.npz: cannot read it as \.npz"),
    ("npz without x and y", dict(data="no_xy.npz"), ["--noise", "relative_gaussian"],
     r"--data \S*no_xy\.npz must hold arrays 'x' and 'y'; it holds \['inputs', 'targets'\]"),
    ("text as data", dict(data="text.txt"), ["--noise", "relative_gaussian"],
     r"--data \S*text\.txt"),
    ("uncompiled model", dict(model="uncompiled.keras"),
     ["--noise", "quantize"], r"must be compiled"),
]
BAD_NOISE = [
    ("unknown kind", {}, ["--noise", "pink"], r"Unknown noise kind.*Received: noise='pink'"),
    ("learned kind", {}, ["--noise", "learned_gaussian"], r"without learned variables"),
    ("adaptive kind", {}, ["--noise", "variational_dropout"], r"without learned variables"),
    ("bad value", {}, ["--noise", "relative_gaussian:-1"], r"Received: stddev=-1"),
    ("bad per", {}, ["--noise", "relative_gaussian:per=row"], r"Received: per='row'"),
    ("bad bits", {}, ["--noise", "quantize:1"], r"Received: bits=1"),
    ("bad rate", {}, ["--noise", "stuck_at:1.5"], r"Received: rate=1\.5"),
]
BAD_SELECTION = [
    ("no noise, plain model", {}, [], r"has no noisy layers.*`--noise`"),
    ("unknown layer", {}, ["--noise", "quantize", "--layers", "conv*"],
     r"No layer of model .* named 'conv\*'"),
    ("one unknown layer of several", {}, ["--noise", "quantize", "--layers", "out", "hid*", "x"],
     r"No layer of model .* named 'x'"),
]


@pytest.mark.parametrize(
    "cases", [BAD_FILES, BAD_NOISE, BAD_SELECTION], ids=["files", "noise", "selection"]
)
def test_bad_files_and_arguments(files, cases, capsys):
    for case in cases:
        check_bad(files, case, capsys)


def check_bad(files, case, capsys):
    what, paths, options, message = case
    out = os.path.join(files["root"], "never")
    argv = ["sensitivity", files[paths.get("model", "plain.keras")],
            "--data", files[paths.get("data", "data.npz")], "--draws", "1",
            "--scales", "1", "--no-progress", "--out", out, *options]
    assert main(argv) == 2, what
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, (what, captured.err)
    assert lines[0].startswith("noisylayers sensitivity: error: "), what
    assert re.search(message, lines[0]), (what, lines[0])
    assert "Traceback" not in captured.err, what
    assert not os.path.exists(out), what


def test_data_that_does_not_fit_the_model(files, tmp_path, capsys):
    data = str(tmp_path / "narrow.npz")
    x, y = np.load(files["data.npz"])["x"], np.load(files["data.npz"])["y"]
    np.savez(data, x=x[:, :3], y=y)
    argv = ["sensitivity", files["plain.keras"], "--data", data, "--noise",
            "relative_gaussian", "--draws", "1", "--scales", "1", "--no-progress",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--draws", "0"], "must be a positive integer: '0'"),
        (["--scales", "1,-1"], "must be non-negative numbers: '1,-1'"),
        (["--scales"], "expected at least one argument"),
    ],
)
def test_usage_errors(files, options, message, capsys):
    argv = ["sensitivity", files["plain.keras"], "--data", files["data.npz"], *options]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert main(["sensitivity", files["plain.keras"]]) == 2
    assert "the following arguments are required: --data" in capsys.readouterr().err


def test_the_installed_command(files):
    """The console script, in a fresh process: a bad file, one line, status 2."""
    script = os.path.join(os.path.dirname(sys.executable), "noisylayers")
    if not os.path.isfile(script):
        script = shutil.which("noisylayers")
    command = [script] if script else [sys.executable, "-m", "noisylayers"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run(
        [*command, "sensitivity", files["plain.keras"], "--data", files["no_xy.npz"],
         "--noise", "relative_gaussian:0.05"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert child.returncode == 2, child.stderr
    assert (
        "noisylayers sensitivity: error: --data " in child.stderr
        and "must hold arrays 'x' and 'y'" in child.stderr
    ), child.stderr
    assert "Traceback" not in child.stderr
    assert child.stdout == ""
