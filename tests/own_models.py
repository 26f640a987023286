"""Files of a user's own model and data, for the tests of `ablate --model FILE`.

A tiny MLP (4 inputs, 3 classes, a few hundred weights) and 64 examples:
one epoch of a run takes well under a second.
"""

import os
import textwrap

import numpy as np

MODELS = r'''
import os
import random

import keras
import noisylayers

DRIVER = {driver}        # the test's process: its builds never fail
DIE_ONCE = {die_once!r}  # a marker file: the first build in a worker dies
FAIL_SEED = {fail_seed}  # the runs of this seed raise, in a worker
REPORT = {report!r}      # a file: each build in a worker says where it runs

HIDDEN = 8


def _seed_is(seed):
    # keras.utils.set_random_seed(seed) seeds Python's generator before
    # each run's build: compare without drawing from it.
    return random.getstate() == random.Random(seed).getstate()


def _worker():
    """In a worker: reports its backend and threads; the injected faults."""
    if os.getpid() == DRIVER:
        return
    if REPORT:
        threads = os.environ.get("XLA_FLAGS", "")
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            threads = tf.config.threading.get_intra_op_parallelism_threads()
        with open(REPORT, "a") as f:
            f.write(f"{{keras.backend.backend()}} {{threads}}\n")
    if DIE_ONCE and not os.path.exists(DIE_ONCE):
        open(DIE_ONCE, "w").close()
        os._exit(1)  # the worker process dies: Ray retries the run
    if FAIL_SEED is not None and _seed_is(FAIL_SEED):
        raise RuntimeError("injected failure")


def plain():
    _worker()
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(HIDDEN, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build():
    return _compiled(noisylayers.wrap(plain(), noise="gaussian:0.3"))


def _compiled(model):
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def one():
    """Noise in the hidden layer only: 2 runs per seed (baseline, all)."""
    return _compiled(noisylayers.wrap(plain(), noise="gaussian:0.3", layers="hidden"))


def uncompiled():
    return keras.Sequential([
        keras.Input((4,)),
        noisylayers.WeightNoise(keras.layers.Dense(3), name="only"),
    ])


def raises():
    raise ZeroDivisionError("the builder broke")


def not_a_model():
    return 42


NOT_A_FUNCTION = 3


def data():
    import numpy as np
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:32], y[:32]), (x[32:], y[32:])


def data_raises():
    raise OSError("the disk is gone")


def data_wrong():
    return [1, 2, 3]
'''


def arrays(n=64, features=4, seed=0):
    """`(x, y)`: `n` examples, 3 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")
    return x, y


def write_models(directory, name="own_models.py", die_once=None, fail_seed=None,
                 report=None):
    """Writes the builders' file; returns its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(
            textwrap.dedent(MODELS).format(
                driver=os.getpid(), die_once=die_once, fail_seed=fail_seed,
                report=report,
            )
        )
    return path


def write_data(directory):
    """Writes `split.npz` (x_train, ...) and `xy.npz` (x, y); returns both paths."""
    x, y = arrays()
    split = os.path.join(directory, "split.npz")
    np.savez(split, x_train=x[:48], y_train=y[:48], x_val=x[48:], y_val=y[48:])
    xy = os.path.join(directory, "xy.npz")
    np.savez(xy, x=x, y=y)
    return split, xy
