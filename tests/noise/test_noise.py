import pathlib
import re

import keras
import numpy as np
import pytest
from keras import ops

import noisylayers
from noisylayers import noise


@pytest.mark.parametrize(
    "alias, cls",
    [*noise.ALIASES.items(), *((c.__name__, c) for c in noise.ALIASES.values())],
)
def test_get_alias(alias, cls):
    obj = noise.get(alias)
    assert type(obj) is cls
    assert obj == cls()
    assert noise.get(noise.serialize(obj)) == obj


README = pathlib.Path(__file__).parents[2] / "README.md"


def test_the_readme_and_the_module_docstring_name_every_kind():
    """Hand-written lists of kinds must not drift from the registry."""
    readme = README.read_text(encoding="utf-8")
    for alias, cls in noise.ALIASES.items():
        for text, where in ((readme, "README.md"), (noise.__doc__, "noise.__doc__")):
            assert f'"{alias}"' in text, f"{where} does not name the alias {alias!r}"
            assert re.search(rf"`{cls.__name__}\b", text), (
                f"{where} does not name the class {cls.__name__}"
            )
        assert cls.__name__ in noise.__all__


def test_unknown_names_suggest_the_closest_alias():
    with pytest.raises(ValueError, match=r"Did you mean 'dropconnect'\?"):
        noise.get("drop_connect")
    with pytest.raises(ValueError, match=r"Did you mean 'quantize'\?"):
        noise.get("Quantise")
    with pytest.raises(ValueError, match=r"Unknown noise kind\. Expected one of"):
        noise.get("pink")  # nothing close: no suggestion


def test_documented_defaults():
    assert noise.Gaussian().stddev == 0.01
    assert noise.MultiplicativeGaussian().stddev == 0.1
    assert noise.DropConnect().rate == 0.5


@pytest.mark.parametrize(
    "obj",
    [noise.Gaussian(0.3), noise.MultiplicativeGaussian(0.2), noise.DropConnect(0.25)],
)
def test_serialize_round_trip(obj):
    config = noise.serialize(obj)
    assert config["class_name"] == type(obj).__name__
    assert noise.deserialize(config) == obj
    assert noise.get(config) == obj
    assert type(obj).from_config(obj.get_config()) == obj
    # The config is plain data (JSON-able), not Python objects.
    assert keras.saving.deserialize_keras_object(config) == obj


def test_get_returns_instances_unchanged():
    obj = noise.Gaussian(0.5)
    assert noise.get(obj) is obj


def test_repr():
    assert repr(noise.DropConnect(0.2)) == "DropConnect(rate=0.2)"


@pytest.mark.parametrize(
    "identifier, error, message",
    [
        ("gausian", ValueError, r"Unknown noise kind.*Received: noise='gausian'"),
        ("Noise", ValueError, r"Received: noise='Noise'"),
        (3, TypeError, r"Received: noise=3"),
        (None, TypeError, r"Received: noise=None"),
        ({"class_name": "Nope", "config": {}}, ValueError, r"Received: noise="),
        (
            {"class_name": "Gaussian", "config": {"stddev": -1}},
            ValueError,
            r"Received: stddev=-1",
        ),
    ],
)
def test_get_errors(identifier, error, message):
    with pytest.raises(error, match=message):
        noise.get(identifier)


def test_scale_zero_gives_the_clean_value_exactly():
    value = ops.convert_to_tensor(np.linspace(-1, 1, 12).reshape(3, 4).astype("float32"))
    seed = keras.random.SeedGenerator(0)
    for kind in (noise.Gaussian(1.0), noise.MultiplicativeGaussian(1.0), noise.DropConnect(0.5)):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(kind(value, seed, scale=0.0)), ops.convert_to_numpy(value)
        )


@pytest.mark.parametrize(
    "kind",
    [noise.Gaussian(0.5), noise.MultiplicativeGaussian(0.5), noise.DropConnect(0.5)],
)
def test_perturbation_has_zero_mean(kind):
    # 40000 draws of a weight of 1: the mean perturbation is within 0.02 of
    # zero (standard error at most 1/sqrt(40000) = 0.005).
    value = ops.ones((200, 200))
    delta = ops.convert_to_numpy(kind.perturbation(value, keras.random.SeedGenerator(1)))
    assert abs(delta.mean()) < 0.02
    assert delta.shape == (200, 200)


@keras.saving.register_keras_serializable(package="noisylayers_tests")
class Uniform(noise.Noise):
    def __init__(self, width=0.1):
        self.width = width

    def perturbation(self, value, seed):
        return keras.random.uniform(
            ops.shape(value), -self.width, self.width, seed=seed
        )

    def get_config(self):
        return {"width": self.width}


def test_custom_kind_plugs_into_the_wrapper(tmp_path):
    dense = keras.layers.Dense(200, use_bias=False, kernel_initializer="zeros")
    wrapper = noisylayers.WeightNoise(dense, noise=Uniform(0.5))
    x = np.eye(2, dtype="float32")[:1]
    out = ops.convert_to_numpy(wrapper(x, training=True))
    assert np.all(np.abs(out) <= 0.5) and out.std() > 0.1
    clone = noisylayers.WeightNoise.from_config(wrapper.get_config())
    assert clone.noise == Uniform(0.5)


def test_base_class_requires_perturbation():
    with pytest.raises(NotImplementedError, match="perturbation"):
        noise.Noise()(ops.ones((2,)), keras.random.SeedGenerator(0))


def test_equal_kinds_hash_equal():
    from noisylayers.noise import ALIASES

    kinds = [noise.get(alias) for alias in ALIASES] * 2
    assert len(set(kinds)) == len(ALIASES)
    assert hash(noise.Gaussian(0.1)) == hash(noise.Gaussian(0.1))
    assert noise.Gaussian(0.1) != noise.Gaussian(0.2)
