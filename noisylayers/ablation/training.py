"""Training ablation: train one model per noise configuration and seed.

`training_ablation` runs the runs that `plan` lays out (each on a fresh
model, with its noisy layers switched on or off), one after the other or
as Ray tasks (`distributed`), keeping each finished run in the `store`
directory; `merge` collects the runs of a sharded ablation's directories.
Both return a `TrainingAblationResult`.
"""

import functools
import json
import os
import time

import keras

from noisylayers import control
from noisylayers._validation import check_list
from noisylayers._validation import check_number
from noisylayers._validation import check_positive_int
from noisylayers._validation import check_seed
from noisylayers.ablation import distributed
from noisylayers.ablation import store
from noisylayers.ablation.checks import check_distinct_names
from noisylayers.ablation.checks import check_model
from noisylayers.ablation.plan import make_spec
from noisylayers.ablation.plan import parse_shard
from noisylayers.ablation.plan import plan_runs
from noisylayers.ablation.plan import shard_runs
from noisylayers.ablation.progress import progress_bar
from noisylayers.ablation.results import TrainingAblationResult


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
    ray=None,
    cpus_per_run=1,
    gpus_per_run=0,
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

    With `ray`, each run is one Ray task, on this machine or across a
    cluster (`ray="local"`, `"auto"`, `"ray://HOST:PORT"`). The data and
    `build_model` go into Ray's object store once; each task trains one
    run in a worker (with the driver's Keras backend and `cpus_per_run`
    intra-op threads) and returns its record and model to this process,
    which writes them into `out_dir` as they finish, in any order, exactly
    as a serial run does: resuming, shards and `merge` work the same and
    mix with Ray runs. A run whose worker dies is retried (Ray's task
    retries, 3); a run that still fails, or raises, does not stop the
    others: it is listed in the result's `failed` (and `missing`), and
    calling again with the same `out_dir` trains it. On `KeyboardInterrupt`
    the outstanding tasks are cancelled; the finished runs are kept.
    Same seeds give the same metrics as a serial run (to float rounding).

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
        ray: `None` (default) to train the runs here, one after the
            other; `"local"` to start a local Ray instance (all this
            machine's cores) for them; anything else is an address for
            `ray.init` (`"auto"`, `"ray://HOST:PORT"`). If Ray is running
            in this process already (`ray.init` was called), that instance
            is used. `build_model` and the data must pickle
            (`cloudpickle`): a function from a file, a lambda or a
            `functools.partial` does; a `tf.data.Dataset` does not.
        cpus_per_run: Positive integer, the Ray CPUs of each run (and its
            intra-op threads).
        gpus_per_run: Non-negative number, the Ray GPUs of each run
            (fractions share a GPU).

    Returns:
        A `TrainingAblationResult` with a record for every finished run
        (those saved in `out_dir`, from any shard, or those of this call);
        with `ray`, its `failed` maps the id of each run that failed to
        its error.

    Raises:
        ValueError: for invalid arguments; if `build_model` returns a model
            without noisy layers, uncompiled, or with other noisy layers
            than at its first call; if `out_dir` holds an ablation with
            other settings; with `ray`, if the cluster cannot be reached.
        TypeError: for arguments of the wrong type.
        noisylayers.ablation.optional.MissingDependencyError: with `ray`,
            if Ray is not installed (`pip install "noisylayers[ray]"`).

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
    if ray is not None:
        cpus_per_run, gpus_per_run = distributed.check_resources(
            ray, cpus_per_run, gpus_per_run
        )
    try:
        metadata = json.loads(json.dumps(metadata or {}))
    except (TypeError, ValueError):
        raise TypeError(
            "Argument `metadata` must be a JSON-compatible dict. "
            f"Received: metadata={metadata!r}"
        ) from None

    stored = None
    if out_dir is not None and store.has_spec(out_dir):
        stored = store.load_spec(out_dir)
        layer_names = stored["layers"]
    else:
        layer_names = _noise_layer_names(_fresh_model(build_model, seeds[0]))
    spec = make_spec(layer_names, seeds, scales, epochs, batch_size, metadata)
    if stored is not None:
        store.check_same_spec(stored, spec, out_dir)
    runs = plan_runs(spec)
    mine = shard_runs(runs, shard)

    records = {}
    if out_dir is not None:
        store.make_dirs(out_dir, models=save_models)
        if stored is None:
            store.write_spec(out_dir, spec)
        if resume:
            records = store.load_records(out_dir, mine)
    pending = [run for run in mine if run.id not in records]
    failed = {}
    if ray is not None and pending:
        finished, failed = distributed.run_on_ray(
            pending, build_model, spec, data, out_dir, save_models,
            address=ray, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
            progress=progress,
        )
        records.update(finished)
    else:
        with progress_bar(
            pending, enabled=progress, desc="Training ablation", unit="run"
        ) as bar:
            for run in bar:
                bar.set_postfix_str(run.id)
                record, model = train_run(run, build_model, spec, data)
                if out_dir is not None:
                    store.save_run(out_dir, record, model if save_models else None)
                records[run.id] = record
    if out_dir is not None:
        records = store.load_records(out_dir, runs)
    return TrainingAblationResult(
        spec, records.values(), [run.id for run in runs], failed=failed
    )


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
    layers = check_model(
        model,
        "The model that `build_model` returns",
        noisy=True,
        nothing_to="ablate",
    )
    names = [layer.name for layer in layers]
    check_distinct_names(model, names, "noisy layers")
    return names


def _fresh_model(build_model, seed):
    # A new session restarts Keras' automatic layer names, so every build
    # gives the same names. Python's collector frees the old models in its
    # own time: a collection per run would cost a quarter second.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    return build_model()


def train_run(run, build_model, spec, data):
    """Trains and scores one run.

    Args:
        run: A `plan.Run`.
        build_model: As in `training_ablation`.
        spec: The ablation's settings (`plan.make_spec`).
        data: `((x_train, y_train), (x_val, y_val))`.

    Returns:
        `(record, model)`: the run's record (its `"model"` is `None`) and
        the trained model.
    """
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
    return record, model


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
    spec = store.load_spec(dirs[0])
    for directory in dirs[1:]:
        store.check_same_spec(store.load_spec(directory), spec, directory)
    runs = plan_runs(spec)
    records, sources = {}, {}
    for directory in dirs:
        for run_id, record in store.load_records(directory, runs).items():
            if run_id not in records:
                records[run_id], sources[run_id] = record, directory
    if out_dir is not None:
        if store.has_spec(out_dir):
            store.check_same_spec(store.load_spec(out_dir), spec, out_dir)
        store.make_dirs(out_dir, models=True)
        store.write_spec(out_dir, spec)
        store.copy_runs(records, sources, out_dir)
    return TrainingAblationResult(
        spec, records.values(), [run.id for run in runs]
    )
