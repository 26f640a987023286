import json
import logging
import os
import re
import subprocess
import sys

import keras
import pytest

from noisylayers_cli import main
from noisylayers.noise.spec import short_spec
from noisylayers.cli import parse_noise

# 48 training and 12 validation examples: whole batches of 16.
TINY = ["--epochs", "1", "--seeds", "1", "--samples", "60", "--batch-size", "16",
        "--draws", "1", "--sensitivity-scales", "1", "4", "--no-progress"]


def announced(stdout):
    """The files listed after 'Wrote:'."""
    lines = stdout.split("\nWrote:\n", 1)[1].splitlines()
    return [line.strip() for line in lines if line.startswith("  ")]


def test_help_documents_the_options(capsys):
    assert main(["--help"]) == 0
    assert "ablate" in capsys.readouterr().out
    assert main(["ablate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--model", "--epochs", "--seeds", "--noise", "--scales",
                   "--out", "--shard", "--resume", "cnn", "mlp", "lstm"):
        assert option in text
    assert main(["merge", "--help"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "usage"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["ablate", "--model", "vgg"], "invalid choice: 'vgg'"),
        (["ablate", "--epochs", "0"], "must be a positive integer: '0'"),
        (["ablate", "--seeds", "three"], "must be a positive integer: 'three'"),
        (["ablate", "--scales", "1,-1"], "must be non-negative numbers: '1,-1'"),
        (["ablate", "--shard", "3/2"], "must be I/N with 1 <= I <= N"),
        (["ablate", "--shard", "0/2"], "must be I/N with 1 <= I <= N"),
        (["ablate", "--noise", "pink"], "Unknown noise kind"),
        (["ablate", "--noise", "gaussian:-1"], "Received: stddev=-1.0"),
        (["ablate", "--noise", "dropconnect:x"], "--noise must be KIND or KIND:VALUE"),
        (["ablate", "--resume", "no-such-dir"], "holds no training ablation"),
        (["merge", "a"], "the following arguments are required: --out"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_arguments_from_the_installed_command():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run(
        [sys.executable, "-m", "noisylayers", "ablate", "--noise", "pink"],
        capture_output=True, text=True, env=env,
    )
    assert child.returncode == 2
    assert "noisylayers ablate: error: Unknown noise kind" in child.stderr
    assert "Traceback" not in child.stderr


def test_short_specs_of_the_settings():
    assert short_spec(parse_noise("gaussian")) == "gaussian:0.01"
    assert short_spec(parse_noise("dropconnect:0.25")) == "dropconnect:0.25"
    assert short_spec(parse_noise("multiplicative_gaussian:1")) == "multiplicative_gaussian:1"


def check_announced_files(stdout, out):
    files = announced(stdout)
    for name in ("training", "sensitivity"):
        for ext in ("md", "csv", "json", "png"):
            assert os.path.join(out, f"{name}.{ext}") in files
    for path in files:
        if "*" not in path:
            assert os.path.getsize(path) > 0, path


def test_ablate_end_to_end_resume_and_merge(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["ablate", "--out", out, *TINY]) == 0
    stdout = capsys.readouterr().out
    check_announced_files(stdout, out)
    # The default CNN has 4 noisy layers: 2 + 2 * 4 configurations.
    assert len(os.listdir(os.path.join(out, "models"))) == 10
    assert len(os.listdir(os.path.join(out, "runs"))) == 10
    assert "(10 trained models)" in stdout
    for config in ("baseline", "all", "only:conv1", "without:output"):
        assert re.search(rf"^{re.escape(config)}\s", stdout, re.M)
    with open(os.path.join(out, "sensitivity.json")) as f:
        sensitivity = json.load(f)
    assert sensitivity["spec"]["layers"] == ["conv1", "conv2", "dense", "output"]
    assert sensitivity["spec"]["metadata"]["model"] == "models/baseline__seed0.keras"
    assert len(sensitivity["records"]) == 4 * 2

    # Resuming a finished ablation trains nothing and reports again.
    os.remove(os.path.join(out, "training.md"))
    assert main(["ablate", "--resume", out, "--epochs", "1", *TINY[6:]]) == 0
    assert "Resuming the ablation" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(out, "training.md"))
    # Options that contradict the saved settings are refused.
    assert main(["ablate", "--resume", out, "--epochs", "2"]) == 2
    assert "--epochs 2 differs from the setting saved" in capsys.readouterr().err
    assert main(["ablate", "--out", out, "--epochs", "2", *TINY[2:]]) == 2
    assert "epochs: saved 1, requested 2" in capsys.readouterr().err

    # A complete directory merges (here: alone) into a new one.
    merged = str(tmp_path / "merged")
    assert main(["merge", out, "--out", merged, "--draws", "1", "--no-progress"]) == 0
    check_announced_files(capsys.readouterr().out, merged)
    assert sorted(os.listdir(os.path.join(merged, "runs"))) == sorted(
        os.listdir(os.path.join(out, "runs"))
    )


def test_shards_and_merge_lstm(tmp_path, capsys):
    out = str(tmp_path / "lstm")
    argv = ["ablate", "--model", "lstm", "--out", out, "--shard", "1/4",
            "--noise", "dropconnect:0.1", "--scales", "0.5,2"]
    assert main(argv + TINY) == 0
    assert "11 run(s) of the ablation are in other shards" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(out, "training.md"))
    with open(os.path.join(out, "ablation.json")) as f:
        spec = json.load(f)
    assert spec["layers"] == ["lstm", "dense", "output"]
    assert spec["scales"] == [0.5, 2.0]
    assert spec["metadata"] == {"model": "lstm", "noise": "dropconnect:0.1", "samples": 60}
    # 4 of the 1 + 7 * 2 = 15 runs.
    assert len(os.listdir(os.path.join(out, "runs"))) == 4
    merged = str(tmp_path / "merged")
    assert main(["merge", out, "--out", merged, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "the directories lack 11 run(s)" in err and "Traceback" not in err
    assert len(os.listdir(os.path.join(merged, "runs"))) == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ablate", "--noise", "dropconnect", "--estimator", "flipout"],
         "Estimator 'flipout' cannot be used"),
        (["ablate", "--samples", "2"], "leaves 1 training and 1 validation examples"),
        (["ablate", "--resume", "a", "--out", "b"],
         "--resume DIR continues the ablation in DIR: leave out --out"),
    ],
)
def test_bad_settings_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # were it to run, it would write here
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_usage_error_is_a_value_error():
    from noisylayers.cli import UsageError

    assert issubclass(UsageError, ValueError)


def test_an_internal_error_shows_its_traceback(tmp_path, monkeypatch):
    """Only a `UsageError` is reported as a bad argument (exit 2)."""
    import noisylayers.cli as cli

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cli.pipeline, "run_ablation", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["ablate", "--model", "mlp", "--out", str(tmp_path / "a"), *TINY])


def test_an_internal_error_in_sensitivity_shows_its_traceback(tmp_path, monkeypatch):
    import keras
    import numpy as np

    import noisylayers.cli as cli

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    model.compile("adam", "mse")
    model.save(str(tmp_path / "m.keras"))
    np.savez(str(tmp_path / "d.npz"), x=np.zeros((4, 4), "float32"), y=np.zeros((4, 3)))

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cli, "sensitivity_ablation", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["sensitivity", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"),
              "--noise", "relative_gaussian", "--no-progress"])


def test_a_missing_optional_dependency_exits_1(tmp_path, monkeypatch, capsys):
    import noisylayers.cli as cli
    from noisylayers.ablation.optional import MissingDependencyError
    from noisylayers.ablation.optional import require

    with pytest.raises(MissingDependencyError, match=r"noisylayers\[ablation\]"):
        require("no_such_module_here", "tests")

    def missing(*args, **kwargs):
        require("no_such_module_here", "the digits data")

    monkeypatch.setattr(cli.pipeline, "run_ablation", missing)
    assert main(["ablate", "--model", "mlp", "--out", str(tmp_path / "a"), *TINY]) == 1
    err = capsys.readouterr().err
    assert "No module named 'no_such_module_here', needed for the digits data" in err
    assert "Traceback" not in err


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's logger")
def test_tensorflow_warnings_are_silenced_while_the_command_runs(tmp_path, monkeypatch):
    import noisylayers.cli as cli
    import tensorflow as tf

    retracing = "5 out of the last 15 calls to <function f> triggered tf.function retracing."
    records = _Records()
    tf.get_logger().addHandler(records)
    caches = []

    def trains_many_models(**kwargs):  # what training many models in one process logs
        tf.get_logger().warning(retracing)
        tf.get_logger().error("an error still shows")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.pipeline, "run_ablation", trains_many_models)
    monkeypatch.setattr(cli, "use_jax_compilation_cache", caches.append)
    out = str(tmp_path / "a")
    try:
        assert main(["ablate", "--model", "mlp", "--out", out, *TINY]) == 130
        assert records.messages == ["an error still shows"]
        tf.get_logger().warning(retracing)  # after the command: shown again
        assert records.messages[-1] == retracing
    finally:
        tf.get_logger().removeHandler(records)
    # The command, not the library, turns on JAX's compilation cache (on JAX).
    assert caches == [os.path.join(out, ".jax-cache")]
