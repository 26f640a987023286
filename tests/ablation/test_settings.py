"""`AblationSettings`: the defaults and per-value checks of `run_ablation`."""

import dataclasses

import keras
import numpy as np
import pytest

from noisylayers.ablation.plan import make_spec
from noisylayers.ablation.settings import DEFAULTS
from noisylayers.ablation.settings import AblationSettings
from noisylayers.ablation.settings import check_sensitivity_options

# Plain Python, the same on every backend.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="backend-independent"
)


def test_defaults():
    assert dict(DEFAULTS) == {
        "model": "cnn", "noise": "gaussian:0.1", "epochs": 10, "seeds": 3,
        "scales": None, "samples": None, "batch_size": 32, "estimator": None,
        "data": None, "val_split": None, "wrap": None,
    }
    assert AblationSettings().as_dict() == dict(DEFAULTS)
    with pytest.raises(TypeError):
        DEFAULTS["epochs"] = 1  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        AblationSettings().epochs = 1


def test_values_are_normalized():
    settings = AblationSettings(
        model="mlp", epochs=np.int64(2), scales=[1, np.float32(0.5)], samples=60
    )
    assert settings.scales == (1.0, 0.5) and type(settings.epochs) is int
    assert settings.as_dict()["scales"] == [1.0, 0.5]
    assert settings.metadata() == {"model": "mlp", "noise": "gaussian:0.1", "samples": 60}
    assert AblationSettings(estimator="flipout").metadata()["estimator"] == "flipout"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "Received: epochs=0"),
        ({"seeds": 1.5}, TypeError, "Received: seeds=1.5"),
        ({"batch_size": True}, TypeError, "Received: batch_size=True"),
        ({"samples": 0}, ValueError, "Received: samples=0"),
        ({"scales": [-1]}, ValueError, "Received: scales=-1"),
        ({"scales": [1, 1]}, ValueError, "distinct values"),
        ({"scales": "1"}, TypeError, "must be a list"),
        ({"model": 3}, TypeError, "Received: model=3"),
        ({"noise": 1}, TypeError, "Received: noise=1"),
        ({"estimator": 1}, TypeError, "Received: estimator=1"),
        ({"data": 1}, TypeError, "Received: data=1"),
        ({"val_split": 1.0}, ValueError, "strictly between 0 and 1"),
        ({"val_split": "0.2"}, TypeError, "Received: val_split='0.2'"),
    ],
)
def test_invalid_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        AblationSettings(**kwargs)


def test_sensitivity_options():
    assert check_sensitivity_options((1, 4), 2) == ([1.0, 4.0], 2)
    with pytest.raises(ValueError, match="Received: draws=0"):
        check_sensitivity_options([1], 0)
    with pytest.raises(ValueError, match="Received: sensitivity_scales=-2"):
        check_sensitivity_options([-2], 1)


def test_spec_round_trip():
    settings = AblationSettings(
        model="lstm", noise="dropconnect:0.1", epochs=2, seeds=2, scales=[0.5, 2],
        samples=60, batch_size=16, estimator="flipout",
    )
    spec = make_spec(["a", "b"], [0, 1], [0.5, 2.0], 2, 16, settings.metadata())
    assert AblationSettings.from_spec(spec) == settings
    spec["metadata"] = {}  # written by `training_ablation` directly
    with pytest.raises(ValueError, match="did not write"):
        AblationSettings.from_spec(spec)


def test_own_model_settings_round_trip():
    settings = AblationSettings(
        model="/m/models.py:build", noise=None, data="/m/d.npz", val_split=0.25,
        wrap="gaussian:0.1", estimator="flipout",
    )
    assert settings.own_model and not AblationSettings().own_model
    assert settings.metadata() == {
        "model": "/m/models.py:build", "data": "/m/d.npz", "samples": None,
        "val_split": 0.25, "wrap": "gaussian:0.1", "estimator": "flipout",
    }
    spec = make_spec(["a"], [0, 1, 2], None, 10, 32, settings.metadata())
    assert AblationSettings.from_spec(spec) == settings
