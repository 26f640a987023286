"""Saved files: a fixture from an earlier version loads; corrupted configs
fail with a message naming the layer and the bad field."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

import noisylayers

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FIXTURE = os.path.join(FIXTURES, "noisylayers-format1.keras")


def test_a_file_written_by_format_1_keeps_loading():
    model = keras.models.load_model(FIXTURE)
    data = np.load(os.path.join(FIXTURES, "noisylayers-format1.npz"))
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], atol=1e-5)
    noisy = noisylayers.noise_layers(model)
    assert len(noisy) == 6
    assert noisy[0].scale == 0.5
    assert noisy[-1].noise == noisylayers.noise.Gaussian(0.02, sampler="table")


def _corrupted(tmp_path, change):
    with zipfile.ZipFile(FIXTURE) as z:
        files = {name: z.read(name) for name in z.namelist()}
    config = json.loads(files["config.json"])
    layers = {l["config"]["name"]: l["config"] for l in config["config"]["layers"]}
    change(layers)
    files["config.json"] = json.dumps(config).encode()
    path = str(tmp_path / "corrupted.keras")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _noisy_layer_names():
    with zipfile.ZipFile(FIXTURE) as z:
        config = json.loads(z.read("config.json"))
    return [
        l["config"]["name"]
        for l in config["config"]["layers"]
        if "format_version" in l["config"]
    ]


@pytest.mark.parametrize(
    "field, change, message",
    [
        ("format_version", lambda c: c.update(format_version=99), "format 99, newer"),
        ("noise", lambda c: c.pop("noise"), r"lacks the field\(s\) \['noise'\]"),
        (
            "noise.stddev",
            lambda c: c["noise"]["config"].update(stddev="x"),
            "stddev",
        ),
        (
            "noise.class",
            lambda c: c.update(noise={"class_name": "Pink", "config": {}}),
            "Pink",
        ),
        ("estimator", lambda c: c.update(estimator="magic"), "estimator='magic'"),
        ("targets", lambda c: c.update(targets=["nothing_here"]), "nothing_here"),
    ],
)
def test_a_corrupted_config_names_the_layer_and_the_field(tmp_path, field, change, message):
    name = _noisy_layer_names()[-1]  # the table-sampled WeightNoise(Dense)
    path = _corrupted(tmp_path, lambda layers: change(layers[name]))
    with pytest.raises(ValueError, match=message) as info:
        keras.models.load_model(path)
    assert name in str(info.value)
