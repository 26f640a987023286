import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The examples are scripts over the public API: they run once, on the
# TensorFlow backend (the library's JAX paths are covered by the unit tests,
# and compiling the examples' models on JAX costs a minute of the suite).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the examples run on the TensorFlow backend only",
)


def test_quickstart_runs_saves_and_reloads(tmp_path):
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py", "--epochs", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "identical predictions: True" in result.stdout
    assert os.path.exists(tmp_path / "quickstart.keras")


def test_quickstart_rejects_bad_epochs():
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py", "--epochs", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2
    assert "Received: 0" in result.stderr
    assert "Traceback" not in result.stderr


def _run_example(name, *args):
    return subprocess.run(
        [sys.executable, f"examples/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bayesian_regression_example_writes_its_plot(tmp_path):
    result = _run_example("bayesian_regression.py", "--epochs", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean predictive std inside the data" in result.stdout
    assert os.path.getsize(tmp_path / "bayesian_regression.png") > 10_000


def test_hardware_aware_example_writes_its_plot(tmp_path):
    result = _run_example(
        "hardware_aware.py", "--epochs", "1", "--draws", "1", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "noise-aware training" in result.stdout
    assert os.path.getsize(tmp_path / "hardware_aware.png") > 10_000


def test_analog_drift_example_writes_its_plot(tmp_path):
    result = _run_example(
        "analog_drift.py", "--epochs", "1", "--repeats", "1", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| time since programming |" in result.stdout
    assert "| 1 y |" in result.stdout
    assert os.path.getsize(tmp_path / "analog_drift.png") > 10_000
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent code; compiling its three noisy CNNs takes "
    "about 2 minutes on JAX (mc_sample and evaluate are tested on JAX)",
)
def test_uncertainty_example_prints_its_table_and_writes_its_figure(tmp_path):
    result = _run_example(
        "uncertainty.py", "--epochs", "1", "--samples", "2", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("plain", "LearnedGaussian + flipout", "VariationalDropout"):
        assert f"| {name} |" in result.stdout
    assert "| model | accuracy | NLL | ECE | AUROC rotated | AUROC noise |" in result.stdout
    assert os.path.getsize(tmp_path / "uncertainty.png") > 10_000
