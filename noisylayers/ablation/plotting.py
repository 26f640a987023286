"""Plots of the ablation results, with matplotlib (imported on first use).

A training ablation is a bar per configuration (mean over the seeds, error
bars of one sd, a dot per seed) against the no-noise baseline; a
sensitivity ablation is a line per layer over the noise scales (mean over
the draws, a band of one sd) against the clean model.
"""

import numpy as np

from noisylayers.ablation.optional import require


def plot(result, metric, path=None):
    """Draws `result`'s `metric` on a new figure; writes it to `path` if given.

    Args:
        result: A `TrainingAblationResult` or `SensitivityAblationResult`.
        metric: One of its metrics.
        path: Optional path of an image file to write (PNG for `.png`).

    Returns:
        The `matplotlib.figure.Figure`.
    """
    # The object-oriented API needs no display and leaves pyplot's state
    # alone; the figure still shows in a notebook.
    Figure = require("matplotlib.figure", "plots").Figure
    if result.kind == "training":
        width = min(max(2.0 + 0.8 * len(result.rows), 6.0), 16.0)
        fig = Figure(figsize=(width, 4.8), layout="constrained")
        draw_training(fig.subplots(), result, metric)
    else:
        fig = Figure(figsize=(7.0, 4.5), layout="constrained")
        draw_sensitivity(fig.subplots(), result, metric)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def draw_training(ax, result, metric):
    """Bars per configuration of a `TrainingAblationResult`, on `ax`."""
    rows = result.rows
    labels = [
        row["configuration"]
        + ("" if row["scale"] is None else f"\n×{row['scale']:g}")
        for row in rows
    ]
    means = [row[f"{metric}_mean"] for row in rows]
    stds = [row[f"{metric}_std"] or 0.0 for row in rows]
    positions = np.arange(len(rows))
    colors = ["0.6" if not row["enabled"] else "tab:blue" for row in rows]
    ax.bar(
        positions,
        [m if m is not None else np.nan for m in means],
        yerr=stds,
        capsize=4,
        color=colors,
        alpha=0.8,
    )
    seed_values = [result._seed_values(row, metric) for row in rows]
    for position, seeds in zip(positions, seed_values):
        ax.plot([position] * len(seeds), seeds, "k.", markersize=4, zorder=3)
    baseline = rows[0][f"{metric}_mean"] if rows else None
    if baseline is not None:
        ax.axhline(baseline, color="0.3", linestyle="--", linewidth=1,
                   label="baseline (no noise)")
        ax.legend(loc="lower right")
    finite = [v for seeds in seed_values for v in seeds]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(high - low, 1e-3) * 0.6
        ax.set_ylim(low - pad, high + pad)
    ax.set_xticks(positions, labels, rotation=30, ha="right")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(
        f"Validation {metric} per noise configuration "
        f"(bars: mean over {len(result.spec['seeds'])} seeds, "
        "error bars: sd, dots: seeds)",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)


def draw_sensitivity(ax, result, metric):
    """A line per layer of a `SensitivityAblationResult`, on `ax`."""
    scales = result.spec["scales"]
    for layer in result.spec["layers"]:
        rows = [r for r in result.rows if r["layer"] == layer]
        mean = np.array([r[f"{metric}_mean"] for r in rows], dtype=float)
        std = np.array([r[f"{metric}_std"] or 0.0 for r in rows])
        (line,) = ax.plot(scales, mean, "o-", label=layer)
        ax.fill_between(
            scales, mean - std, mean + std, color=line.get_color(), alpha=0.2
        )
    ax.axhline(
        result.spec["clean"][metric], color="0.3", linestyle="--",
        linewidth=1, label="no noise",
    )
    if min(scales) > 0 and max(scales) / min(scales) >= 10:
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
    ax.set_xticks(scales, [f"{s:g}" for s in scales])
    ax.set_xlabel(f"noise scale (multiple of {result._noise_kind()})")
    ax.set_ylabel(metric)
    ax.set_title(
        f"{metric} with noise in a single layer (lines: mean over "
        f"{result.spec['draws']} draws, bands: ± sd)",
        fontsize=10,
    )
    ax.legend()
    ax.grid(alpha=0.3)
