"""Tests of `noisylayers.noise.spec`: `parse`, `to_spec` and `short_spec`."""

import re

import pytest

from noisylayers import noise
from noisylayers import priors
from noisylayers.noise import spec

ACCEPTED = [
    ("gaussian", noise.Gaussian()),
    ("gaussian:0.1", noise.Gaussian(0.1)),
    (" gaussian : 0.1 ", noise.Gaussian(0.1)),
    ("Gaussian:0.2", noise.Gaussian(0.2)),  # a class name
    ("gaussian:1", noise.Gaussian(1.0)),  # an int for a float parameter
    ("gaussian:stddev=0.3,sampler=table", noise.Gaussian(0.3, sampler="table")),
    ("gaussian:0.3,sampler='table'", noise.Gaussian(0.3, sampler="table")),
    ("dropconnect:0.25", noise.DropConnect(0.25)),
    ("variational_dropout:3,kl_weight=1e-4",
     noise.VariationalDropout(3.0, kl_weight=1e-4)),
    ("variational_dropout:init_log_alpha=-2", noise.VariationalDropout(init_log_alpha=-2.0)),
    ("learned_gaussian:init_stddev=0.05,dataset_size=1000",
     noise.LearnedGaussian(0.05, dataset_size=1000)),
    ("learned_gaussian:prior=laplace", noise.LearnedGaussian(prior="laplace")),
    ("learned_gaussian:prior=None,kl_weight=None", noise.LearnedGaussian(prior=None)),
    ("learned_gaussian:prior={'class_name': 'Laplace', 'config': {'scale': 0.5}}",
     noise.LearnedGaussian(prior=priors.Laplace(0.0, 0.5))),
    ("polynomial_gaussian:coefficients=[0.01, 0.02],per=channel",
     noise.PolynomialGaussian([0.01, 0.02], per="channel")),
    ("stuck_at:0.2,value=max", noise.StuckAt(0.2, value="max")),
]


@pytest.mark.parametrize("text, expected", ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_parse_reads_every_form(text, expected):
    assert spec.parse(text) == expected
    assert noise.parse(text) == expected  # re-exported
    assert noise.get(text) == expected  # and read by `get`


REFUSED = [
    ("gaussian:", "nothing follows the colon"),
    ("gaussian:0.1,0.2", "one VALUE at most, for the first parameter (`stddev`)"),
    ("gaussian:stddev=0.1,0.2", "positional argument follows keyword argument"),
    ("gaussian:0.1,stddev=0.2", "gives parameter 'stddev' twice"),
    ("gaussian:(0.1", "Malformed noise spec"),
    ("gaussian:0.1)+(1", "Malformed noise spec"),
    ("gaussian:0.1)(2", "Malformed noise spec"),
    ("gaussian:*x", "no * or ** arguments"),
    ("gaussian:__import__('os')", "neither a Python literal"),
    ("gaussian:1+1", "neither a Python literal"),
    ("gaussian:width=1", "has no parameter 'width'; its parameters are ['stddev', 'sampler']"),
    ("dropconnect:x", "Invalid noise spec 'dropconnect:x': Argument `rate`"),
    ("quantize:1", "Received: bits=1"),
    ("gausian:0.1", "Unknown noise kind. Did you mean 'gaussian'"),
]


@pytest.mark.parametrize("text, message", REFUSED, ids=[t for t, _ in REFUSED])
def test_a_malformed_spec_is_a_value_error_quoting_it(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        spec.parse(text)
    received = "noise" if text.startswith("gausian") else ""
    assert f"Received: {received}" in str(info.value)
    assert repr(text.split(":")[0]) in str(info.value) or repr(text) in str(info.value)


def test_parse_takes_strings_only():
    with pytest.raises(TypeError, match="Received: 0.1"):
        spec.parse(0.1)


@pytest.mark.parametrize("alias", sorted(noise.ALIASES))
def test_every_kind_round_trips_through_both_formatters(alias):
    kind = noise.get(alias)
    assert spec.parse(spec.to_spec(kind)) == kind
    assert spec.parse(spec.short_spec(kind)) == kind
    assert spec.to_spec(kind).startswith(f"{alias}:")


def test_to_spec_writes_every_parameter():
    assert spec.to_spec(noise.Gaussian(0.05)) == "gaussian:stddev=0.05"
    assert noise.to_spec("stuck_at:0.2") == "stuck_at:rate=0.2,value='zero'"
    assert (
        spec.to_spec(noise.LearnedGaussian(prior="laplace", dataset_size=10))
        == "learned_gaussian:init_stddev=0.05,prior=laplace,kl_weight=None,"
        "dataset_size=10"
    )
    with pytest.raises(ValueError, match="nested parameters"):
        spec.to_spec(noise.LearnedGaussian(prior=priors.Laplace(0.0, 0.5)))
    with pytest.raises(ValueError, match="without an alias"):
        spec.to_spec(noise.Noise())


def test_short_spec_is_kind_and_value_for_one_number():
    # The texts of `noise_text` (noisylayers.ablation.pipeline), which it replaces.
    assert spec.short_spec(noise.parse("gaussian")) == "gaussian:0.01"
    assert spec.short_spec(noise.parse("dropconnect:0.25")) == "dropconnect:0.25"
    assert (
        spec.short_spec(noise.parse("multiplicative_gaussian:1"))
        == "multiplicative_gaussian:1"
    )
    assert noise.short_spec(noise.Factorized(0.5)) == "factorized:0.5"
    # Not one number: the full spec.
    table = noise.Gaussian(0.1, sampler="table")
    assert spec.short_spec(table) == spec.to_spec(table)
    # `:g` would round 0.123456789 to 0.123457: written in full instead.
    kind = noise.Gaussian(0.123456789)
    assert spec.short_spec(kind) == "gaussian:0.123456789"
    assert spec.parse(spec.short_spec(kind)) == kind
