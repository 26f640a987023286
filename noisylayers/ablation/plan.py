"""The plan of a training ablation: its configurations, its runs, their shards.

A *configuration* is a set of noisy layers whose noise is on. A *run* trains
one model with one configuration (and optionally a noise scale) and one
seed. The *spec* holds the settings, from which the runs follow in a fixed
order; shard `i` of `n` takes every `n`-th run from the `i`-th on.

This module imports only the standard library: the command's front end
(`noisylayers_cli`) reads `parse_shard` from this file for `--shard`
without importing the package.
"""

import dataclasses
import re


def configurations(layer_names):
    """The configurations of a training ablation over the given noisy layers.

    `"baseline"` (noise nowhere), `"all"` (noise in every noisy layer) and,
    with several noisy layers, `"only:L"` (noise in layer `L` alone) and
    `"without:L"` (noise everywhere but in `L`) for each layer `L`.

    Args:
        layer_names: The names of the model's noisy layers, in order.

    Returns:
        A list of dicts `{"name": ..., "enabled": [layer names]}`.
    """
    names = list(layer_names)
    configs = [("baseline", []), ("all", names)]
    if len(names) > 1:
        configs += [(f"only:{n}", [n]) for n in names]
        configs += [
            (f"without:{n}", [m for m in names if m != n]) for n in names
        ]
    return [{"name": name, "enabled": enabled} for name, enabled in configs]


def make_spec(layer_names, seeds, scales, epochs, batch_size, metadata):
    """The settings of a training ablation, as `ablation.json` stores them.

    The arguments are those of `training_ablation`, already checked.
    """
    return {
        "kind": "training",
        "layers": list(layer_names),
        "configurations": configurations(layer_names),
        "seeds": seeds,
        "scales": scales,
        "epochs": epochs,
        "batch_size": batch_size,
        "metadata": metadata,
    }


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: a configuration, a scale and a seed."""

    configuration: str
    enabled: tuple
    scale: float | None
    seed: int

    @property
    def id(self):
        """A file-name-safe id, unique within an ablation."""
        parts = [re.sub(r"[^A-Za-z0-9_.-]+", "-", self.configuration)]
        if self.scale is not None:
            parts.append(f"scale{self.scale:g}")
        return "__".join(parts + [f"seed{self.seed}"])


def plan_runs(spec):
    """All the runs of an ablation, in the order they are trained.

    Seed by seed, configuration by configuration, scale by scale. Two
    configurations that enable the same layers (with two noisy layers,
    `only:a` is `without:b`) share their runs; the baseline does not depend
    on the scale and is trained once per seed.

    Args:
        spec: The ablation's settings, as stored in `ablation.json`.

    Returns:
        A list of `Run`s.
    """
    runs, seen = [], set()
    for seed in spec["seeds"]:
        for config in spec["configurations"]:
            enabled = tuple(config["enabled"])
            scales = (spec["scales"] or [None]) if enabled else [None]
            for scale in scales:
                key = (frozenset(enabled), scale, seed)
                if key not in seen:
                    seen.add(key)
                    runs.append(Run(config["name"], enabled, scale, seed))
    ids = [run.id for run in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "The noisy layers' names give clashing run ids once made safe "
            f"for file names. Rename the layers. Received: layers="
            f"{spec['layers']}"
        )
    return runs


def shard_runs(runs, shard):
    """The runs of shard `(i, n)`: every n-th from the i-th; all for `None`."""
    if shard is None:
        return list(runs)
    index, count = shard
    return runs[index - 1 :: count]


def parse_shard(shard):
    """Reads a shard as `(i, n)`: shard `i` of `n`, counted from 1.

    Args:
        shard: `None`, a string `"i/n"` or a pair `(i, n)`, with
            `1 <= i <= n` (as `--shard 1/4` ... `--shard 4/4`, or
            `$SLURM_ARRAY_TASK_ID/4` with `--array=1-4`).

    Returns:
        `None` or a tuple `(i, n)`.

    Raises:
        ValueError: for anything else.
    """
    if shard is None:
        return None
    parts = shard.split("/") if isinstance(shard, str) else shard
    try:
        index, count = (int(p) for p in parts)
    except (TypeError, ValueError):
        index = count = None
    if index is None or not 1 <= index <= count:
        raise ValueError(
            "Argument `shard` must be 'i/n' or (i, n) with 1 <= i <= n: "
            f"shard i of n, counted from 1. Received: shard={shard!r}"
        )
    return index, count
