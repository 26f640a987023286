"""The command's front end: help without a backend, quiet start-up."""

import os
import subprocess
import sys

import keras
import pytest

import noisylayers_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HELP_WITHOUT_KERAS = """
import sys
import noisylayers_cli
codes = [noisylayers_cli.main(argv) for argv in (
    ["--help"], ["ablate", "--help"], ["sensitivity", "--help"], ["--version"],
    ["ablate", "--epochs", "0"], ["ablate", "--model", "vgg"],
)]
heavy = sorted(m for m in ("keras", "tensorflow", "jax", "noisylayers") if m in sys.modules)
print(codes, heavy)
"""


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONPATH": ROOT, **changes}


def test_help_and_bad_arguments_answer_without_importing_keras():
    child = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_KERAS],
        capture_output=True, text=True, env=_env(), timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0, 2, 2] []"
    assert "must be a positive integer: '0'" in child.stderr
    assert "invalid choice: 'vgg'" in child.stderr


def test_a_command_prints_its_own_output_only():
    # Imports Keras and the backend (whose C++ start-up lines would show),
    # then fails with a one-line usage error.
    child = subprocess.run(
        [sys.executable, "-c", "import sys, noisylayers_cli; sys.exit(noisylayers_cli.main())",
         "sensitivity", "no-such.keras", "--data", "no-such.npz"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert child.returncode == 2
    assert child.stderr == "noisylayers sensitivity: error: MODEL no-such.keras: no such file.\n"
    assert child.stdout == ""


LOG_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1795930895.673679   22311 port.cc:153] oneDNN custom operations are on.\n"
    b"I0000 00:00:1795930895.714782   22311 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n"
    b"W1129 05:31:29.123456    4242 xla_bridge.cc:900] An NVIDIA GPU may be present\n"
)
OWN_LINES = (
    b"Training: 10%\r",  # a progress bar, redrawn without a newline
    b"Training: 20%\n",
    b"I1 am not a log line\n",
    b"Epoch 1/3\n",
)


def _write_interleaved():
    for own, log in zip(OWN_LINES, LOG_LINES.splitlines(keepends=True)):
        os.write(2, log)
        os.write(2, own)


def test_backend_log_lines_are_dropped(capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with noisylayers_cli.quiet_backend_logs():
        _write_interleaved()
        os.write(2, b"unfinished")
    assert capfd.readouterr().err == b"".join(OWN_LINES).decode() + "unfinished"


@pytest.mark.parametrize(
    "start, held",
    [
        (b"", True), (b"I", True), (b"I00", True), (b"W1129 05:3", True),
        (b"WARN", True), (b"To en", True),  # may still become log lines
        (b"Epoch", False), (b"Iteration", False), (b"\rTraining", False),
        (b"I1 am", False), (b"Tomorrow", False),  # cannot: copied at once
    ],
)
def test_an_unfinished_line_is_held_only_while_it_may_be_a_log_line(start, held):
    assert noisylayers_cli._may_become_log_line(start) is held


def test_a_log_level_set_by_the_user_keeps_everything(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with noisylayers_cli.quiet_backend_logs():
        _write_interleaved()
    err = capfd.readouterr().err
    assert "oneDNN custom operations" in err and "Epoch 1/3" in err


def test_standard_error_is_restored_after_an_error(capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with pytest.raises(KeyboardInterrupt):
        with noisylayers_cli.quiet_backend_logs():
            raise KeyboardInterrupt
    os.write(2, LOG_LINES)
    assert capfd.readouterr().err == LOG_LINES.decode()


@pytest.fixture
def help_text(capsys, monkeypatch):
    """The help of a command, on one line (argparse wraps at $COLUMNS)."""
    monkeypatch.setenv("COLUMNS", "10000")

    def text(*argv):
        assert noisylayers_cli.main([*argv, "--help"]) == 0
        return " ".join(capsys.readouterr().out.split())

    return text


def test_noise_kinds_are_the_registry(help_text):
    from noisylayers import noise

    # Restated so that --help needs no Keras; this fails when a kind is missing.
    assert list(noisylayers_cli.NOISE_KINDS) == list(noise.ALIASES)
    text = help_text("ablate")
    for kind in noise.ALIASES:
        assert f" {kind}," in text or f" {kind}." in text, kind


def test_models_are_the_tasks(help_text):
    from noisylayers.ablation.models import TASKS

    assert noisylayers_cli.MODELS == {name: t.description for name, t in TASKS.items()}
    text = help_text("ablate")
    for name, task in TASKS.items():
        assert f"{name}: {task.description}" in text


def test_the_defaults_shown_are_the_library_s(help_text):
    from noisylayers.ablation import plan
    from noisylayers.ablation import settings

    for ours, library in ((noisylayers_cli._settings, settings), (noisylayers_cli._plan, plan)):
        assert os.path.samefile(ours.__file__, library.__file__)
    assert dict(noisylayers_cli._settings.DEFAULTS) == dict(settings.DEFAULTS)
    text = help_text("ablate")

    def shown(option):  # the end of the option's help
        return text.split(f" --{option} ", 1)[1].split(" --", 1)[0]

    for key in ("model", "noise", "epochs", "seeds", "batch_size"):
        option = key.replace("_", "-")
        assert shown(option).endswith(f"Default: {settings.DEFAULTS[key]}"), option
    scales = " ".join(f"{s:g}" for s in settings.SENSITIVITY_SCALES)
    assert shown("sensitivity-scales").endswith(f"Default: {scales}")
    assert shown("draws").endswith(f"Default: {settings.SENSITIVITY_DRAWS}")


@pytest.mark.parametrize("name", ["settings", "plan"])
def test_the_modules_read_by_file_import_the_standard_library_only(name):
    import ast

    with open(os.path.join(ROOT, "noisylayers", "ablation", f"{name}.py")) as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in tree.body:  # what runs when the file loads
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or ".").split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names), imported


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="one backend is enough")
def test_python_m_noisylayers_runs_the_same_command():
    """`python -m noisylayers` works, though the package's `__init__` (Keras) runs first."""
    child = subprocess.run(
        [sys.executable, "-m", "noisylayers", "--help"],
        capture_output=True, text=True, env=_env(TF_CPP_MIN_LOG_LEVEL="3"), timeout=300,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("usage: noisylayers [-h] [--version] COMMAND")
