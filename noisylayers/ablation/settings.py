"""The settings of `run_ablation` and `noisylayers ablate`: defaults and checks.

`AblationSettings` holds the settings that an ablation's directory keeps
(and that `--resume` reads back), with their defaults; `SENSITIVITY_SCALES`
and `SENSITIVITY_DRAWS` are the defaults of its sensitivity half.

This module imports only the standard library when it loads: the command's
front end (`noisylayers_cli`) reads the defaults for `--help` from this file
without importing the package, hence Keras. Its checks import
`noisylayers._validation` when they run.
"""

import dataclasses
import types

#: The noise scales of a sensitivity ablation, by default.
SENSITIVITY_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)

#: Noise draws per layer and scale of a sensitivity ablation, by default.
SENSITIVITY_DRAWS = 5


@dataclasses.dataclass(frozen=True)
class AblationSettings:
    """The settings of a training ablation of a built-in model.

    Construction checks each value on its own (types and ranges) and
    normalizes it; whether the model, noise kind and estimator exist and
    work together is checked by `noisylayers.ablation.pipeline`, which
    knows them.

    Attributes:
        model: The built-in model and its data (`models.TASKS`).
        noise: The noise kind of every noisy layer, as a spec
            (`"gaussian:0.1"`).
        epochs: Training epochs per run.
        seeds: Train each configuration with seeds `0 .. seeds - 1`.
        scales: `None`, or the noise scales of a scale sweep (a tuple of
            distinct non-negative floats).
        samples: `None` for all the data, or use only this many examples.
        batch_size: The training batch size.
        estimator: The estimator of every noisy layer, or `None` for the
            noise kind's default.

    Raises:
        TypeError: for a value of the wrong type.
        ValueError: for a value out of range.
    """

    model: str = "cnn"
    noise: str = "gaussian:0.1"
    epochs: int = 10
    seeds: int = 3
    scales: tuple | None = None
    samples: int | None = None
    batch_size: int = 32
    estimator: str | None = None

    def __post_init__(self):
        from noisylayers import _validation  # see the module's docstring

        for name in ("model", "noise"):
            _check_text(name, getattr(self, name))
        if self.estimator is not None:
            _check_text("estimator", self.estimator)
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
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def as_dict(self):
        """The settings as a dict with the keys of `DEFAULTS` (`scales` a list)."""
        settings = dataclasses.asdict(self)
        if self.scales is not None:
            settings["scales"] = list(self.scales)
        return settings

    def metadata(self):
        """What a training ablation's spec keeps beyond the training's own."""
        return {
            "model": self.model,
            "noise": self.noise,
            "samples": self.samples,
            **({"estimator": self.estimator} if self.estimator else {}),
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
            noise=meta["noise"],
            epochs=spec["epochs"],
            seeds=len(spec["seeds"]),
            scales=spec["scales"],
            samples=meta.get("samples"),
            batch_size=spec["batch_size"],
            estimator=meta.get("estimator"),
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
