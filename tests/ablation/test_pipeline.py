"""`run_ablation`: the default ablation of `noisylayers ablate`, in one call."""

import os
import re

import pytest

from noisylayers import ablation
from noisylayers.ablation import pipeline

# The MLP on 60 digits (45 training, 15 validation examples), one epoch.
TINY = dict(model="mlp", epochs=1, seeds=1, samples=60, batch_size=16,
            sensitivity_scales=[1, 4], draws=1, progress=False)
TINY_SETTINGS = {k: v for k, v in TINY.items() if k in pipeline.DEFAULTS}


def test_run_ablation_in_one_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = ablation.run_ablation(**TINY)
    training, sensitivity = report
    (made,) = os.listdir(tmp_path)  # out_dir=None: a new ./ablation-*
    assert re.fullmatch(r"ablation-\d{8}-\d{6}", made)
    assert report.out_dir == made
    # The MLP has 3 noisy layers: 2 + 2 * 3 configurations.
    assert training.complete and len(training.records) == 8
    assert training.spec["metadata"] == {"model": "mlp", "noise": "gaussian:0.1", "samples": 60}
    assert sensitivity.spec["layers"] == ["hidden1", "hidden2", "output"]
    assert sensitivity.spec["metadata"] == {"model": "models/baseline__seed0.keras"}
    assert len(sensitivity.records) == 3 * 2
    names = sorted(os.path.basename(p) for p in report.files)
    assert names == sorted(f"{n}.{e}" for n in ("training", "sensitivity")
                           for e in ("csv", "json", "md", "png"))
    assert all(os.path.getsize(p) > 0 for p in report.files)
    assert report.noise_stats_run == "all__seed0" and len(report.noise_stats) == 6
    text = str(report)
    for part in ("Training ablation", "Noise in the model trained with noise everywhere "
                 "(all__seed0)", "Sensitivity ablation", "(8 trained models)"):
        assert part in text
    assert pipeline.saved_settings(made) == pipeline.check_settings(**TINY_SETTINGS)

    # The same call with the directory resumes: nothing is trained again.
    again, _ = ablation.run_ablation(**TINY, out_dir=made)
    assert again.records == training.records


def test_check_settings_normalizes():
    settings = pipeline.check_settings(model="mlp", noise="dropconnect:rate=0.25",
                                       scales=[1, 2], samples=60)
    assert settings == {**pipeline.DEFAULTS, "model": "mlp", "noise": "dropconnect:0.25",
                        "scales": [1.0, 2.0], "samples": 60}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": "vgg"}, ValueError, r"Unknown model.*Received: model='vgg'"),
        ({"noise": "pink"}, ValueError, "Unknown noise kind"),
        ({"epochs": 0}, ValueError, "Received: epochs=0"),
        ({"seeds": 1.5}, TypeError, "Received: seeds=1.5"),
        ({"scales": [-1]}, ValueError, "Received: scales=-1"),
        ({"estimator": "magic"}, ValueError, "Received: estimator='magic'"),
        ({"noise": "dropconnect", "estimator": "flipout"}, ValueError,
         "do not work with the layers of model 'mlp'.*Estimator 'flipout'"),
        ({"samples": 2}, ValueError, "leaves 1 training and 1 validation"),
        ({"draws": 0}, ValueError, "Received: draws=0"),
        ({"shard": "5/4"}, ValueError, "Received: shard='5/4'"),
    ],
)
def test_invalid_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        pipeline.check_settings(**{"model": "mlp", **kwargs})
    with pytest.raises(error, match=match):
        ablation.run_ablation(**{"model": "mlp", **kwargs})


def test_out_dir_with_other_settings(tmp_path):
    out = str(tmp_path)
    training, sensitivity = ablation.run_ablation(**TINY, out_dir=out, shard="1/8")
    assert sensitivity is None and len(training.missing) == 7
    with pytest.raises(ValueError, match="epochs: saved 1, requested 2"):
        pipeline.check_settings(**{**TINY_SETTINGS, "epochs": 2}, out_dir=out)
    with pytest.raises(ValueError, match="lacks 7 run"):
        ablation.finish_ablation(training, out)
