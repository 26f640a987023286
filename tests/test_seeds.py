"""Tests for the salted seed derivation (`noisylayers._seeds`)."""

import pytest

from noisylayers._seeds import derive_seed


def test_unseeded_stays_unseeded():
    assert derive_seed(None, "anything") is None


def test_deterministic_and_in_range():
    seeds = [derive_seed(s, salt) for s in range(50) for salt in ("a", ("wrap", 1))]
    assert seeds == [derive_seed(s, salt) for s in range(50) for salt in ("a", ("wrap", 1))]
    assert all(0 <= x < 2**31 for x in seeds)


def test_streams_do_not_collide_with_neighbouring_seeds():
    # The defect of `seed + 1`: layer(seed=0)'s second stream was layer(seed=1)'s first.
    derived = {derive_seed(s, "keras_layer") for s in range(1000)}
    assert len(derived) == 1000
    assert not derived & set(range(1000))
    assert derive_seed(0, ("wrap", "a")) != derive_seed(0, ("wrap", "b"))


@pytest.mark.parametrize("salt", ["x", ("mc_predict", 0)])
def test_depends_on_seed(salt):
    assert derive_seed(1, salt) != derive_seed(2, salt)
