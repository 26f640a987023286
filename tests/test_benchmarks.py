"""Smoke test: the benchmark entry points run and write their JSON.

Timings are not asserted (speed lives in benchmarks/, not in tests); this
only keeps `python -m benchmarks.run` working on the backend under test.
"""

import ast
import glob
import json
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_runs_and_reports_every_contender(tmp_path):
    backend = keras.backend.backend()
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.run", "--backend", backend,
            "--configs", "mlp:128", "--rounds", "1", "--chunk", "0.02",
            "--no-memory", "--no-gradvar",
            "--contenders", "nl-shared-gaussian", "nl-shared-gaussian_table",
            "bbb-floor", "--out", str(out),
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
    assert train["bbb-floor"]["ms"] > 0
    if backend == "jax":
        assert report["tensorflow_imported"] is False


def _imports_and_path_uses(source):
    """The modules a source imports (`a.b` and `a.b.name`), and its uses of sys.path."""
    modules, path_uses = set(), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Attribute) and node.attr == "path"
              and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            path_uses.append(node.lineno)
    return modules, path_uses


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="no backend involved")
def test_benchmarks_are_modules_that_share_one_environment():
    assert _imports_and_path_uses("import sys\nsys.path.insert(0, '.')")[1] == [2]
    imports = {}
    for path in glob.glob(os.path.join(ROOT, "benchmarks", "*.py")):
        with open(path) as f:
            modules, path_uses = _imports_and_path_uses(f.read())
        name = os.path.splitext(os.path.basename(path))[0]
        assert path_uses == [], f"benchmarks/{name}.py patches sys.path"
        imports[name] = modules
    # One way only: run.py uses gradvar.py; both use env.py.
    assert "benchmarks.gradvar" in imports["run"]
    assert not any(m.startswith("benchmarks.run") for m in imports["gradvar"])
    for name in ("run", "gradvar", "memory", "sampler", "sampler_outcome"):
        assert "benchmarks.env" in imports[name], name
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.gradvar", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "Gradient variance vs batch size" in child.stdout


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="no backend involved")
def test_scaling_fits_log_log_slopes_and_tabulates_them():
    from benchmarks import scaling

    # y = 3 x^2: slope exactly 2; a constant ratio has slope 0.
    assert scaling.slope([1, 10, 100], [3, 300, 30000]) == pytest.approx(2.0)
    assert scaling.slope([1, 10], [2.0, 2.0]) == pytest.approx(0.0)
    assert scaling.slope([5], [1.0]) is None
    points = [
        {"point": p, "time_ms": {"plain": p, "learned shared": 2 * p ** 1.5},
         "time_ratio": {"plain": 1.0, "learned shared": 2 * p ** 0.5},
         "memory_ratio": {"plain": 1.0, "learned shared": 3.0}}
        for p in (1e5, 1e6, 1e7)
    ]
    slopes = scaling.fit(points, ["plain", "learned shared"])
    assert slopes["learned shared"]["time"] == pytest.approx(1.5)
    assert slopes["learned shared"]["time_ratio"] == pytest.approx(0.5)
    assert slopes["learned shared"]["memory_ratio"] == pytest.approx(0.0)
    table = scaling.markdown({"axes": {"width": {"points": points, "slopes": slopes}}})
    assert "| learned shared | 632.46x (3.00x) |" in table
    assert table.count("| - |") == 1  # learned shared is never within 1.1x
    # The width axis builds Dense(d) + Dense(10) with about d^2 parameters.
    spec, batch = scaling.spec_for("width", 1e6)
    assert spec.input_shape == (1000,) and batch == 128


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="no backend involved")
def test_scaling_says_up_to_which_size_noise_is_free():
    from benchmarks import scaling

    points = [{"point": p, "time_ratio": {"plain": 1.0, "a": r, "b": 1.5}}
              for p, r in ((1e6, 1.05), (1e5, 1.0), (1e7, 1.3), (1e8, 1.02))]
    # Sorted by size; the first point over 1.1x ends the free range.
    assert scaling.free_up_to(points, "a") == 1e6
    assert scaling.free_up_to(points, "b") is None
    assert scaling.free_up_to(points, "plain") == 1e8
    assert scaling.parse_points(["width=1e6,1e5", "batch=1"]) == {
        "width": [1e5, 1e6], "batch": [1.0]}
    for bad in ("depth=1", "width", "width=a", "width=0"):
        with pytest.raises(SystemExit, match="Received"):
            scaling.parse_points([bad])
