"""The runs of a training ablation as Ray tasks, on one machine or a cluster.

`training_ablation(..., ray=ADDRESS)` calls `run_on_ray`: one Ray task per
run, the data and `build_model` put into Ray's object store once, and each
task's record and model file written into the ablation's directory by this
process (the driver) as it arrives. `ray_session` starts or joins Ray (and
keeps Ray's own messages off the terminal while it is open); the command
holds one for its whole run.

Each worker trains with the driver's Keras backend (`KERAS_BACKEND` in the
task's runtime environment) and `cpus_per_run` intra-op threads
(TensorFlow's intra-op thread pool, set before the backend starts; the
OpenMP/BLAS pools; on JAX, whose XLA CPU client has no thread setting,
`cpus_per_run=1` turns off its Eigen multi-threading). On JAX, a
persistent compilation cache configured in the driver is shared with the
workers.

Ray is optional: `pip install "noisylayers[ray]"`.
"""

import contextlib
import logging
import os
import tempfile
import warnings

import keras

from noisylayers._validation import check_number
from noisylayers._validation import check_positive_int
from noisylayers.ablation import store
from noisylayers.ablation.optional import require
from noisylayers.ablation.progress import progress_bar

#: Ray's retries of a task whose worker process died (Ray's own default).
MAX_RETRIES = 3


def require_ray():
    """Imports Ray; if it is missing, says to `pip install "noisylayers[ray]"`.

    Raises:
        noisylayers.ablation.optional.MissingDependencyError: if Ray is not
            installed.
    """
    return require("ray", "running the ablation on Ray (--ray)", extra="ray")


def check_resources(ray, cpus_per_run, gpus_per_run):
    """Checks the Ray arguments of `training_ablation`.

    Returns:
        `(cpus_per_run, gpus_per_run)`: an int and a float.

    Raises:
        TypeError, ValueError: for a `ray` that is not a string, a
            `cpus_per_run` that is not a positive integer, a
            `gpus_per_run` below 0.
    """
    if not isinstance(ray, str) or not ray:
        raise TypeError(
            "Argument `ray` must be None, 'local' or the address of a Ray "
            f"cluster ('auto', 'ray://HOST:PORT'). Received: ray={ray!r}"
        )
    return (
        check_positive_int("cpus_per_run", cpus_per_run),
        check_number("gpus_per_run", gpus_per_run, low=0.0),
    )


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else (
        type(error).__name__
    )


@contextlib.contextmanager
def _quiet_ray_messages(ray):
    """Keeps the messages Ray pushes to the driver off the terminal.

    Ray prints the errors of its raylets ("A worker died or was killed
    ...", "Task ... will be retried") on the driver's standard output from
    a thread of its own; `run_on_ray` reports failures in its own words.
    Ray's debugger silences them with the same switch.
    """
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    if worker is None or not hasattr(worker, "_worker_logs_enabled"):
        yield
        return
    saved = worker._worker_logs_enabled
    worker._worker_logs_enabled = False
    try:
        yield
    finally:
        worker._worker_logs_enabled = saved


@contextlib.contextmanager
def ray_session(address="local"):
    """Within the block, Ray runs in this process: started, joined or reused.

    If Ray is initialized already (`ray.init` was called), that instance is
    used and left running. Otherwise `address="local"` starts a new local
    instance (all this machine's cores), and any other address joins that
    cluster (`"auto"`, `"ray://HOST:PORT"`); the block's end shuts it
    down. Ray's own log lines and messages stay off the terminal.

    Args:
        address: `"local"`, or an address for `ray.init`.

    Yields:
        The `ray` module.

    Raises:
        ValueError: if the cluster cannot be reached.
        noisylayers.ablation.optional.MissingDependencyError: if Ray is not
            installed.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address == "local":
            kwargs.update(address="local", include_dashboard=False)
        else:
            kwargs["address"] = address
        try:
            with warnings.catch_warnings():
                # JAX warns at every fork; Ray's fork starts its processes
                # (fork and exec), which is safe.
                warnings.filterwarnings(
                    "ignore", message=r"os\.fork\(\) was called",
                    category=RuntimeWarning,
                )
                ray.init(**kwargs)
        except (ConnectionError, ValueError) as e:
            raise ValueError(
                f"Argument `ray`: cannot reach a Ray cluster at {address!r} "
                f"({_first_line(e)}). Start one with `ray start --head` (see "
                "the README), or use a local instance (ray='local', --ray "
                f"without ADDRESS). Received: ray={address!r}"
            ) from None
        started = True
    try:
        with _quiet_ray_messages(ray):
            yield ray
    finally:
        if started:
            ray.shutdown()


def _worker_env(threads):
    """The environment of the workers: the driver's backend, the threads."""
    backend = keras.backend.backend()
    env = {
        "KERAS_BACKEND": backend,
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
    }
    if backend == "jax":
        import jax

        if threads == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
        cache = jax.config.jax_compilation_cache_dir
        if cache:
            env["JAX_COMPILATION_CACHE_DIR"] = os.path.abspath(cache)
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(
                jax.config.jax_persistent_cache_min_compile_time_secs
            )
    return env


def _set_threads(threads):
    """Sets TensorFlow's intra-op threads, before it starts in this worker."""
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # started by an earlier run of this worker: set then
        pass


def _train_remote(run, build_model, spec, data, save_models, threads):
    """A Ray task: trains one run; returns its record and model file's bytes."""
    from noisylayers.ablation.training import train_run

    _set_threads(threads)
    record, model = train_run(run, build_model, spec, data)
    if not save_models:
        return record, None
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"{run.id}.keras")
        model.save(path)
        with open(path, "rb") as f:
            return record, f.read()


def _describe(ray, error):
    """A failed run's error, in one line."""
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = getattr(error, "cause", None)
        return _first_line(cause) if cause is not None else _first_line(error)
    if isinstance(error, ray.exceptions.WorkerCrashedError):
        return (
            f"its worker process died, and again on each of the "
            f"{MAX_RETRIES} retries (WorkerCrashedError)"
        )
    return _first_line(error)


def run_on_ray(
    runs,
    build_model,
    spec,
    data,
    out_dir,
    save_models,
    address="local",
    cpus_per_run=1,
    gpus_per_run=0,
    progress=True,
):
    """Trains runs as Ray tasks; writes each into `out_dir` as it finishes.

    The part of `training_ablation(..., ray=address)` that trains: see
    there.

    Args:
        runs: The `plan.Run`s to train.
        build_model, spec, data, out_dir, save_models: As in
            `training_ablation` (`spec` from `plan.make_spec`, `data` as
            `((x_train, y_train), (x_val, y_val))`).
        address: `"local"` or an address for `ray.init` (see
            `ray_session`).
        cpus_per_run: The Ray CPUs (and intra-op threads) of each run.
        gpus_per_run: The Ray GPUs of each run.
        progress: Whether to show a progress bar over the finished runs.

    Returns:
        `(records, failed)`: `{run id: record}` of the runs that finished
        and `{run id: error}` of those that failed.

    Raises:
        ValueError: if the cluster cannot be reached, or `build_model` or
            the data cannot be sent to the workers.
        KeyboardInterrupt: after cancelling the outstanding tasks (the
            finished runs are written).
    """
    records, failed = {}, {}
    with ray_session(address) as ray:
        shared = {}
        for name, value in (("build_model", build_model), ("data", data)):
            try:
                shared[name] = ray.put(value)
            except Exception as e:  # noqa: BLE001 - pickling fails in many ways
                raise ValueError(
                    f"Argument `{name}` cannot be sent to Ray's workers "
                    f"({_first_line(e)}). Use NumPy arrays and a function "
                    "that pickles (cloudpickle)."
                ) from None
        task = ray.remote(
            num_cpus=cpus_per_run,
            num_gpus=gpus_per_run,
            max_retries=MAX_RETRIES,
            runtime_env={"env_vars": _worker_env(cpus_per_run)},
        )(_train_remote)
        waiting = {
            task.remote(
                run, shared["build_model"], spec, shared["data"],
                save_models and out_dir is not None, cpus_per_run,
            ): run
            for run in runs
        }
        with progress_bar(
            None, enabled=progress, total=len(waiting),
            desc="Training ablation (Ray)", unit="run",
        ) as bar:

            def collect(ref):
                run = waiting.pop(ref)
                try:
                    record, model_file = ray.get(ref)
                except ray.exceptions.RayError as e:
                    failed[run.id] = _describe(ray, e)
                else:
                    if out_dir is not None:
                        store.save_run_files(out_dir, record, model_file)
                    records[run.id] = record
                bar.update(1)
                bar.set_postfix_str(run.id)

            try:
                while waiting:
                    ready, _ = ray.wait(list(waiting), num_returns=1)
                    for ref in ready:
                        collect(ref)
            except KeyboardInterrupt:
                ready, _ = ray.wait(
                    list(waiting), num_returns=len(waiting), timeout=0
                )
                for ref in ready:  # finished before the interrupt: keep them
                    collect(ref)
                for ref in waiting:
                    ray.cancel(ref, force=True)
                raise
    return records, failed
