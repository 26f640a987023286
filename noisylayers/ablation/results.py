"""Ablation results: the summary rows, as tables, CSV and JSON (and plots).

A result is a snapshot: its records do not change after it is made, so its
summary rows are computed once. `plotting` draws the plots.
"""

import csv
import functools
import json
import math
import os

import numpy as np

from noisylayers.ablation import plotting
from noisylayers.ablation.store import write_atomic
from noisylayers.ablation.tables import markdown_table
from noisylayers.ablation.tables import text_table


def _stats(values):
    """Mean and sample standard deviation (None where undefined)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, std


def _mean_std(mean, std):
    if mean is None:
        return "-"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _delta(value):
    return "-" if value is None else f"{value:+.4f}"


def _scale(value):
    return "-" if value is None else f"{value:g}"


class AblationResult:
    """Base class of ablation results: one summary row per condition.

    Subclasses provide the records (one per training run, or per noise
    draw), the summary rows (`_rows`) and the table's first columns. Each
    summary row holds, for every metric `m`, the keys `m_mean`, `m_std`
    (sample standard deviation, `None` with fewer than two values) and
    `m_delta` (difference of the mean to the reference: the no-noise
    baseline, or the clean model).

    Attributes:
        spec: Dict of the settings that produced the result.
        records: List of dicts, the raw results (not to be changed: the
            summary is computed from them once).
        metric: The main metric (plots, `to_string`): the first compiled
            metric other than the loss, or `"loss"`.
    """

    kind = None

    def __init__(self, spec, records):
        self.spec = spec
        self.records = list(records)

    @functools.cached_property
    def metric_names(self):
        """The names of the metrics in the records (loss first)."""
        names = []
        for metrics in self._all_metrics():
            names.extend(k for k in metrics if k not in names)
        return sorted(names, key=lambda name: name != "loss")

    @property
    def metric(self):
        """The main metric: the first one other than the loss, if any."""
        names = self.metric_names
        return next((n for n in names if n != "loss"), "loss")

    def _all_metrics(self):
        return [r["metrics"] for r in self.records]

    def _check_metric(self, metric):
        if metric is None:
            return self.metric
        if metric not in self.metric_names:
            raise ValueError(
                f"Unknown metric. Expected one of {self.metric_names}. "
                f"Received: metric={metric!r}"
            )
        return metric

    def _summarize(self, group_values, reference_values):
        """Summary entries for one group of metric dicts."""
        row = {}
        for name in self.metric_names:
            mean, std = _stats([m.get(name) for m in group_values])
            ref, _ = _stats([m.get(name) for m in reference_values])
            row[f"{name}_mean"] = mean
            row[f"{name}_std"] = std
            row[f"{name}_delta"] = (
                None if mean is None or ref is None else mean - ref
            )
        return row

    @functools.cached_property
    def rows(self):
        """The summary table: a list of dicts, one per condition."""
        return self._rows()

    def _rows(self):
        raise NotImplementedError

    def _label_columns(self):
        """`(header, key, formatter)` of the columns before the metrics."""
        raise NotImplementedError

    def _table(self):
        """The header and the formatted cells of the summary table."""
        labels = self._label_columns()
        header = [h for h, _, _ in labels]
        for name in self.metric_names:
            header += [f"{name} (mean ± sd)", f"Δ {name}"]
        body = []
        for row in self.rows:
            cells = [fmt(row[key]) for _, key, fmt in labels]
            for name in self.metric_names:
                cells += [
                    _mean_std(row[f"{name}_mean"], row[f"{name}_std"]),
                    _delta(row[f"{name}_delta"]),
                ]
            body.append(cells)
        return header, body

    def to_string(self):
        """The summary table as aligned plain text, for a terminal."""
        header, body = self._table()
        return "\n".join(
            [self._title(), "", *text_table(header, body), "", self._legend()]
        )

    def __str__(self):
        return self.to_string()

    def to_markdown(self):
        """The summary table as a Markdown document (title, table, legend)."""
        header, body = self._table()
        return "\n".join(
            [
                f"## {self._title()}",
                "",
                *markdown_table(header, body),
                "",
                self._legend(),
                "",
            ]
        )

    def _title(self):
        raise NotImplementedError

    def _legend(self):
        raise NotImplementedError

    def to_dict(self):
        """Everything as JSON-compatible data: spec, summary and records."""
        return {
            "kind": self.kind,
            "spec": self.spec,
            "metric": self.metric,
            "summary": self.rows,
            "records": self.records,
        }

    def to_csv(self, path):
        """Writes the summary table (one row per condition) as CSV.

        Lists are joined with `;`; undefined values are empty cells.

        Args:
            path: Path of the `.csv` file to write.
        """
        rows = self.rows
        fields = list(rows[0]) if rows else []
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: ";".join(v) if isinstance(v, (list, tuple)) else v
                        for k, v in row.items()
                    }
                )

    def to_json(self, path):
        """Writes `to_dict()` as JSON.

        Args:
            path: Path of the `.json` file to write.
        """
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def plot(self, path=None, metric=None):
        """Plots the result with matplotlib.

        Args:
            path: Optional path of an image file to write (PNG for a
                `.png` name).
            metric: The metric to plot; defaults to `self.metric`.

        Returns:
            The `matplotlib.figure.Figure`.
        """
        return plotting.plot(self, self._check_metric(metric), path)

    def save(self, directory, name):
        """Writes `name.csv`, `name.json`, `name.md` and `name.png`.

        Args:
            directory: An existing directory.
            name: The file name stem.

        Returns:
            The list of the paths written.
        """
        paths = [
            os.path.join(directory, f"{name}.{ext}")
            for ext in ("csv", "json", "md", "png")
        ]
        self.to_csv(paths[0])
        self.to_json(paths[1])
        write_atomic(paths[2], self.to_markdown())
        self.plot(paths[3])
        return paths


class TrainingAblationResult(AblationResult):
    """The result of `training_ablation`: metrics per configuration.

    One summary row per configuration (and scale, with a scale sweep), with
    the validation metrics' mean and spread over the seeds and their
    difference to the `baseline` configuration (no noise anywhere).

    Attributes:
        spec: The ablation's settings (noisy layers, configurations, seeds,
            scales, epochs, ...).
        records: One dict per finished training run, in run order: `id`,
            `configuration`, `enabled`, `scale`, `seed`, `metrics` (the
            validation metrics after training), `history`, `seconds`.
        missing: The ids of the runs of the ablation that have no record
            (not run yet, in another shard, or failed).
        failed: `{run id: error}` of the runs that failed on Ray in the
            call that made the result (empty otherwise): each is also in
            `missing`.
    """

    kind = "training"

    def __init__(self, spec, records, expected_ids, failed=None):
        order = {run_id: i for i, run_id in enumerate(expected_ids)}
        records = sorted(records, key=lambda r: order.get(r["id"], len(order)))
        super().__init__(spec, records)
        done = {r["id"] for r in self.records}
        self.missing = [i for i in expected_ids if i not in done]
        self.failed = dict(failed or {})

    @property
    def complete(self):
        """Whether every run of the ablation has a record."""
        return not self.missing

    def _matching(self, enabled, scale):
        return [
            r["metrics"]
            for r in self.records
            if set(r["enabled"]) == set(enabled)
            and r["scale"] == (scale if enabled else None)
            and r["seed"] in self.spec["seeds"]
        ]

    def _rows(self):
        baseline = self._matching((), None)
        rows = []
        for config in self.spec["configurations"]:
            scales = self.spec["scales"] if config["enabled"] else None
            for scale in scales or [None]:
                group = self._matching(config["enabled"], scale)
                rows.append(
                    {
                        "configuration": config["name"],
                        "enabled": list(config["enabled"]),
                        "scale": scale,
                        "seeds": len(group),
                        **self._summarize(group, baseline),
                    }
                )
        return rows

    def _label_columns(self):
        all_layers = self.spec["layers"]

        def enabled(names):
            if not names:
                return "none"
            return "all" if len(names) == len(all_layers) else ", ".join(names)

        columns = [
            ("configuration", "configuration", str),
            ("noise on", "enabled", enabled),
        ]
        if self.spec["scales"]:
            columns.append(("scale", "scale", _scale))
        return columns + [("seeds", "seeds", str)]

    def _title(self):
        spec = self.spec
        return (
            f"Training ablation: validation metrics after {spec['epochs']} "
            f"epoch(s), over {len(spec['seeds'])} seed(s)"
        )

    def _legend(self):
        text = (
            "mean ± sd: over the seeds (sample standard deviation). Δ: "
            "difference of the mean to the 'baseline' row (no weight noise). "
            "'only:L' trains with noise in layer L alone, 'without:L' with "
            "noise in every noisy layer but L."
        )
        if self.missing:
            text += f" Incomplete: {len(self.missing)} run(s) missing."
        return text

    def _seed_values(self, row, metric):
        return [
            m[metric]
            for m in self._matching(row["enabled"], row["scale"])
            if m.get(metric) is not None and math.isfinite(m[metric])
        ]


class SensitivityAblationResult(AblationResult):
    """The result of `sensitivity_ablation`: metrics per layer and scale.

    One summary row per noisy layer and scale: the metrics' mean and spread
    over the noise draws, and their difference to the clean model.

    Attributes:
        spec: The settings (layers, scales, draws, seed), each layer's
            noise kind (`noise`) and `clean`, the metrics of the model
            without noise.
        records: One dict per draw: `layer`, `scale`, `draw`, `metrics`.
    """

    kind = "sensitivity"

    def _all_metrics(self):
        return [self.spec["clean"]] + super()._all_metrics()

    def _rows(self):
        clean = [self.spec["clean"]]
        rows = []
        for layer in self.spec["layers"]:
            for scale in self.spec["scales"]:
                group = [
                    r["metrics"]
                    for r in self.records
                    if r["layer"] == layer and r["scale"] == scale
                ]
                rows.append(
                    {
                        "layer": layer,
                        "scale": scale,
                        "draws": len(group),
                        **self._summarize(group, clean),
                    }
                )
        return rows

    def _label_columns(self):
        return [
            ("layer", "layer", str),
            ("scale", "scale", _scale),
            ("draws", "draws", str),
        ]

    def _title(self):
        return (
            "Sensitivity ablation: metrics with noise in one layer at a time, "
            "at evaluation"
        )

    def _legend(self):
        clean = ", ".join(
            f"{k} {v:.4f}" for k, v in self.spec["clean"].items()
        )
        return (
            "mean ± sd: over the noise draws. Δ: difference to the clean "
            f"model ({clean}). Scale: multiple of {self._noise_kind()}."
        )

    def _noise_kind(self):
        kinds = set(self.spec["noise"].values())
        return kinds.pop() if len(kinds) == 1 else "each layer's noise"
