"""Wall time of the default `noisylayers ablate`, serially and with `--ray`.

    python -m benchmarks.ray_ablation --backend tensorflow
    python -m benchmarks.ray_ablation --backend jax

Runs the command as a user would, each time in a fresh process with the
default settings (the CNN on scikit-learn's digits: 30 training runs of 10
epochs, then the sensitivity ablation): once serially, once with `--ray` (a
new local Ray instance on all the machine's cores). Also measures what
starting Ray costs by itself: `ray.init`, the first task (a worker process
that imports Keras, the backend and noisylayers) and `ray.shutdown`.

Writes `benchmarks/results/ray-ablation-BACKEND.{json,md}` with the
machine's load average before and after each measurement: on a shared
machine, a load above its core count means the numbers are disturbed.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import env

RAY_STARTUP = """
import logging, sys, time
t0 = time.perf_counter()
import ray
ray.init(address="local", include_dashboard=False, log_to_driver=False,
         logging_level=logging.ERROR)
t1 = time.perf_counter()

@ray.remote(runtime_env={"env_vars": {"KERAS_BACKEND": sys.argv[1]}})
def first_task():
    import keras
    import noisylayers.ablation.distributed
    return keras.backend.backend()

assert ray.get(first_task.remote()) == sys.argv[1]
t2 = time.perf_counter()
ray.shutdown()
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def _environment(backend):
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": env.ROOT}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return environment


def _load():
    return round(os.getloadavg()[0], 2)


def time_ablation(backend, ray, directory):
    """Runs `noisylayers ablate` with the defaults; its wall time and runs."""
    out = os.path.join(directory, "ray" if ray else "serial")
    command = [sys.executable, "-m", "noisylayers_cli", "ablate", "--out", out,
               "--no-progress", *(["--ray"] if ray else [])]
    load = _load()
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=env.ROOT, env=_environment(backend),
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    runs = []
    for path in glob.glob(os.path.join(out, "runs", "*.json")):
        with open(path) as f:
            runs.append(json.load(f)["seconds"])
    with open(os.path.join(out, "training.json")) as f:
        rows = json.load(f)["summary"]
    return {
        "wall_s": round(seconds, 1),
        "runs": len(runs),
        "mean_run_s": round(sum(runs) / len(runs), 2),
        "accuracy": {r["configuration"]: r.get("accuracy_mean") for r in rows},
        "load_before": load,
        "load_after": _load(),
    }


def time_ray_startup(backend):
    """`ray.init`, the first task (worker start-up and imports), `ray.shutdown`."""
    load = _load()
    child = subprocess.run(
        [sys.executable, "-c", RAY_STARTUP, backend], check=True, cwd=env.ROOT,
        env=_environment(backend), capture_output=True, text=True,
    )
    init, first_task, shutdown = (float(v) for v in child.stdout.split()[-3:])
    return {
        "init_s": round(init, 1),
        "first_task_s": round(first_task, 1),
        "shutdown_s": round(shutdown, 1),
        "load_before": load,
        "load_after": _load(),
    }


def markdown(report):
    serial, ray, startup = report["serial"], report["ray"], report["ray_startup"]
    lines = [
        f"# Default `noisylayers ablate`, serial vs `--ray` ({report['backend']})",
        "",
        f"{report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"{report['machine']['date']}",
        "",
        "| | wall time | runs | mean time per run | load average before, after |",
        "|---|---|---|---|---|",
    ]
    for name, r in (("serial", serial), ("--ray (local, all cores)", ray)):
        lines.append(
            f"| {name} | {r['wall_s']:.0f} s | {r['runs']} | {r['mean_run_s']:.2f} s "
            f"| {r['load_before']}, {r['load_after']} |"
        )
    lines += [
        "",
        f"Starting Ray alone: `ray.init` {startup['init_s']} s, the first task "
        f"(a worker importing the backend) {startup['first_task_s']} s, "
        f"`ray.shutdown` {startup['shutdown_s']} s (load {startup['load_before']}, "
        f"{startup['load_after']}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=env.BACKENDS, default="tensorflow")
    parser.add_argument("--out", default=None, help="the JSON file to write")
    args = parser.parse_args(argv)
    env.setup_backend(args.backend)  # for machine_info (the runs are children)
    with tempfile.TemporaryDirectory() as directory:
        report = {
            "backend": args.backend,
            "machine": env.machine_info(args.backend),
            "ray_startup": time_ray_startup(args.backend),
            "serial": time_ablation(args.backend, False, directory),
            "ray": time_ablation(args.backend, True, directory),
        }
    out = args.out or os.path.join(
        env.ROOT, "benchmarks", "results", f"ray-ablation-{args.backend}.json"
    )
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
