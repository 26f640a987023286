"""The benchmarks' shared environment: the backend, quiet logs, what is measured.

Every benchmark runs as a module from the repository root (`python -m
benchmarks.run`, `python -m benchmarks.gradvar`, ...): the root is then on
`sys.path`, so `benchmarks` and the working tree's `noisylayers` import
without touching `sys.path`. `setup_backend` must run before Keras is
imported; `quiet_tensorflow` after.
"""

import datetime
import importlib.abc
import os
import platform
import subprocess
import sys
import warnings

#: The repository root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The backends a benchmark runs on.
BACKENDS = ("tensorflow", "jax")


class BlockTensorFlow(importlib.abc.MetaPathFinder):
    """Makes `import tensorflow` fail, as on a machine that has JAX only."""

    BLOCKED = ("tensorflow", "tf_keras", "tensorflow_probability")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked by the benchmarks' "
                              "--backend jax (it must not need TensorFlow)")
        return None


def setup_backend(backend):
    """Chooses the Keras backend and quiets the logs; before Keras is imported.

    On JAX, TensorFlow cannot be imported at all: what runs there must not
    need it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}: {backend!r}")
    if "keras" in sys.modules:
        raise RuntimeError("keras was imported before the backend was set")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend == "jax":
        sys.meta_path.insert(0, BlockTensorFlow())
    # tfp.layers under tf_keras warn about deprecated calls: not ours.
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(tensorflow_probability|tf_keras)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def quiet_tensorflow():
    """On TensorFlow, hides its Python warnings (retracing notes: every
    contender builds its own functions)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def code_state():
    """The git commit measured, and whether noisylayers/ had local changes.

    Read-only (`--no-optional-locks`: not even the index is refreshed).
    """
    def git(*args):
        try:
            out = subprocess.run(
                ["git", "--no-optional-locks", *args], cwd=ROOT,
                capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return None
    changed = git("status", "--porcelain", "--", "noisylayers")
    return {"commit": commit,
            "noisylayers_modified": None if changed is None else bool(changed)}


def machine_info(backend):
    """The machine, the versions and the code of a measurement."""
    import keras
    import numpy as np

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count()
    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "numpy": np.__version__}
    if backend == "tensorflow":
        import tensorflow as tf
        import tensorflow_probability as tfp
        import tf_keras

        versions.update(tensorflow=tf.__version__, tensorflow_probability=
                        tfp.__version__, tf_keras=tf_keras.__version__)
        devices = [d.device_type for d in tf.config.list_logical_devices()]
    else:
        import jax

        versions["jax"] = jax.__version__
        devices = [str(d) for d in jax.devices()]
    import noisylayers

    versions["noisylayers"] = noisylayers.__version__
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": cores,
        "devices": devices,
        "versions": versions,
        "code": code_state(),
    }


def module_command(module, *args):
    """The command that runs `python -m MODULE ARGS` (from `ROOT`)."""
    return [sys.executable, "-m", module, *args]
