import csv
import json

import pytest

from noisylayers.ablation import SensitivityAblationResult
from noisylayers.ablation import TrainingAblationResult
from noisylayers.ablation import configurations


def training_result(missing=()):
    spec = {
        "kind": "training",
        "layers": ["a", "b", "c"],
        "configurations": configurations(["a", "b", "c"]),
        "seeds": [0, 1],
        "scales": None,
        "epochs": 3,
        "batch_size": 16,
        "metadata": {},
    }
    records = []
    for seed in (0, 1):
        for i, config in enumerate(spec["configurations"]):
            records.append(
                {
                    "id": f"{config['name']}__seed{seed}",
                    "configuration": config["name"],
                    "enabled": config["enabled"],
                    "scale": None,
                    "seed": seed,
                    "metrics": {"accuracy": 0.5 + 0.01 * i + 0.02 * seed, "loss": 1.0 - 0.1 * i},
                }
            )
    expected = [r["id"] for r in records] + list(missing)
    return TrainingAblationResult(spec, records, expected)


def sensitivity_result():
    spec = {
        "kind": "sensitivity",
        "layers": ["a", "b"],
        "scales": [0.5, 2.0],
        "draws": 2,
        "seed": 0,
        "noise": {"a": "Gaussian(stddev=0.1)", "b": "Gaussian(stddev=0.1)"},
        "clean": {"accuracy": 0.9, "loss": 0.2},
        "metadata": {},
    }
    records = [
        {"layer": layer, "scale": scale, "draw": draw,
         "metrics": {"accuracy": 0.9 - scale * (0.1 if layer == "a" else 0.2) - 0.01 * draw,
                     "loss": 0.2 + scale}}
        for layer in ("a", "b") for scale in (0.5, 2.0) for draw in (0, 1)
    ]
    return SensitivityAblationResult(spec, records)


def test_training_summary():
    result = training_result()
    assert result.metric == "accuracy"
    assert result.metric_names == ["loss", "accuracy"]
    rows = result.rows
    assert [r["configuration"] for r in rows][:3] == ["baseline", "all", "only:a"]
    assert rows[0]["accuracy_mean"] == pytest.approx(0.51)
    assert rows[0]["accuracy_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert rows[1]["accuracy_delta"] == pytest.approx(0.01)
    assert rows[1]["loss_delta"] == pytest.approx(-0.1)
    assert result.complete


def test_training_table_text_and_markdown():
    result = training_result(missing=["x__seed9"])
    text = result.to_string()
    assert "without:c" in text and "0.5100 ± 0.0141" in text and "+0.0100" in text
    assert "1 run(s) missing" in text
    assert str(result) == text
    markdown = result.to_markdown()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 8
    assert table[0].startswith("| configuration | noise on | seeds |")
    assert "| without:a | b, c | 2 |" in markdown


def test_training_files(tmp_path):
    result = training_result()
    paths = result.save(str(tmp_path), "training")
    assert [p.rsplit(".", 1)[1] for p in paths] == ["csv", "json", "md", "png"]
    with open(paths[0]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert rows[3]["enabled"] == "b"
    assert rows[5]["enabled"] == "b;c"
    assert float(rows[1]["accuracy_delta"]) == pytest.approx(0.01)
    with open(paths[1]) as f:
        data = json.load(f)
    assert data["kind"] == "training"
    assert len(data["records"]) == 16 and len(data["summary"]) == 8
    with open(paths[3], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_summary_and_files(tmp_path):
    result = sensitivity_result()
    rows = {(r["layer"], r["scale"]): r for r in result.rows}
    assert rows["b", 2.0]["accuracy_mean"] == pytest.approx(0.495)
    assert rows["b", 2.0]["accuracy_delta"] == pytest.approx(-0.405)
    assert rows["a", 0.5]["draws"] == 2
    assert "Δ accuracy" in result.to_markdown()
    assert "accuracy 0.9000" in result.to_string()
    fig = result.plot()
    assert fig.axes[0].get_xlabel() == "noise scale (multiple of Gaussian(stddev=0.1))"
    assert len(fig.axes[0].get_lines()) == 2 + 1  # a layer each, the clean line
    paths = result.save(str(tmp_path), "sensitivity")
    with open(paths[3], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_other_metric():
    fig = training_result().plot(metric="loss")
    assert fig.axes[0].get_ylabel() == "validation loss"
    with pytest.raises(ValueError, match="Received: metric='auc'"):
        training_result().plot(metric="auc")
