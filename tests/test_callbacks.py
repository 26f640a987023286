import math

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import WeightNoise
from noisylayers.callbacks import NoiseSchedule


def zero_model():
    """The loss is 0 exactly unless layer `b` is noisy (see test_control)."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            WeightNoise(
                keras.layers.Dense(4, use_bias=False, kernel_initializer="ones"),
                noise=noisylayers.noise.Gaussian(1.0),
                name="a",
            ),
            WeightNoise(
                keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
                noise=noisylayers.noise.Gaussian(1.0),
                name="b",
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


X = np.ones((32, 4), "float32")
Y = np.zeros((32, 1), "float32")


def fit(model, epochs, schedule):
    history = model.fit(X, Y, epochs=epochs, batch_size=8, verbose=0, callbacks=[schedule])
    return history.history


def test_shapes_of_the_schedules():
    linear = NoiseSchedule("linear", start=1.0, end=3.0, duration=5)
    assert [linear.scale_at(i) for i in range(7)] == pytest.approx([1, 1.5, 2, 2.5, 3, 3, 3])
    cosine = NoiseSchedule("cosine", start=1.0, end=0.0, duration=3)
    assert [cosine.scale_at(i) for i in range(4)] == pytest.approx([1, 0.5, 0, 0])
    cosine = NoiseSchedule("cosine", start=0.0, end=1.0, duration=4)
    assert cosine.scale_at(1) == pytest.approx((1 - math.cos(math.pi / 3)) / 2)
    constant = NoiseSchedule("constant", end=0.4)
    assert [constant.scale_at(i) for i in (0, 100)] == [0.4, 0.4]
    assert NoiseSchedule("constant", start=0.3).scale_at(7) == 0.3
    assert NoiseSchedule("constant", start=0.3, end=0.3).scale_at(7) == 0.3
    assert NoiseSchedule("constant").scale_at(0) == 1.0
    assert NoiseSchedule(lambda epoch: 2.0 ** -epoch).scale_at(3) == 0.125
    assert NoiseSchedule("linear", duration=1).scale_at(0) == 1.0
    with pytest.raises(ValueError, match="only known during `fit`"):
        NoiseSchedule("linear").scale_at(0)


def test_per_epoch_in_compiled_fit():
    model = zero_model()
    history = fit(model, 5, NoiseSchedule("linear", start=0.0, end=1.0))
    # The ramp spans the whole fit by default; scale 0 means no noise.
    assert history["noise_scale"] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert history["loss"][0] == 0.0
    assert all(loss > 0.0 for loss in history["loss"][1:])
    assert [l.scale for l in noisylayers.noise_layers(model)] == [1.0, 1.0]


def test_user_function_of_the_epoch():
    history = fit(zero_model(), 4, NoiseSchedule(lambda epoch: [1.0, 0.0, 2.0, 0.0][epoch]))
    loss = history["loss"]
    assert loss[0] > 0.0 and loss[1] == 0.0 and loss[2] > 0.0 and loss[3] == 0.0
    assert history["noise_scale"] == [1.0, 0.0, 2.0, 0.0]


def test_per_step():
    # 4 steps per epoch: noise from step 4 on, i.e. from the second epoch.
    schedule = NoiseSchedule(lambda step: float(step >= 4), per="step")
    history = fit(zero_model(), 3, schedule)
    assert history["loss"][0] == 0.0
    assert history["loss"][1] > 0.0 and history["loss"][2] > 0.0
    # The default duration is every step of the fit: 3 epochs x 4 steps.
    model = zero_model()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(noisylayers.noise_layers(self.model)[0].scale)

    model.fit(X, Y, epochs=3, batch_size=8, verbose=0,
              callbacks=[NoiseSchedule("linear", start=0.0, end=11.0, per="step"), Record()])
    assert seen == pytest.approx(list(range(12)))


def test_selected_layers_only():
    model = zero_model()
    fit(model, 2, NoiseSchedule("constant", end=0.0, layers="b"))
    assert [l.scale for l in noisylayers.noise_layers(model)] == [1.0, 0.0]
    # `a` keeps its noise, but only `b`'s noise reaches the loss.
    assert fit(model, 1, NoiseSchedule("constant", end=0.0, layers="b"))["loss"] == [0.0]


def test_verbose(capsys):
    fit(zero_model(), 2, NoiseSchedule("constant", end=0.5, verbose=1))
    out = capsys.readouterr().out
    assert "Epoch 1: NoiseSchedule setting the noise scale to 0.5." in out
    assert "Epoch 2" not in out  # said once, as it does not change


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"schedule": "exponential"}, ValueError, "Received: schedule='exponential'"),
        ({"per": "batch"}, ValueError, "Received: per='batch'"),
        ({"start": -1}, ValueError, "Received: start=-1"),
        ({"end": "high"}, TypeError, "Received: end='high'"),
        ({"duration": 0}, ValueError, "Received: duration=0"),
        ({"duration": 2.5}, TypeError, "Received: duration=2.5"),
        ({"schedule": "constant", "start": 0.1, "end": 0.2}, ValueError,
         "Received: start=0.1, end=0.2"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        NoiseSchedule(**kwargs)


def test_errors_during_fit():
    with pytest.raises(ValueError, match="Received: scale=-1"):
        fit(zero_model(), 1, NoiseSchedule(lambda epoch: -1.0))
    with pytest.raises(ValueError, match="named 'c'"):
        fit(zero_model(), 1, NoiseSchedule("constant", layers="c"))


def test_keras_schedules():
    schedules = keras.optimizers.schedules
    cosine = NoiseSchedule(schedules.CosineDecay(1.0, 10))
    scales = [cosine.scale_at(i) for i in (0, 5, 10, 20)]
    assert scales == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-6)
    assert all(type(s) is float for s in scales)
    steps = NoiseSchedule(schedules.PiecewiseConstantDecay([1], [0.0, 2.0]))
    assert [steps.scale_at(i) for i in range(3)] == [0.0, 0.0, 2.0]

    class Halve(schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.5 ** keras.ops.cast(step, "float32")

    history = fit(zero_model(), 3, NoiseSchedule(Halve()))
    assert history["noise_scale"] == pytest.approx([1.0, 0.5, 0.25])
    assert history["loss"][0] > 0.0
    decay = schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    warmup = noisylayers.callbacks.KLWarmup(decay, duration=3)
    assert warmup.scale_at(2) == pytest.approx(0.25)


def test_a_schedule_value_is_checked():
    with pytest.raises(ValueError, match="Received: scale=-1"):
        NoiseSchedule(lambda i: keras.ops.convert_to_tensor(-1.0)).scale_at(0)
    with pytest.raises(TypeError, match="Received: scale="):
        NoiseSchedule(lambda i: keras.ops.ones(2)).scale_at(0)
    with pytest.raises(TypeError, match="Received: scale='high'"):
        NoiseSchedule(lambda i: "high").scale_at(0)
