import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
