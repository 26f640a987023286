"""Tests of `noisylayers._registry.Registry` (behind `noise.get`, `priors.get`)."""

import re

import keras
import pytest

from noisylayers._configurable import Configurable
from noisylayers._registry import Registry
from noisylayers._registry import brief_repr


class Shape(Configurable):
    pass


@keras.saving.register_keras_serializable(package="noisylayers_tests")
class Square(Shape):
    def __init__(self, side=1.0):
        self.side = side

    def get_config(self):
        return {"side": self.side}


@keras.saving.register_keras_serializable(package="noisylayers_tests")
class Circle(Shape):
    pass


def registry():
    return Registry(
        what="shape", argument="shape", base=Shape, base_name="tests.Shape",
        aliases={"square": Square}, classes=(Shape,), forms=("a number",),
    )


def test_lookups_by_alias_class_name_instance_and_config():
    shapes = registry()
    assert shapes.get("square") == Square()
    assert shapes.get("Square") == Square()
    instance = Square(2.0)
    assert shapes.get(instance) is instance
    config = shapes.serialize(instance)
    assert shapes.get(config) == instance and shapes.deserialize(config) == instance
    assert shapes.serialize(None) is None
    assert shapes.alias_of(instance) == "square" and shapes.alias_of(Circle()) is None
    # The aliases dict is read at each lookup: entries added later count.
    shapes.aliases["circle"] = Circle
    assert shapes.get("circle") == Circle()


@pytest.mark.parametrize(
    "identifier, error, message",
    [
        ("sqare", ValueError, "Unknown shape. Did you mean 'square'? Expected one of "
         "['square'] (or the class names ['Square']), or a `tests.Shape` instance "
         "or a number. Received: shape='sqare'"),
        ("Shape", ValueError, "Received: shape='Shape'"),  # the base: no
        (3, TypeError, "Argument `shape` must be a `tests.Shape` instance, a string "
         "alias (['square']) or class name, a number or a config dict. Received: "
         "shape=3 (of type int)"),
        ({"class_name": "Square", "config": {"width": 1}}, ValueError,
         "Could not build a shape from the config. Received: shape={'class_name'"),
    ],
)
def test_errors_name_the_argument_and_the_value(identifier, error, message):
    with pytest.raises(error, match=re.escape(message)):
        registry().get(identifier)


def test_a_config_of_another_family_is_refused():
    squares = Registry("square", "square", Square, "tests.Square", {"square": Square},
                       classes=(Circle,))
    with pytest.raises(ValueError, match=r"does not describe a `tests\.Square`"):
        squares.get({"class_name": "Circle", "config": {}})


def test_messages_about_large_configs_stay_short():
    config = {"class_name": "Square", "config": {"side": list(range(100_000))}}
    assert len(brief_repr(config)) < 300
    with pytest.raises(ValueError) as info:
        registry().from_config({"class_name": "Nope", "config": config})
    assert len(str(info.value)) < 1000
