"""The `noisylayers` command: per-layer weight-noise ablations.

`noisylayers ablate` trains a small model with weight noise in different sets
of layers (a training ablation, over seeds), then puts noise into one layer
of the trained no-noise model at a time (a sensitivity ablation), and writes
tables, plots and the trained models. `noisylayers merge` combines the
directories of a sharded ablation. `noisylayers sensitivity` scores the
per-layer noise robustness of any saved Keras model. Run
`noisylayers COMMAND --help`.
"""

import argparse
import datetime
import functools
import os
import sys
import textwrap

import keras

import noisylayers
from noisylayers import noise as noise_module
from noisylayers.noise.base import ESTIMATORS
from noisylayers.ablation import merge
from noisylayers.ablation import sensitivity_ablation
from noisylayers.ablation import training_ablation
from noisylayers.ablation.models import TASKS
from noisylayers.ablation.sensitivity import DEFAULT_SCALES
from noisylayers.ablation.plan import parse_shard
from noisylayers.ablation.store import load_spec

DEFAULTS = {
    "model": "cnn",
    "noise": "gaussian:0.1",  # normalized: as `noise_text` writes it
    "epochs": 10,
    "seeds": 3,
    "scales": None,
    "samples": None,
    "batch_size": 32,
    "estimator": None,
}
SENSITIVITY_DRAWS = 5

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
        ValueError: for an unknown kind or an invalid value.
    """
    noise_module.get(text.partition(":")[0].strip())  # an unknown kind
    try:
        return noise_module.parse(text)
    except (TypeError, ValueError) as e:
        raise ValueError(
            "--noise must be KIND or KIND:VALUE (or KIND:NAME=VALUE,...): "
            f"{e} Received: --noise {text}"
        ) from None


def noise_text(noise):
    """The `--noise` text of a noise kind: `KIND:VALUE` for one parameter."""
    config = noise.get_config()
    if len(config) == 1:
        (value,) = config.values()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            aliases = {cls: alias for alias, cls in noise_module.ALIASES.items()}
            return f"{aliases[type(noise)]}:{value:g}"
    return noise_module.to_spec(noise)


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
    import numpy as np

    try:
        with np.load(path) as data:
            if "x" not in data or "y" not in data:
                raise ValueError(
                    f"--data {path} must hold arrays 'x' and 'y'; it holds "
                    f"{sorted(data.files)}."
                )
            return data["x"], data["y"]
    except (OSError, EOFError) as e:
        raise ValueError(f"--data {path}: cannot read it as .npz ({e}).") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"--data {path}: not a NumPy .npz file ({e}).") from None


def _sensitivity(args):
    if not os.path.isfile(args.model):
        raise ValueError(f"MODEL {args.model}: no such file.")
    x, y = _load_npz(args.data)
    try:
        model = keras.models.load_model(args.model)
    except Exception as e:  # noqa: BLE001 - any loading failure is a bad file
        raise ValueError(
            f"MODEL {args.model}: cannot load it as a Keras model "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    noise = None if args.noise is None else parse_noise(args.noise)
    out = args.out or _new_out_dir("sensitivity")
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


def _saved_settings(spec):
    """The `ablate` settings of a saved ablation, as `DEFAULTS` has them."""
    meta = spec.get("metadata", {})
    if "model" not in meta or meta["model"] not in TASKS:
        raise ValueError(
            "The directory holds a training ablation that 'noisylayers "
            "ablate' did not write (its settings name no --model)."
        )
    seeds = spec["seeds"]
    return {
        "model": meta["model"],
        "noise": meta["noise"],
        "epochs": spec["epochs"],
        "seeds": len(seeds),
        "scales": spec["scales"],
        "samples": meta.get("samples"),
        "batch_size": spec["batch_size"],
        "estimator": meta.get("estimator"),
    }


def _settings(args):
    """Resolves the `ablate` settings: command line, saved, defaults."""
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
        settings = {**DEFAULTS, **given}
        return settings
    saved = _saved_settings(load_spec(args.resume))
    for key, value in given.items():
        if value != saved[key]:
            option = "--" + key.replace("_", "-")
            raise ValueError(
                f"{option} {value} differs from the setting saved in "
                f"{args.resume} ({saved[key]}). Leave it out to resume, or "
                "start a new ablation in another --out."
            )
    return saved


def _new_out_dir(prefix="ablation"):
    stem = datetime.datetime.now().strftime(f"{prefix}-%Y%m%d-%H%M%S")
    out, n = stem, 1
    while os.path.exists(out):
        n += 1
        out = f"{stem}-{n}"
    return out


def _use_jax_compilation_cache(out):
    """Compiles each model's steps once for all runs, on the JAX backend.

    Every run of an ablation compiles the same computation; without JAX's
    persistent compilation cache, compiling takes most of a short run.
    """
    if keras.backend.backend() != "jax":
        return
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        cache = os.path.join(out, ".jax-cache")
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _ablate(args):
    if args.resume is not None:
        if args.out is not None and os.path.abspath(args.out) != os.path.abspath(
            args.resume
        ):
            raise ValueError(
                "--resume DIR continues the ablation in DIR: leave out --out. "
                f"Received: --resume {args.resume} --out {args.out}"
            )
        out = args.resume
    else:
        out = args.out or _new_out_dir()
    settings = _settings(args)
    task = TASKS[settings["model"]]
    noise = parse_noise(settings["noise"])
    try:
        task.build(noise=noise, estimator=settings["estimator"])
    except ValueError as e:
        raise ValueError(
            f"--model {task.name} --noise {settings['noise']} --estimator "
            f"{settings['estimator']}: {e}"
        ) from None
    data = task.data(samples=settings["samples"])
    (x_train, _), (x_val, _) = data
    if len(x_train) < 2 or len(x_val) < 1:
        raise ValueError(
            f"--samples {settings['samples']} leaves {len(x_train)} training "
            f"and {len(x_val)} validation examples: use at least 10."
        )
    resuming = os.path.isfile(os.path.join(out, "ablation.json"))
    print(
        f"{'Resuming the ablation' if resuming else 'Ablation'} of "
        f"{task.description}, noise {settings['noise']}, {settings['epochs']} epochs, "
        f"{settings['seeds']} seed(s), in {out}/"
    )
    _use_jax_compilation_cache(out)
    try:
        return _train_and_report(out, task, noise, settings, data, args)
    except KeyboardInterrupt:
        print(
            "\nInterrupted. The finished runs are saved; continue with:\n"
            f"  noisylayers ablate --resume {out}",
            file=sys.stderr,
        )
        return 130


def _train_and_report(out, task, noise, settings, data, args):
    result = training_ablation(
        functools.partial(task.build, noise=noise, estimator=settings["estimator"]),
        data,
        epochs=settings["epochs"],
        seeds=list(range(settings["seeds"])),
        scales=settings["scales"],
        batch_size=settings["batch_size"],
        out_dir=out,
        shard=args.shard,
        save_models=True,
        metadata={
            "model": task.name,
            "noise": settings["noise"],
            "samples": settings["samples"],
            **({"estimator": settings["estimator"]} if settings["estimator"] else {}),
        },
        progress=not args.no_progress,
    )
    if not result.complete:
        print(result)
        done = "" if args.shard is None else "Shard {}/{} is done. ".format(
            *args.shard
        )
        print(
            f"\n{done}{len(result.missing)} run(s) of the ablation are in "
            "other shards. When they are done, combine the directories with\n"
            f"  noisylayers merge {out} OTHER_DIRS... --out MERGED_DIR"
        )
        return 0
    return _report(out, result, data, args)


def _merge(args):
    result = merge(args.dirs, out_dir=args.out)
    if not result.complete:
        print(result)
        print(
            f"noisylayers merge: error: the directories lack {len(result.missing)} "
            f"run(s) of the ablation, e.g. {result.missing[0]}. Run the "
            f"missing shards, then merge again. Merged runs are in {args.out}/.",
            file=sys.stderr,
        )
        return 1
    settings = _saved_settings(result.spec)
    data = TASKS[settings["model"]].data(samples=settings["samples"])
    return _report(args.out, result, data, args)


def _print_noise_stats(out, result):
    """Per-layer noise figures (sparsity, learned sigma) of the all-noise model."""
    run = next(
        (
            r
            for r in result.records
            if r["configuration"] == "all"
            and r["seed"] == result.spec["seeds"][0]
            and r.get("model")
        ),
        None,
    )
    if run is None:
        return
    model = keras.models.load_model(os.path.join(out, run["model"]))
    print(f"\nNoise in the model trained with noise everywhere ({run['id']}):")
    print(noisylayers.noise_stats(model))


def _report(out, result, data, args):
    """Writes the training tables, runs and writes the sensitivity ablation."""
    print()
    print(result)
    written = result.save(out, "training")
    baseline = next(
        r
        for r in result.records
        if not r["enabled"] and r["seed"] == result.spec["seeds"][0]
    )
    if not baseline.get("model"):
        raise ValueError(
            f"{out} has no saved baseline model for the sensitivity "
            "ablation: it was written without `save_models=True`."
        )
    _print_noise_stats(out, result)
    model = keras.models.load_model(os.path.join(out, baseline["model"]))
    scales = _flatten(args.sensitivity_scales) or list(DEFAULT_SCALES)
    sensitivity = sensitivity_ablation(
        model,
        data[1],
        scales=scales,
        draws=args.draws,
        metadata={"model": baseline["model"]},
        progress=not args.no_progress,
    )
    print()
    print(sensitivity)
    written += sensitivity.save(out, "sensitivity")
    models = len(result.records)
    print("\nWrote:")
    for path in written:
        print(f"  {path}")
    print(f"  {os.path.join(out, 'models')}/*.keras ({models} trained models)")
    print(f"  {os.path.join(out, 'runs')}/*.json (one record per run)")
    return 0


def main(argv=None):
    """Runs the `noisylayers` command; returns its exit status.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        0 on success, 1 when a merge lacks runs or a file cannot be written,
        2 for invalid arguments, 130 when interrupted.
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
    except (ValueError, TypeError) as e:
        print(f"noisylayers {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"noisylayers {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
