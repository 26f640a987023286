"""The default ablation of `noisylayers ablate`: both parts, in one call.

`run_ablation` trains one of the built-in models (`models.TASKS`), or a
model of one's own on one's own data (`sources`), with weight noise in
different sets of its layers, over seeds (a training ablation), serially
or on Ray, then puts noise into one layer at a time of the trained
no-noise model (a sensitivity ablation), and writes the tables, plots,
trained models and runs into one directory. `finish_ablation` does the
second part for a directory that has every training run (after `merge`).
`check_settings` checks the settings without training anything, and
`saved_settings` reads those of a directory. The settings and their
defaults are `settings.AblationSettings`; the result is a
`report.AblationReport`.
"""

import dataclasses
import functools
import os

import keras

from noisylayers import control
from noisylayers import diagnostics
from noisylayers import noise as noise_module
from noisylayers.ablation import sources
from noisylayers.ablation import store
from noisylayers.ablation.checks import check_model
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
from noisylayers.ablation.settings import is_own_model
from noisylayers.ablation.settings import normalize_source
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
    if settings.model not in TASKS and not (settings.own_model and settings.data):
        raise not_written_by_ablate()
    return settings


def check_settings(
    model=DEFAULTS["model"],
    noise=None,
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
    data=DEFAULTS["data"],
    val_split=DEFAULTS["val_split"],
    wrap=DEFAULTS["wrap"],
):
    """Checks the settings of `run_ablation` without training anything.

    Builds the model once (which checks the noise kind and estimator
    together) and loads its data (a model of one's own evaluates two
    examples of each split, which checks that they fit). Takes the
    arguments of `run_ablation` (but `progress` and the Ray ones).

    Returns:
        The settings as a dict with the keys of `settings.DEFAULTS`,
        normalized (`noise` as `noisylayers.noise.spec.short_spec` writes it), as
        `saved_settings` would read them back.

    Raises:
        ValueError: for a setting out of range, an unknown model, noise
            kind or estimator, a noise kind and estimator that do not work
            with the model's layers, so few `samples` that nothing is left
            to train or validate on, or an `out_dir` holding an ablation
            with other settings; for a model of one's own, a bad model or
            `data` (a missing file or function, one that raises, data that
            do not fit the model), no noisy layers and no `wrap`, or
            `data`, `val_split` or `wrap` with a built-in model.
        TypeError: for arguments of the wrong type.
    """
    prepared = _prepare(
        model, noise, epochs, seeds, scales, samples, batch_size, estimator,
        sensitivity_scales, draws, out_dir, shard, data, val_split, wrap,
    )
    return prepared.settings.as_dict()


def run_ablation(
    model=DEFAULTS["model"],
    noise=None,
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
    data=DEFAULTS["data"],
    val_split=DEFAULTS["val_split"],
    wrap=DEFAULTS["wrap"],
    ray=None,
    cpus_per_run=1,
    gpus_per_run=0,
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

    A model of one's own comes with its data: `model` names a function
    that builds it (`"my_models.py:build"`, `"package.module:build"`, the
    `build_model` of `training_ablation`) or a saved compiled model
    (`"model.keras"`: each run clones it with fresh weights and compiles
    it as saved), and `data` its data (see `sources.load_data`). Its noisy
    layers keep their noise; `wrap` wraps a model without noise first.

    With `ray`, the training runs are Ray tasks (see `training_ablation`);
    the sensitivity ablation runs here.

    Every run compiles the same steps: on the JAX backend, JAX's persistent
    compilation cache saves most of that time. It is a setting of the whole
    process, so this function leaves it to the caller;
    `noisylayers ablate` turns it on in `out_dir/.jax-cache`.

    Args:
        model: A built-in model and its data (`models.TASKS`): `"cnn"` or
            `"mlp"` on scikit-learn's 8x8 digits, `"lstm"` on generated
            noisy sine waves. Or a model of one's own:
            `"FILE.py:FUNCTION"` or `"package.module:FUNCTION"` (a
            function of no arguments returning a new compiled model with
            named noisy layers), or `"MODEL.keras"` (a saved compiled
            model).
        noise: The noise kind of every noisy layer of a built-in model: a
            kind, or a spec such as `"gaussian:0.1"` or
            `"dropconnect:rate=0.2"` (`noisylayers.noise.parse`); `None`
            for `"gaussian:0.1"`. Not for a model of one's own (see
            `wrap`).
        epochs: Training epochs per run.
        seeds: Train each configuration with seeds `0 .. seeds - 1`.
        scales: `None`, or noise scales: each noisy configuration is then
            trained at each of them.
        samples: `None` for all the data, or use only this many examples.
        batch_size: The training batch size.
        estimator: The estimator of every noisy layer (`"shared"`,
            `"flipout"`, `"local_reparameterization"`); `None` for the
            noise kind's default. For a model of one's own, only with
            `wrap`.
        sensitivity_scales: The noise scales of the sensitivity ablation.
        draws: Noise draws per layer and scale in the sensitivity ablation.
        out_dir: The directory to write; `None` for a new
            `./ablation-YYYYmmdd-HHMMSS`.
        shard: Optional `"i/n"` or `(i, n)`: train only shard `i` of `n`.
        progress: Whether to show progress bars.
        data: With a model of one's own (required then): `"DATA.npz"`
            with arrays `x_train`, `y_train`, `x_val`, `y_val` (or `x` and
            `y`, split at random with a fixed seed), or
            `"FILE.py:FUNCTION"` / `"package.module:FUNCTION"` returning
            `((x_train, y_train), (x_val, y_val))`.
        val_split: With `data` holding `x` and `y`: the fraction kept for
            validation (`None`: 0.2).
        wrap: With a model of one's own: `None`, or a noise spec
            (`"gaussian:0.1"`): every layer with weights that has no noise
            is wrapped in `WeightNoise` with it (`noisylayers.wrap`).
        ray: `None` to train the runs here; `"local"` or a Ray address to
            train them as Ray tasks (see `training_ablation`).
        cpus_per_run: The Ray CPUs of each run.
        gpus_per_run: The Ray GPUs of each run.

    Returns:
        An `AblationReport`, which unpacks as `(training, sensitivity)`:
        the `TrainingAblationResult` and the `SensitivityAblationResult`
        (`None` while training runs are missing: in other shards, or
        failed on Ray, see the result's `failed`).

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
    prepared = _prepare(
        model, noise, epochs, seeds, scales, samples, batch_size, estimator,
        sensitivity_scales, draws, out_dir, shard, data, val_split, wrap,
    )
    settings = prepared.settings
    out_dir = out_dir if out_dir is not None else new_out_dir()
    training = training_ablation(
        prepared.build_model,
        prepared.data,
        epochs=settings.epochs,
        seeds=list(range(settings.seeds)),
        scales=None if settings.scales is None else list(settings.scales),
        batch_size=settings.batch_size,
        out_dir=out_dir,
        shard=shard,
        save_models=True,
        metadata=settings.metadata(),
        progress=progress,
        ray=ray,
        cpus_per_run=cpus_per_run,
        gpus_per_run=gpus_per_run,
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
    custom_objects = {}
    if settings.own_model:  # its file's classes, for load_model
        custom_objects = _own_model(settings).custom_objects()
        _, (x_val, y_val) = _own_data(settings)[0]
    else:
        _, (x_val, y_val) = TASKS[settings.model].data(samples=settings.samples)
    stats, stats_run = _noise_stats(training, out_dir, custom_objects)
    sensitivity = sensitivity_ablation(
        keras.models.load_model(
            os.path.join(out_dir, baseline["model"]),
            custom_objects=custom_objects,
        ),
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


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """Checked settings, with what `training_ablation` needs for them."""

    settings: AblationSettings
    build_model: object
    data: tuple


def _prepare(
    model, noise, epochs, seeds, scales, samples, batch_size, estimator,
    sensitivity_scales, draws, out_dir, shard, data, val_split, wrap,
):
    """Checks the settings; returns them with the model builder and data.

    `AblationSettings` checks each value; here, what needs the library:
    the model, noise kind and estimator exist and work together, the data
    leave enough examples (and fit a model of one's own), and `out_dir`
    holds no other ablation.
    """
    # Each value on its own first, so that a bad one is named before any
    # file is read.
    common = AblationSettings(
        epochs=epochs,
        seeds=seeds,
        scales=scales,
        samples=samples,
        batch_size=batch_size,
        estimator=estimator,
    )
    samples = common.samples
    if isinstance(model, str) and is_own_model(model):
        prepared = _prepare_own(
            model, noise, estimator, samples, data, val_split, wrap
        )
        settings_kwargs, build_model, arrays = prepared
    else:
        for name, value in (("data", data), ("val_split", val_split), ("wrap", wrap)):
            if value is not None:
                raise ValueError(
                    f"Argument `{name}` is for a model of one's own "
                    f"(model='FILE.py:FUNCTION', 'package.module:FUNCTION' or "
                    f"'MODEL.keras'): the built-in model {model!r} brings its "
                    f"data and noise. Received: {name}={value!r}"
                )
        settings_kwargs, build_model, arrays = _prepare_builtin(
            model, noise, estimator, samples
        )
    settings = dataclasses.replace(common, **settings_kwargs)
    check_sensitivity_options(sensitivity_scales, draws)
    parse_shard(shard)
    built = _build_checked(build_model, settings)
    (x_train, y_train), (x_val, y_val) = arrays
    n_train, n_val = _length(x_train), _length(x_val)
    if n_train < 2 or n_val < 1:
        raise ValueError(
            f"Argument `samples` leaves {n_train} training and "
            f"{n_val} validation examples: use at least 10. "
            f"Received: samples={samples!r}"
        )
    if settings.own_model:
        sources.check_fits(built, arrays, settings.data)
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
    return _Prepared(settings, build_model, arrays)


def _length(x):
    return len(keras.tree.flatten(x)[0])


def _prepare_builtin(model, noise, estimator, samples):
    if model not in TASKS:
        raise ValueError(
            f"Unknown model. Expected one of {sorted(TASKS)}, or a model of "
            "one's own: 'FILE.py:FUNCTION', 'package.module:FUNCTION' or "
            f"'MODEL.keras'. Received: model={model!r}"
        )
    task = TASKS[model]
    noise = DEFAULTS["noise"] if noise is None else noise
    if isinstance(noise, str):
        kind = noise_module.parse(noise)
    else:
        kind = noise_module.get(noise)
    _check_estimator(estimator)
    build_model = functools.partial(task.build, noise=kind, estimator=estimator)
    return (
        {"model": model, "noise": short_spec(kind)},
        build_model,
        task.data(samples=samples),
    )


def _check_estimator(estimator):
    if estimator is not None and estimator not in ESTIMATORS:
        raise ValueError(
            f"Unknown estimator. Expected one of {list(ESTIMATORS)}. "
            f"Received: estimator={estimator!r}"
        )


def _prepare_own(model, noise, estimator, samples, data, val_split, wrap):
    if noise is not None:
        raise ValueError(
            "Argument `noise` sets the noise of the built-in models: a model "
            "of one's own keeps the noise of its noisy layers, or gets "
            "noise with `wrap` (--wrap KIND[:PARAMS]). "
            f"Received: noise={noise!r}, model={model!r}"
        )
    if data is None:
        raise ValueError(
            "Argument `data` is required with a model of one's own: a .npz "
            "file or a function returning ((x_train, y_train), (x_val, "
            f"y_val)). Received: data=None, model={model!r}"
        )
    _check_estimator(estimator)
    model = normalize_source(model, "model")
    data = normalize_source(data, "data")
    if wrap is not None:
        if not isinstance(wrap, str):
            raise TypeError(
                "Argument `wrap` must be a noise spec such as 'gaussian:0.1'. "
                f"Received: wrap={wrap!r}"
            )
        try:
            wrap = short_spec(noise_module.parse(wrap))
        except ValueError as e:
            raise ValueError(f"Argument `wrap`: {e}") from None
    build_model = sources.ModelSource(model, wrap=wrap, estimator=estimator)
    arrays, val_split = sources.load_data(data, val_split, samples)
    settings_kwargs = {
        "model": model, "noise": None, "data": data, "val_split": val_split,
        "wrap": wrap,
    }
    return settings_kwargs, build_model, arrays


def _build_checked(build_model, settings):
    """Builds the model once: checks the noise, estimator and noisy layers."""
    if not settings.own_model:
        try:
            return build_model()
        except ValueError as e:
            raise ValueError(
                f"The noise and estimator do not work with the layers of "
                f"model {settings.model!r}: {e}"
            ) from None
    keras.backend.clear_session(free_memory=False)
    built = build_model()
    check_model(
        built,
        f"The model of {settings.model}",
        noisy=True,
        nothing_to="ablate",
        hint=(
            "Give a noise kind to wrap its layers with: wrap='gaussian:0.1' "
            "(--wrap KIND[:PARAMS])."
        ),
    )
    return built


def _own_model(settings):
    return sources.ModelSource(
        settings.model, wrap=settings.wrap, estimator=settings.estimator
    )


def _own_data(settings):
    return sources.load_data(settings.data, settings.val_split, settings.samples)


def _noise_stats(training, out_dir, custom_objects=None):
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
    model = keras.models.load_model(
        os.path.join(out_dir, run["model"]), custom_objects=custom_objects
    )
    return diagnostics.noise_stats(model), run["id"]

