"""The directory of a training ablation: its settings, runs and models on disk.

    out_dir/ablation.json           the settings (checked on resume and merge)
    out_dir/runs/<run id>.json      one record per finished run
    out_dir/models/<run id>.keras   the trained models (`save_models=True`)

Every file is written atomically (to a temporary name, then renamed), so a
reader never sees a partial file and an interrupted ablation loses only the
run in progress. A run's model is written before its record: a record in
`runs/` always has its model. A run trained elsewhere (a Ray worker) comes
as its record and the bytes of its model file (`save_run_files`).
`new_out_dir` names a new directory.
"""

import datetime
import json
import os
import shutil

SPEC_FILE = "ablation.json"
RUNS_DIR = "runs"
MODELS_DIR = "models"


def write_atomic(path, text):
    """Writes `text` to `path` so that readers never see a partial file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _spec_path(out_dir):
    return os.path.join(out_dir, SPEC_FILE)


def _run_path(out_dir, run_id):
    return os.path.join(out_dir, RUNS_DIR, f"{run_id}.json")


def has_spec(out_dir):
    """Whether `out_dir` holds the settings file of an ablation."""
    return os.path.isfile(_spec_path(out_dir))


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


def check_same_spec(stored, requested, out_dir):
    """Raises a `ValueError` listing the settings that differ, if any."""
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


def make_dirs(out_dir, models=False):
    """Makes `out_dir` and its `runs/` (and `models/`) directories."""
    os.makedirs(os.path.join(out_dir, RUNS_DIR), exist_ok=True)
    if models:
        os.makedirs(os.path.join(out_dir, MODELS_DIR), exist_ok=True)


def write_spec(out_dir, spec):
    """Writes the settings of the ablation in `out_dir`."""
    write_atomic(_spec_path(out_dir), json.dumps(spec, indent=2) + "\n")


def load_records(out_dir, runs):
    """`{run id: record}` of the given runs that `out_dir` has finished."""
    records = {}
    for run in runs:
        path = _run_path(out_dir, run.id)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                records[run.id] = json.load(f)
    return records


def save_run(out_dir, record, model=None):
    """Writes a run's record and, if given, its trained model first.

    Sets `record["model"]` to the model's path relative to `out_dir`.
    """
    if model is not None:
        record["model"] = f"{MODELS_DIR}/{record['id']}.keras"
        # Keras wants a `.keras` suffix: save to a temporary `.keras` name.
        partial = os.path.join(out_dir, MODELS_DIR, f".partial-{record['id']}.keras")
        model.save(partial)
        os.replace(partial, os.path.join(out_dir, record["model"]))
    write_atomic(_run_path(out_dir, record["id"]), json.dumps(record, indent=2) + "\n")


def save_run_files(out_dir, record, model_file=None):
    """Writes a run's record and, if given, its model file's bytes first.

    As `save_run`, for a run whose model was saved elsewhere (a Ray
    worker): `model_file` holds the bytes of its `.keras` file. Sets
    `record["model"]`.
    """
    if model_file is not None:
        record["model"] = f"{MODELS_DIR}/{record['id']}.keras"
        partial = os.path.join(
            out_dir, MODELS_DIR, f".partial-{os.getpid()}-{record['id']}.keras"
        )
        with open(partial, "wb") as f:
            f.write(model_file)
        os.replace(partial, os.path.join(out_dir, record["model"]))
    write_atomic(_run_path(out_dir, record["id"]), json.dumps(record, indent=2) + "\n")


def copy_runs(records, sources, out_dir):
    """Copies each run's record and model from its directory into `out_dir`.

    Args:
        records: `{run id: record}`.
        sources: `{run id: the directory that holds it}`.
        out_dir: A directory with `runs/` and `models/` (`make_dirs`).
    """
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


def new_out_dir(prefix="ablation"):
    """A new directory name `./PREFIX-YYYYmmdd-HHMMSS` (not created)."""
    stem = datetime.datetime.now().strftime(f"{prefix}-%Y%m%d-%H%M%S")
    out, n = stem, 1
    while os.path.exists(out):
        n += 1
        out = f"{stem}-{n}"
    return out
