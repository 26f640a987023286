"""The `noisylayers` command: calls the library and prints.

The command's front end, `noisylayers_cli` (outside this package, so that
`--help` does not import Keras), parses the arguments and then calls `run`
here. Nothing here calls back into it.

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

The command's output is its own: while it runs, TensorFlow's Python
warnings (e.g. "5 out of the last 15 calls ... triggered tf.function
retracing", which training many models in one process triggers) are
silenced. On JAX, `ablate` turns on JAX's persistent compilation cache in
`--out`/.jax-cache (unless one is configured), for the rest of the process:
every run compiles the same steps.
"""

import contextlib
import logging
import os
import sys

import keras

from noisylayers import _command_files
from noisylayers import noise as noise_module
from noisylayers.ablation import distributed
from noisylayers.ablation import merge
from noisylayers.ablation import pipeline
from noisylayers.ablation import sensitivity_ablation
from noisylayers.ablation import store
from noisylayers.ablation.models import TASKS
from noisylayers.ablation.optional import MissingDependencyError
from noisylayers.ablation.sensitivity import sensitivity_layers
from noisylayers.ablation.settings import DEFAULTS
from noisylayers.ablation.settings import SENSITIVITY_SCALES
from noisylayers.ablation.settings import is_own_model
from noisylayers.ablation.settings import normalize_source
from noisylayers.noise.spec import short_spec


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


def _flatten(lists):
    return None if lists is None else [v for values in lists for v in values]


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


def _sensitivity(args):
    with _usage_errors():
        _command_files.check_model_file(args.model)
        x, y = _command_files.load_arrays("--data", args.data)
        model = _command_files.load_model(args.model)
    noise = None if args.noise is None else parse_noise(args.noise)
    with _usage_errors():
        sensitivity_layers(model, args.layers, noise)
        _command_files.check_fits(model, args.model, "--data", args.data, x, y)
    out = args.out or store.new_out_dir("sensitivity")
    result = sensitivity_ablation(
        model,
        (x, y),
        scales=_flatten(args.scales) or list(SENSITIVITY_SCALES),
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


def _drift(args):
    """`noisylayers drift`: accuracy over time on PCM (`noisylayers.hardware`)."""
    from noisylayers import _drift_command

    with _usage_errors():
        job = _drift_command.prepare(args)
    return _drift_command.execute(job)


def _evaluate(args):
    """`noisylayers evaluate`: `noisylayers.uncertainty.evaluate` on files."""
    from noisylayers import _evaluate_command

    with _usage_errors():
        job = _evaluate_command.prepare(args)
    return _evaluate_command.execute(job)


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
        given["noise"] = short_spec(parse_noise(given["noise"]))
    if "wrap" in given:
        given["wrap"] = _parse_wrap(given["wrap"])
    if is_own_model(given.get("model")):
        given["model"] = normalize_source(given["model"], "model")
    if "data" in given:
        given["data"] = normalize_source(given["data"], "data")
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


def _parse_wrap(text):
    """Reads `--wrap KIND[:PARAMS]` as the settings keep it."""
    try:
        return short_spec(noise_module.parse(text))
    except (TypeError, ValueError) as e:
        raise UsageError(
            "--wrap must be KIND or KIND:VALUE (or KIND:NAME=VALUE,...), a "
            f"noise kind to wrap every layer with: {e} Received: --wrap {text}"
        ) from None


def _check_combination(settings, args):
    """Refuses options that do not go with the model (or with each other)."""
    model = settings.get("model", DEFAULTS["model"])
    if is_own_model(model):
        if settings.get("data") is None:
            raise UsageError(
                f"--model {model} is a model of your own: give its data with "
                "--data DATA.npz (arrays x_train, y_train, x_val, y_val, or "
                "x and y) or --data FILE.py:FUNCTION."
            )
        if settings.get("noise") is not None:
            raise UsageError(
                "--noise sets the noise of the built-in models: your model "
                "keeps the noise of its noisy layers. To add noise to a model "
                "without noisy layers, use --wrap KIND[:PARAMS]."
            )
        if settings.get("estimator") is not None and settings.get("wrap") is None:
            raise UsageError(
                "--estimator applies to the noise of --wrap: your model's "
                "noisy layers keep their estimators. Received: --estimator "
                f"{settings['estimator']} without --wrap"
            )
    else:
        for key in ("data", "val_split", "wrap"):
            if settings.get(key) is not None:
                option = "--" + key.replace("_", "-")
                raise UsageError(
                    f"{option} is for a model of your own (--model "
                    "FILE.py:FUNCTION, package.module:FUNCTION or MODEL.keras): "
                    f"the built-in model '{model}' brings its data and noise."
                )
    if args.ray is None:
        for option in ("cpus_per_run", "gpus_per_run"):
            if getattr(args, option) is not None:
                raise UsageError(
                    f"--{option.replace('_', '-')} sets the resources of each "
                    "Ray task: it goes with --ray [ADDRESS]."
                )


def _description(settings):
    """What the ablation trains, for its first line."""
    if not is_own_model(settings["model"]):
        return (
            f"{TASKS[settings['model']].description}, noise {settings['noise']}"
        )
    noise = (
        f"every layer wrapped with {settings['wrap']}"
        if settings.get("wrap")
        else "the noise of its noisy layers"
    )
    return f"your model {settings['model']} on {settings['data']}, {noise}"


def _sensitivity_options(args):
    return {
        "sensitivity_scales": (
            _flatten(args.sensitivity_scales) or list(SENSITIVITY_SCALES)
        ),
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
        out = args.out or store.new_out_dir()
    settings = _settings(args)
    _check_combination(settings, args)
    if args.ray is not None:
        distributed.require_ray()  # before anything slow
    options = _sensitivity_options(args)
    with _usage_errors():
        settings = pipeline.check_settings(
            **settings, **options, out_dir=out, shard=args.shard
        )
    resuming = store.has_spec(out)
    where = "" if args.ray is None else (
        " on Ray" + ("" if args.ray == "local" else f" at {args.ray}")
    )
    print(
        f"{'Resuming the ablation' if resuming else 'Ablation'} of "
        f"{_description(settings)}, {settings['epochs']} epochs, "
        f"{settings['seeds']} seed(s), in {out}/{where}"
    )
    use_jax_compilation_cache(os.path.join(out, ".jax-cache"))
    try:
        with contextlib.ExitStack() as stack:
            ray_options = {}
            if args.ray is not None:
                with _usage_errors():  # an address that cannot be reached
                    stack.enter_context(distributed.ray_session(args.ray))
                ray_options = {
                    "ray": args.ray,
                    "cpus_per_run": args.cpus_per_run or 1,
                    "gpus_per_run": args.gpus_per_run or 0,
                }
            report = pipeline.run_ablation(
                **settings,
                **options,
                out_dir=out,
                shard=args.shard,
                progress=not args.no_progress,
                **ray_options,
            )
    except KeyboardInterrupt:
        print(
            "\nInterrupted. The finished runs are saved; continue with:\n"
            f"  noisylayers ablate --resume {out}",
            file=sys.stderr,
        )
        return 130
    if report.training.failed:
        return _report_failures(report.training, out)
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


def _report_failures(training, out):
    """Prints the finished runs' table and the failed runs; returns 1."""
    print(training)
    for run_id, error in training.failed.items():
        print(
            f"noisylayers ablate: run {run_id} failed: {error}", file=sys.stderr
        )
    print(
        f"noisylayers ablate: error: {len(training.missing)} run(s) of the "
        f"ablation are missing ({len(training.failed)} failed); the finished "
        f"runs are saved in {out}/. Fix the cause, then finish them with: "
        f"noisylayers ablate --resume {out}",
        file=sys.stderr,
    )
    return 1


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


def use_jax_compilation_cache(directory):
    """Turns on JAX's persistent compilation cache in `directory`, on JAX.

    Every run of an ablation compiles the same computation; without the
    cache, compiling takes most of a short run. Does nothing on another
    backend, or when a cache directory is configured already. A setting of
    the whole process: it stays on.
    """
    if keras.backend.backend() != "jax":
        return
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@contextlib.contextmanager
def quiet_tensorflow_warnings():
    """Within the block, TensorFlow's Python logger shows errors only.

    On the TensorFlow backend only; its level is restored afterwards.
    """
    if keras.backend.backend() != "tensorflow":
        yield
        return
    logger = logging.getLogger("tensorflow")  # what `tf.get_logger()` returns
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run(args):
    """Runs a command parsed by `noisylayers_cli.build_parser`.

    Returns:
        0 on success, 1 when a merge lacks runs, a file cannot be written
        or an optional dependency is missing, 2 for invalid arguments,
        130 when interrupted.
    """
    command = {"ablate": _ablate, "merge": _merge, "sensitivity": _sensitivity}
    command["drift"] = _drift
    command["evaluate"] = _evaluate
    try:
        with quiet_tensorflow_warnings():
            return command[args.command](args)
    except UsageError as e:
        print(f"noisylayers {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, MissingDependencyError) as e:
        print(f"noisylayers {args.command}: error: {e}", file=sys.stderr)
        return 1
