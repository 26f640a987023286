"""`noisylayers drift MODEL.keras --data DATA.npz`: accuracy over time on PCM."""

import json
import os
import re

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers_cli import main
from tests.ablation.tiny import build_tiny
from tests.ablation.tiny import make_data

FILES = ("drift.md", "drift.json", "drift.png")
YEAR = 31536000.0


# Each command loads the model again: on JAX, compile its steps once.
pytestmark = pytest.mark.usefixtures("jax_compilation_cache")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Saved models, data and bad files, shared by the module's tests."""
    root = tmp_path_factory.mktemp("drift-cli")
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
        "narrow.npz", "text.txt",
    )}
    plain.save(paths["plain.keras"])
    noisy = build_tiny(names=("a", "b"))
    noisy.fit(x_train, y_train, epochs=1, batch_size=16, verbose=0)
    noisy.save(paths["noisy.keras"])
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    uncompiled.save(paths["uncompiled.keras"])
    np.savez(paths["data.npz"], x=x_val, y=y_val)
    np.savez(paths["no_xy.npz"], inputs=x_val, targets=y_val)
    np.savez(paths["narrow.npz"], x=x_val[:, :3], y=y_val)
    with open(paths["text.txt"], "w") as f:
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
    assert main(["drift", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("MODEL.keras", "--data", "--times", "--repeats", "--per",
                   "--no-compensation", "--seed", "--out", "1s 1h 1d 30d 1y"):
        assert option in text
    assert main(["--help"]) == 0
    assert "drift" in capsys.readouterr().out


def test_plain_model_end_to_end(files, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = ["drift", files["plain.keras"], "--data", files["data.npz"],
            "--times", "1s", "1h", "1y", "--repeats", "2", "--out", out]
    assert main(argv) == 0
    captured = capsys.readouterr()
    for label in ("1 s", "1 h", "1 y"):
        assert re.search(rf"^{label}\s+\d\.\d{{4}} ± \d\.\d{{4}}", captured.out, re.M), label
    assert "global drift compensation" in captured.out
    assert announced(captured.out) == [os.path.join(out, name) for name in FILES]
    with open(os.path.join(out, "drift.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "drift.md")) as f:
        assert "| 1 h |" in f.read()
    with open(os.path.join(out, "drift.json")) as f:
        saved = json.load(f)
    spec = saved["spec"]
    assert spec["times"] == [1.0, 3600.0, YEAR]
    assert spec["repeats"] == 2 and spec["seed"] == 0
    assert spec["per"] == "tensor" and spec["compensation"] == "global"
    assert spec["layers"] == ["hidden", "out"]
    assert spec["metadata"] == {
        "model": os.path.abspath(files["plain.keras"]),
        "data": os.path.abspath(files["data.npz"]),
    }
    assert len(saved["rows"]) == 3 and len(saved["records"]) == 6
    assert all(row["alpha"] > 0.9 for row in saved["rows"])
    # The library gives the same numbers for the same settings.
    model = keras.models.load_model(files["plain.keras"])
    data = np.load(files["data.npz"])
    result = noisylayers.hardware.accuracy_over_time(
        model, (data["x"], data["y"]), times=[1, 3600, YEAR], repeats=2
    )
    assert saved["rows"] == json.loads(json.dumps(result.rows))


def test_noisy_model_options_and_default_out(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["drift", files["noisy.keras"], "--data", files["data.npz"],
            "--times", "30d", "--repeats", "1", "--per", "channel",
            "--no-compensation", "--seed", "3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "no drift compensation" in captured.out
    (made,) = os.listdir(tmp_path)
    assert re.fullmatch(r"drift-\d{8}-\d{6}", made)
    assert sorted(os.listdir(tmp_path / made)) == sorted(FILES)
    with open(tmp_path / made / "drift.json") as f:
        saved = json.load(f)
    assert saved["spec"]["times"] == [2592000.0]
    assert saved["spec"]["per"] == "channel" and saved["spec"]["compensation"] is None
    assert saved["spec"]["seed"] == 3 and saved["rows"][0]["alpha"] is None


BAD = [
    ("missing model", dict(model="missing.keras"), [], r"MODEL \S*missing\.keras: no such file"),
    ("text as model", dict(model="text.txt"), [],
     r"MODEL \S*text\.txt: cannot load it as a Keras model"),
    ("missing data", dict(data="missing.npz"), [], r"--data \S*missing\.npz: cannot read it as \.npz"),
    ("npz without x and y", dict(data="no_xy.npz"), [],
     r"--data \S*no_xy\.npz must hold arrays 'x' and 'y'; it holds \['inputs', 'targets'\]"),
    ("text as data", dict(data="text.txt"), [], r"--data \S*text\.txt"),
    ("uncompiled model", dict(model="uncompiled.keras"), [], r"must be compiled"),
    ("data that does not fit", dict(data="narrow.npz"), [], r"does not fit MODEL"),
    ("unknown unit", {}, ["--times", "1h", "1w"], r"--times: Cannot read '1w' as a duration"),
    ("negative time", {}, ["--times=-1h"], r"--times: Cannot read '-1h'"),
    ("repeated time", {}, ["--times", "1h", "3600"], r"--times must be distinct"),
    ("zero repeats", {}, ["--repeats", "0"], r"--repeats must be a positive integer. Received: --repeats 0"),
    ("repeats not a number", {}, ["--repeats", "many"], r"--repeats must be a positive integer"),
    ("negative seed", {}, ["--seed", "-1"], r"--seed must be a non-negative integer"),
    ("unknown per", {}, ["--per", "row"], r"--per must be 'tensor' or 'channel'. Received: --per row"),
]


def test_bad_input_exits_2_with_one_line(files, capsys):
    out = os.path.join(files["root"], "never")
    for what, paths, options, message in BAD:
        argv = ["drift", files[paths.get("model", "plain.keras")],
                "--data", files[paths.get("data", "data.npz")], "--repeats", "1",
                "--times", "1s", "--out", out, *options]
        assert main(argv) == 2, what
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, (what, captured.err)
        assert lines[0].startswith("noisylayers drift: error: "), what
        assert re.search(message, lines[0]), (what, lines[0])
        assert "Traceback" not in captured.err, what
        assert not os.path.exists(out), what
    assert main(["drift", files["plain.keras"]]) == 2
    assert "the following arguments are required: --data" in capsys.readouterr().err
