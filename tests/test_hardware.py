"""`noisylayers.hardware`: PCM programming, drift, read noise, compensation.

The device formulas are checked against a NumPy reference written here from
the issue's (and aihwkit's `inference/noise/pcm.py`) formulas, and the
statistics of programmed and read weights against moments computed from
that reference (rectified and folded normals), with tolerances of 5
standard errors of the estimator (the sample sizes are in the tests). The
simulation is NumPy on the host, so those tests run on one backend; the
tests that put weights into a model (`at`, noisy layers, `accuracy_over_time`)
run on both.
"""

import json
import math

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import hardware
from noisylayers.hardware import PCM
from tests.ablation.tiny import make_data

ON_TF = keras.backend.backend() == "tensorflow"
numpy_only = pytest.mark.skipif(
    not ON_TF,
    reason="the simulation is backend-independent NumPy: checked on one backend",
)

YEAR = 365 * 86400.0
#: No noise at all: the mapping to conductances and back, alone.
EXACT = dict(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
N_SE = 5


# -- the reference ----------------------------------------------------------------


def ref_prog_stddev(g, g_max=25.0, coefficients=(0.26348, 1.9650, -1.1731), scale=1.0):
    x = np.asarray(g, np.float64) / g_max
    return scale * sum(c * x**k for k, c in enumerate(coefficients)) * g_max / 25.0


def ref_drift_moments(g, g_max=25.0):
    x = np.maximum(np.asarray(g, np.float64) / g_max, 1e-7)
    mu = np.clip(-0.0155 * np.log(x) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * np.log(x) - 0.0059, 0.008, 0.045)
    return mu, sd


def ref_read_stddev(g_prog, t, g_max=25.0, t0=20.0, t_read=250e-9, scale=1.0):
    g_prog = np.asarray(g_prog, np.float64)
    q = np.minimum(0.0088 / np.maximum((np.abs(g_prog) / g_max) ** 0.65, 1e-3), 0.2)
    total = t + t0
    return scale * q * np.sqrt(np.log((total + t_read) / (2 * t_read)))


def _phi(a):
    return math.exp(-a * a / 2) / math.sqrt(2 * math.pi)


def _cdf(a):
    return 0.5 * (1 + math.erf(a / math.sqrt(2)))


def rectified(mu, sigma):
    """Mean and variance of `max(mu + sigma Z, 0)`."""
    if sigma == 0:
        return max(mu, 0.0), 0.0
    a = mu / sigma
    m1 = mu * _cdf(a) + sigma * _phi(a)
    m2 = (mu * mu + sigma * sigma) * _cdf(a) + mu * sigma * _phi(a)
    return m1, m2 - m1 * m1


def folded(mu, sigma):
    """Mean and variance of `|mu + sigma Z|`."""
    m1 = sigma * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sigma * sigma)) + mu * (
        1 - 2 * _cdf(-mu / sigma)
    )
    return m1, mu * mu + sigma * sigma - m1 * m1


def assert_moments(sample, mean, var, what):
    """Sample mean and variance within `N_SE` standard errors of the reference.

    SE of the mean: `s / sqrt(n)`; SE of the variance: `sqrt((m4 - s^4) / n)`
    with `m4` the sample's fourth central moment.
    """
    sample = np.asarray(sample, np.float64)
    n = sample.size
    centred = sample - sample.mean()
    s2 = centred.var()
    se_mean = math.sqrt(s2 / n)
    se_var = math.sqrt(max(np.mean(centred**4) - s2 * s2, 0.0) / n)
    assert abs(sample.mean() - mean) <= N_SE * se_mean + 1e-12, (what, sample.mean(), mean, se_mean)
    assert abs(s2 - var) <= N_SE * se_var + 1e-12, (what, s2, var, se_var)


# -- helpers --------------------------------------------------------------------


def dense_model(shape, use_bias=False, name="d"):
    model = keras.Sequential(
        [keras.Input((shape[0],)), keras.layers.Dense(shape[1], use_bias=use_bias, name=name)]
    )
    return model


def read(kernel, device, t, per="tensor", compensation=None, seed=0, read_seed=1):
    """The kernel read at `t` (or at each of several times) after programming
    it once (as a Dense kernel)."""
    model = dense_model(kernel.shape)
    model.layers[0].kernel.assign(kernel)
    chip = hardware.program(model, device, seed=seed, per=per, compensation=compensation)
    (path,) = chip.paths
    times = t if isinstance(t, (list, tuple)) else [t]
    out = [chip.weights_at(t, seed=read_seed)[path].astype(np.float64) for t in times]
    return out if isinstance(t, (list, tuple)) else out[0]


def levels_kernel(levels, n):
    """A (len(levels) * n / 100, 100) kernel: `n` weights at each level."""
    flat = np.repeat(np.asarray(levels, np.float32), n)
    return flat.reshape(-1, 100)


@pytest.fixture(scope="module")
def trained():
    """A tiny trained, compiled model and its validation data (module-wide)."""
    (x, y), (x_val, y_val) = make_data(n=256)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    return model, (x_val, y_val)


def values(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


# -- PCM: the config object --------------------------------------------------------


@numpy_only
def test_pcm_defaults_config_and_serialization():
    device = PCM()
    assert device.get_config() == {
        "g_max": 25.0,
        "t0": 20.0,
        "t_read": 250e-9,
        "prog_coefficients": [0.26348, 1.9650, -1.1731],
        "prog_noise_scale": 1.0,
        "read_noise_scale": 1.0,
        "drift_scale": 1.0,
    }
    other = PCM(g_max=40, read_noise_scale=0.5, prog_coefficients=[0.2, 1.0])
    assert PCM.from_config(other.get_config()) == other
    assert other != device and hash(PCM()) == hash(device) and PCM() == device
    assert repr(other).startswith("PCM(g_max=40.0,")
    assert json.loads(json.dumps(other.get_config())) == other.get_config()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(other)
    )
    assert isinstance(restored, PCM) and restored == other
    assert other.short_repr() == (
        "PCM(g_max=40.0, prog_coefficients=[0.2, 1.0], read_noise_scale=0.5)"
    )


INVALID = [
    (dict(g_max=0), ValueError, r"`g_max` must be positive. Received: g_max=0$"),
    (dict(g_max=-1), ValueError, r"`g_max`.*Received: g_max=-1"),
    (dict(t0=0.0), ValueError, r"`t0` must be positive"),
    (dict(t_read=-1e-9), ValueError, r"`t_read`.*Received: t_read=-1e-09"),
    (dict(t_read=float("nan")), ValueError, r"`t_read`"),
    (dict(prog_noise_scale=-1), ValueError, r"Received: prog_noise_scale=-1"),
    (dict(read_noise_scale=float("inf")), ValueError, r"read_noise_scale"),
    (dict(drift_scale=-0.1), ValueError, r"Received: drift_scale=-0.1"),
    (dict(prog_coefficients=()), ValueError, r"prog_coefficients"),
    (dict(prog_coefficients="abc"), ValueError, r"prog_coefficients"),
    (dict(prog_coefficients=(0.0, -1.0)), ValueError, r"negative programming-noise"),
    (dict(g_max="25"), TypeError, r"`g_max` must be a real number"),
    (dict(drift_scale=True), TypeError, r"drift_scale"),
]


@numpy_only
def test_pcm_rejects_invalid_values():
    for kwargs, error, message in INVALID:
        with pytest.raises(error, match=message):
            PCM(**kwargs)


@numpy_only
def test_pcm_formulas_match_the_reference():
    g = np.array([0.0, 1e-9, 0.01, 0.3, 2.5, 10.0, 24.0, 40.0], np.float32)
    device = PCM(g_max=40.0, prog_noise_scale=1.5, read_noise_scale=0.7, t0=10.0)
    np.testing.assert_allclose(
        device.programming_stddev(g), ref_prog_stddev(g, 40.0, scale=1.5), rtol=1e-5
    )
    mu, sd = device.drift_moments(g)
    ref_mu, ref_sd = ref_drift_moments(g, 40.0)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-5)
    np.testing.assert_allclose(sd, ref_sd, rtol=1e-5)
    # Both clips are reached: small conductances drift most, and vary most.
    assert ref_mu[0] == 0.1 and ref_sd[0] == 0.045 and ref_mu[-1] == 0.049
    for t in (0.0, 1.0, 3600.0, YEAR):
        np.testing.assert_allclose(
            device.read_noise_stddev(g, t),
            ref_read_stddev(g, t, 40.0, 10.0, scale=0.7),
            rtol=1e-5,
        )
        nu = np.array([0.0, 0.05, 0.1], np.float32)
        np.testing.assert_allclose(
            device.drift_factor(nu, t), ((t + 10.0) / 10.0) ** -nu.astype(float), rtol=1e-5
        )


@numpy_only
def test_parse_and_format_duration():
    for text, seconds in [
        ("1s", 1.0), ("1h", 3600.0), ("1d", 86400.0), ("30d", 2592000.0), ("1y", YEAR),
        ("1.5m", 90.0), ("3600", 3600.0), ("0", 0.0), (" 2 H ", 7200.0), (7, 7.0),
        ("1e3s", 1000.0),
    ]:
        assert hardware.parse_duration(text) == seconds, text
    for bad in ("1w", "-1h", "h", "", "1 h 2", None, float("inf"), -3):
        with pytest.raises(ValueError, match="Received"):
            hardware.parse_duration(bad)
    labels = [hardware.format_duration(t) for t in hardware.DEFAULT_TIMES]
    assert labels == ["1 s", "1 h", "1 d", "30 d", "1 y"]
    assert hardware.format_duration(1.5) == "1.5 s"
    assert hardware.format_duration(0) == "0 s"


# -- programming, drift and read noise: statistics against the reference -------------


@numpy_only
def test_mapping_alone_is_exact_per_tensor_and_per_channel():
    rng = np.random.default_rng(0)
    # 300 x 500: larger than one block of the vectorised code.
    kernel = rng.normal(size=(300, 500)).astype(np.float32)
    kernel[:, 7] = 0.0  # an all-zero channel
    kernel[:, 8] *= 1e-3
    for per in ("tensor", "channel"):
        for t in (0.0, YEAR):
            out = read(kernel, PCM(**EXACT), t, per=per)
            np.testing.assert_allclose(out, kernel, rtol=2e-6, atol=1e-7)
            assert np.all(out[:, 7] == 0.0)


@numpy_only
def test_programming_statistics_per_conductance_level():
    """Programming noise alone (no read noise, t = 0): mean and variance.

    Each weight is a pair of devices; the one that targets 0 gets the noise
    of a zero conductance, clipped at 0, so every weight's mean moves toward
    zero by `E max(sigma(0) Z, 0) / scale`. 20000 weights per level.
    """
    levels = [1.0, 0.5, 0.1, 0.0, -0.5]
    n = 20000
    kernel = levels_kernel(levels, n)
    device = PCM(read_noise_scale=0.0)
    out = read(kernel, device, 0.0)
    scale = 25.0 / 1.0
    sigma0 = ref_prog_stddev(0.0)
    zero_mean, zero_var = rectified(0.0, sigma0)
    for i, level in enumerate(levels):
        sample = out.ravel()[i * n:(i + 1) * n]
        g = abs(level) * scale
        on_mean, on_var = rectified(g, float(ref_prog_stddev(g)))
        sign = 1.0 if level >= 0 else -1.0
        mean = sign * (on_mean - zero_mean) / scale if level else 0.0
        var = (on_var + zero_var) / scale**2
        assert_moments(sample, mean, var, f"level {level}")
        if level:
            # The shift toward zero is significant: more than 10 SEs.
            shift = (abs(level) - abs(sample.mean())) / math.sqrt(sample.var() / n)
            assert shift > 10, (level, shift)


@numpy_only
def test_drift_exponents_per_level_and_drawn_once_per_device():
    """No programming or read noise: `W(t) / W = ((t + t0) / t0)^-nu+`.

    The exponents recovered from two reading times agree (drawn once, at
    programming), and follow the folded normal `|mu + sd Z|` per level, with
    `drift_scale` multiplying them. 20000 weights per level.
    """
    levels = [1.0, 0.5, 0.1, 0.01]
    n = 20000
    kernel = levels_kernel(levels, n)
    model = dense_model(kernel.shape)
    model.layers[0].kernel.assign(kernel)
    times = [1e4, 1e6]

    def exponents(drift_scale):
        device = PCM(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=drift_scale)
        chip = hardware.program(model, device, seed=0, compensation=None)
        (path,) = chip.paths
        return [
            -np.log(chip.weights_at(t)[path] / kernel) / math.log((t + 20.0) / 20.0)
            for t in times
        ]

    nus = exponents(1.0)
    np.testing.assert_allclose(nus[0], nus[1], atol=2e-5)
    # The same seed draws the same normals: doubled exponents.
    np.testing.assert_allclose(exponents(2.0)[1], 2 * nus[1], atol=2e-5)
    for i, level in enumerate(levels):
        mu, sd = ref_drift_moments(level * 25.0)
        mean, var = folded(float(mu), float(sd))
        assert_moments(nus[1].ravel()[i * n:(i + 1) * n], mean, var, f"nu at {level}")


@numpy_only
def test_drift_is_monotone_in_time():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(100, 100)).astype(np.float32)
    model = dense_model(kernel.shape)
    model.layers[0].kernel.assign(kernel)
    # Without read noise every device's conductance decays. Without
    # programming noise the device of the pair that targets 0 holds nothing,
    # so |W| per weight never grows. (With it, that device decays too,
    # faster: a small |W| can grow.)
    quiet = hardware.program(
        model, PCM(prog_noise_scale=0.0, read_noise_scale=0.0), seed=0, compensation=None
    )
    times = [0.0, 1.0, 3600.0, 86400.0, 30 * 86400.0, YEAR, 10 * YEAR]
    (path,) = quiet.paths
    gplus = [np.abs(quiet.weights_at(t)[path]) for t in times]
    for earlier, later in zip(gplus, gplus[1:]):
        assert np.all(later <= earlier)
    assert np.mean(gplus[-1]) < 0.7 * np.mean(gplus[0])
    # With read noise, mean |W| still falls at every step (10000 weights).
    noisy = hardware.program(model, seed=0, compensation=None)
    means = [np.mean(np.abs(noisy.weights_at(t, seed=2)[path])) for t in times]
    assert all(b < a for a, b in zip(means, means[1:])), means


@numpy_only
def test_read_noise_statistics_per_conductance_level():
    """No programming noise or drift: `g = max(g_t + g_t sigma_read Z, 0)`.

    20000 weights per level, at 1 s and at 1 year; a zero weight's devices
    hold no conductance and read exactly 0.
    """
    levels = [1.0, 0.5, 0.1, 0.01, 0.0]
    n = 20000
    kernel = levels_kernel(levels, n)
    device = PCM(prog_noise_scale=0.0, drift_scale=0.0)
    for t in (1.0, YEAR):
        out = read(kernel, device, t)
        for i, level in enumerate(levels):
            sample = out.ravel()[i * n:(i + 1) * n]
            if level == 0:
                assert np.all(sample == 0.0)
                continue
            g = level * 25.0
            mean, var = rectified(g, g * float(ref_read_stddev(g, t)))
            assert_moments(sample * 25.0, mean, var, f"level {level} at {t}")


@numpy_only
def test_global_compensation_alpha():
    """alpha = mean|W_programmed| / mean|W_read(t)|, above 1 and growing."""
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(64, 64)).astype(np.float32)
    model = dense_model(kernel.shape)
    model.layers[0].kernel.assign(kernel)
    compensated = hardware.program(model, seed=5)
    raw = hardware.program(model, seed=5, compensation=None)
    # Same seed: the same devices; no read noise: the programmed weights.
    programmed = hardware.program(model, PCM(read_noise_scale=0.0), seed=5, compensation=None)
    (path,) = compensated.paths
    w_prog = programmed.weights_at(0)[path].astype(np.float64)
    alphas = []
    for t in (0.0, 3600.0, 86400.0, YEAR):
        reading = compensated.weights_at(t, seed=3)
        w_raw = raw.weights_at(t, seed=3)[path].astype(np.float64)
        alpha = np.mean(np.abs(w_prog)) / np.mean(np.abs(w_raw))
        assert reading.alphas[path] == pytest.approx(alpha, rel=1e-6)
        np.testing.assert_allclose(reading[path], alpha * w_raw, rtol=1e-5, atol=1e-7)
        assert raw.weights_at(t, seed=3).alphas[path] == 1.0
        alphas.append(alpha)
    assert alphas[0] == pytest.approx(1.0, abs=0.02)
    assert 1.0 < alphas[1] < alphas[2] < alphas[3]


@numpy_only
def test_reproduces_the_design_reference_numbers():
    """DESIGN.md section 10: a NumPy re-implementation of aihwkit's model.

    Weight error std relative to max|w| after global compensation: 0.0365,
    0.0415, 0.0471, 0.0607 at 0, 1 h, 1 day, 1 year; alpha 1.29, 1.51, 2.01.
    Those came from one run on 16 x 16 Gaussian tiles, so besides 5 SEs of
    our mean over 100 tiles we allow 3% (error) and 1% (alpha).
    """
    model = dense_model((16, 16))
    rng = np.random.default_rng(3)
    times = (0.0, 3600.0, 86400.0, YEAR)
    errors, alphas = [], []
    for tile in range(100):
        w = rng.normal(size=(16, 16)).astype(np.float32)
        model.layers[0].kernel.assign(w)
        chip = hardware.program(model, seed=tile)
        (path,) = chip.paths
        row_e, row_a = [], []
        for t in times:
            reading = chip.weights_at(t, seed=tile)
            row_e.append(np.std(reading[path] - w) / np.abs(w).max())
            row_a.append(reading.alphas[path])
        errors.append(row_e)
        alphas.append(row_a)
    errors, alphas = np.array(errors), np.array(alphas)
    for i, expected in enumerate((0.0365, 0.0415, 0.0471, 0.0607)):
        se = errors[:, i].std(ddof=1) / 10
        assert abs(errors[:, i].mean() - expected) <= N_SE * se + 0.03 * expected, i
    for i, expected in ((1, 1.29), (2, 1.51), (3, 2.01)):
        se = alphas[:, i].std(ddof=1) / 10
        assert abs(alphas[:, i].mean() - expected) <= N_SE * se + 0.01 * expected, i


@numpy_only
def test_per_channel_uses_each_channels_range():
    """A channel of tiny weights: per tensor it is lost in the noise of the
    large channel's range; per channel its relative error is as small."""
    rng = np.random.default_rng(4)
    kernel = rng.normal(size=(2000, 2)).astype(np.float32)
    kernel[:, 1] *= 0.01
    device = PCM(read_noise_scale=0.0)

    def relative_error(per, channel):
        out = read(kernel, device, 0.0, per=per)
        column = kernel[:, channel]
        return np.std(out[:, channel] - column) / np.abs(column).max()

    per_channel = relative_error("channel", 1)
    assert per_channel == pytest.approx(relative_error("channel", 0), rel=0.2)
    assert relative_error("tensor", 1) > 20 * per_channel
    # Per channel, the weights at a channel's max read with the noise of g_max.
    kernel = np.zeros((20000, 2), np.float32)
    kernel[:, 0], kernel[:, 1] = 1.0, 0.01
    out = read(kernel, device, 0.0, per="channel")
    zero_mean, zero_var = rectified(0.0, ref_prog_stddev(0.0))
    on_mean, on_var = rectified(25.0, float(ref_prog_stddev(25.0)))
    for channel, top in ((0, 1.0), (1, 0.01)):
        assert_moments(out[:, channel] * 25.0 / top, on_mean - zero_mean,
                       on_var + zero_var, f"channel {channel}")


@numpy_only
def test_digital_bias_and_layer_selection():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="hidden"),
         keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(2, name="out")]
    )
    for layer in (model.layers[0], model.layers[2]):
        layer.bias.assign(np.linspace(-1, 1, layer.bias.shape[0]))
    chip = hardware.program(model, seed=0)
    paths = [v.path for v in model.weights]
    kernels = [p for p in paths if p.endswith("kernel")]
    biases = [p for p in paths if p.endswith("bias") and "bn" not in p]
    assert chip.paths == kernels and chip.digital == biases
    assert chip.layers == ["hidden", "out"]  # BatchNormalization is digital
    reading = chip.weights_at(YEAR, seed=0)
    assert list(reading) == [p for p in paths if p in kernels + biases]
    for layer in (model.layers[0], model.layers[2]):
        np.testing.assert_array_equal(reading[layer.bias.path], np.asarray(layer.bias.value))
        assert not np.array_equal(reading[layer.kernel.path], np.asarray(layer.kernel.value))
    analog = hardware.program(model, seed=0, digital_bias=False)
    assert analog.paths == [p for p in paths if p in kernels + biases] and analog.digital == []
    reading = analog.weights_at(YEAR, seed=0)
    assert not np.array_equal(reading[model.layers[0].bias.path], np.asarray(model.layers[0].bias.value))
    assert set(reading.alphas) == set(analog.paths)
    # A tensor's devices do not depend on which other layers are programmed.
    alone = hardware.program(model, seed=0, layers="hid*")
    assert alone.layers == ["hidden"] and alone.paths == [model.layers[0].kernel.path]
    path = model.layers[0].kernel.path
    np.testing.assert_array_equal(
        alone.weights_at(60, seed=4)[path], chip.weights_at(60, seed=4)[path]
    )
    assert hardware.program(model, layers=[model.layers[2]]).layers == ["out"]
    with pytest.raises(ValueError, match=r"named 'bn'.*\['hidden', 'out'\]"):
        hardware.program(model, layers="bn")
    with pytest.raises(ValueError, match="named 'conv\\*'"):
        hardware.program(model, layers=["hidden", "conv*"])
    with pytest.raises(TypeError, match="Argument `layers`"):
        hardware.program(model, layers=3)


@numpy_only
def test_reproducibility():
    rng = np.random.default_rng(5)
    model = dense_model((30, 20), use_bias=True)
    model.layers[0].kernel.assign(rng.normal(size=(30, 20)))
    path = model.layers[0].kernel.path
    a, b = hardware.program(model, seed=7), hardware.program(model, seed=7)
    np.testing.assert_array_equal(a.weights_at(3600, seed=1)[path], b.weights_at(3600, seed=1)[path])
    # Unseeded reads: a new draw on every call, the same sequence per seed.
    first, second = a.weights_at(3600)[path], a.weights_at(3600)[path]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(b.weights_at(3600)[path], first)
    other = hardware.program(model, seed=8)
    assert not np.array_equal(other.weights_at(3600, seed=1)[path], a.weights_at(3600, seed=1)[path])
    fresh = [hardware.program(model, seed=None).weights_at(0, seed=1)[path] for _ in range(2)]
    assert not np.array_equal(*fresh)


@numpy_only
def test_argument_errors(trained):
    model, data = trained
    with pytest.raises(TypeError, match="`device`.*Received: device='pcm'"):
        hardware.program(model, device="pcm")
    with pytest.raises(ValueError, match="Received: per='row'"):
        hardware.program(model, per="row")
    with pytest.raises(ValueError, match="Received: compensation='local'"):
        hardware.program(model, compensation="local")
    with pytest.raises(ValueError, match="Received: seed=-1"):
        hardware.program(model, seed=-1)
    with pytest.raises(TypeError, match="digital_bias"):
        hardware.program(model, digital_bias="yes")
    with pytest.raises(TypeError, match="`model`"):
        hardware.program("model")
    chip = hardware.program(model)
    with pytest.raises(ValueError, match="Received: t=-1"):
        chip.weights_at(-1)
    with pytest.raises(ValueError, match="Received: t=inf"):
        chip.weights_at(float("inf"))
    with pytest.raises(TypeError, match="`seed`"):
        chip.weights_at(1, seed=1.5)
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no weights to program"):
        hardware.program(unbuilt)
    broken = dense_model((2, 2))
    broken.layers[0].kernel.assign([[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match="non-finite"):
        hardware.program(broken)
    uncompiled = dense_model((4, 3))
    with pytest.raises(ValueError, match="must be compiled"):
        hardware.accuracy_over_time(uncompiled, data)
    for times, message in (([], "non-empty"), ([1, "1s"], "distinct"), (["1w"], "1w"),
                           ([-5], "Received")):
        with pytest.raises(ValueError, match=message):
            hardware.accuracy_over_time(model, data, times=times)
    with pytest.raises(ValueError, match="Received: repeats=0"):
        hardware.accuracy_over_time(model, data, repeats=0)
    with pytest.raises(ValueError, match="pair"):
        hardware.accuracy_over_time(model, (data[0],))


# -- in a model: both backends -----------------------------------------------------


def test_at_puts_the_reading_into_the_model_and_restores_it_exactly(trained):
    model, (x, _) = trained
    chip = hardware.program(model, seed=0)
    before = values(model)
    clean = model.predict(x, verbose=0)
    with chip.at(86400, seed=1) as reading:
        inside = model.predict(x, verbose=0)
        for v in model.weights:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v.value), reading[v.path])
    # The model computed with the weights read at t: a NumPy forward pass.
    hidden, out = model.layers
    h = np.maximum(x @ reading[hidden.kernel.path] + reading[hidden.bias.path], 0)
    logits = h @ reading[out.kernel.path] + reading[out.bias.path]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(inside, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-5)
    assert not np.allclose(inside, clean)
    for after, was in zip(values(model), before):
        np.testing.assert_array_equal(after, was)
    with pytest.raises(RuntimeError, match="inside the block"):
        with chip.at(YEAR):
            raise RuntimeError("inside the block")
    for after, was in zip(values(model), before):
        np.testing.assert_array_equal(after, was)


def test_noisy_models_program_their_clean_weights_only():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5))
    h = keras.layers.Embedding(10, 4, name="embed")(keras.ops.cast(inputs[..., 0], "int32"))
    if ON_TF:  # building a recurrent layer takes ~10 s on JAX: one backend
        h = keras.layers.Bidirectional(
            noisylayers.NoisyLSTM(3, noise="gaussian", seed=1), name="bi"
        )(h)
    else:
        h = keras.layers.Flatten()(h)
    h = noisylayers.WeightNoise(
        keras.layers.Dense(4), noise=noisylayers.noise.LearnedGaussian(dataset_size=10),
        name="learned",
    )(h)
    h = noisylayers.NoisyDense(3, noise=noisylayers.noise.Gaussian(0.1, sampler="table"),
                               name="table")(h)
    outputs = keras.layers.Reshape((3, 1))(h)
    outputs = keras.layers.SeparableConv1D(2, 2, name="sep")(outputs)
    model = keras.Model(inputs, outputs)
    chip = hardware.program(model, seed=0, digital_bias=False)
    programmed = chip.paths
    names = sorted({p.rsplit("/", 1)[1] for p in programmed})
    assert names == ["bias", "depthwise_kernel", "embeddings", "kernel",
                     "pointwise_kernel"] + ["recurrent_kernel"] * ON_TF
    noise_own = {"noise_enabled", "noise_scale", "kl_weight", "kernel_rho", "bias_rho",
                 "noise_table"}
    assert not {p.rsplit("/", 1)[1] for p in programmed} & noise_own
    # Both directions' LSTM weights, each tensor once.
    assert sum("recurrent_kernel" in p for p in programmed) == 2 * ON_TF
    assert len(set(programmed)) == len(programmed)
    own = [v for v in model.weights if v.name in noise_own]
    assert {v.name for v in own} == noise_own
    before = values(model)
    with chip.at(YEAR, seed=0):
        for v in own:
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(v.value), before[[id(w) for w in model.weights].index(id(v))]
            )
    for after, was in zip(values(model), before):
        np.testing.assert_array_equal(after, was)


def test_accuracy_over_time(trained, tmp_path):
    model, data = trained
    before = values(model)
    reference = model.evaluate(*data, verbose=0, return_dict=True)
    times = (0, "1h", 31536000)
    result = hardware.accuracy_over_time(model, data, times=times, repeats=2, seed=3)
    assert result.reference == pytest.approx(reference)
    assert result.times == [0.0, 3600.0, YEAR]
    assert [row["time"] for row in result.rows] == [0.0, 3600.0, YEAR]
    assert [row["label"] for row in result.rows] == ["0 s", "1 h", "1 y"]
    assert len(result.records) == 2 * 3 and result.metric == "accuracy"
    for row in result.rows:
        group = [r["metrics"]["accuracy"] for r in result.records if r["time"] == row["time"]]
        assert row["accuracy_mean"] == pytest.approx(np.mean(group))
        assert row["accuracy_sd"] == pytest.approx(np.std(group, ddof=1))
        assert row["accuracy_delta"] == pytest.approx(np.mean(group) - reference["accuracy"])
        assert row["repeats"] == 2 and {"loss_mean", "loss_sd"} <= set(row)
    # The weights read a year later are not the exact ones.
    assert result.rows[-1]["loss_mean"] != pytest.approx(reference["loss"], rel=1e-3)
    alphas = [row["alpha"] for row in result.rows]
    assert alphas[0] == pytest.approx(1.0, abs=0.05) and 1.0 < alphas[1] < alphas[2]
    for after, was in zip(values(model), before):
        np.testing.assert_array_equal(after, was)
    # The same seed: the same result.
    again = hardware.accuracy_over_time(model, data, times=times, repeats=2, seed=3)
    assert again.rows == result.rows
    # An exact device changes nothing: every metric is the reference's.
    exact = hardware.accuracy_over_time(
        model, data, device=PCM(**EXACT), times=[1, YEAR], repeats=1, compensation=None,
        per="channel",
    )
    for row in exact.rows:
        assert row["accuracy_mean"] == pytest.approx(reference["accuracy"])
        assert row["loss_mean"] == pytest.approx(reference["loss"], rel=1e-4)
        assert row["alpha"] is None and row["accuracy_sd"] is None
    assert exact.plot().axes[0].get_xscale() == "log"
    # Outputs: the printed table, JSON and the plot.
    text = str(result)
    assert "1 h" in text and "1 y" in text and "accuracy (mean ± sd)" in text
    assert "| time |" in result.to_markdown()
    result.to_json(tmp_path / "drift.json")
    with open(tmp_path / "drift.json") as f:
        saved = json.load(f)
    assert saved["rows"] == json.loads(json.dumps(result.rows))
    assert saved["spec"]["times"] == [0.0, 3600.0, YEAR] and saved["spec"]["repeats"] == 2
    assert saved["reference"] == pytest.approx(reference)
    figure = result.plot(tmp_path / "drift.png")
    with open(tmp_path / "drift.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    (ax,) = figure.axes
    assert ax.get_xscale() == "symlog"  # t = 0 is on the axis
    assert hardware.accuracy_over_time  # noqa: B015 - the public name
    assert noisylayers.hardware is hardware and "hardware" in noisylayers.__all__
