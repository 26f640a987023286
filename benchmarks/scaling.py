"""How the cost of weight noise grows: width, batch size and sequence length.

Usage (from the repository root):

    python -m benchmarks.scaling --plot-dir docs     # ~20 min on 2 shared CPU cores
    python -m benchmarks.scaling --backend jax
    python -m benchmarks.scaling --axes batch --max-params 3e7 --rounds 5
    python -m benchmarks.scaling --tiny --no-memory  # tiny sizes, 1 round

Three sweeps, each a list of points; at every point plain Keras and the
noisylayers contenders (each estimator, each sampler, a fixed and a learned
kind) are built, compiled and timed in interleaved rounds (`harness`):

- **width**: `Dense(d) -> Dense(10)` on `d` inputs, batch 128, so the
  parameter count is about `d^2` (1e5 to 1e7 by default; `--max-params 3e7`
  adds 3e7, which needs a few GiB and minutes per contender on 2 cores);
- **batch**: the MLP 784-512-512-10 at batch 1 to 4096;
- **length**: LSTM(64) over 10 to 1000 steps of 32 features, batch 32
  (`NoisyLSTM` has no local reparameterization).

Each contender's training-step time (median over rounds) and peak memory
are written as ratios to plain; `fit` gives the log-log slope of the time,
of the time ratio and of the memory ratio against the axis. Peak memory is
measured in one subprocess per contender and point: the growth of the
peak RSS (`VmHWM`) over the post-import baseline, over build, compile and
three steps. Compilation is included, so at small sizes the ratio is near 1
whatever the layers. On an accelerator (JAX on a GPU) the memory is the
device's peak bytes in use instead (`memory_stats()`, with preallocation
off). `--plot-dir docs` draws one log-log
figure per axis (`scaling_<axis>.png`: time ratio and memory ratio).

`free_up_to` (the markdown's last column) is the largest point up to which
a contender's step stays within `FREE` (1.1x) of plain: where noise is
still free.

On a GPU (the JAX backend), for example:

    XLA_PYTHON_CLIENT_PREALLOCATE=false python -m benchmarks.scaling \
        --backend jax --points width=1e5,1e6,1e7,1e8 --max-steps 500 \
        --chunk 0.2 --memory-jobs 8 --out gpu.json
"""

import argparse
import gc
import json
import math
import os
import time

from benchmarks import env

HERE = os.path.dirname(os.path.abspath(__file__))

# (label, estimator, noise config) of every contender; None: plain Keras.
GAUSSIAN = {"class_name": "Gaussian", "config": {"stddev": 0.01}}
GAUSSIAN_TABLE = {"class_name": "Gaussian",
                  "config": {"stddev": 0.01, "sampler": "table"}}
LEARNED = {"class_name": "LearnedGaussian", "config": {"dataset_size": 60000}}
CONTENDERS = {
    "plain": (None, None),
    "gaussian shared": ("shared", GAUSSIAN),
    "gaussian flipout": ("flipout", GAUSSIAN),
    "gaussian LRT": ("local_reparameterization", GAUSSIAN),
    "gaussian table shared": ("shared", GAUSSIAN_TABLE),
    "gaussian table LRT": ("local_reparameterization", GAUSSIAN_TABLE),
    "learned shared": ("shared", LEARNED),
    "learned flipout": ("flipout", LEARNED),
    "learned LRT": ("local_reparameterization", LEARNED),
}

AXES = {
    # axis: (points, x-axis label)
    "width": ([1e5, 1e6, 1e7], "parameters"),
    "batch": ([1, 64, 4096], "batch size"),
    "length": ([10, 100, 1000], "sequence length"),
}
TINY = {"width": [1e3, 4e3], "batch": [1, 8], "length": [3, 6]}


def spec_for(axis, point):
    """The model and batch size of one point of an axis."""
    from benchmarks.models import MODELS
    from benchmarks.models import ModelSpec

    if axis == "width":
        d = max(4, int(round(math.sqrt(point))))
        spec = ModelSpec(key=f"dense{d}", title=f"Dense({d}) + Dense(10)",
                         input_shape=(d,),
                         arch=(("dense", {"units": d, "activation": "relu"}),
                               ("dense", {"units": 10})))
        return spec, 128
    if axis == "batch":
        return MODELS["mlp"], int(point)
    if axis == "length":
        steps = int(point)
        spec = ModelSpec(key=f"lstm{steps}", title=f"LSTM(64) over {steps}",
                         input_shape=(steps, 32),
                         arch=(("lstm", {"units": 64}), ("dense", {"units": 10})))
        return spec, 32
    raise ValueError(f"Unknown axis {axis!r}; known: {sorted(AXES)}")


def make_runner(name, spec, x, y):
    """The compiled training step of one contender (None: not available)."""
    import itertools

    import noisylayers

    from benchmarks import contenders
    from benchmarks.models import NotSupported
    from benchmarks.models import keras_model

    estimator, kind = CONTENDERS[name]
    if estimator is None:
        return contenders._keras_runner(keras_model(spec), x, y).train
    seeds = itertools.count(1)

    def wrap(layer):
        return contenders.variant_of(
            layer, noisylayers.noise.get(kind), next(seeds), estimator)

    try:
        model = keras_model(spec, wrap=wrap)
    except NotSupported:
        return None
    return contenders._keras_runner(model, x, y).train


MARKER = "SCALING-MEMORY "


def accelerator():
    """The JAX accelerator device, or None on CPUs and on TensorFlow."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    device = jax.devices()[0]
    return None if device.platform == "cpu" else device


def _device_peak_mib(device):
    stats = device.memory_stats() or {}
    return stats.get("peak_bytes_in_use", 0) / 2**20


def memory_child(axis, point, name):
    """In a subprocess: peak memory growth of one contender at one point
    (host RSS on CPUs, the device's peak bytes in use on an accelerator)."""
    import numpy as np

    from benchmarks import harness
    from benchmarks.memory import _maxrss_mib

    spec, batch = spec_for(axis, point)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (batch, *spec.input_shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch,)).astype("int32")
    import keras  # noqa: F401 (in the baseline)

    device = accelerator()
    peak = _maxrss_mib if device is None else (
        lambda: _device_peak_mib(device))
    baseline = peak()
    train = make_runner(name, spec, x, y)
    if train is None:
        print(MARKER + json.dumps(None), flush=True)
        return
    for _ in range(3):
        harness.block(train())
    print(MARKER + json.dumps(peak() - baseline), flush=True)


def peak_memory_mib(backend, axis, point, names, jobs=2):
    """{name: MiB}: one subprocess per contender (growth of VmHWM over the
    process's post-import baseline; build, compile and 3 steps)."""
    import concurrent.futures
    import subprocess

    def one(name):
        cmd = env.module_command("benchmarks.scaling", "--backend", backend,
                                 "--memory-child", axis, repr(point), name)
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              cwd=env.ROOT, timeout=1200,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                                       XLA_PYTHON_CLIENT_PREALLOCATE="false"))
        for line in proc.stdout.splitlines():
            if line.startswith(MARKER):
                return name, json.loads(line[len(MARKER):])
        return name, None

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return {n: m for n, m in pool.map(one, names) if m is not None}


def measure_point(axis, point, names, rounds, chunk_s, memory, log,
                  backend="tensorflow", max_steps=50, memory_jobs=2):
    import numpy as np

    from benchmarks import harness

    spec, batch = spec_for(axis, point)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (batch, *spec.input_shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch,)).astype("int32")
    out = {"point": point, "batch": batch, "model": spec.title,
           "time_ms": {}, "time_ratio": {}, "memory_mib": {},
           "memory_ratio": {}}
    t0 = time.perf_counter()
    fns = {}
    for name in names:
        fn = make_runner(name, spec, x, y)
        if fn is not None:
            fns[name] = fn
    harness.warm_up(fns, calls=1)
    steps = harness.calibrate(fns, chunk_s, max_steps=max_steps)
    summary = harness.summarize(harness.interleave(fns, steps, rounds))
    for name, entry in summary.items():
        out["time_ms"][name] = entry["ms"]
        out["time_ratio"][name] = entry["ratio"]
    measured = list(fns)
    fns.clear()
    gc.collect()
    if memory:
        out["memory_mib"] = peak_memory_mib(backend, axis, point, measured,
                                            jobs=memory_jobs)
        base = out["memory_mib"].get("plain")
        if base:
            out["memory_ratio"] = {n: m / base
                                   for n, m in out["memory_mib"].items()}
    log(f"  {axis}={point:g}: {len(summary)} contenders in "
        f"{time.perf_counter() - t0:.1f}s; "
        + ", ".join(f"{n} {r:.2f}x" for n, r in out["time_ratio"].items()))
    return out


def slope(xs, ys):
    """Least-squares slope of log(y) against log(x) (None under 2 points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys)
           if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def fit(points, names):
    """Per contender: log-log slopes of time, time ratio and memory ratio."""
    out = {}
    for name in names:
        xs = [p["point"] for p in points if name in p["time_ms"]]
        out[name] = {
            "time": slope(xs, [p["time_ms"][name] for p in points
                               if name in p["time_ms"]]),
            "time_ratio": slope(xs, [p["time_ratio"][name] for p in points
                                     if name in p["time_ratio"]]),
            "memory_ratio": slope(
                [p["point"] for p in points if name in p["memory_ratio"]],
                [p["memory_ratio"][name] for p in points
                 if name in p["memory_ratio"]]),
        }
    return out


#: A step within this ratio of plain counts as free (`free_up_to`).
FREE = 1.1


def free_up_to(points, name, tol=FREE):
    """The largest point up to which `name` stays within `tol` of plain
    (None: not even at the smallest point)."""
    last = None
    for p in sorted(points, key=lambda p: p["point"]):
        ratio = p["time_ratio"].get(name)
        if ratio is None:
            continue
        if ratio > tol:
            break
        last = p["point"]
    return last


def parse_points(items):
    """`--points width=1e5,1e6` -> {"width": [1e5, 1e6]}."""
    out = {}
    for item in items or ():
        axis, sep, values = item.partition("=")
        if not sep or axis not in AXES:
            raise SystemExit(f"--points takes AXIS=V1,V2,... with AXIS in "
                             f"{sorted(AXES)}. Received: {item!r}")
        try:
            out[axis] = sorted(float(v) for v in values.split(",") if v)
        except ValueError:
            raise SystemExit(f"--points values must be numbers. "
                             f"Received: {item!r}") from None
        if not out[axis] or min(out[axis]) <= 0:
            raise SystemExit(f"--points values must be positive. "
                             f"Received: {item!r}")
    return out


def plot(axis, result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    fig, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    memory = "peak device memory" if result.get("device") else "peak memory"
    for key, ax, title in (("time_ratio", panels[0], "training step time / plain"),
                           ("memory_ratio", panels[1], f"{memory} / plain")):
        for name in CONTENDERS:
            xs = [p["point"] for p in points if name in p[key]]
            ys = [p[key][name] for p in points if name in p[key]]
            if not xs:
                continue
            s = result["slopes"][name]["time" if key == "time_ratio" else key]
            label = name if s is None else f"{name} (slope {s:+.2f})"
            ax.plot(xs, ys, marker="o", label=label,
                    linestyle="--" if "table" in name else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(AXES[axis][1])
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    panels[0].legend(fontsize=7, title="slope of time vs " + AXES[axis][1],
                     title_fontsize=7)
    where = result.get("device") or f"{result['cores']} CPU cores"
    fig.suptitle(f"How the cost grows with {AXES[axis][1]} "
                 f"({result['backend']}, {where})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="tensorflow", choices=env.BACKENDS)
    p.add_argument("--axes", nargs="+", default=list(AXES), choices=list(AXES))
    p.add_argument("--contenders", nargs="+", choices=list(CONTENDERS),
                   help="only these (plain is always included)")
    p.add_argument("--max-params", type=float, default=1e7,
                   help="largest width point (3e7 adds the 3e7 point)")
    p.add_argument("--points", nargs="+", metavar="AXIS=V1,V2",
                   help="the points of an axis instead of the default ones")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--chunk", type=float, default=0.05)
    p.add_argument("--max-steps", type=int, default=50,
                   help="most calls per timed chunk (raise it on a GPU)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-jobs", type=int, default=2,
                   help="memory subprocesses at a time")
    p.add_argument("--tiny", action="store_true",
                   help="tiny sizes, one round: a smoke test")
    p.add_argument("--plot-dir", help="write scaling_<axis>.png there")
    p.add_argument("--out", help="JSON output path")
    p.add_argument("--memory-child", nargs=3, metavar=("AXIS", "POINT", "NAME"),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    env.setup_backend(args.backend)
    env.quiet_tensorflow()
    if args.memory_child:
        axis, point, name = args.memory_child
        memory_child(axis, float(point), name)
        return 0
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    names = ["plain"] + [n for n in (args.contenders or CONTENDERS)
                         if n != "plain"]
    chosen = parse_points(args.points)
    info = env.machine_info(args.backend)
    device = accelerator()
    results = {"backend": args.backend, "machine": info,
               "cores": info["cores"], "axes": {},
               "device": None if device is None else str(device.device_kind)}
    out = args.out or os.path.join(
        HERE, "results", f"scaling-{args.backend}{'-tiny' if args.tiny else ''}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    for axis in args.axes:
        if axis in chosen:
            points = chosen[axis]
        elif args.tiny:
            points = TINY[axis]
        else:
            points = list(AXES[axis][0])
            if axis == "width" and args.max_params >= 3e7:
                points.append(3e7)
        log(f"axis {axis}: {points}")
        measured = []
        for p in points:
            measured.append(measure_point(
                axis, p, names, 1 if args.tiny else args.rounds,
                0.01 if args.tiny else args.chunk, not args.no_memory, log,
                args.backend, args.max_steps, args.memory_jobs))
            results["axes"][axis] = {"points": measured,
                                     "slopes": fit(measured, names),
                                     "backend": args.backend,
                                     "cores": info["cores"],
                                     "device": results["device"]}
            with open(out, "w") as f:  # after every point: partial runs count
                json.dump(results, f, indent=1)
        if args.plot_dir:
            path = os.path.join(args.plot_dir, f"scaling_{axis}.png")
            plot(axis, results["axes"][axis], path)
            log(f"  wrote {path}")
    results["elapsed_s"] = time.perf_counter() - started
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(markdown(results))
    log(f"wrote {out}")
    return 0


def markdown(results):
    lines = []
    for axis, r in results["axes"].items():
        pts = r["points"]
        lines += ["", f"**{axis}** ({AXES[axis][1]}): training step / plain "
                  "(peak memory / plain)", "",
                  "| contender | " + " | ".join(f"{p['point']:g}" for p in pts)
                  + f" | slope of time | slope of ratio | <= {FREE}x up to |",
                  "|---|" + "---|" * (len(pts) + 3)]
        for name in CONTENDERS:
            if not any(name in p["time_ratio"] for p in pts):
                continue
            cells = []
            for p in pts:
                t = p["time_ratio"].get(name)
                m = p["memory_ratio"].get(name)
                cells.append("n/a" if t is None else f"{t:.2f}x" + (
                    "" if m is None else f" ({m:.2f}x)"))
            s = r["slopes"][name]
            fmt = lambda v: "-" if v is None else f"{v:+.2f}"  # noqa: E731
            free = free_up_to(pts, name)
            lines.append(f"| {name} | " + " | ".join(cells)
                         + f" | {fmt(s['time'])} | {fmt(s['time_ratio'])} | "
                         + ("-" if free is None else f"{free:g}") + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
