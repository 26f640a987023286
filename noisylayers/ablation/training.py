"""Training ablation: train with noise in different sets of layers, compare.

Each *run* trains one fresh model with one *configuration* (the set of noisy
layers whose noise is on, and optionally a noise scale) and one seed. With an
output directory, every run is saved there as soon as it finishes, so an
interrupted ablation resumes where it stopped, and the runs can be split into
shards (array jobs on a cluster) whose directories `merge` combines.

Directory layout:

    out_dir/ablation.json        the settings (checked on resume and merge)
    out_dir/runs/<run id>.json   one file per finished run
    out_dir/models/<run id>.keras   the trained models (`save_models=True`)
"""

import dataclasses
import functools
import json
import os
import re
import shutil
import time

import keras
from tqdm.auto import tqdm

from noisylayers import control
from noisylayers._validation import check_list
from noisylayers._validation import check_number
from noisylayers._validation import check_positive_int
from noisylayers._validation import check_seed
from noisylayers.ablation.results import TrainingAblationResult
from noisylayers.ablation.results import write_atomic

SPEC_FILE = "ablation.json"
RUNS_DIR = "runs"
MODELS_DIR = "models"


def configurations(layer_names):
    """The configurations of a training ablation over the given noisy layers.

    `"baseline"` (noise nowhere), `"all"` (noise in every noisy layer) and,
    with several noisy layers, `"only:L"` (noise in layer `L` alone) and
    `"without:L"` (noise everywhere but in `L`) for each layer `L`.

    Args:
        layer_names: The names of the model's noisy layers, in order.

    Returns:
        A list of dicts `{"name": ..., "enabled": [layer names]}`.
    """
    names = list(layer_names)
    configs = [("baseline", []), ("all", names)]
    if len(names) > 1:
        configs += [(f"only:{n}", [n]) for n in names]
        configs += [
            (f"without:{n}", [m for m in names if m != n]) for n in names
        ]
    return [{"name": name, "enabled": enabled} for name, enabled in configs]


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: a configuration, a scale and a seed."""

    configuration: str
    enabled: tuple
    scale: float | None
    seed: int

    @property
    def id(self):
        """A file-name-safe id, unique within an ablation."""
        parts = [re.sub(r"[^A-Za-z0-9_.-]+", "-", self.configuration)]
        if self.scale is not None:
            parts.append(f"scale{self.scale:g}")
        return "__".join(parts + [f"seed{self.seed}"])


def plan_runs(spec):
    """All the runs of an ablation, in the order they are trained.

    Seed by seed, configuration by configuration, scale by scale. Two
    configurations that enable the same layers (with two noisy layers,
    `only:a` is `without:b`) share their runs; the baseline does not depend
    on the scale and is trained once per seed.

    Args:
        spec: The ablation's settings, as stored in `ablation.json`.

    Returns:
        A list of `Run`s.
    """
    runs, seen = [], set()
    for seed in spec["seeds"]:
        for config in spec["configurations"]:
            enabled = tuple(config["enabled"])
            scales = (spec["scales"] or [None]) if enabled else [None]
            for scale in scales:
                key = (frozenset(enabled), scale, seed)
                if key not in seen:
                    seen.add(key)
                    runs.append(Run(config["name"], enabled, scale, seed))
    ids = [run.id for run in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "The noisy layers' names give clashing run ids once made safe "
            f"for file names. Rename the layers. Received: layers="
            f"{spec['layers']}"
        )
    return runs


def parse_shard(shard):
    """Reads a shard as `(i, n)`: shard `i` of `n`, counted from 1.

    Args:
        shard: `None`, a string `"i/n"` or a pair `(i, n)`, with
            `1 <= i <= n` (as `--shard 1/4` ... `--shard 4/4`, or
            `$SLURM_ARRAY_TASK_ID/4` with `--array=1-4`).

    Returns:
        `None` or a tuple `(i, n)`.

    Raises:
        ValueError: for anything else.
    """
    if shard is None:
        return None
    parts = shard.split("/") if isinstance(shard, str) else shard
    try:
        index, count = (int(p) for p in parts)
    except (TypeError, ValueError):
        index = count = None
    if index is None or not 1 <= index <= count:
        raise ValueError(
            "Argument `shard` must be 'i/n' or (i, n) with 1 <= i <= n: "
            f"shard i of n, counted from 1. Received: shard={shard!r}"
        )
    return index, count


def _check_seed(seed):
    if seed is None:
        raise TypeError("Argument `seeds` must hold integers. Received: None")
    return check_seed(seed)


def _split_data(data):
    """`((x_train, y_train), (x_val, y_val))`, from either form of `data`."""
    try:
        if len(data) == 4:
            x_train, y_train, x_val, y_val = data
        else:
            (x_train, y_train), (x_val, y_val) = data
    except (TypeError, ValueError):
        raise ValueError(
            "Argument `data` must be ((x_train, y_train), (x_val, y_val)) "
            "or (x_train, y_train, x_val, y_val). "
            f"Received: data of type {type(data).__name__}"
        ) from None
    return (x_train, y_train), (x_val, y_val)


def _noise_layer_names(model):
    """The names of the noisy layers of a model that `build_model` made."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`build_model` must return a `keras.Model`. "
            f"Received: {model!r} (of type {type(model).__name__})"
        )
    if not getattr(model, "compiled", False):
        raise ValueError(
            "`build_model` must return a compiled model: call `compile()` "
            f"in it. Received: the uncompiled model '{model.name}'"
        )
    names = [layer.name for layer in control.noise_layers(model)]
    if not names:
        raise ValueError(
            f"`build_model` returned model '{model.name}', which has no noisy "
            "layers (`noisylayers.WeightNoise`): there is nothing to ablate."
        )
    if len(set(names)) != len(names):
        raise ValueError(
            f"The noisy layers of model '{model.name}' must have distinct "
            f"names: the ablation refers to them by name. Received: {names}"
        )
    return names


def _fresh_model(build_model, seed):
    # A new session restarts Keras' automatic layer names, so every build
    # gives the same names. Python's collector frees the old models in its
    # own time: a collection per run would cost a quarter second.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    return build_model()


def _spec_path(out_dir):
    return os.path.join(out_dir, SPEC_FILE)


def load_spec(out_dir):
    """The settings stored in an ablation directory.

    Raises:
        ValueError: if `out_dir` holds no training ablation.
    """
    path = _spec_path(out_dir)
    spec = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    if not isinstance(spec, dict) or spec.get("kind") != "training":
        raise ValueError(
            f"Directory {out_dir!r} holds no training ablation (no "
            f"{SPEC_FILE} written by `training_ablation`)."
        )
    return spec


def _check_same_spec(stored, requested, out_dir):
    differences = [
        f"{key}: saved {stored.get(key)!r}, requested {requested.get(key)!r}"
        for key in sorted(set(stored) | set(requested))
        if stored.get(key) != requested.get(key)
    ]
    if differences:
        raise ValueError(
            f"Directory {out_dir!r} holds a training ablation with other "
            f"settings ({'; '.join(differences)}). Use the same settings to "
            "resume it, or another directory."
        )


def _load_records(out_dir, runs):
    records = {}
    for run in runs:
        path = os.path.join(out_dir, RUNS_DIR, f"{run.id}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                records[run.id] = json.load(f)
    return records


def _train(run, build_model, spec, data, out_dir, save_models):
    (x_train, y_train), (x_val, y_val) = data
    model = _fresh_model(build_model, run.seed)
    names = _noise_layer_names(model)
    if names != spec["layers"]:
        raise ValueError(
            f"`build_model` returned a model with the noisy layers {names}, "
            f"but this ablation is over {spec['layers']} (from the first "
            "build or the directory's saved settings)."
        )
    control.set_noise(model, enabled=False)
    if run.enabled:
        control.set_noise(
            model, enabled=True, scale=run.scale, layers=list(run.enabled)
        )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        epochs=spec["epochs"],
        batch_size=spec["batch_size"],
        verbose=0,
    )
    metrics = model.evaluate(
        x_val, y_val, batch_size=spec["batch_size"], verbose=0, return_dict=True
    )
    record = {
        "id": run.id,
        "configuration": run.configuration,
        "enabled": list(run.enabled),
        "scale": run.scale,
        "seed": run.seed,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "history": {
            k: [float(v) for v in values] for k, values in history.history.items()
        },
        "seconds": round(time.perf_counter() - start, 3),
        "model": None,
    }
    if out_dir is not None:
        if save_models:
            record["model"] = f"{MODELS_DIR}/{run.id}.keras"
            # Keras wants a `.keras` suffix: save to a temporary `.keras` name.
            final = os.path.join(out_dir, record["model"])
            partial = os.path.join(out_dir, MODELS_DIR, f".partial-{run.id}.keras")
            model.save(partial)
            os.replace(partial, final)
        path = os.path.join(out_dir, RUNS_DIR, f"{run.id}.json")
        write_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


def training_ablation(
    build_model,
    data,
    epochs=5,
    seeds=(0, 1, 2),
    scales=None,
    batch_size=32,
    out_dir=None,
    shard=None,
    resume=True,
    save_models=False,
    metadata=None,
    progress=True,
):
    """Trains one model per noise configuration and seed; compares them.

    The configurations are `"baseline"` (no noise), `"all"` (noise in every
    noisy layer) and, for a model with several noisy layers, `"only:L"`
    (noise in layer `L` alone) and `"without:L"` (leave `L` out) for each
    noisy layer `L`. Each run builds a fresh model with
    `build_model()` after `keras.backend.clear_session()` and
    `keras.utils.set_random_seed(seed)`, switches its noisy layers on or off
    with `noisylayers.set_noise` (and sets their scale, in a scale sweep),
    trains it with `fit` and evaluates it on the validation data.

    With `out_dir`, each run is written there as it finishes; calling again
    with the same directory and settings skips the finished runs (`resume`),
    and different settings are an error. `shard="i/n"` trains only every
    n-th run from the i-th on (i from 1); shards may share `out_dir` or use
    their own directories, which `merge` combines.

    Args:
        build_model: Function without arguments returning a new compiled
            `keras.Model` with noisy layers (`noisylayers.WeightNoise`)
            of distinct names, the same at every call.
        data: `((x_train, y_train), (x_val, y_val))` or
            `(x_train, y_train, x_val, y_val)`: arrays, or anything else
            that `fit` and `evaluate` accept as `x` and `y`.
        epochs: Positive integer, the number of training epochs per run.
        seeds: Distinct non-negative integers; every configuration is
            trained once per seed.
        scales: `None` (default) to keep the noise scale that
            `build_model` sets, or a list of non-negative numbers: each
            noisy configuration is then trained at each scale.
        batch_size: Positive integer, for `fit` and `evaluate`.
        out_dir: Optional directory to save the runs in (created if
            needed).
        shard: Optional `"i/n"` or `(i, n)`, `1 <= i <= n`: run only
            shard `i` of `n` (a fixed partition of the runs).
        resume: With `out_dir`: skip the runs already saved there (default)
            or, if False, train them again and overwrite them.
        save_models: With `out_dir`: also save each trained model as
            `models/<run id>.keras`.
        metadata: Optional JSON-compatible dict stored with the settings and
            compared on resume (e.g. how the data were made).
        progress: Whether to show a progress bar over the runs.

    Returns:
        A `TrainingAblationResult` with a record for every finished run
        (those saved in `out_dir`, from any shard, or those of this call).

    Raises:
        ValueError: for invalid arguments; if `build_model` returns a model
            without noisy layers, uncompiled, or with other noisy layers
            than at its first call; if `out_dir` holds an ablation with
            other settings.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    def build_model():
        model = keras.Sequential([
            keras.Input((64,)),
            noisylayers.WeightNoise(keras.layers.Dense(64, "relu"), name="hidden"),
            noisylayers.WeightNoise(keras.layers.Dense(10, "softmax"), name="out"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    result = noisylayers.ablation.training_ablation(
        build_model, ((x, y), (x_val, y_val)), epochs=10, out_dir="abl")
    print(result)                      # the table
    result.plot("ablation.png")
    ```
    """
    if not callable(build_model):
        raise TypeError(
            "Argument `build_model` must be a function returning a compiled "
            f"model. Received: build_model={build_model!r}"
        )
    data = _split_data(data)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    seeds = check_list("seeds", seeds, _check_seed)
    if scales is not None:
        scales = check_list(
            "scales", scales, functools.partial(check_number, "scales", low=0.0)
        )
    shard = parse_shard(shard)
    try:
        metadata = json.loads(json.dumps(metadata or {}))
    except (TypeError, ValueError):
        raise TypeError(
            "Argument `metadata` must be a JSON-compatible dict. "
            f"Received: metadata={metadata!r}"
        ) from None

    stored = None
    if out_dir is not None and os.path.isfile(_spec_path(out_dir)):
        stored = load_spec(out_dir)
        layer_names = stored["layers"]
    else:
        layer_names = _noise_layer_names(_fresh_model(build_model, seeds[0]))
    spec = {
        "kind": "training",
        "layers": layer_names,
        "configurations": configurations(layer_names),
        "seeds": seeds,
        "scales": scales,
        "epochs": epochs,
        "batch_size": batch_size,
        "metadata": metadata,
    }
    if stored is not None:
        _check_same_spec(stored, spec, out_dir)
    runs = plan_runs(spec)
    mine = runs if shard is None else runs[shard[0] - 1 :: shard[1]]

    records = {}
    if out_dir is not None:
        os.makedirs(os.path.join(out_dir, RUNS_DIR), exist_ok=True)
        if save_models:
            os.makedirs(os.path.join(out_dir, MODELS_DIR), exist_ok=True)
        if stored is None:
            write_atomic(_spec_path(out_dir), json.dumps(spec, indent=2) + "\n")
        if resume:
            records = _load_records(out_dir, mine)
    pending = [run for run in mine if run.id not in records]
    with tqdm(
        pending, desc="Training ablation", unit="run", disable=not progress
    ) as bar:
        for run in bar:
            bar.set_postfix_str(run.id)
            records[run.id] = _train(
                run, build_model, spec, data, out_dir, save_models
            )
    if out_dir is not None:
        records = _load_records(out_dir, runs)
    return TrainingAblationResult(
        spec, records.values(), [run.id for run in runs]
    )


def merge(*dirs, out_dir=None):
    """Combines the directories of a sharded training ablation.

    Also reads a single directory: `merge(out_dir)` gives the result of
    the ablation saved there, complete or not.

    Args:
        *dirs: Directories (or lists of directories) written by
            `training_ablation` with the same settings: its shards.
        out_dir: Optional directory to copy every run (and saved model)
            into, making it a directory of the whole ablation. It may be
            one of `dirs`, or hold runs of the same ablation already.

    Returns:
        A `TrainingAblationResult` with the runs of all the directories;
        its `missing` lists the runs none of them has.

    Raises:
        ValueError: if `dirs` is empty, a directory holds no ablation, or
            two directories (`out_dir` included) hold ablations with
            different settings.

    Example:

    ```python
    # Array job i of 4 (SLURM: --array=1-4, i = $SLURM_ARRAY_TASK_ID):
    training_ablation(build_model, data, out_dir=f"abl-{i}", shard=f"{i}/4")
    # Then, once all are done:
    result = merge("abl-1", "abl-2", "abl-3", "abl-4", out_dir="abl")
    ```
    """
    dirs = [
        d
        for item in dirs
        for d in ([item] if isinstance(item, (str, os.PathLike)) else item)
    ]
    if not dirs:
        raise ValueError("Argument `dirs` must name at least one directory.")
    spec = load_spec(dirs[0])
    for directory in dirs[1:]:
        _check_same_spec(load_spec(directory), spec, directory)
    runs = plan_runs(spec)
    records, sources = {}, {}
    for directory in dirs:
        for run_id, record in _load_records(directory, runs).items():
            if run_id not in records:
                records[run_id], sources[run_id] = record, directory
    if out_dir is not None:
        if os.path.isfile(_spec_path(out_dir)):
            _check_same_spec(load_spec(out_dir), spec, out_dir)
        os.makedirs(os.path.join(out_dir, RUNS_DIR), exist_ok=True)
        os.makedirs(os.path.join(out_dir, MODELS_DIR), exist_ok=True)
        write_atomic(_spec_path(out_dir), json.dumps(spec, indent=2) + "\n")
        for run_id, record in records.items():
            # The model first: a run file is only there with its model.
            files = [record["model"]] if record.get("model") else []
            files.append(os.path.join(RUNS_DIR, f"{run_id}.json"))
            for name in files:
                source = os.path.join(sources[run_id], name)
                target = os.path.join(out_dir, name)
                if os.path.exists(source) and not (
                    os.path.exists(target) and os.path.samefile(source, target)
                ):
                    shutil.copyfile(source, target)
    return TrainingAblationResult(
        spec, records.values(), [run.id for run in runs]
    )
