"""The default ablation of `noisylayers ablate`: both parts, in one call.

`run_ablation` trains one of the built-in models (`models.TASKS`) with
weight noise in different sets of its layers, over seeds (a training
ablation), then puts noise into one layer at a time of the trained
no-noise model (a sensitivity ablation), and writes the tables, plots,
trained models and runs into one directory. `finish_ablation` does the
second part for a directory that has every training run (after `merge`).
`check_settings` checks the settings without training anything, and
`saved_settings` reads those of a directory. The settings and their
defaults are `settings.AblationSettings`; the result is a
`report.AblationReport`.
"""

import functools
import os

import keras

from noisylayers import control
from noisylayers import diagnostics
from noisylayers import noise as noise_module
from noisylayers.ablation import store
from noisylayers.ablation.models import TASKS
from noisylayers.ablation.plan import make_spec
from noisylayers.ablation.plan import parse_shard
from noisylayers.ablation.report import AblationReport
from noisylayers.ablation.sensitivity import sensitivity_ablation
from noisylayers.ablation.settings import DEFAULTS
from noisylayers.ablation.settings import SENSITIVITY_DRAWS
from noisylayers.ablation.settings import SENSITIVITY_SCALES
from noisylayers.ablation.settings import AblationSettings
from noisylayers.ablation.settings import check_sensitivity_options
from noisylayers.ablation.settings import not_written_by_ablate
from noisylayers.ablation.store import new_out_dir
from noisylayers.ablation.training import training_ablation
from noisylayers.layers.estimators import ESTIMATORS
from noisylayers.noise.spec import short_spec


def saved_settings(directory):
    """The settings of the ablation that `run_ablation` saved in a directory.

    Args:
        directory: A directory written by `run_ablation` (or
            `noisylayers ablate`).

    Returns:
        A dict with the keys of `settings.DEFAULTS`.

    Raises:
        ValueError: if the directory holds no training ablation, or one
            that `run_ablation` did not write.
    """
    return _settings_of(store.load_spec(directory)).as_dict()


def _settings_of(spec):
    settings = AblationSettings.from_spec(spec)
    if settings.model not in TASKS:
        raise not_written_by_ablate()
    return settings


def check_settings(
    model=DEFAULTS["model"],
    noise=DEFAULTS["noise"],
    epochs=DEFAULTS["epochs"],
    seeds=DEFAULTS["seeds"],
    scales=DEFAULTS["scales"],
    samples=DEFAULTS["samples"],
    batch_size=DEFAULTS["batch_size"],
    estimator=DEFAULTS["estimator"],
    sensitivity_scales=SENSITIVITY_SCALES,
    draws=SENSITIVITY_DRAWS,
    out_dir=None,
    shard=None,
):
    """Checks the settings of `run_ablation` without training anything.

    Builds the model once (which checks the noise kind and estimator
    together) and loads its data. Takes the arguments of `run_ablation`.

    Returns:
        The settings as a dict with the keys of `settings.DEFAULTS`,
        normalized (`noise` as `noisylayers.noise.spec.short_spec` writes it), as
        `saved_settings` would read them back.

    Raises:
        ValueError: for a setting out of range, an unknown model, noise
            kind or estimator, a noise kind and estimator that do not work
            with the model's layers, so few `samples` that nothing is left
            to train or validate on, or an `out_dir` holding an ablation
            with other settings.
        TypeError: for arguments of the wrong type.
    """
    settings, _, _, _ = _prepare(
        model, noise, epochs, seeds, scales, samples, batch_size, estimator,
        sensitivity_scales, draws, out_dir, shard,
    )
    return settings.as_dict()


def run_ablation(
    model=DEFAULTS["model"],
    noise=DEFAULTS["noise"],
    epochs=DEFAULTS["epochs"],
    seeds=DEFAULTS["seeds"],
    scales=DEFAULTS["scales"],
    samples=DEFAULTS["samples"],
    batch_size=DEFAULTS["batch_size"],
    estimator=DEFAULTS["estimator"],
    sensitivity_scales=SENSITIVITY_SCALES,
    draws=SENSITIVITY_DRAWS,
    out_dir=None,
    shard=None,
    progress=True,
):
    """Runs the default per-layer noise ablation, as `noisylayers ablate` does.

    1. Training ablation: a built-in model (every layer with weights wrapped
       in `WeightNoise` with `noise`) is trained once per configuration and
       seed: `baseline` (no noise), `all`, `only:L` and `without:L` for each
       noisy layer `L` (see `training_ablation`), and scored on held-out
       data. Every run and its model are saved in `out_dir` as they finish.
    2. Sensitivity ablation: the trained baseline model of the first seed
       gets noise in one layer at a time, at each of `sensitivity_scales`
       times the layer's noise, `draws` times (see `sensitivity_ablation`).

    Both results are written to `out_dir` as `training.{md,csv,json,png}`
    and `sensitivity.{md,csv,json,png}`. Calling again with the same
    `out_dir` and settings skips the finished runs (resumes); with `shard`
    only that shard's runs are trained, and the sensitivity ablation waits
    until every run is there (see `merge` and `finish_ablation`).

    Every run compiles the same steps: on the JAX backend, JAX's persistent
    compilation cache saves most of that time. It is a setting of the whole
    process, so this function leaves it to the caller;
    `noisylayers ablate` turns it on in `out_dir/.jax-cache`.

    Args:
        model: The model and its data (`models.TASKS`): `"cnn"` or `"mlp"`
            on scikit-learn's 8x8 digits, `"lstm"` on generated noisy sine
            waves.
        noise: The noise kind of every noisy layer: a kind, or a spec
            such as `"gaussian:0.1"` or `"dropconnect:rate=0.2"`
            (`noisylayers.noise.parse`).
        epochs: Training epochs per run.
        seeds: Train each configuration with seeds `0 .. seeds - 1`.
        scales: `None`, or noise scales: each noisy configuration is then
            trained at each of them.
        samples: `None` for all the data, or use only this many examples.
        batch_size: The training batch size.
        estimator: The estimator of every noisy layer (`"shared"`,
            `"flipout"`, `"local_reparameterization"`); `None` for the
            noise kind's default.
        sensitivity_scales: The noise scales of the sensitivity ablation.
        draws: Noise draws per layer and scale in the sensitivity ablation.
        out_dir: The directory to write; `None` for a new
            `./ablation-YYYYmmdd-HHMMSS`.
        shard: Optional `"i/n"` or `(i, n)`: train only shard `i` of `n`.
        progress: Whether to show progress bars.

    Returns:
        An `AblationReport`, which unpacks as `(training, sensitivity)`:
        the `TrainingAblationResult` and the `SensitivityAblationResult`
        (`None` while training runs are missing, in other shards).

    Raises:
        ValueError, TypeError: for invalid settings (see `check_settings`).

    Example:

    ```python
    training, sensitivity = noisylayers.ablation.run_ablation(
        model="mlp", noise="dropconnect:0.2", epochs=5, seeds=2, out_dir="abl")
    print(training)                     # the tables
    print(sensitivity)
    ```
    """
    settings, task, kind, data = _prepare(
        model, noise, epochs, seeds, scales, samples, batch_size, estimator,
        sensitivity_scales, draws, out_dir, shard,
    )
    out_dir = out_dir if out_dir is not None else new_out_dir()
    training = training_ablation(
        functools.partial(task.build, noise=kind, estimator=settings.estimator),
        data,
        epochs=settings.epochs,
        seeds=list(range(settings.seeds)),
        scales=None if settings.scales is None else list(settings.scales),
        batch_size=settings.batch_size,
        out_dir=out_dir,
        shard=shard,
        save_models=True,
        metadata=settings.metadata(),
        progress=progress,
    )
    if not training.complete:
        return AblationReport(out_dir, training)
    return finish_ablation(
        training,
        out_dir,
        sensitivity_scales=sensitivity_scales,
        draws=draws,
        progress=progress,
    )


def finish_ablation(
    training,
    out_dir,
    sensitivity_scales=SENSITIVITY_SCALES,
    draws=SENSITIVITY_DRAWS,
    progress=True,
):
    """Writes the training tables and runs the sensitivity ablation.

    The second part of `run_ablation`, for a directory that holds every
    run of a training ablation written by `run_ablation`: e.g. after
    `merge` combined the directories of its shards.

    Args:
        training: The complete `TrainingAblationResult` of `out_dir`.
        out_dir: The directory with the runs and their trained models.
        sensitivity_scales, draws, progress: As in `run_ablation`.

    Returns:
        An `AblationReport`.

    Raises:
        ValueError: if the ablation was not written by `run_ablation` (its
            settings name no model), runs are missing, or the baseline run
            has no saved model.

    Example:

    ```python
    training = noisylayers.ablation.merge("abl-1", "abl-2", out_dir="abl")
    report = noisylayers.ablation.finish_ablation(training, "abl")
    print(report)
    ```
    """
    settings = _settings_of(training.spec)
    if not training.complete:
        raise ValueError(
            f"The training ablation lacks {len(training.missing)} run(s), "
            f"e.g. {training.missing[0]}: run them first (all its shards)."
        )
    first_seed = training.spec["seeds"][0]
    baseline = next(
        r for r in training.records if not r["enabled"] and r["seed"] == first_seed
    )
    if not baseline.get("model"):
        raise ValueError(
            f"{out_dir} has no saved baseline model for the sensitivity "
            "ablation: it was written without `save_models=True`."
        )
    files = training.save(out_dir, "training")
    stats, stats_run = _noise_stats(training, out_dir)
    _, (x_val, y_val) = TASKS[settings.model].data(samples=settings.samples)
    sensitivity = sensitivity_ablation(
        keras.models.load_model(os.path.join(out_dir, baseline["model"])),
        (x_val, y_val),
        scales=list(sensitivity_scales),
        draws=draws,
        metadata={"model": baseline["model"]},
        progress=progress,
    )
    files += sensitivity.save(out_dir, "sensitivity")
    return AblationReport(
        out_dir, training, sensitivity, stats, stats_run, tuple(files)
    )


def _prepare(
    model, noise, epochs, seeds, scales, samples, batch_size, estimator,
    sensitivity_scales, draws, out_dir, shard,
):
    """Checks the settings; returns them with the task, noise kind and data.

    `AblationSettings` checks each value; here, what needs the library:
    the model, noise kind and estimator exist and work together, the data
    leaves enough examples, and `out_dir` holds no other ablation.
    """
    if model not in TASKS:
        raise ValueError(
            f"Unknown model. Expected one of {sorted(TASKS)}. "
            f"Received: model={model!r}"
        )
    task = TASKS[model]
    if isinstance(noise, str):
        kind = noise_module.parse(noise)
    else:
        kind = noise_module.get(noise)
    if estimator is not None and estimator not in ESTIMATORS:
        raise ValueError(
            f"Unknown estimator. Expected one of {list(ESTIMATORS)}. "
            f"Received: estimator={estimator!r}"
        )
    settings = AblationSettings(
        model=model,
        noise=short_spec(kind),
        epochs=epochs,
        seeds=seeds,
        scales=scales,
        samples=samples,
        batch_size=batch_size,
        estimator=estimator,
    )
    check_sensitivity_options(sensitivity_scales, draws)
    parse_shard(shard)
    try:
        built = task.build(noise=kind, estimator=estimator)
    except ValueError as e:
        raise ValueError(
            f"The noise and estimator do not work with the layers of model "
            f"{model!r}: {e}"
        ) from None
    data = task.data(samples=settings.samples)
    (x_train, _), (x_val, _) = data
    if len(x_train) < 2 or len(x_val) < 1:
        raise ValueError(
            f"Argument `samples` leaves {len(x_train)} training and "
            f"{len(x_val)} validation examples: use at least 10. "
            f"Received: samples={samples!r}"
        )
    if out_dir is not None and store.has_spec(out_dir):
        requested = make_spec(
            [layer.name for layer in control.noise_layers(built)],
            list(range(settings.seeds)),
            None if settings.scales is None else list(settings.scales),
            settings.epochs,
            settings.batch_size,
            settings.metadata(),
        )
        store.check_same_spec(store.load_spec(out_dir), requested, out_dir)
    return settings, task, kind, data


def _noise_stats(training, out_dir):
    """`noise_stats` of the first seed's all-noise model, and its run id."""
    run = next(
        (
            r
            for r in training.records
            if r["configuration"] == "all"
            and r["seed"] == training.spec["seeds"][0]
            and r.get("model")
        ),
        None,
    )
    if run is None:
        return None, None
    model = keras.models.load_model(os.path.join(out_dir, run["model"]))
    return diagnostics.noise_stats(model), run["id"]

