"""Smoke test: the benchmark entry point runs and writes its JSON.

Timings are not asserted (speed lives in benchmarks/, not in tests); this
only keeps `benchmarks/run.py` working on the backend under test.
"""

import json
import os
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_runs_and_reports_every_contender(tmp_path):
    backend = keras.backend.backend()
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "benchmarks/run.py", "--backend", backend,
            "--configs", "mlp:128", "--rounds", "1", "--chunk", "0.02",
            "--no-memory", "--no-gradvar",
            "--contenders", "nl-shared-gaussian", "nl-shared-gaussian_table",
            "--out", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == backend
    train = report["configs"]["mlp-b128"]["train"]
    assert train["plain"]["ratio"] == 1.0
    assert train["nl-shared-gaussian"]["ms"] > 0
    assert train["nl-shared-gaussian_table"]["ms"] > 0
    if backend == "jax":
        assert report["tensorflow_imported"] is False
