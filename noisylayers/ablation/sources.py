"""Models and data of one's own for `run_ablation` and `noisylayers ablate`.

A model is given as text (`settings.parse_source`):

- `FILE.py:FUNCTION` or `package.module:FUNCTION`: a function of no
  arguments that returns a new compiled Keras model with named noisy
  layers (the `build_model` of `training_ablation`);
- `MODEL.keras`: a saved, compiled model. Each run rebuilds its
  architecture with fresh weights (`keras.models.clone_model`, initialised
  from the run's seed) and compiles it with the file's own compile
  configuration (optimizer, loss, metrics).

`ModelSource` turns such a text into the `build_model` of a training
ablation, optionally wrapping every layer with weights in noise first
(`noisylayers.wrap`). It pickles with what it needs (the Python file's
source, the `.keras` file's bytes), so that Ray workers that do not share
the driver's files build the same models.

Data are given as `DATA.npz` (arrays `x_train`, `y_train`, `x_val`,
`y_val`, or `x` and `y` split at random with a fixed seed) or as a
function (`FILE.py:FUNCTION`, `package.module:FUNCTION`) returning
`((x_train, y_train), (x_val, y_val))`; `load_data` reads them.

Every problem with what the user gave (a bad text, a missing file or
function, a function that raises, arrays that do not fit together) is a
`ValueError` or `TypeError` naming it.
"""

import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile
import warnings

import keras
import numpy as np

from noisylayers import noise as noise_module
from noisylayers.ablation.settings import VAL_SPLIT
from noisylayers.ablation.settings import check_val_split
from noisylayers.ablation.settings import parse_source

# What each process loaded, by what it loaded: a Ray worker runs many runs
# of one ablation and loads the user's file or model once.
_LOADED = {}


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else (
        type(error).__name__
    )


def _module_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return f"_noisylayers_source_{stem}"


def _exec_file(path, source, argument):
    """A module made by running `source`, the text of the Python file `path`.

    The file's directory goes on `sys.path` first (where it exists), so
    that the file imports its neighbours as when run as a script.
    """
    key = ("file", os.path.abspath(path), hashlib.sha256(source.encode()).hexdigest())
    if key in _LOADED:
        return _LOADED[key]
    name = _module_name(path)
    spec = importlib.util.spec_from_loader(name, loader=None, origin=path)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(directory) and directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[name] = module  # dataclasses, pickling and Keras look here
    try:
        exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102
    except BaseException as e:
        sys.modules.pop(name, None)
        if not isinstance(e, Exception):
            raise
        raise ValueError(
            f"Argument `{argument}`: running {path} raised {_first_line(e)}"
        ) from e
    _LOADED[key] = module
    return module


def _import_module(name, cwd, argument):
    """Imports a module by name, from `cwd` too (as `python -m` would)."""
    if cwd and os.path.isdir(cwd) and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure is the user's module
        raise ValueError(
            f"Argument `{argument}`: cannot import module {name!r} "
            f"({_first_line(e)})"
        ) from e


def _read_text(path, argument):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ValueError(
            f"Argument `{argument}`: cannot read {path} ({_first_line(e)})"
        ) from None


class _FunctionSource:
    """A function `FILE.py:FUNCTION` or `package.module:FUNCTION`."""

    def __init__(self, text, argument):
        self.text = text
        self.argument = argument
        self.kind, self.where, self.name = parse_source(text, argument)
        self.cwd = os.getcwd()
        self.source = None
        if self.kind == "file":
            if not os.path.isfile(self.where):
                raise ValueError(
                    f"Argument `{argument}`: no such file {self.where}. "
                    f"Received: {argument}={text!r}"
                )
            self.source = _read_text(self.where, argument)
        self.function()  # imports it now: errors show before any training

    def module(self):
        if self.kind == "file":
            return _exec_file(self.where, self.source, self.argument)
        return _import_module(self.where, self.cwd, self.argument)

    def function(self):
        module = self.module()
        function = getattr(module, self.name, None)
        if function is None:
            raise ValueError(
                f"Argument `{self.argument}`: {self.where} has no "
                f"{self.name!r}. Received: {self.argument}={self.text!r}"
            )
        if not callable(function):
            raise ValueError(
                f"Argument `{self.argument}`: {self.where}:{self.name} is "
                f"not a function (it is a {type(function).__name__}). "
                f"Received: {self.argument}={self.text!r}"
            )
        return function

    def call(self):
        function = self.function()
        try:
            return function()
        except Exception as e:  # noqa: BLE001 - the user's function failed
            raise ValueError(
                f"Argument `{self.argument}`: {self.text}() raised "
                f"{_first_line(e)}"
            ) from e

    def custom_objects(self):
        """The classes the file or module defines, for `load_model`."""
        module = self.module()
        return {
            name: value
            for name, value in vars(module).items()
            if isinstance(value, type) and value.__module__ == module.__name__
        }


class ModelSource:
    """The `build_model` of a training ablation from a model's text.

    Calling it returns a new compiled model: the function's model, or a
    clone of the saved model with fresh weights compiled as saved; with
    `wrap`, every layer with weights that has no noise yet is wrapped in
    `noisylayers.WeightNoise` with that noise kind (and `estimator`), and
    the model is compiled again with its compile configuration.

    Constructing one imports the file or module (or loads the `.keras`
    file) and checks it: the errors come before anything is trained.

    Args:
        text: `FILE.py:FUNCTION`, `package.module:FUNCTION` or
            `MODEL.keras` (see `settings.parse_source`).
        wrap: Optional noise spec (`"gaussian:0.1"`) to wrap the model's
            layers with.
        estimator: The estimator of the wrappers (`None`: the kind's
            default); only with `wrap`.

    Raises:
        ValueError: for a bad text, a missing file or function, a file or
            module that fails to import or load, a `.keras` file saved
            without compilation, or a bad `wrap`.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    build = ModelSource("my_models.py:build_cnn", wrap="gaussian:0.05")
    model = build()          # a new compiled model with noisy layers
    ```
    """

    def __init__(self, text, wrap=None, estimator=None):
        self.text = text
        kind = parse_source(text, "model")[0]
        self.wrap = None if wrap is None else noise_module.parse(wrap)
        if estimator is not None and wrap is None:
            raise ValueError(
                "Argument `estimator` of a model of one's own applies to the "
                "noise of `wrap`: its noisy layers have their estimators. "
                f"Received: estimator={estimator!r}, wrap=None"
            )
        self.estimator = estimator
        self._function = None
        self._path = self._digest = None
        if kind == "keras":
            self._path = os.path.abspath(text)
            if not os.path.isfile(self._path):
                raise ValueError(
                    f"Argument `model`: no such file {text}. "
                    f"Received: model={text!r}"
                )
            with open(self._path, "rb") as f:
                self._bytes = f.read()
            self._digest = hashlib.sha256(self._bytes).hexdigest()
            self._template()  # loads and checks it now
        else:
            self._function = _FunctionSource(text, "model")

    def _template(self):
        key = ("keras", self._digest)
        if key in _LOADED:
            return _LOADED[key]
        if os.path.isfile(self._path) and _digest_of(self._path) == self._digest:
            path, temporary = self._path, None
        else:  # a Ray worker without the driver's files
            temporary = tempfile.NamedTemporaryFile(suffix=".keras", delete=False)
            with temporary:
                temporary.write(self._bytes)
            path = temporary.name
        try:
            with warnings.catch_warnings():
                # A model saved before training has no optimizer variables
                # yet; each run compiles a fresh optimizer anyway.
                warnings.filterwarnings(
                    "ignore", message="Skipping variable loading for optimizer"
                )
                model = keras.models.load_model(path)
        except Exception as e:  # noqa: BLE001 - any loading failure is a bad file
            raise ValueError(
                f"Argument `model`: cannot load {self.text} as a Keras model "
                f"({_first_line(e)})"
            ) from None
        finally:
            if temporary is not None:
                os.remove(temporary.name)
        if not getattr(model, "compiled", False) or not model.get_compile_config():
            raise ValueError(
                f"Argument `model`: {self.text} was saved without compilation: "
                "each run compiles its model with the file's optimizer, loss "
                "and metrics. compile() the model before model.save(). "
                f"Received: model={self.text!r}"
            )
        _LOADED[key] = model
        return model

    def __call__(self):
        if self._function is not None:
            model = self._function.call()
            if not isinstance(model, keras.Model):
                raise TypeError(
                    f"Argument `model`: {self.text}() must return a compiled "
                    f"keras.Model. Received: {model!r} (of type "
                    f"{type(model).__name__})"
                )
        else:
            template = self._template()
            model = keras.models.clone_model(template)
            model.compile_from_config(template.get_compile_config())
        if self.wrap is not None:
            model = self._wrapped(model)
        return model

    def _wrapped(self, model):
        from noisylayers.convert import wrap

        config = None
        if getattr(model, "compiled", False):
            config = model.get_compile_config()
        noisy = wrap(model, noise=self.wrap, estimator=self.estimator)
        if config:
            try:
                noisy.compile_from_config(config)
            except Exception as e:  # noqa: BLE001 - e.g. a lambda as the loss
                raise ValueError(
                    f"Argument `wrap`: the wrapped model of {self.text} cannot "
                    "be compiled from its compile configuration "
                    f"({_first_line(e)}): wrap its layers in the function "
                    "itself (noisylayers.wrap) and compile there."
                ) from e
        return noisy

    def custom_objects(self):
        """The classes a Python file or module defines, for `load_model`."""
        if self._function is None:
            return {}
        return self._function.custom_objects()


def _digest_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _leaves(structure):
    return keras.tree.flatten(structure)


def _as_arrays(structure, what, text):
    try:
        return keras.tree.map_structure(np.asarray, structure)
    except Exception as e:  # noqa: BLE001 - ragged lists and the like
        raise ValueError(
            f"Argument `data`: {what} of {text} is not arrays ({_first_line(e)})"
        ) from None


def _check_lengths(x, y, what, text):
    leaves = _leaves(x) + _leaves(y)
    if not leaves:
        raise ValueError(f"Argument `data`: {what} of {text} is empty.")
    lengths = {int(a.shape[0]) if a.ndim else -1 for a in leaves}
    if len(lengths) != 1 or -1 in lengths:
        shapes = [tuple(a.shape) for a in leaves]
        raise ValueError(
            f"Argument `data`: the inputs and targets of {what} of {text} "
            f"must have the same number of examples (first dimension). "
            f"Received shapes {shapes}"
        )
    return lengths.pop()


def _split(x, y, samples, val_split):
    # The same seeded split as the built-in data (`models._split`).
    from noisylayers.ablation.models import _split

    return _split(x, y, samples, val_split, seed=0)


def load_data(text, val_split=None, samples=None):
    """Reads the data of a model of one's own.

    Args:
        text: `DATA.npz` with arrays `x_train`, `y_train`, `x_val`, `y_val`,
            or arrays `x` and `y` (split at random with seed 0, keeping
            `val_split` for validation); or `FILE.py:FUNCTION` /
            `package.module:FUNCTION`, a function of no arguments returning
            `((x_train, y_train), (x_val, y_val))` (inputs may be lists or
            dicts of arrays, for models of several inputs).
        val_split: With arrays `x` and `y`: the fraction kept for
            validation (`None`: `settings.VAL_SPLIT`, 0.2). An error for
            data that come split.
        samples: With arrays `x` and `y`: use only this many examples
            (picked at random with seed 0). An error for data that come
            split.

    Returns:
        `(((x_train, y_train), (x_val, y_val)), val_split)`: NumPy arrays
        (or lists and dicts of them), and the fraction used (`None` for
        data that come split).

    Raises:
        ValueError: for a bad text, a file that is not a .npz with those
            arrays, a function that raises or returns something else,
            inputs and targets of different lengths, or `val_split` or
            `samples` with data that come split.
    """
    kind = parse_source(text, "data")[0]
    if val_split is not None:
        val_split = check_val_split(val_split)
    pair = False
    if kind == "npz":
        train, val, pair = _load_npz(text)
        (x_train, y_train) = train
        if not pair:
            (x_val, y_val) = val
    else:
        result = _FunctionSource(text, "data").call()
        try:
            if len(result) == 4:
                x_train, y_train, x_val, y_val = result
            else:
                (x_train, y_train), (x_val, y_val) = result
        except (TypeError, ValueError):
            raise ValueError(
                f"Argument `data`: {text}() must return ((x_train, y_train), "
                f"(x_val, y_val)). Received: {type(result).__name__} "
                f"{_short(result)}"
            ) from None
    if pair:
        x, y = x_train, y_train
        _check_lengths(x, y, "x and y", text)
        val_split = VAL_SPLIT if val_split is None else val_split
        (x_train, y_train), (x_val, y_val) = _split(x, y, samples, val_split)
    else:
        for name, value in (("val_split", val_split), ("samples", samples)):
            if value is not None:
                raise ValueError(
                    f"Argument `{name}` applies to data given as arrays x "
                    f"and y; {text} comes split into training and "
                    f"validation data. Received: {name}={value!r}"
                )
    train = (
        _as_arrays(x_train, "x_train", text), _as_arrays(y_train, "y_train", text)
    )
    val = _as_arrays(x_val, "x_val", text), _as_arrays(y_val, "y_val", text)
    _check_lengths(*train, "the training data", text)
    _check_lengths(*val, "the validation data", text)
    return (train, val), val_split


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_npz(text):
    """`((x_train, y_train), (x_val, y_val), False)` or `((x, y), None, True)`."""
    if not os.path.isfile(text):
        raise ValueError(
            f"Argument `data`: no such file {text}. Received: data={text!r}"
        )
    try:
        with np.load(text) as arrays:
            names = set(arrays.files)
            if {"x_train", "y_train", "x_val", "y_val"} <= names:
                return (
                    (arrays["x_train"], arrays["y_train"]),
                    (arrays["x_val"], arrays["y_val"]),
                    False,
                )
            if {"x", "y"} <= names:
                return (arrays["x"], arrays["y"]), None, True
    except Exception as e:  # noqa: BLE001 - any reading failure is a bad file
        raise ValueError(
            f"Argument `data`: cannot read {text} as a NumPy .npz file "
            f"({_first_line(e)})"
        ) from None
    raise ValueError(
        f"Argument `data`: {text} must hold arrays x_train, y_train, x_val "
        f"and y_val, or x and y; it holds {sorted(names)}."
    )


def check_fits(model, data, text):
    """Checks that `data` fit `model`: it evaluates two examples of each split.

    Raises:
        ValueError: naming the shapes, if evaluating fails.
    """
    for split, (x, y) in zip(("training", "validation"), data):
        head = keras.tree.map_structure(lambda a: a[:2], (x, y))
        try:
            model.evaluate(*head, verbose=0)
        except Exception as e:  # noqa: BLE001 - Keras raises several types here
            shapes = keras.tree.map_structure(lambda a: tuple(a.shape), (x, y))
            raise ValueError(
                f"Argument `data`: the {split} data of {text} do not fit "
                f"model '{model.name}' (x, y shapes {shapes}): "
                f"{_first_line(e)}"
            ) from None
