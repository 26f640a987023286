import numpy as np
import pytest

import noisylayers
from noisylayers.ablation import models


def test_digits_data():
    (x, y), (x_val, y_val) = models.digits_data()
    assert x.shape[1:] == (8, 8, 1) and x.dtype == np.float32
    assert len(x) + len(x_val) == 1797
    assert len(x_val) == pytest.approx(0.2 * 1797, abs=1)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    (x, _), (x_val, _) = models.digits_data(flat=True, samples=100)
    assert x.shape == (80, 64) and x_val.shape == (20, 64)


def test_sequence_data():
    (x, y), (x_val, y_val) = models.sequence_data(samples=50, length=12)
    assert x.shape == (40, 12, 1) and x_val.shape == (10, 12, 1)
    assert set(np.unique(np.concatenate([y, y_val]))) <= {0, 1, 2, 3}
    again = models.sequence_data(samples=50, length=12)
    np.testing.assert_array_equal(again[0][0], x)


@pytest.mark.parametrize("name", sorted(models.TASKS))
def test_tasks_build_compiled_models_with_named_noisy_layers(name):
    task = models.TASKS[name]
    (x, y), _ = task.data(samples=20)
    model = task.build(noise=noisylayers.noise.Gaussian(0.1))
    assert model.compiled
    names = [layer.name for layer in noisylayers.noise_layers(model)]
    assert len(names) >= 3 and len(set(names)) == len(names)
    classes = 4 if name == "lstm" else 10
    assert model.predict(x, verbose=0).shape == (len(x), classes)
    assert y.max() < classes
