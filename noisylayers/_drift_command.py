"""`noisylayers drift MODEL.keras --data DATA.npz`: the command's logic.

`noisylayers_cli` parses the arguments (as strings, so that every bad value
gets a one-line error here) and `noisylayers.cli._drift` calls `prepare`,
which checks everything and raises a `ValueError` for bad input (the
command reports it in one line, exit status 2), then `execute`, which runs
`noisylayers.hardware.accuracy_over_time`, prints the table and writes
`drift.md`, `drift.json` and `drift.png`.
"""

import dataclasses
import os

import keras
import numpy as np

from noisylayers import _command_files
from noisylayers import hardware

#: What `--times` defaults to (`hardware.DEFAULT_TIMES`, as the help shows it).
DEFAULT_TIMES = ("1s", "1h", "1d", "30d", "1y")
DEFAULT_REPEATS = 5


@dataclasses.dataclass
class Job:
    """A checked `drift` command: what `execute` runs."""

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    times: list
    repeats: int
    seed: int
    per: str
    compensation: str
    out: str
    metadata: dict


def _integer(option, text, low):
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < low:
        what = "a positive integer" if low == 1 else "a non-negative integer"
        raise ValueError(f"{option} must be {what}. Received: {option} {text}")
    return value


def parse_times(texts):
    """`--times` as seconds: durations with s/m/h/d/y, or plain seconds."""
    times = []
    for text in texts:
        try:
            times.append(hardware.parse_duration(text))
        except ValueError as e:
            raise ValueError(f"--times: {e}") from None
    if len(set(times)) != len(times):
        raise ValueError(
            f"--times must be distinct. Received: --times {' '.join(texts)}"
        )
    return times


def prepare(args):
    """Checks the arguments of `drift`; returns a `Job`.

    Raises:
        ValueError: for any bad argument or file, in one line.
    """
    times = parse_times(DEFAULT_TIMES if args.times is None else args.times)
    repeats = _integer(
        "--repeats", DEFAULT_REPEATS if args.repeats is None else args.repeats, 1
    )
    seed = _integer("--seed", 0 if args.seed is None else args.seed, 0)
    if args.per not in ("tensor", "channel"):
        raise ValueError(
            f"--per must be 'tensor' or 'channel'. Received: --per {args.per}"
        )
    _command_files.check_model_file(args.model)
    x, y = _command_files.load_arrays("--data", args.data)
    model = _command_files.load_model(args.model)
    if not isinstance(model, keras.Model) or not getattr(model, "compiled", False):
        raise ValueError(
            f"MODEL {args.model} must be compiled (saved after `compile`): "
            "the command scores it with its compiled loss and metrics."
        )
    hardware._selected_variables(model, None)  # a model without weights
    _command_files.check_fits(model, args.model, "--data", args.data, x, y)
    if args.out is None:
        from noisylayers.ablation.pipeline import new_out_dir

        out = new_out_dir("drift")
    else:
        out = args.out
    return Job(
        model=model,
        x=x,
        y=y,
        times=times,
        repeats=repeats,
        seed=seed,
        per=args.per,
        compensation=None if args.no_compensation else "global",
        out=out,
        metadata={
            "model": os.path.abspath(args.model),
            "data": os.path.abspath(args.data),
        },
    )


def execute(job):
    """Runs a checked `Job`: prints the table, writes the files; returns 0."""
    result = hardware.accuracy_over_time(
        job.model,
        (job.x, job.y),
        times=job.times,
        repeats=job.repeats,
        seed=job.seed,
        per=job.per,
        compensation=job.compensation,
    )
    result.spec["metadata"] = job.metadata
    print(result)
    os.makedirs(job.out, exist_ok=True)
    written = result.save(job.out, "drift")
    print("\nWrote:")
    for path in written:
        print(f"  {path}")
    return 0
