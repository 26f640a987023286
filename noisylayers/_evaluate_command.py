"""`noisylayers evaluate MODEL.keras --data DATA.npz`: the command's logic.

`noisylayers_cli` parses the arguments and `noisylayers.cli._evaluate` calls
`prepare`, which checks the files and raises a `ValueError` for bad input
(the command reports it in one line, exit status 2), then `execute`, which
runs `noisylayers.uncertainty.evaluate`, prints the report and writes
`evaluation.md`, `evaluation.json` and `evaluation.png`.
"""

import dataclasses
import os

import keras
import numpy as np

from noisylayers import _command_files
from noisylayers import uncertainty


@dataclasses.dataclass
class Job:
    """A checked `evaluate` command: what `execute` runs."""

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    ood: object  # np.ndarray or None
    samples: int
    seed: int
    out: str


def prepare(args):
    """Checks the arguments of `evaluate`; returns a `Job`.

    Raises:
        ValueError: for any bad argument or file, in one line.
    """
    _command_files.check_model_file(args.model)
    x, y = _command_files.load_arrays(
        "--data", args.data, [("x_test", "y_test"), ("x", "y")])
    ood = None
    if args.ood is not None:
        ood = _command_files.load_arrays(
            "--ood", args.ood, [("x", None), ("x_test", None)])[0]
    model = _command_files.load_model(args.model)
    for option, path, inputs in (("--data", args.data, x), ("--ood", args.ood, ood)):
        if inputs is None:
            continue
        out = _command_files.check_fits(model, args.model, option, path, inputs)
        if not isinstance(out, np.ndarray) or out.ndim != 2:
            raise ValueError(
                f"MODEL {args.model} is not a classifier with one output of "
                "shape (examples, classes): it gives "
                f"{getattr(out, 'shape', type(out).__name__)}."
            )
    classes = max(out.shape[1], 2)
    if len(y) != len(x):
        raise ValueError(f"--data {args.data}: x has {len(x)} examples and y {len(y)}.")
    try:
        uncertainty.as_class_labels(y, len(y), classes)
    except ValueError as e:
        raise ValueError(
            f"--data {args.data}: y does not fit the {classes} classes of MODEL "
            f"{args.model}: {e}"
        ) from None
    if args.out is None:
        from noisylayers.ablation.pipeline import new_out_dir

        out_dir = new_out_dir("evaluation")
    else:
        out_dir = args.out
    return Job(model=model, x=x, y=y, ood=ood, samples=args.samples,
               seed=args.seed, out=out_dir)


def execute(job):
    """Runs a checked `Job`: prints the report, writes the files; returns 0."""
    from noisylayers.ablation import store

    report = uncertainty.evaluate(
        job.model, job.x, job.y, samples=job.samples, ood=job.ood, seed=job.seed
    )
    print(report)
    os.makedirs(job.out, exist_ok=True)
    paths = [os.path.join(job.out, f"evaluation.{ext}") for ext in ("md", "json", "png")]
    store.write_atomic(paths[0], report.to_markdown())
    report.to_json(paths[1])
    report.plot(paths[2])
    print("\nWrote:")
    for path in paths:
        print(f"  {path}")
    return 0
