"""Interleaved timing: contenders take turns (A B C A B C ...) after warm-up.

Each round times `steps` consecutive calls of every contender in turn (the
order rotates from round to round); a contender's figure is the median over
rounds of its per-step time, and its ratio the median over rounds of
(its time / plain's time in the same round), so that slow drifts of the
machine (other processes, clock changes) cancel out of the ratios.
"""

import gc
import statistics
import time


def block(out):
    """Waits until `out` (any nest of arrays / numbers) is computed."""
    if isinstance(out, (list, tuple)):
        for o in out:
            block(o)
    elif isinstance(out, dict):
        for o in out.values():
            block(o)
    elif hasattr(out, "block_until_ready"):
        out.block_until_ready()
    elif hasattr(out, "numpy") and not hasattr(out, "__array_interface__"):
        out.numpy()


def run_steps(fn, steps):
    out = None
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    block(out)
    return (time.perf_counter() - start) / steps


def warm_up(fns, calls=2):
    """Compiles every function (first calls trace and compile)."""
    for fn in fns.values():
        for _ in range(calls):
            block(fn())


def calibrate(fns, chunk_s, max_steps=200):
    """For each function, how many calls take about `chunk_s` seconds (>= 1).

    Each contender gets its own count, so a slow one does not stretch the
    rounds; times are reported per call.
    """
    steps = {}
    for name, fn in fns.items():
        t = min(run_steps(fn, 1) for _ in range(2))
        steps[name] = max(1, min(max_steps, round(chunk_s / max(t, 1e-6))))
    return steps


def interleave(fns, steps, rounds):
    """Per-round seconds per call for each function: {name: [t_round...]}."""
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(run_steps(fns[name], steps[name]))
        gc.collect()
    return times


def spread(ts):
    """Interquartile range over median: how noisy the rounds were."""
    if len(ts) < 4:
        return None
    q1, _, q3 = statistics.quantiles(ts, n=4)
    return (q3 - q1) / statistics.median(ts)


def summarize(times, reference="plain"):
    """Median ms per call and median per-round ratio to `reference`.

    `ratio_min` (fastest round over the reference's fastest round) is a
    cross-check that ignores rounds slowed down by other processes.
    """
    ref = times.get(reference)
    out = {}
    for name, ts in times.items():
        entry = {
            "ms": statistics.median(ts) * 1e3,
            "ms_min": min(ts) * 1e3,
            "spread": spread(ts),
            "ms_rounds": [t * 1e3 for t in ts],
        }
        if ref is not None:
            ratios = [t / r for t, r in zip(ts, ref)]
            entry["ratio"] = statistics.median(ratios)
            entry["ratio_min"] = min(ts) / min(ref)
            entry["ratio_rounds"] = ratios
        out[name] = entry
    return out
