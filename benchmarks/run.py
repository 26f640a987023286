"""Weight-noise overhead: noisylayers vs plain Keras, tfp.layers and the recipe.

Usage (from the repository root):

    python -m benchmarks.run            # full run, ~15 min on 2 idle CPU cores
    python -m benchmarks.run --quick    # < 2 min on 2 CPU cores
    python -m benchmarks.run --backend jax [--quick]   # no TensorFlow needed
    python -m benchmarks.run --gradvar-plot docs/gradient_variance.png

Prints Markdown tables and writes JSON (and the tables) to
benchmarks/results/latest-<backend>[-quick].{json,md} unless --out is given.
See benchmarks/README.md for how to read the figures.
"""

import argparse
import gc
import json
import os
import sys
import time

from benchmarks import env

HERE = os.path.dirname(os.path.abspath(__file__))

FULL_CONFIGS = ["mlp:128", "mlp:1024", "cnn:128", "lstm:128"]
QUICK_CONFIGS = ["mlp:128", "cnn:128", "lstm:128"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="fewer contenders, rounds and batch sizes (< 2 min)")
    p.add_argument("--backend", default="tensorflow",
                   choices=env.BACKENDS,
                   help="Keras backend (jax: runs without TensorFlow)")
    p.add_argument("--configs", nargs="+", metavar="MODEL:BATCH",
                   help=f"models and batch sizes (default {FULL_CONFIGS}; "
                        f"--quick: {QUICK_CONFIGS})")
    p.add_argument("--contenders", nargs="+", metavar="NAME",
                   help="only these contenders (plain is always included)")
    p.add_argument("--rounds", type=int, help="interleaved rounds")
    p.add_argument("--chunk", type=float,
                   help="seconds of steps per contender and round (at least one step)")
    p.add_argument("--memory", dest="memory", action="store_true",
                   default=None, help="measure peak memory (default: full run)")
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--no-gradvar", action="store_true",
                   help="skip the gradient-variance measurement")
    p.add_argument("--gradvar-plot", metavar="PATH",
                   help="also plot the gradient variance vs batch size "
                        "(e.g. docs/gradient_variance.png)")
    p.add_argument("--jobs", type=int, default=2,
                   help="parallel subprocesses for the memory figures")
    p.add_argument("--out", help="JSON output path")
    p.add_argument("--memory-child", nargs=2, metavar=("CONFIG", "CONTENDER"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.gradvar_plot and args.no_gradvar:
        p.error("--gradvar-plot needs the gradient variance (drop --no-gradvar)")
    return args


def measure_config(config, contenders, rounds, chunk_s, log):
    """Builds every contender for one config, then times them interleaved."""
    import keras

    from benchmarks import harness
    from benchmarks.models import NotSupported
    from benchmarks.models import data

    x, y = data(config)
    runners, unsupported = {}, {}
    t0 = time.perf_counter()
    for c in contenders:
        try:
            runners[c.name] = c.make(config, x, y)
        except NotSupported as e:
            unsupported[c.name] = str(e)
    train = {n: r.train for n, r in runners.items() if r.train is not None}
    infer = {n: r.infer for n, r in runners.items() if r.infer is not None}
    harness.warm_up(train)
    harness.warm_up(infer)
    log(f"  built and compiled {len(runners)} contenders in "
        f"{time.perf_counter() - t0:.1f}s")

    results = {}
    for phase, fns in (("train", train), ("infer", infer)):
        t0 = time.perf_counter()
        steps = harness.calibrate(fns, chunk_s)
        times = harness.interleave(fns, steps, rounds)
        results[phase] = harness.summarize(times)
        for name, n in steps.items():
            results[phase][name]["steps_per_round"] = n
        log(f"  {phase}: {rounds} rounds x {chunk_s}s per contender in "
            f"{time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    runners.clear()
    train.clear()
    infer.clear()
    gc.collect()
    log(f"  cleanup in {time.perf_counter() - t0:.1f}s")
    return {
        "model": config.model,
        "batch": config.batch,
        "rounds": rounds,
        "train": results["train"],
        "infer": results["infer"],
        "unsupported": unsupported,
    }


def main(argv=None):
    args = parse_args(argv)
    env.setup_backend(args.backend)
    started = time.perf_counter()

    from benchmarks import contenders as registry
    from benchmarks.models import Config

    env.quiet_tensorflow()

    if args.memory_child:
        from benchmarks import memory

        memory.child(Config.parse(args.memory_child[0]),
                     registry.BY_NAME[args.memory_child[1]])
        return 0

    from benchmarks import gradvar
    from benchmarks import memory
    from benchmarks import report

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    configs = [Config.parse(c) for c in
               (args.configs or (QUICK_CONFIGS if args.quick else FULL_CONFIGS))]
    contenders = registry.select(args.backend, args.quick, args.contenders)
    rounds = args.rounds or (9 if args.quick else 15)
    chunk_s = args.chunk or (0.03 if args.quick else 0.1)
    with_memory = args.memory if args.memory is not None else not args.quick

    info = env.machine_info(args.backend)
    log(f"backend {args.backend} on {info['cpu']} ({info['cores']} cores); "
        f"contenders: {[c.name for c in contenders]}")
    results = {
        "backend": args.backend,
        "quick": args.quick,
        "machine": info,
        "settings": {"rounds": rounds, "chunk_s": chunk_s,
                     "configs": [c.key for c in configs]},
        "contenders": {
            c.name: {"label": c.label, "family": c.family,
                     "estimator": c.estimator, "noise": c.noise,
                     "counterpart": c.counterpart,
                     "rivals": list(c.rivals)}
            for c in contenders
        },
        "configs": {},
    }
    for config in configs:
        log(f"{config.key}")
        results["configs"][config.key] = measure_config(
            config, contenders, rounds, chunk_s, log)

    if not args.no_gradvar:
        log("gradient variance vs batch size")
        batches = [16, 64, 256] if args.quick else [16, 32, 64, 128, 256, 512]
        draws = 24 if args.quick else 48
        results["gradient_variance"] = gradvar.run(
            args.backend, batches, draws,
            names=gradvar.QUICK if args.quick else None, log=log)
        if args.gradvar_plot:
            gradvar.plot(results["gradient_variance"], args.gradvar_plot)
            log(f"  wrote {args.gradvar_plot}")

    if with_memory:
        log("peak memory (one subprocess per contender)")
        skip = {(key, name) for key, cfg in results["configs"].items()
                for name in cfg["unsupported"]}
        results["memory"] = memory.measure(
            args.backend, configs, contenders,
            jobs=args.jobs, skip=skip, log=log)

    results["tensorflow_imported"] = "tensorflow" in sys.modules
    if args.backend == "jax" and results["tensorflow_imported"]:
        raise RuntimeError("--backend jax imported TensorFlow")
    results["targets"] = report.targets(results)
    results["elapsed_s"] = time.perf_counter() - started

    tables = report.markdown(results)
    print()
    print(tables)
    suffix = "-quick" if args.quick else ""
    out = args.out or os.path.join(
        HERE, "results", f"latest-{args.backend}{suffix}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(tables)
    log(f"wrote {out} (and .md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
