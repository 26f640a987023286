"""`noisylayers ablate --model FILE --data DATA`: a model and data of one's own.

The serial run of a `FILE.py:FUNCTION` model on a `.npz` is in
`test_cli_ray.py` (it is compared with the same ablation on Ray).
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

from noisylayers_cli import main
from tests.own_models import arrays
from tests.own_models import write_data
from tests.own_models import write_models

TINY = ["--epochs", "1", "--seeds", "1", "--batch-size", "16", "--draws", "1",
        "--sensitivity-scales", "1", "--no-progress"]

only_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="backend-independent"
)


def _plain_model(compiled=True):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    if compiled:
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_saved_plain_model_wrapped_with_noise(tmp_path, capsys):
    path = str(tmp_path / "plain.keras")
    _plain_model().save(path)
    _, xy = write_data(str(tmp_path))
    out = str(tmp_path / "out")
    argv = ["ablate", "--model", path, "--data", xy, "--wrap", "gaussian:0.2",
            "--out", out, *TINY]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"Ablation of your model {path} on {xy}, every layer wrapped with gaussian:0.2" in stdout
    assert "Sensitivity ablation" in stdout
    with open(os.path.join(out, "ablation.json")) as f:
        spec = json.load(f)
    assert spec["layers"] == ["hidden", "out"]
    assert spec["metadata"] == {"model": path, "data": xy, "samples": None,
                                "val_split": 0.2, "wrap": "gaussian:0.2"}
    # baseline, all, only:hidden, only:out; each model saved.
    assert len(os.listdir(os.path.join(out, "runs"))) == 4
    assert len(os.listdir(os.path.join(out, "models"))) == 4
    with open(os.path.join(out, "runs", "all__seed0.json")) as f:
        record = json.load(f)
    assert set(record["metrics"]) == {"loss", "accuracy"}  # the file's compile config
    with open(os.path.join(out, "sensitivity.json")) as f:
        assert len(json.load(f)["records"]) == 2

    # Resuming reads the saved settings, model and data included.
    assert main(["ablate", "--resume", out, *TINY[6:]]) == 0
    assert "Resuming the ablation of your model" in capsys.readouterr().out
    # Settings that contradict the saved ones are refused.
    assert main(["ablate", "--resume", out, "--wrap", "gaussian:0.3"]) == 2
    assert "--wrap gaussian:0.3 differs from the setting saved" in capsys.readouterr().err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The user's files, good and bad."""
    directory = tmp_path_factory.mktemp("own")
    d = str(directory)
    write_models(d)
    write_data(d)
    x, y = arrays()
    np.savez(os.path.join(d, "keys.npz"), inputs=x, labels=y)
    np.savez(os.path.join(d, "wide.npz"), x=np.zeros((20, 5), "float32"),
             y=np.zeros(20, "int32"))
    np.savez(os.path.join(d, "lengths.npz"), x=x, y=y[:50])
    with open(os.path.join(d, "text.npz"), "w") as f:
        f.write("not an npz")
    with open(os.path.join(d, "broken.py"), "w") as f:
        f.write("def build(:\n")
    _plain_model(compiled=False).save(os.path.join(d, "uncompiled.keras"))
    return d


OWN = "{d}/own_models.py:build"
BAD = [
    # (argv, a part of the one-line message)
    (["--model", "{d}/missing.py:build", "--data", "{d}/split.npz"],
     "no such file {d}/missing.py"),
    (["--model", "{d}/own_models.py:nope", "--data", "{d}/split.npz"],
     "own_models.py has no 'nope'"),
    (["--model", "{d}/own_models.py:NOT_A_FUNCTION", "--data", "{d}/split.npz"],
     "own_models.py:NOT_A_FUNCTION is not a function"),
    (["--model", "{d}/own_models.py:raises", "--data", "{d}/split.npz"],
     "own_models.py:raises() raised ZeroDivisionError: the builder broke"),
    (["--model", "{d}/own_models.py:not_a_model", "--data", "{d}/split.npz"],
     "must return a compiled keras.Model. Received: 42"),
    (["--model", "{d}/own_models.py:uncompiled", "--data", "{d}/split.npz"],
     "must be compiled"),
    (["--model", "{d}/own_models.py:plain", "--data", "{d}/split.npz"],
     "has no noisy layers"),
    (["--model", "{d}/broken.py:build", "--data", "{d}/split.npz"],
     "running {d}/broken.py raised SyntaxError"),
    (["--model", "no_such_package.models:build", "--data", "{d}/split.npz"],
     "cannot import module 'no_such_package.models' (ModuleNotFoundError"),
    (["--model", "{d}/uncompiled.keras", "--data", "{d}/split.npz"],
     "was saved without compilation"),
    (["--model", "{d}/missing.keras", "--data", "{d}/split.npz"],
     "no such file {d}/missing.keras"),
    (["--model", "{d}/split.npz.keras", "--data", "{d}/split.npz"],
     "no such file"),
    (["--model", OWN], "is a model of your own: give its data with --data"),
    (["--model", "mlp", "--data", "{d}/split.npz"],
     "--data is for a model of your own"),
    (["--model", "mlp", "--wrap", "gaussian"], "--wrap is for a model of your own"),
    (["--val-split", "0.3"], "--val-split is for a model of your own"),
    (["--model", OWN, "--data", "{d}/missing.npz"], "no such file {d}/missing.npz"),
    (["--model", OWN, "--data", "{d}/text.npz"], "cannot read {d}/text.npz as a NumPy .npz"),
    (["--model", OWN, "--data", "{d}/keys.npz"],
     "must hold arrays x_train, y_train, x_val and y_val, or x and y; it holds "
     "['inputs', 'labels']"),
    (["--model", OWN, "--data", "{d}/wide.npz"], "do not fit model"),
    (["--model", OWN, "--data", "{d}/lengths.npz"], "the same number of examples"),
    (["--model", OWN, "--data", "{d}/own_models.py:data_raises"],
     "own_models.py:data_raises() raised OSError: the disk is gone"),
    (["--model", OWN, "--data", "{d}/own_models.py:data_wrong"],
     "must return ((x_train, y_train), (x_val, y_val))"),
    (["--model", OWN, "--data", "{d}/split.npz", "--val-split", "0.3"],
     "Argument `val_split` applies to data given as arrays x and y"),
    (["--model", OWN, "--data", "{d}/own_models.py:data", "--samples", "20"],
     "Argument `samples` applies to data given as arrays x and y"),
    (["--model", OWN, "--data", "{d}/split.npz", "--noise", "gaussian:0.1"],
     "use --wrap KIND[:PARAMS]"),
    (["--model", OWN, "--data", "{d}/split.npz", "--estimator", "flipout"],
     "--estimator applies to the noise of --wrap"),
    (["--model", "{d}/own_models.py:plain", "--data", "{d}/split.npz", "--wrap", "pink"],
     "--wrap must be KIND or KIND:VALUE"),
    (["--cpus-per-run", "2"], "--cpus-per-run sets the resources of each Ray task"),
    # Checked by the front end, without Keras:
    (["--model", "vgg"], "invalid choice: 'vgg'"),
    (["--model", "{d}/own_models.py"], "invalid choice"),
    (["--model", OWN, "--data", "{d}/split.csv"], "argument --data: must be DATA.npz"),
]


@only_tensorflow
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys):
    # One test for all the cases: each costs milliseconds, a test's set-up more.
    out = str(tmp_path / "o")
    for argv, message in BAD:
        argv = [a.format(d=files) for a in argv]
        assert main(["ablate", *argv, "--out", out, *TINY]) == 2, argv
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert lines[0].startswith("noisylayers ablate: error: "), (argv, err)
        assert message.format(d=files) in lines[0], (argv, err)
        assert "Traceback" not in err
        assert not os.path.exists(os.path.join(out, "runs")), argv  # nothing trained


@only_tensorflow
def test_bad_numbers_exit_2(capsys):
    for argv, message in [
        (["--val-split", "1"], "argument --val-split: must be a fraction between 0 and 1"),
        (["--gpus-per-run", "-1"], "argument --gpus-per-run: must be a number >= 0"),
        (["--cpus-per-run", "0.5"], "argument --cpus-per-run: must be a positive integer"),
    ]:
        assert main(["ablate", *argv]) == 2
        assert message in capsys.readouterr().err


@only_tensorflow
def test_ray_missing_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    out = str(tmp_path / "o")
    assert main(["ablate", "--model", "mlp", "--ray", "--out", out, *TINY]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "noisylayers ablate: error: No module named 'ray', needed for running the "
        'ablation on Ray (--ray): pip install "noisylayers[ray]"'
    )
    assert not os.path.exists(out)
