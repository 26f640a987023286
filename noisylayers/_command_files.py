"""The files a `noisylayers` command reads: a saved model, arrays in `.npz`.

Each reader raises a `ValueError` in one line that names the option and the
file (the command reports it, exit status 2); anything else is a bug.
"""

import os

import keras
import numpy as np


class _MissingArrays(ValueError):
    pass


def check_model_file(path):
    """Raises a `ValueError` when `MODEL` names no file."""
    if not os.path.isfile(path):
        raise ValueError(f"MODEL {path}: no such file.")


def load_model(path):
    """The Keras model saved at `path` (`MODEL`).

    Raises:
        ValueError: no such file, or not a model Keras can load.
    """
    check_model_file(path)
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any loading failure is a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"MODEL {path}: cannot load it as a Keras model "
            f"({type(e).__name__}: {first})"
        ) from None


def load_arrays(option, path, names=(("x", "y"),)):
    """The arrays of the first `(x_name, y_name)` pair of `names` that the
    `.npz` file at `path` holds (`y_name` None: `(x, None)`).

    Raises:
        ValueError: the file cannot be read as `.npz`, or holds no pair.
    """
    try:
        with np.load(path) as data:
            files = sorted(data.files)
            for x_name, y_name in names:
                if x_name in files and (y_name is None or y_name in files):
                    return data[x_name], None if y_name is None else data[y_name]
            wanted = " or ".join(
                f"'{x}'" + ("" if y is None else f" and '{y}'") for x, y in names
            )
            raise _MissingArrays(
                f"{option} {path} must hold arrays {wanted}; it holds {files}."
            )
    except _MissingArrays:
        raise
    except (OSError, EOFError) as e:
        raise ValueError(f"{option} {path}: cannot read it as .npz ({e}).") from None
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # e.g. a text file (NumPy reads it as a pickle, and refuses) or a .npy
        raise ValueError(
            f"{option} {path}: cannot read it as a NumPy .npz file ({e})."
        ) from None


def check_fits(model, model_path, option, path, x, y=None):
    """Runs `model` on the first example of `x` (and `y`): data that does not
    fit the model is a bad file, not a bug.

    Returns:
        With `y`: None (the example was evaluated with the compiled loss).
        Without: the model's prediction for the first example.

    Raises:
        ValueError: the model cannot take the data, in one line.
    """
    try:
        if y is not None:
            model.evaluate(x[:1], y[:1], verbose=0)
            return None
        return model.predict(x[:1], verbose=0)
    except Exception as e:  # noqa: BLE001 - Keras raises several types here
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        shapes = f"x has shape {x.shape}" + ("" if y is None else f", y {y.shape}")
        raise ValueError(
            f"{option} {path} does not fit MODEL {model_path}: {shapes} "
            f"({type(e).__name__}: {first})"
        ) from None
