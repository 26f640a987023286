"""The settings of `run_ablation` and `noisylayers ablate`: defaults and checks.

`AblationSettings` holds the settings that an ablation's directory keeps
(and that `--resume` reads back), with their defaults; `SENSITIVITY_SCALES`
and `SENSITIVITY_DRAWS` are the defaults of its sensitivity half.
`parse_source` reads how a model or data set of the user's own is given
(`FILE.py:FUNCTION`, `package.module:FUNCTION`, `MODEL.keras`, `DATA.npz`),
and `normalize_source` writes it as the settings keep it.

This module imports only the standard library when it loads: the command's
front end (`noisylayers_cli`) reads the defaults for `--help` from this file
without importing the package, hence Keras. Its checks import
`noisylayers._validation` when they run.
"""

import dataclasses
import os
import types

#: The noise scales of a sensitivity ablation, by default.
SENSITIVITY_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)

#: Noise draws per layer and scale of a sensitivity ablation, by default.
SENSITIVITY_DRAWS = 5

#: The fraction of a data set given as arrays `x` and `y` kept for
#: validation, by default.
VAL_SPLIT = 0.2


@dataclasses.dataclass(frozen=True)
class AblationSettings:
    """The settings of a training ablation of `run_ablation`.

    Construction checks each value on its own (types and ranges) and
    normalizes it; whether the model, noise kind and estimator exist and
    work together is checked by `noisylayers.ablation.pipeline`, which
    knows them.

    Attributes:
        model: A built-in model and its data (`models.TASKS`), or a model
            of the user's own (`own_model`): `FILE.py:FUNCTION`,
            `package.module:FUNCTION` or `MODEL.keras` (`parse_source`).
        noise: The noise kind of every noisy layer of a built-in model, as
            a spec (`"gaussian:0.1"`); `None` for a model of one's own
            (its noisy layers keep their noise, or see `wrap`).
        epochs: Training epochs per run.
        seeds: Train each configuration with seeds `0 .. seeds - 1`.
        scales: `None`, or the noise scales of a scale sweep (a tuple of
            distinct non-negative floats).
        samples: `None` for all the data, or use only this many examples.
        batch_size: The training batch size.
        estimator: The estimator of every noisy layer, or `None` for the
            noise kind's default.
        data: With a model of one's own, its data: `DATA.npz`,
            `FILE.py:FUNCTION` or `package.module:FUNCTION`.
        val_split: With `data` holding arrays `x` and `y`: the fraction
            kept for validation (a seeded split).
        wrap: With a model of one's own: `None`, or the noise spec with
            which every layer with weights is wrapped (`noisylayers.wrap`).

    Raises:
        TypeError: for a value of the wrong type.
        ValueError: for a value out of range.
    """

    model: str = "cnn"
    noise: str | None = "gaussian:0.1"
    epochs: int = 10
    seeds: int = 3
    scales: tuple | None = None
    samples: int | None = None
    batch_size: int = 32
    estimator: str | None = None
    data: str | None = None
    val_split: float | None = None
    wrap: str | None = None

    def __post_init__(self):
        from noisylayers import _validation  # see the module's docstring

        _check_text("model", self.model)
        for name in ("noise", "estimator", "data", "wrap"):
            if getattr(self, name) is not None:
                _check_text(name, getattr(self, name))
        checked = {
            "epochs": _validation.check_positive_int("epochs", self.epochs),
            "seeds": _validation.check_positive_int("seeds", self.seeds),
            "batch_size": _validation.check_positive_int(
                "batch_size", self.batch_size
            ),
        }
        if self.samples is not None:
            checked["samples"] = _validation.check_positive_int(
                "samples", self.samples
            )
        if self.scales is not None:
            checked["scales"] = tuple(check_scales("scales", self.scales))
        if self.val_split is not None:
            checked["val_split"] = check_val_split(self.val_split)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def as_dict(self):
        """The settings as a dict with the keys of `DEFAULTS` (`scales` a list)."""
        settings = dataclasses.asdict(self)
        if self.scales is not None:
            settings["scales"] = list(self.scales)
        return settings

    @property
    def own_model(self):
        """Whether `model` is a model of the user's own, not a built-in one."""
        return is_own_model(self.model)

    def metadata(self):
        """What a training ablation's spec keeps beyond the training's own."""
        if not self.own_model:
            return {
                "model": self.model,
                "noise": self.noise,
                "samples": self.samples,
                **({"estimator": self.estimator} if self.estimator else {}),
            }
        optional = ("val_split", "wrap", "estimator")
        return {
            "model": self.model,
            "data": self.data,
            "samples": self.samples,
            **{k: getattr(self, k) for k in optional if getattr(self, k) is not None},
        }

    @classmethod
    def from_spec(cls, spec):
        """The settings kept in the spec (`ablation.json`) of an ablation.

        Args:
            spec: The spec of a training ablation written by `run_ablation`.

        Returns:
            An `AblationSettings`.

        Raises:
            ValueError: if the spec's metadata names no model: the ablation
                was not written by `run_ablation`.
        """
        meta = spec.get("metadata") or {}
        if not isinstance(meta.get("model"), str):
            raise not_written_by_ablate()
        return cls(
            model=meta["model"],
            noise=meta.get("noise"),
            epochs=spec["epochs"],
            seeds=len(spec["seeds"]),
            scales=spec["scales"],
            samples=meta.get("samples"),
            batch_size=spec["batch_size"],
            estimator=meta.get("estimator"),
            data=meta.get("data"),
            val_split=meta.get("val_split"),
            wrap=meta.get("wrap"),
        )


#: The default settings, by name (read-only).
DEFAULTS = types.MappingProxyType(
    {field.name: field.default for field in dataclasses.fields(AblationSettings)}
)


def not_written_by_ablate():
    """The error for an ablation directory that `run_ablation` did not write."""
    return ValueError(
        "The directory holds a training ablation that 'noisylayers "
        "ablate' did not write (its settings name no --model)."
    )


def check_scales(name, scales):
    """Checks noise scales: a non-empty list of distinct numbers >= 0.

    Returns:
        The scales as a list of floats.
    """
    from noisylayers import _validation  # see the module's docstring

    return _validation.check_list(
        name, scales, lambda s: _validation.check_number(name, s, low=0.0)
    )


def check_val_split(val_split):
    """Checks a validation fraction: a number strictly between 0 and 1.

    Returns:
        It as a float.
    """
    from noisylayers import _validation  # see the module's docstring

    value = _validation.check_number("val_split", val_split, low=0.0)
    if not 0.0 < value < 1.0:
        raise ValueError(
            "Argument `val_split` must be a fraction strictly between 0 and "
            f"1. Received: val_split={val_split!r}"
        )
    return value


def is_own_model(model):
    """Whether a `model` setting names a model of one's own (not built in)."""
    return isinstance(model, str) and (":" in model or model.endswith(".keras"))


def parse_source(text, argument="model"):
    """Reads how a model or data set of one's own is given.

    Args:
        text: `FILE.py:FUNCTION` (a Python file and a function in it),
            `package.module:FUNCTION` (an importable module), or a file:
            `MODEL.keras` for `argument="model"`, `DATA.npz` for
            `argument="data"`.
        argument: `"model"` or `"data"`, for the files and the messages.

    Returns:
        `("file", path, function)`, `("module", module, function)`, or
        `("keras", path)` / `("npz", path)`.

    Raises:
        ValueError: for any other text.
        TypeError: if `text` is not a string.
    """
    _check_text(argument, text)
    suffix = ".keras" if argument == "model" else ".npz"
    head, colon, name = text.rpartition(":")
    if colon and name.isidentifier() and head:
        if head.endswith(".py"):
            return ("file", head, name)
        if all(part.isidentifier() for part in head.split(".")):
            return ("module", head, name)
    elif text.endswith(suffix) and len(text) > len(suffix):
        return (suffix[1:], text)
    raise ValueError(
        f"Argument `{argument}` must be FILE.py:FUNCTION, "
        f"package.module:FUNCTION or a {suffix} file"
        f"{' (or a built-in model)' if argument == 'model' else ''}. "
        f"Received: {argument}={text!r}"
    )


def normalize_source(text, argument="model"):
    """A model or data spec as the settings keep it: files by absolute path.

    The same text from any working directory then names the same files on
    `--resume`, `merge` and in the shards of an array job.
    """
    source = parse_source(text, argument)
    if source[0] == "file":
        return f"{os.path.abspath(source[1])}:{source[2]}"
    if source[0] in ("keras", "npz"):
        return os.path.abspath(source[1])
    return text


def check_sensitivity_options(sensitivity_scales, draws):
    """Checks the options of the sensitivity half of `run_ablation`.

    Returns:
        `(sensitivity_scales, draws)`: a list of floats and an int.
    """
    from noisylayers import _validation  # see the module's docstring

    return (
        check_scales("sensitivity_scales", sensitivity_scales),
        _validation.check_positive_int("draws", draws),
    )


def _check_text(name, value):
    if not isinstance(value, str):
        raise TypeError(
            f"Argument `{name}` must be a string. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
