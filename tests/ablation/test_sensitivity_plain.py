"""`sensitivity_ablation(..., noise=...)`: any model, also without noisy layers."""

import os

import keras
import numpy as np
import pytest
from tests.ablation.tiny import build_tiny
from tests.ablation.tiny import make_data

from noisylayers import noise
from noisylayers.ablation import sensitivity_ablation


def build_plain():
    """A compiled plain MLP: two layers with a kernel, one without."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained():
    """One trained model for the module (training and compiling cost)."""
    keras.utils.set_random_seed(0)
    model = build_plain()
    model.fit(*make_data()[0], epochs=2, batch_size=16, verbose=0)
    return model, [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


@pytest.fixture
def plain(trained):
    """The trained model, with its trained weights (each test checks them)."""
    model, values = trained
    for variable, value in zip(model.weights, values):
        variable.assign(value)
    return model


def weights(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


def assert_bit_identical(before, model):
    after = weights(model)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def spy_on_evaluate(model, monkeypatch, fail_on=None):
    """Records the kernels and biases seen by each `evaluate` call."""
    seen = []
    evaluate = model.evaluate

    def spy(*args, **kwargs):
        seen.append(
            {
                layer.name: [np.array(keras.ops.convert_to_numpy(v)) for v in layer.weights]
                for layer in model.layers
            }
        )
        if fail_on is not None and len(seen) == fail_on:
            raise RuntimeError("evaluation failed")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(model, "evaluate", spy)
    return seen


def test_plain_model_with_a_kind(plain, data):
    before = weights(plain)
    kind = noise.RelativeGaussian(0.05, per="channel")
    result = sensitivity_ablation(
        plain, data[1], scales=[0.0, 40.0], draws=2, noise=kind, progress=False
    )
    # Every layer with a kernel, in model order; BatchNormalization has none.
    assert result.spec["layers"] == ["hidden", "out"]
    assert result.spec["noise"] == {"hidden": repr(kind), "out": repr(kind)}
    assert len(result.records) == 2 * 2 * 2
    clean = plain.evaluate(*data[1], verbose=0, return_dict=True)
    assert result.spec["clean"] == pytest.approx(clean)
    rows = {(row["layer"], row["scale"]): row for row in result.rows}
    assert sorted(rows) == [(l, s) for l in ("hidden", "out") for s in (0.0, 40.0)]
    for layer in ("hidden", "out"):
        row = rows[layer, 0.0]
        assert row["draws"] == 2
        assert row["loss_mean"] == pytest.approx(clean["loss"], rel=1e-5)
        assert row["accuracy_mean"] == pytest.approx(clean["accuracy"])
        assert row["loss_delta"] == pytest.approx(0.0, abs=1e-5)
        # 40 x 5% of the range: the loss moves, draw to draw.
        assert abs(rows[layer, 40.0]["loss_delta"]) > 1e-3
        assert rows[layer, 40.0]["loss_std"] > 0.0
    assert_bit_identical(before, plain)


def test_specs_and_aliases(plain, data):
    before = weights(plain)
    for given, expected in [
        ("relative_gaussian:0.05", noise.RelativeGaussian(0.05)),
        ("relative_gaussian", noise.RelativeGaussian()),
        ("polynomial_gaussian", noise.PolynomialGaussian()),
        ("quantize:3", noise.Quantize(3)),
        ("stuck_at:0.2,value=max", noise.StuckAt(0.2, value="max")),
        ("dropconnect:0.1", noise.DropConnect(0.1)),
    ]:
        result = sensitivity_ablation(
            plain, data[1], scales=[1.0], draws=1, layers="out", noise=given, progress=False
        )
        assert result.spec["noise"] == {"out": repr(expected)}, given
        assert [row["layer"] for row in result.rows] == ["out"]
        assert np.isfinite(result.rows[0]["loss_mean"])
        assert_bit_identical(before, plain)


def test_the_given_kind_perturbs_one_layer_at_a_time(plain, data, monkeypatch):
    """Quantize is deterministic: the evaluated weights are the quantized ones."""
    clean = {l.name: [np.array(keras.ops.convert_to_numpy(v)) for v in l.weights] for l in plain.layers}
    seen = spy_on_evaluate(plain, monkeypatch)
    kind = noise.Quantize(2, per="channel")
    sensitivity_ablation(plain, data[1], scales=[1.0], draws=1, noise=kind, progress=False)
    assert len(seen) == 1 + 2  # clean, then one draw per layer
    for name, weights_seen in zip(["hidden", "out"], seen[1:]):
        generator = keras.random.SeedGenerator(0)
        kernel, bias = clean[name]
        expected = [
            keras.ops.convert_to_numpy(kind(keras.ops.convert_to_tensor(v), generator))
            for v in (kernel, bias)
        ]
        np.testing.assert_array_equal(weights_seen[name][0], expected[0])
        np.testing.assert_array_equal(weights_seen[name][1], expected[1])
        # 2 bits: every weight is -max, 0 or +max of its channel.
        levels = weights_seen[name][0] / np.abs(kernel).max(axis=0)
        assert set(np.unique(levels)) <= {-1.0, 0.0, 1.0}
        for other in clean:
            if other != name:
                for a, b in zip(weights_seen[other], clean[other]):
                    np.testing.assert_array_equal(a, b)
    for a, b in zip(seen[0]["hidden"], clean["hidden"]):
        np.testing.assert_array_equal(a, b)


def test_stuck_at_rate_one_zeroes_the_layer(plain, data, monkeypatch):
    seen = spy_on_evaluate(plain, monkeypatch)
    sensitivity_ablation(
        plain, data[1], scales=[1.0], draws=2, layers="hid*", noise="stuck_at:1.0", progress=False
    )
    assert len(seen) == 3
    for weights_seen in seen[1:]:
        for value in weights_seen["hidden"]:
            np.testing.assert_array_equal(value, 0.0)


def test_layer_selection_by_name_and_glob(plain, data):
    kwargs = dict(scales=[1.0], draws=1, noise="relative_gaussian:0.05", progress=False)
    assert sensitivity_ablation(plain, data[1], layers="h*", **kwargs).spec["layers"] == ["hidden"]
    result = sensitivity_ablation(plain, data[1], layers=["out", "hidden"], **kwargs)
    assert result.spec["layers"] == ["hidden", "out"]  # in model order
    result = sensitivity_ablation(plain, data[1], layers=[plain.get_layer("out")], **kwargs)
    assert result.spec["layers"] == ["out"]
    with pytest.raises(ValueError, match="No layer of model .* named 'z\\*'"):
        sensitivity_ablation(plain, data[1], layers="z*", **kwargs)
    with pytest.raises(ValueError, match="Layer 'bn' has no weight to perturb"):
        sensitivity_ablation(plain, data[1], layers="bn", **kwargs)


def test_weights_are_bit_identical_after_an_error(plain, data, monkeypatch):
    before = weights(plain)
    seen = spy_on_evaluate(plain, monkeypatch, fail_on=3)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        sensitivity_ablation(
            plain, data[1], scales=[5.0], draws=4, noise="relative_gaussian:0.1", progress=False
        )
    assert len(seen) == 3
    # The failing call saw noisy weights; they are clean again.
    assert not np.array_equal(seen[2]["hidden"][0], before[0])
    assert_bit_identical(before, plain)


def test_gaussian_kinds_as_noise(plain, data):
    """The error message for a plain model itself suggests noise='gaussian:0.05'."""
    before = weights(plain)
    for given in ("gaussian:0.05", noise.MultiplicativeGaussian(0.1)):
        result = sensitivity_ablation(
            plain, data[1], scales=[1.0], draws=1, layers="out", noise=given, progress=False
        )
        assert list(result.spec["noise"]) == ["out"]
        assert_bit_identical(before, plain)


def test_plain_model_needs_noise(plain, data):
    with pytest.raises(ValueError, match="`noise=`"):
        sensitivity_ablation(plain, data[1], progress=False)


@pytest.mark.parametrize(
    "kind",
    [noise.LearnedGaussian(), "learned_gaussian", "variational_dropout"],
    ids=["LearnedGaussian()", "learned_gaussian", "variational_dropout"],
)
def test_learned_kinds_are_refused(plain, data, kind):
    before = weights(plain)
    with pytest.raises(ValueError, match="without learned variables"):
        sensitivity_ablation(plain, data[1], noise=kind, progress=False)
    assert_bit_identical(before, plain)
    assert len(plain.weights) == len(before)


def test_noisy_model_with_a_given_kind(data, monkeypatch):
    keras.utils.set_random_seed(0)
    model = build_tiny(names=("a", "b"))
    before = weights(model)
    clean_kernel = np.array(keras.ops.convert_to_numpy(model.get_layer("a").target_variables[0]))
    seen = []
    evaluate = model.evaluate

    def spy(*args, **kwargs):
        seen.append(np.array(keras.ops.convert_to_numpy(model.get_layer("a").target_variables[0])))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(model, "evaluate", spy)
    kind = noise.Quantize(2, per="tensor")
    result = sensitivity_ablation(
        model, data[1], scales=[1.0], draws=1, noise=kind, layers="a", progress=False
    )
    assert result.spec["noise"] == {"a": "Quantize(bits=2, per='tensor', stddev=0.0)"}
    # The given kind, not the layer's own Gaussian: 2-bit levels only.
    levels = seen[1] / np.abs(clean_kernel).max()
    assert set(np.unique(levels)) <= {-1.0, 0.0, 1.0}
    assert_bit_identical(before, model)
    # Without `noise`, the layer's own kind.
    own = sensitivity_ablation(model, data[1], scales=[1.0], draws=1, progress=False)
    assert own.spec["noise"] == {"a": "Gaussian(stddev=0.3)", "b": "Gaussian(stddev=0.3)"}


def test_reproducible_with_a_seed(plain, data):
    kwargs = dict(
        scales=[20.0], draws=2, layers="out", seed=3, noise="relative_gaussian:0.05", progress=False
    )
    first = sensitivity_ablation(plain, data[1], **kwargs)
    second = sensitivity_ablation(plain, data[1], **kwargs)
    assert [r["metrics"] for r in first.records] == [r["metrics"] for r in second.records]
    assert first.records[0]["metrics"] != first.records[1]["metrics"]


def test_result_saves_and_plots(plain, data, tmp_path):
    result = sensitivity_ablation(
        plain, data[1], scales=[0.5, 2.0], draws=2, noise="relative_gaussian:0.05",
        metadata={"model": "plain"}, progress=False,
    )
    written = result.save(str(tmp_path), "sensitivity")
    assert sorted(os.path.basename(p) for p in written) == [
        "sensitivity.csv", "sensitivity.json", "sensitivity.md", "sensitivity.png",
    ]
    for path in written:
        assert os.path.getsize(path) > 0
    with open(tmp_path / "sensitivity.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = str(result)
    assert "hidden" in text and "out" in text
    assert "RelativeGaussian" in text
    assert result.spec["metadata"] == {"model": "plain"}
