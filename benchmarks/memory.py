"""Peak memory per contender: one subprocess each.

The child imports what the contender needs, records its peak resident set
size (the baseline: interpreter, backend, data), builds the contender, runs a
few training and inference steps and records the peak again. `delta_mib` is
the growth caused by the contender (model, optimizer state, compiled
functions, activations); `peak_mib` the whole process.

The peak is the kernel's VmHWM (/proc/self/status), not `ru_maxrss`: the
latter survives `exec`, so a child of a large parent would report the
parent's size.
"""

import concurrent.futures
import json
import os
import resource
import subprocess

from benchmarks import env

MARKER = "BENCH-MEMORY "


def _maxrss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(config, contender, steps=5):
    """Runs in the subprocess; prints one JSON line."""
    from benchmarks.harness import block
    from benchmarks.models import NotSupported
    from benchmarks.models import data

    x, y = data(config)
    import keras  # noqa: F401 (in the baseline)

    if contender.needs_tensorflow:
        import tensorflow_probability  # noqa: F401
        import tf_keras  # noqa: F401
    baseline = _maxrss_mib()
    try:
        runner = contender.make(config, x, y)
    except NotSupported as e:
        print(MARKER + json.dumps({"unsupported": str(e)}), flush=True)
        return
    for fn in (runner.train, runner.infer):
        if fn is not None:
            for _ in range(steps):
                block(fn())
    peak = _maxrss_mib()
    print(
        MARKER
        + json.dumps(
            {"baseline_mib": baseline, "peak_mib": peak, "delta_mib": peak - baseline}
        ),
        flush=True,
    )


def measure(backend, configs, contenders, jobs=2, skip=None, log=print):
    """{config_key: {contender: {...}}}, one subprocess per pair.

    Each subprocess is `python -m benchmarks.run --memory-child ...`.

    `skip` is a set of (config key, contender name) pairs not to run (the
    unsupported ones).
    """
    skip = skip or set()
    tasks = [
        (cfg, c)
        for cfg in configs
        for c in contenders
        if c.memory and (cfg.key, c.name) not in skip
    ]

    def one(task):
        cfg, c = task
        cmd = env.module_command(
            "benchmarks.run", "--backend", backend,
            "--memory-child", f"{cfg.model}:{cfg.batch}", c.name,
        )
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=env.ROOT, timeout=600,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        for line in proc.stdout.splitlines():
            if line.startswith(MARKER):
                return cfg, c, json.loads(line[len(MARKER):])
        return cfg, c, {"error": (proc.stderr or proc.stdout)[-500:]}

    out = {cfg.key: {} for cfg in configs}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for cfg, c, result in pool.map(one, tasks):
            out[cfg.key][c.name] = result
            if "delta_mib" in result:
                log(f"  memory {cfg.key} {c.name}: +{result['delta_mib']:.0f} MiB")
            elif "error" in result:
                log(f"  memory {cfg.key} {c.name}: FAILED {result['error'][-200:]}")
    return out
