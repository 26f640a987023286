import keras
import numpy as np
import pytest
from tests.ablation.tiny import build_tiny

import noisylayers
from noisylayers.ablation import sensitivity_ablation


@pytest.fixture
def trained(data):
    keras.utils.set_random_seed(0)
    model = build_tiny(names=("a", "b", "c"))
    model.fit(*data[0], epochs=2, batch_size=16, verbose=0)
    return model


def weights(model):
    return [np.array(w) for w in model.get_weights()]


def test_records_per_layer_scale_and_draw(trained, data):
    before = weights(trained)
    result = sensitivity_ablation(
        trained, data[1], scales=[0.0, 1.0, 20.0], draws=3, progress=False
    )
    assert result.spec["layers"] == ["a", "b", "c"]
    assert result.spec["noise"]["b"] == "Gaussian(stddev=0.3)"
    assert len(result.records) == 3 * 3 * 3
    clean = trained.evaluate(*data[1], verbose=0, return_dict=True)
    assert result.spec["clean"] == pytest.approx(clean)
    rows = {(row["layer"], row["scale"]): row for row in result.rows}
    assert len(rows) == 9
    for layer in "abc":
        # Scale 0 is the clean model; a big scale changes the loss.
        assert rows[layer, 0.0]["loss_mean"] == pytest.approx(clean["loss"], rel=1e-5)
        assert rows[layer, 0.0]["loss_delta"] == pytest.approx(0.0, abs=1e-5)
        assert rows[layer, 0.0]["draws"] == 3
        assert abs(rows[layer, 20.0]["loss_delta"]) > 0.05
        assert rows[layer, 20.0]["loss_std"] > 0.0
    # The clean weights are back.
    for a, b in zip(before, weights(trained)):
        np.testing.assert_array_equal(a, b)


def test_one_layer_at_a_time(trained, data):
    """Noise in layer 'a' leaves the other layers' weights alone."""
    seen = []
    evaluate = trained.evaluate

    def spy(*args, **kwargs):
        seen.append({l.name: np.array(l.target_variables[0]) for l in noisylayers.noise_layers(trained)})
        return evaluate(*args, **kwargs)

    clean = {l.name: np.array(l.target_variables[0]) for l in noisylayers.noise_layers(trained)}
    trained.evaluate = spy
    sensitivity_ablation(trained, data[1], scales=[1.0], draws=2, layers="a", progress=False)
    assert len(seen) == 1 + 2
    np.testing.assert_array_equal(seen[0]["a"], clean["a"])
    for kernels in seen[1:]:
        assert not np.allclose(kernels["a"], clean["a"])
        np.testing.assert_array_equal(kernels["b"], clean["b"])
        np.testing.assert_array_equal(kernels["c"], clean["c"])
    assert not np.allclose(seen[1]["a"], seen[2]["a"])  # independent draws


def test_weights_are_restored_after_an_error(trained, data):
    before = weights(trained)
    calls = []
    evaluate = trained.evaluate

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    trained.evaluate = failing
    with pytest.raises(KeyboardInterrupt):
        sensitivity_ablation(trained, data[1], scales=[5.0], draws=4, progress=False)
    for a, b in zip(before, weights(trained)):
        np.testing.assert_array_equal(a, b)


def test_runs_the_model_in_inference_mode(data):
    """Dropout stays off: the noise is in the weights, not in `training`."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            noisylayers.WeightNoise(keras.layers.Dense(8), name="a"),
            keras.layers.Dropout(0.9, seed=1),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    result = sensitivity_ablation(model, data[1], scales=[0.0], draws=2, progress=False)
    clean = model.evaluate(*data[1], verbose=0)
    assert [r["metrics"]["loss"] for r in result.records] == pytest.approx([clean, clean])


def test_reproducible_with_a_seed(trained, data):
    kwargs = dict(scales=[3.0], draws=2, seed=7, progress=False)
    first = sensitivity_ablation(trained, data[1], **kwargs)
    second = sensitivity_ablation(trained, data[1], **kwargs)
    assert [r["metrics"] for r in first.records] == [r["metrics"] for r in second.records]


def test_invalid_arguments(trained, data):
    with pytest.raises(ValueError, match="Received: scales=-1"):
        sensitivity_ablation(trained, data[1], scales=[-1], progress=False)
    with pytest.raises(ValueError, match="Received: draws=0"):
        sensitivity_ablation(trained, data[1], draws=0, progress=False)
    with pytest.raises(ValueError, match="pair"):
        sensitivity_ablation(trained, (1, 2, 3), progress=False)
    with pytest.raises(ValueError, match="No noisy layer .* named 'z'"):
        sensitivity_ablation(trained, data[1], layers="z", progress=False)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="compiled"):
        sensitivity_ablation(plain, data[1], progress=False)
    plain.compile("adam", "mse")
    with pytest.raises(ValueError, match="no noisy layers"):
        sensitivity_ablation(plain, data[1], progress=False)
