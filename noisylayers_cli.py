"""The `noisylayers` command's front end: its arguments, help and quiet start-up.

This module lies outside the `noisylayers` package on purpose. Importing the
package imports Keras and its backend (seconds of start-up and a screenful of
backend log lines), because it registers the layers for
`keras.models.load_model`. Here, `noisylayers --help`, `--version` and bad
arguments answer without that import; a valid command then imports
`noisylayers.cli`, which calls the library and prints. The arrows run one
way: this module uses the library, no library module imports this one.

TensorFlow and XLA write start-up lines from C++ (oneDNN, CUDA, CPU
features, absl notices) that `TF_CPP_MIN_LOG_LEVEL` no longer silences in
TensorFlow 2.20+. Unless the user set `TF_CPP_MIN_LOG_LEVEL` themselves, the
command drops such lines, and only those, from its standard error
(`quiet_backend_logs`).

The defaults the help shows are the library's: this module reads them, and
`parse_shard`, from the files `noisylayers/ablation/settings.py` and
`plan.py`, which import only the standard library, without running the
package's `__init__` (`_library_module`). What only a module that imports
Keras knows, the names of the noise kinds and the descriptions of the
built-in models, is restated here (`NOISE_KINDS`, `MODELS`); a test pins
each equal to the library's.
"""

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import textwrap
import threading

#: The noise kinds of `--noise`: the keys of `noisylayers.noise.ALIASES`.
NOISE_KINDS = (
    "gaussian",
    "multiplicative_gaussian",
    "dropconnect",
    "learned_gaussian",
    "adaptive_gaussian",
    "factorized",
    "variational_dropout",
    "relative_gaussian",
    "polynomial_gaussian",
    "quantize",
    "stuck_at",
)
#: The built-in models of `ablate --model`: the descriptions of
#: `noisylayers.ablation.models.TASKS`.
MODELS = {
    "cnn": "a small CNN on scikit-learn's 8x8 digits",
    "mlp": "an MLP on scikit-learn's 8x8 digits",
    "lstm": "an LSTM on generated noisy sine waves (4 frequencies)",
}


def _library_module(name):
    """Module `noisylayers.ablation.NAME`, run from its file on its own.

    Only for the modules that import nothing but the standard library
    (`settings` and `plan`): the package's `__init__`, which imports Keras,
    does not run. The module object is private to this front end.
    """
    package = importlib.util.find_spec("noisylayers")
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError(
            "The noisylayers package is not installed: pip install noisylayers"
        )
    path = os.path.join(
        package.submodule_search_locations[0], "ablation", f"{name}.py"
    )
    spec = importlib.util.spec_from_file_location(f"_noisylayers_cli_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_settings = _library_module("settings")
_plan = _library_module("plan")


def main(argv=None):
    """Runs the `noisylayers` command; returns its exit status.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        0 on success, 1 when a merge lacks runs, a file cannot be written
        or an optional dependency is missing, 2 for invalid arguments,
        130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error
        return e.code
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    error = _check_sources(args)
    if error is not None:
        print(f"noisylayers {args.command}: error: {error}", file=sys.stderr)
        return 2
    with quiet_backend_logs():
        from noisylayers import cli

        return cli.run(args)


def _version():
    try:
        return importlib.metadata.version("noisylayers")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


# A C++ log line of TensorFlow, XLA or JAX (absl format):
# "I0000 00:00:1795930895.673679   22311 port.cc:153] oneDNN custom ...".
_LOG_LINE = re.compile(rb"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_LOG_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called",
    b"To enable the following instructions:",  # the CPU-feature line's 2nd line
)


# Progress bars redraw with a carriage return: it ends a line here too.
_LINE_END = re.compile(rb"\r\n?|\n")


def _is_log_line(line):
    return bool(_LOG_LINE.match(line)) or line.startswith(_LOG_NOTICES)


def _may_become_log_line(start):
    """Whether an unfinished line could still turn out to be a log line."""
    if start[:1] in (b"I", b"W", b"E", b"F"):
        date = start[1:5]  # "I0000 ...": up to four digits so far
        if not date or date.isdigit():
            return True
    return any(n.startswith(start[: len(n)]) for n in _LOG_NOTICES)


@contextlib.contextmanager
def quiet_backend_logs():
    """Within the block, drops backend log lines from standard error.

    Everything written to file descriptor 2 (by Python or by C++) passes
    through a filter that drops the lines `_is_log_line` recognizes and
    passes everything else on at once (progress bars included). Does
    nothing when the user set `TF_CPP_MIN_LOG_LEVEL`, or when standard
    error is not a file descriptor.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_filter, args=(read_end, saved), daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe: the pump reads its end and stops
        pump.join(timeout=5)
        os.close(saved)


def _filter(read_end, out):
    """Copies `read_end` to `out` line by line, without the log lines.

    A line that cannot be a log line is copied as it comes, before its end;
    one that may be is held until it ends (or the pipe closes).
    """
    pending = b""  # the start of a line that may still be a log line
    passing = False  # the current line is being copied as it comes
    with os.fdopen(read_end, "rb", buffering=0) as source:
        while chunk := source.read(1 << 16):
            data, pending, kept = pending + chunk, b"", []
            while data:
                end = _LINE_END.search(data)
                if end is None:
                    line, newline, data = data, b"", b""
                else:
                    line, newline = data[: end.start()], end.group()
                    data = data[end.end() :]
                if passing or not newline and not _may_become_log_line(line):
                    kept.append(line + newline)
                    passing = not newline
                elif not newline:
                    pending = line
                elif not _is_log_line(line):
                    kept.append(line + newline)
            os.write(out, b"".join(kept))
    os.write(out, pending)


_EPILOG = """\
examples:
  noisylayers ablate                          the default: CNN on digits, 3 seeds
  noisylayers ablate --model lstm --noise dropconnect:0.2 --scales 0.5 1 2
  noisylayers ablate --resume ablation-20250101-120000    continue where it stopped
  noisylayers ablate --out res-$SLURM_ARRAY_TASK_ID --shard $SLURM_ARRAY_TASK_ID/4
                                     one shard per array job (sbatch --array=1-4)
  noisylayers merge res-1 res-2 res-3 res-4 --out res       combine the shards
  noisylayers ablate --model my_models.py:build --data data.npz
                                     your own model (named noisy layers) and data
  noisylayers ablate --model plain.keras --data data.npz --wrap gaussian:0.05
                                     a saved plain model, every layer wrapped
  noisylayers ablate --ray           the runs as Ray tasks on all local cores
  noisylayers ablate --ray auto --gpus-per-run 1    on a running Ray cluster

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


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a fraction between 0 and 1: {text!r}"
        )
    return value


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text!r}")
    return value


def _check_sources(args):
    """The error of a `--model` or `--data` of the wrong form, or `None`.

    Checked after parsing, so that the error is one line (without the
    usage), and without importing Keras.
    """
    if args.command != "ablate":
        return None
    if args.model is not None and args.model not in MODELS:
        try:
            _settings.parse_source(args.model, "model")
        except ValueError:
            return (
                f"argument --model: invalid choice: {args.model!r} (choose "
                f"from {', '.join(sorted(MODELS))}, or give FILE.py:FUNCTION, "
                "package.module:FUNCTION or MODEL.keras)"
            )
    if args.data is not None:
        try:
            _settings.parse_source(args.data, "data")
        except ValueError:
            return (
                "argument --data: must be DATA.npz, FILE.py:FUNCTION or "
                f"package.module:FUNCTION: {args.data!r}"
            )
    return None


def _shard(text):
    try:
        return _plan.parse_shard(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be I/N with 1 <= I <= N (shard I of N): {text!r}"
        ) from None


def build_parser():
    """The `argparse` parser of the `noisylayers` command."""
    defaults = _settings.DEFAULTS
    parser = argparse.ArgumentParser(
        prog="noisylayers",
        description="Weight noise for Keras 3 layers: per-layer ablations.",
        epilog="Run 'noisylayers COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
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
    models = ", ".join(f"{name}: {text}" for name, text in MODELS.items())
    ablate.add_argument(
        "--model",
        metavar="{cnn,lstm,mlp}|FILE.py:FUNCTION|MODEL.keras",
        help=(
            f"a built-in model and its data ({models}); or your own model: "
            "FILE.py:FUNCTION or package.module:FUNCTION, a function of no "
            "arguments returning a new compiled Keras model with named noisy "
            "layers, or MODEL.keras, a saved compiled model (each run clones "
            "it with fresh weights), which needs its DATA too. "
            f"Default: {defaults['model']}"
        ),
    )
    ablate.add_argument(
        "--data",
        metavar="DATA.npz|FILE.py:FUNCTION",
        help=(
            "the data of your own model: a .npz file with arrays x_train, "
            "y_train, x_val, y_val (or x and y, split by --val-split), or a "
            "function returning ((x_train, y_train), (x_val, y_val))"
        ),
    )
    ablate.add_argument(
        "--val-split",
        type=_fraction,
        metavar="FRACTION",
        help=(
            "with --data holding arrays x and y: the fraction kept for "
            f"validation (a seeded split). Default: {_settings.VAL_SPLIT:g}"
        ),
    )
    ablate.add_argument(
        "--wrap",
        metavar="KIND[:PARAMS]",
        help=(
            "for your own model without noisy layers: wrap every layer with "
            "weights in WeightNoise with this noise first (noisylayers.wrap), "
            "e.g. gaussian:0.05"
        ),
    )
    ablate.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help=f"training epochs per run. Default: {defaults['epochs']}",
    )
    ablate.add_argument(
        "--seeds",
        type=_positive_int,
        metavar="N",
        help=(
            "train each configuration with seeds 0..N-1. "
            f"Default: {defaults['seeds']}"
        ),
    )
    ablate.add_argument(
        "--noise",
        metavar="KIND[:VALUE|:NAME=VALUE,...]",
        help=(
            "the weight noise of a built-in model's noisy layers: KIND, "
            "KIND:VALUE (its "
            "first parameter, e.g. dropconnect:0.2) or KIND:NAME=VALUE,... "
            "(e.g. learned_gaussian:init_stddev=0.05,dataset_size=1000), "
            f"with KIND one of {', '.join(NOISE_KINDS)}. "
            f"Default: {defaults['noise']}"
        ),
    )
    ablate.add_argument(
        "--estimator",
        metavar="{shared,flipout,local_reparameterization}",
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
        help=f"training batch size. Default: {defaults['batch_size']}",
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
    ablate.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help=(
            "train the runs as Ray tasks (pip install \"noisylayers[ray]\"): "
            "without ADDRESS on a new local Ray instance (all cores); 'auto' "
            "or ray://HOST:PORT joins a running cluster"
        ),
    )
    ablate.add_argument(
        "--cpus-per-run",
        type=_positive_int,
        metavar="N",
        help="with --ray: the CPUs (and intra-op threads) of each run. Default: 1",
    )
    ablate.add_argument(
        "--gpus-per-run",
        type=_non_negative,
        metavar="G",
        help="with --ray: the GPUs of each run, fractions allowed. Default: 0",
    )

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
        + " ".join(f"{s:g}" for s in _settings.SENSITIVITY_SCALES),
    )
    sensitivity.add_argument(
        "--draws",
        type=_positive_int,
        default=_settings.SENSITIVITY_DRAWS,
        metavar="N",
        help=f"noise draws per layer and scale. Default: {_settings.SENSITIVITY_DRAWS}",
    )
    sensitivity.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the results. Default: ./sensitivity-YYYYmmdd-HHMMSS",
    )
    sensitivity.add_argument(
        "--no-progress", action="store_true", help="do not show progress bars"
    )
    _add_drift_parser(commands)
    _add_evaluate_parser(commands, formatter)
    return parser


def _add_drift_parser(commands):
    """The `drift` command: accuracy over time on analog (PCM) hardware.

    Its options stay strings here: `noisylayers._drift_command` checks them,
    so that every bad value gets a one-line error.
    """
    drift = commands.add_parser(
        "drift",
        help="accuracy of a saved Keras model over time on analog (PCM) hardware",
        description=textwrap.fill(
            "Program the weights of a trained, compiled model saved as .keras "
            "onto simulated phase-change-memory devices (aihwkit's PCM model: "
            "programming noise, conductance drift, read noise, global drift "
            "compensation; biases stay digital), several times, and evaluate "
            "it on DATA.npz (arrays 'x' and 'y') at each time after "
            "programming. Prints the table and writes drift.md, drift.json "
            "and drift.png into --out."
        ),
        epilog=(
            "examples:\n"
            "  noisylayers drift model.keras --data val.npz\n"
            "  noisylayers drift model.keras --data val.npz --times 1s 1h 1d 30d 1y "
            "--repeats 10 --per channel\n"
            "  noisylayers drift model.keras --data val.npz --no-compensation "
            "--out drift-raw\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift.add_argument("model", metavar="MODEL.keras", help="the saved model")
    drift.add_argument(
        "--data",
        required=True,
        metavar="DATA.npz",
        help="NumPy .npz file with arrays 'x' (inputs) and 'y' (targets)",
    )
    drift.add_argument(
        "--times",
        nargs="+",
        metavar="T",
        help=(
            "times after programming: a number with s, m, h, d or y "
            "(y = 365 d), or plain seconds. Default: 1s 1h 1d 30d 1y"
        ),
    )
    drift.add_argument(
        "--repeats",
        metavar="N",
        help="programmings (each evaluated at every time). Default: 5",
    )
    drift.add_argument(
        "--per",
        default="tensor",
        metavar="{tensor,channel}",
        help=(
            "map max|W| of each weight tensor, or of each output channel, "
            "to g_max. Default: tensor"
        ),
    )
    drift.add_argument(
        "--no-compensation",
        action="store_true",
        help="no global drift compensation (default: compensated)",
    )
    drift.add_argument(
        "--seed", metavar="S", help="seed of the programmings and reads. Default: 0"
    )
    drift.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the results. Default: ./drift-YYYYmmdd-HHMMSS",
    )


def _add_evaluate_parser(commands, formatter):
    """`noisylayers evaluate MODEL.keras --data DATA.npz [--ood OOD.npz] ...`."""

    def seed(text):
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(
                f"must be a non-negative integer: {text!r}"
            )
        return value

    evaluate = commands.add_parser(
        "evaluate",
        help="is a saved classifier's uncertainty any good? (calibration, OOD)",
        description=textwrap.fill(
            "Score the predictive uncertainty of a classifier saved as "
            ".keras: Monte Carlo samples with weight noise in its noisy "
            "layers (one deterministic pass without any), then accuracy, "
            "negative log-likelihood, Brier score, expected calibration error, "
            "mean predictive entropy and mutual information, and given "
            "out-of-distribution inputs the AUROC of telling them apart. "
            "Prints the table and writes evaluation.md, .json and .png (a "
            "reliability diagram and entropy histograms)."
        ),
        epilog=(
            "examples:\n"
            "  noisylayers evaluate model.keras --data test.npz\n"
            "  noisylayers evaluate model.keras --data test.npz --ood noise.npz "
            "--samples 50 --out eval\n"
        ),
        formatter_class=formatter,
    )
    evaluate.add_argument("model", metavar="MODEL.keras", help="the saved model")
    evaluate.add_argument(
        "--data",
        required=True,
        metavar="DATA.npz",
        help=(
            "NumPy .npz file with arrays 'x_test' and 'y_test' (or 'x' and "
            "'y'): inputs and integer or one-hot labels"
        ),
    )
    evaluate.add_argument(
        "--ood",
        metavar="OOD.npz",
        help="NumPy .npz file with out-of-distribution inputs 'x' (or 'x_test')",
    )
    evaluate.add_argument(
        "--samples",
        type=_positive_int,
        default=30,
        metavar="N",
        help="Monte Carlo samples. Default: 30",
    )
    evaluate.add_argument(
        "--seed", type=seed, default=0, metavar="S", help="seed of the noise. Default: 0"
    )
    evaluate.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the results. Default: ./evaluation-YYYYmmdd-HHMMSS",
    )


def _add_report_options(parser):
    parser.add_argument(
        "--sensitivity-scales",
        type=_scales,
        nargs="+",
        metavar="S",
        help=(
            "the noise scales of the sensitivity ablation. Default: "
            + " ".join(f"{s:g}" for s in _settings.SENSITIVITY_SCALES)
        ),
    )
    parser.add_argument(
        "--draws",
        type=_positive_int,
        default=_settings.SENSITIVITY_DRAWS,
        metavar="N",
        help=(
            "noise draws per layer and scale in the sensitivity ablation. "
            f"Default: {_settings.SENSITIVITY_DRAWS}"
        ),
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show progress bars"
    )


if __name__ == "__main__":
    sys.exit(main())
