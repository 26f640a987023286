"""`sources`: models and data of one's own, and what travels to Ray workers."""

import os
import pickle

import keras
import numpy as np
import pytest

from noisylayers.ablation import sources
from noisylayers.ablation.settings import normalize_source
from noisylayers.ablation.settings import parse_source
from tests.own_models import arrays
from tests.own_models import write_data
from tests.own_models import write_models

only_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="backend-independent"
)


@only_tensorflow
def test_parse_and_normalize_source(tmp_path, monkeypatch):
    assert parse_source("m.py:build") == ("file", "m.py", "build")
    assert parse_source("C:/m/m.py:build") == ("file", "C:/m/m.py", "build")
    assert parse_source("pkg.models:build") == ("module", "pkg.models", "build")
    assert parse_source("a/b.keras") == ("keras", "a/b.keras")
    assert parse_source("d.npz", "data") == ("npz", "d.npz")
    for text, argument in [("m.py", "model"), ("m.py:", "model"), ("cnn", "model"),
                           (".keras", "model"), ("d.npz", "model"), ("m.keras", "data"),
                           ("a b:c", "model"), ("m.py:1x", "model")]:
        with pytest.raises(ValueError, match=f"Received: {argument}="):
            parse_source(text, argument)
    monkeypatch.chdir(tmp_path)
    assert normalize_source("m.py:build") == f"{tmp_path}/m.py:build"
    assert normalize_source("d.npz", "data") == f"{tmp_path}/d.npz"
    assert normalize_source("pkg.models:build") == "pkg.models:build"


@only_tensorflow
def test_load_data_forms(tmp_path):
    split, xy = write_data(str(tmp_path))
    (x_train, y_train), (x_val, y_val) = sources.load_data(split)[0]
    assert (len(x_train), len(x_val)) == (48, 16)
    # x and y: a seeded split, 20% (13 of 64) for validation by default.
    data, val_split = sources.load_data(xy)
    assert val_split == 0.2 and (len(data[0][0]), len(data[1][0])) == (51, 13)
    again, _ = sources.load_data(xy)
    np.testing.assert_array_equal(again[1][0], data[1][0])
    x, y = arrays()
    assert {tuple(r) for r in data[0][0]} | {tuple(r) for r in data[1][0]} == {
        tuple(r) for r in x
    }
    half, _ = sources.load_data(xy, val_split=0.5, samples=20)
    assert (len(half[0][0]), len(half[1][0])) == (10, 10)
    # A function, which may give several inputs.
    models = write_models(str(tmp_path))
    (x_train, _), (x_val, _) = sources.load_data(f"{models}:data")[0]
    assert (x_train.shape, x_val.shape) == ((32, 4), (8, 4))
    with pytest.raises(ValueError, match="Argument `val_split` must be a fraction"):
        sources.load_data(xy, val_split=1.0)


@only_tensorflow
def test_saved_model_runs_get_fresh_weights_from_their_seed(tmp_path):
    template = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    template.compile(keras.optimizers.SGD(0.5), "mse", metrics=["mae"])
    path = str(tmp_path / "m.keras")
    template.save(path)
    build = sources.ModelSource(path, wrap="gaussian:0.1")

    def weights(seed):
        keras.utils.set_random_seed(seed)
        model = build()
        return model, model.get_layer("d").get_weights()[0]

    model, first = weights(0)
    np.testing.assert_array_equal(weights(0)[1], first)
    assert not np.allclose(weights(1)[1], first)
    assert not np.allclose(template.get_layer("d").get_weights()[0], first)
    # Compiled as saved, its layers wrapped in noise.
    assert model.compiled and model.loss == "mse"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.5)
    assert type(model.get_layer("d")).__name__ == "WeightNoise"


@only_tensorflow
def test_a_source_travels_without_its_files(tmp_path):
    """A Ray worker on another machine has none of the driver's files."""
    models = write_models(str(tmp_path))
    path = str(tmp_path / "m.keras")
    saved = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    saved.compile("adam", "mse")
    saved.save(path)
    shipped = [pickle.dumps(sources.ModelSource(f"{models}:build")),
               pickle.dumps(sources.ModelSource(path, wrap="gaussian"))]
    os.remove(models)
    os.remove(path)
    sources._LOADED.clear()  # a fresh process
    for blob, layers in zip(shipped, (["hidden", "out"], ["d"])):
        model = pickle.loads(blob)()
        assert [layer.name for layer in model.layers] == layers
        assert model.compiled
