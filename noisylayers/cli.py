"""The `noisylayers` command: parses the arguments, calls the library, prints.

`noisylayers ablate` runs `noisylayers.ablation.run_ablation` (a training
ablation of a built-in model, then a sensitivity ablation of its trained
no-noise model), `noisylayers merge` combines the directories of a sharded
ablation (`merge`, then `finish_ablation`), and `noisylayers sensitivity`
scores the per-layer noise robustness of any saved Keras model
(`sensitivity_ablation`). Run `noisylayers COMMAND --help`.

Bad arguments give a one-line error and exit status 2: the command's own
checks, and the errors of the calls that only check arguments (parsing a
noise spec, loading the files, `check_settings`, ...), raise `UsageError`.
An error anywhere else is a bug, and shows its traceback.
"""

import argparse
import contextlib
import os
import sys
import textwrap

import keras
import numpy as np

import noisylayers
from noisylayers import noise as noise_module
from noisylayers.ablation import merge
from noisylayers.ablation import pipeline
from noisylayers.ablation import sensitivity_ablation
from noisylayers.ablation import store
from noisylayers.ablation.models import TASKS
from noisylayers.ablation.optional import MissingDependencyError
from noisylayers.ablation.pipeline import DEFAULTS
from noisylayers.ablation.pipeline import SENSITIVITY_DRAWS
from noisylayers.ablation.pipeline import noise_text
from noisylayers.ablation.plan import parse_shard
from noisylayers.ablation.sensitivity import DEFAULT_SCALES
from noisylayers.ablation.sensitivity import sensitivity_layers
from noisylayers.noise.base import ESTIMATORS


class UsageError(ValueError):
    """A bad command-line argument: reported in one line, exit status 2."""


@contextlib.contextmanager
def _usage_errors():
    """Turns the `ValueError`s and `TypeError`s of the block into `UsageError`s.

    Only for calls that check arguments (or read the files they name):
    anything else that fails is a bug and must show its traceback.
    """
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


_EPILOG = """\
examples:
  noisylayers ablate                          the default: CNN on digits, 3 seeds
  noisylayers ablate --model lstm --noise dropconnect:0.2 --scales 0.5 1 2
  noisylayers ablate --resume ablation-20250101-120000    continue where it stopped
  noisylayers ablate --out res-$SLURM_ARRAY_TASK_ID --shard $SLURM_ARRAY_TASK_ID/4
                                     one shard per array job (sbatch --array=1-4)
  noisylayers merge res-1 res-2 res-3 res-4 --out res       combine the shards

Each run is saved as soon as it finishes, so an interrupted ablation loses
nothing: the same command with the same --out (or --resume DIR) skips the
finished runs.
"""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return value


def _scales(text):
    """One or more comma-separated non-negative numbers."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = -1.0
        if not value >= 0.0 or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be non-negative numbers: {text!r}"
            )
        values.append(value)
    return values


def _flatten(lists):
    return None if lists is None else [v for values in lists for v in values]


def _shard(text):
    try:
        return parse_shard(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be I/N with 1 <= I <= N (shard I of N): {text!r}"
        ) from None


def parse_noise(text):
    """Reads `--noise KIND[:VALUE | :NAME=VALUE,...]` (`noise.parse`).

    Raises:
        UsageError: for an unknown kind or an invalid value.
    """
    with _usage_errors():
        noise_module.get(text.partition(":")[0].strip())  # an unknown kind
    try:
        return noise_module.parse(text)
    except (TypeError, ValueError) as e:
        raise UsageError(
            "--noise must be KIND or KIND:VALUE (or KIND:NAME=VALUE,...): "
            f"{e} Received: --noise {text}"
        ) from None


def _parser():
    parser = argparse.ArgumentParser(
        prog="noisylayers",
        description="Weight noise for Keras 3 layers: per-layer ablations.",
        epilog="Run 'noisylayers COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--version", action="version", version=noisylayers.__version__
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    ablate = commands.add_parser(
        "ablate",
        help="run a per-layer noise ablation (training and sensitivity)",
        description=textwrap.fill(
            "Train a small model with weight noise in different sets of its "
            "layers (none, all, each alone, each left out), over seeds; then "
            "put noise into one layer at a time of the trained no-noise model "
            "at a range of scales. Prints the tables and writes them as "
            "Markdown, CSV and JSON, with PNG plots and the trained .keras "
            "models, into --out. Nothing is downloaded."
        ),
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    models = ", ".join(f"{t.name}: {t.description}" for t in TASKS.values())
    ablate.add_argument(
        "--model",
        choices=sorted(TASKS),
        help=f"the model and its data ({models}). Default: {DEFAULTS['model']}",
    )
    ablate.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help=f"training epochs per run. Default: {DEFAULTS['epochs']}",
    )
    ablate.add_argument(
        "--seeds",
        type=_positive_int,
        metavar="N",
        help=(
            "train each configuration with seeds 0..N-1. "
            f"Default: {DEFAULTS['seeds']}"
        ),
    )
    ablate.add_argument(
        "--noise",
        metavar="KIND[:VALUE|:NAME=VALUE,...]",
        help=(
            "the weight noise of the noisy layers: gaussian[:STDDEV], "
            "multiplicative_gaussian[:STDDEV], dropconnect[:RATE], "
            "learned_gaussian, adaptive_gaussian, factorized[:SIGMA0] or "
            "variational_dropout[:THRESHOLD], with any parameter as "
            "NAME=VALUE (e.g. learned_gaussian:init_stddev=0.05,"
            f"dataset_size=1000). Default: {DEFAULTS['noise']}"
        ),
    )
    ablate.add_argument(
        "--estimator",
        choices=list(ESTIMATORS),
        help=(
            "how the noisy layers sample in training: shared (one weight "
            "sample per batch), flipout or local_reparameterization (per "
            "example; see the README). Default: the noise kind's default "
            "(shared; local_reparameterization for variational_dropout)"
        ),
    )
    ablate.add_argument(
        "--scales",
        type=_scales,
        nargs="+",
        metavar="S",
        help=(
            "also sweep the noise scale in training: each noisy configuration "
            "is trained at each scale S (a multiple of --noise). Default: "
            "no sweep (scale 1)"
        ),
    )
    ablate.add_argument(
        "--samples",
        type=_positive_int,
        metavar="N",
        help="use only N examples of the data (for a quick trial). Default: all",
    )
    ablate.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=f"training batch size. Default: {DEFAULTS['batch_size']}",
    )
    _add_report_options(ablate)
    ablate.add_argument(
        "--out",
        metavar="DIR",
        help=(
            "directory for the results. An ablation with the same settings "
            "there is resumed. Default: a new ./ablation-YYYYmmdd-HHMMSS"
        ),
    )
    ablate.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help=(
            "train only shard I of N (1 <= I <= N) of the runs, for array "
            "jobs; combine the shards' directories with 'noisylayers merge', "
            "or give every shard the same --out"
        ),
    )
    ablate.add_argument(
        "--resume",
        metavar="DIR",
        help=(
            "continue the ablation in DIR with its saved settings, skipping "
            "the finished runs (other options given must agree with them)"
        ),
    )
    ablate.set_defaults(run=_ablate)

    merge_parser = commands.add_parser(
        "merge",
        help="combine the directories of a sharded ablation",
        description=textwrap.fill(
            "Combine the directories written by the shards of one "
            "'noisylayers ablate --shard I/N' ablation into --out, then write "
            "the tables and plots and run the sensitivity ablation there."
        ),
        formatter_class=formatter,
    )
    merge_parser.add_argument(
        "dirs", nargs="+", metavar="DIR", help="shard directories"
    )
    merge_parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory for the merged ablation",
    )
    _add_report_options(merge_parser)
    merge_parser.set_defaults(run=_merge)

    sensitivity = commands.add_parser(
        "sensitivity",
        help="per-layer noise sensitivity of any saved Keras model",
        description=textwrap.fill(
            "Put weight noise into one layer at a time of a trained, "
            "compiled model saved as .keras (any Keras model: no noisy "
            "layers needed), at a range of scales, evaluate it on DATA.npz "
            "(arrays 'x' and 'y'), and write a table, plot, CSV and JSON."
        ),
        epilog=(
            "examples:\n"
            "  noisylayers sensitivity model.keras --data val.npz\n"
            "  noisylayers sensitivity model.keras --data val.npz "
            "--noise relative_gaussian:0.05,per=channel --layers 'conv*'\n"
        ),
        formatter_class=formatter,
    )
    sensitivity.add_argument("model", metavar="MODEL.keras", help="the saved model")
    sensitivity.add_argument(
        "--data",
        required=True,
        metavar="DATA.npz",
        help="NumPy .npz file with arrays 'x' (inputs) and 'y' (targets)",
    )
    sensitivity.add_argument(
        "--noise",
        metavar="KIND[:VALUE|:NAME=VALUE,...]",
        help=(
            "the noise put into each layer (any kind without learned "
            "variables, e.g. relative_gaussian:0.05). Default: each noisy "
            "layer's own kind; required for a model without noisy layers"
        ),
    )
    sensitivity.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help=(
            "layer names or glob patterns to perturb. Default: every noisy "
            "layer, or with --noise every layer with a kernel"
        ),
    )
    sensitivity.add_argument(
        "--scales",
        type=_scales,
        nargs="+",
        metavar="S",
        help="the noise scales. Default: "
        + " ".join(f"{s:g}" for s in DEFAULT_SCALES),
    )
    sensitivity.add_argument(
        "--draws",
        type=_positive_int,
        default=SENSITIVITY_DRAWS,
        metavar="N",
        help=f"noise draws per layer and scale. Default: {SENSITIVITY_DRAWS}",
    )
    sensitivity.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the results. Default: ./sensitivity-YYYYmmdd-HHMMSS",
    )
    sensitivity.add_argument(
        "--no-progress", action="store_true", help="do not show progress bars"
    )
    sensitivity.set_defaults(run=_sensitivity)
    return parser


def _load_npz(path):
    try:
        with np.load(path) as data:
            if "x" not in data or "y" not in data:
                raise UsageError(
                    f"--data {path} must hold arrays 'x' and 'y'; it holds "
                    f"{sorted(data.files)}."
                )
            return data["x"], data["y"]
    except (OSError, EOFError) as e:
        raise UsageError(f"--data {path}: cannot read it as .npz ({e}).") from None
    except (KeyError, TypeError) as e:
        raise UsageError(f"--data {path}: not a NumPy .npz file ({e}).") from None
    except UsageError:
        raise
    except ValueError as e:  # e.g. a text file: NumPy reads it as a pickle
        raise UsageError(f"--data {path}: {e}") from None


def _load_model(path):
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any loading failure is a bad file
        raise UsageError(
            f"MODEL {path}: cannot load it as a Keras model "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def _sensitivity(args):
    if not os.path.isfile(args.model):
        raise UsageError(f"MODEL {args.model}: no such file.")
    x, y = _load_npz(args.data)
    model = _load_model(args.model)
    noise = None if args.noise is None else parse_noise(args.noise)
    with _usage_errors():
        sensitivity_layers(model, args.layers, noise)
    try:  # data that does not fit the model is a bad --data, not a bug
        model.evaluate(x[:1], y[:1], verbose=0)
    except Exception as e:  # noqa: BLE001 - Keras raises several types here
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UsageError(
            f"--data {args.data} does not fit MODEL {args.model}: x has "
            f"shape {x.shape}, y {y.shape} ({type(e).__name__}: {first})"
        ) from None
    out = args.out or pipeline.new_out_dir("sensitivity")
    result = sensitivity_ablation(
        model,
        (x, y),
        scales=_flatten(args.scales) or list(DEFAULT_SCALES),
        draws=args.draws,
        layers=args.layers,
        noise=noise,
        metadata={"model": os.path.abspath(args.model), "data": os.path.abspath(args.data)},
        progress=not args.no_progress,
    )
    print(result)
    os.makedirs(out, exist_ok=True)
    written = result.save(out, "sensitivity")
    print("\nWrote:")
    for path in written:
        print(f"  {path}")
    return 0


def _add_report_options(parser):
    parser.add_argument(
        "--sensitivity-scales",
        type=_scales,
        nargs="+",
        metavar="S",
        help=(
            "the noise scales of the sensitivity ablation. Default: "
            + " ".join(f"{s:g}" for s in DEFAULT_SCALES)
        ),
    )
    parser.add_argument(
        "--draws",
        type=_positive_int,
        default=SENSITIVITY_DRAWS,
        metavar="N",
        help=(
            "noise draws per layer and scale in the sensitivity ablation. "
            f"Default: {SENSITIVITY_DRAWS}"
        ),
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show progress bars"
    )


def _settings(args):
    """The `ablate` settings given on the command line, or saved in --resume.

    Options given with --resume must agree with the saved settings.
    """
    given = {
        key: getattr(args, key)
        for key in DEFAULTS
        if getattr(args, key) is not None
    }
    if "scales" in given:
        given["scales"] = _flatten(given["scales"])
    if "noise" in given:
        given["noise"] = noise_text(parse_noise(given["noise"]))
    if args.resume is None:
        return given
    with _usage_errors():
        saved = pipeline.saved_settings(args.resume)
    for key, value in given.items():
        if value != saved[key]:
            option = "--" + key.replace("_", "-")
            raise UsageError(
                f"{option} {value} differs from the setting saved in "
                f"{args.resume} ({saved[key]}). Leave it out to resume, or "
                "start a new ablation in another --out."
            )
    return saved


def _sensitivity_options(args):
    return {
        "sensitivity_scales": _flatten(args.sensitivity_scales) or list(DEFAULT_SCALES),
        "draws": args.draws,
    }


def _ablate(args):
    if args.resume is not None:
        if args.out is not None and os.path.abspath(args.out) != os.path.abspath(
            args.resume
        ):
            raise UsageError(
                "--resume DIR continues the ablation in DIR: leave out --out. "
                f"Received: --resume {args.resume} --out {args.out}"
            )
        out = args.resume
    else:
        out = args.out or pipeline.new_out_dir()
    settings = _settings(args)
    options = _sensitivity_options(args)
    with _usage_errors():
        settings = pipeline.check_settings(
            **settings, **options, out_dir=out, shard=args.shard
        )
    resuming = store.has_spec(out)
    print(
        f"{'Resuming the ablation' if resuming else 'Ablation'} of "
        f"{TASKS[settings['model']].description}, noise {settings['noise']}, "
        f"{settings['epochs']} epochs, {settings['seeds']} seed(s), in {out}/"
    )
    try:
        report = pipeline.run_ablation(
            **settings,
            **options,
            out_dir=out,
            shard=args.shard,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(
            "\nInterrupted. The finished runs are saved; continue with:\n"
            f"  noisylayers ablate --resume {out}",
            file=sys.stderr,
        )
        return 130
    if report.sensitivity is None:
        print(report.training)
        done = "" if args.shard is None else "Shard {}/{} is done. ".format(
            *args.shard
        )
        print(
            f"\n{done}{len(report.training.missing)} run(s) of the ablation "
            "are in other shards. When they are done, combine the directories "
            f"with\n  noisylayers merge {out} OTHER_DIRS... --out MERGED_DIR"
        )
        return 0
    print()
    print(report)
    return 0


def _merge(args):
    with _usage_errors():
        training = merge(args.dirs, out_dir=args.out)
        pipeline.saved_settings(args.out)  # written by 'noisylayers ablate'
    if not training.complete:
        print(training)
        print(
            f"noisylayers merge: error: the directories lack {len(training.missing)} "
            f"run(s) of the ablation, e.g. {training.missing[0]}. Run the "
            f"missing shards, then merge again. Merged runs are in {args.out}/.",
            file=sys.stderr,
        )
        return 1
    report = pipeline.finish_ablation(
        training, args.out, **_sensitivity_options(args),
        progress=not args.no_progress,
    )
    print()
    print(report)
    return 0


def main(argv=None):
    """Runs the `noisylayers` command; returns its exit status.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        0 on success, 1 when a merge lacks runs, a file cannot be written
        or an optional dependency is missing, 2 for invalid arguments (a
        `UsageError`), 130 when interrupted.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error
        return e.code
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except UsageError as e:
        print(f"noisylayers {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, MissingDependencyError) as e:
        print(f"noisylayers {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
