import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Makes `import tensorflow` (and TFP) fail, as on a JAX-only machine.
BLOCK_TF = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_probability", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _Block())
"""

USE_WITHOUT_TF = BLOCK_TF + """
import numpy as np
import keras
import noisylayers
assert keras.backend.backend() == "jax"
model = keras.Sequential([
    keras.Input((4,)),
    noisylayers.WeightNoise(keras.layers.Dense(8), noise="dropconnect", seed=1),
    noisylayers.WeightNoise(keras.layers.Dense(1)),
])
model.compile("adam", "mse")
model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=1, verbose=0)
assert not any(m.split(".")[0] == "tensorflow" for m in sys.modules)
print("OK")
"""


def test_jax_backend_works_without_tensorflow():
    result = subprocess.run(
        [sys.executable, "-c", USE_WITHOUT_TF],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_public_names():
    import noisylayers

    for name in ("WeightNoise", "noise"):
        assert name in noisylayers.__all__
        assert hasattr(noisylayers, name)
    for name in ("Gaussian", "MultiplicativeGaussian", "DropConnect", "Noise", "get", "serialize", "deserialize"):
        assert hasattr(noisylayers.noise, name)


# What `import noisylayers` must not load: the ablation toolkit and what only
# it needs, and TFP (only for a TFP prior). Keras itself may load some.
LAZY = """
import sys
import keras
before = set(sys.modules)
import noisylayers
new = set(sys.modules) - before
heavy = {"tqdm", "matplotlib", "sklearn", "tensorflow_probability", "tf_keras"}
assert not {m.split(".")[0] for m in new} & heavy, sorted(new)
assert "noisylayers.ablation" not in sys.modules
assert "ablation" in dir(noisylayers)
from noisylayers import ablation
assert noisylayers.ablation is ablation and callable(ablation.run_ablation)
assert "tqdm" not in sys.modules  # imported when a progress bar is shown
try:
    noisylayers.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
else:
    raise AssertionError("no AttributeError")
print("OK")
"""


def test_import_is_lazy():
    result = subprocess.run(
        [sys.executable, "-c", LAZY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


# The arrows run one way: the command's front end (`noisylayers_cli`, outside
# the package) uses the library, and no library module imports it.
# `noisylayers/__main__.py` is the other entry point (`python -m noisylayers`),
# which runs the front end as the console script does; no module imports it.
ENTRY_POINTS = {"__main__.py"}


def _front_end_uses(source):
    """The lines of `source` that import or name the module `noisylayers_cli`."""
    import ast

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant):  # importlib.import_module("...")
            names = [node.value] if isinstance(node.value, str) else []
        elif isinstance(node, ast.Name):
            names = [node.id]
        else:
            continue
        if any(name.split(".")[0] == "noisylayers_cli" for name in names):
            lines.append(node.lineno)
    return lines


def _package_sources():
    package = os.path.join(ROOT, "noisylayers")
    for folder, _, files in os.walk(package):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, package), f.read()


def test_the_library_does_not_import_its_front_end():
    # The check itself finds each way of reaching the front end.
    for bad in ("import noisylayers_cli", "from noisylayers_cli import DEFAULTS",
                "import importlib\nimportlib.import_module('noisylayers_cli')",
                "def main():\n    return noisylayers_cli.main()"):
        assert _front_end_uses(bad), bad
    assert not _front_end_uses('"""Parsed by `noisylayers_cli`."""\nimport os')

    offenders, checked = {}, 0
    for path, source in _package_sources():
        checked += 1
        if path in ENTRY_POINTS:
            continue
        assert "noisylayers.__main__" not in source, path
        if lines := _front_end_uses(source):
            offenders[path] = lines
    assert checked > 30  # the walk found the package's modules
    assert offenders == {}


def test_the_command_does_not_call_back_into_its_front_end():
    import noisylayers.cli

    assert not hasattr(noisylayers.cli, "main")  # `noisylayers_cli.main` is the one
    assert callable(noisylayers.cli.run)
