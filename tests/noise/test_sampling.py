"""The samplers: Philox draws on TensorFlow, and the noise table."""

import os

import keras
import numpy as np
import pytest

import noisylayers
from noisylayers import noise
from noisylayers.noise import sampling


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def table_layer(units=64, seed=1, kind=None):
    kind = kind or noise.Gaussian(1.0, sampler="table")
    layer = noisylayers.NoisyDense(units, noise=kind, seed=seed, use_bias=False)
    layer.build((None, 32))
    return layer


def perturbations(layer, calls):
    clean = numpy(layer.kernel)
    return np.stack(
        [numpy(layer.noisy_weights(layer.seed_generator)[0][1]) - clean for _ in range(calls)]
    )


def test_table_draws_are_standard_normal_within_a_call():
    layer = table_layer(units=256)
    draw = perturbations(layer, 1)[0].ravel()  # 32 * 256 = 8192 numbers
    n = draw.size
    # Mean: SE 1/sqrt(n) = 0.011; 5 SE. Variance: SE sqrt(2/n) = 0.016; 5 SE.
    assert abs(draw.mean()) < 5 / np.sqrt(n)
    assert abs(draw.var() - 1.0) < 5 * np.sqrt(2 / n)
    # Neighbouring entries are uncorrelated within the draw (5 SE).
    assert abs(np.corrcoef(draw[:-1], draw[1:])[0, 1]) < 5 / np.sqrt(n)


def test_consecutive_calls_are_nearly_uncorrelated():
    layer = table_layer()
    draws = perturbations(layer, 101).reshape(101, -1)
    # Per weight, the correlation between its noise in call t and t + 1,
    # averaged over the 2048 weights (100 pairs each): at most 0.05.
    a, b = draws[:-1], draws[1:]
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    per_weight = (a * b).mean(0)
    assert abs(per_weight.mean()) < 0.05
    # And the draws are not a repeat of each other.
    assert not np.allclose(draws[0], draws[1])


def test_layers_with_different_seeds_use_different_tables_and_windows():
    a, b = table_layer(seed=1), table_layer(seed=2)
    assert not np.allclose(numpy(a.noise_table), numpy(b.noise_table))
    assert not np.allclose(perturbations(a, 1), perturbations(b, 1))
    # The same seed regenerates the same table.
    np.testing.assert_array_equal(numpy(table_layer(seed=1).noise_table), numpy(a.noise_table))


def test_table_size_follows_the_largest_target():
    assert sampling.table_size([10]) == 1 << 16
    assert sampling.table_size([100_000, 10]) == 800_000
    with pytest.raises(ValueError, match="too small"):
        sampling.table_normal(np.zeros(10, "float32"), (6,), keras.random.SeedGenerator(0))


def test_sampler_argument_is_validated_and_serialized():
    with pytest.raises(ValueError, match="Received: sampler='fast'"):
        noise.Gaussian(0.1, sampler="fast")
    kind = noise.MultiplicativeGaussian(0.2, sampler="table")
    assert noise.deserialize(noise.serialize(kind)) == kind
    assert noise.Gaussian(0.1).get_config() == {"stddev": 0.1}  # unchanged format
    assert noise.parse("learned_gaussian:sampler=table").sampler == "table"


def test_saved_file_holds_no_table_and_reload_regenerates_it(tmp_path):
    sizes = {}
    x = np.random.default_rng(0).normal(size=(8, 32)).astype("float32")
    for sampler in ("exact", "table"):
        model = keras.Sequential(
            [keras.Input((32,)), noisylayers.NoisyDense(
                256, noise=noise.Gaussian(0.1, sampler=sampler), seed=3)]
        )
        path = str(tmp_path / f"{sampler}.keras")
        model.save(path)
        sizes[sampler] = os.path.getsize(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(
            numpy(loaded.predict(x, verbose=0)), numpy(model.predict(x, verbose=0))
        )
        if sampler == "table":
            np.testing.assert_array_equal(
                numpy(loaded.layers[0].noise_table), numpy(model.layers[0].noise_table)
            )
    # The table alone would be 2 MB; the file grows by the config only.
    assert sizes["table"] <= sizes["exact"] + 500


@pytest.mark.parametrize(
    "kind",
    [
        noise.Gaussian(0.05, sampler="table"),
        noise.MultiplicativeGaussian(0.1, sampler="table"),
        noise.LearnedGaussian(kl_weight=1e-3, sampler="table"),
    ],
    ids=lambda k: type(k).__name__,
)
def test_table_sampler_trains_in_fit_with_every_estimator_and_the_controls(kind):
    x = np.random.default_rng(0).normal(size=(32, 6, 4)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6, 4)),
            noisylayers.WeightNoise(keras.layers.LSTM(5), noise=kind, seed=1),
            noisylayers.NoisyDense(4, noise=kind, estimator="flipout"),
            noisylayers.NoisyDense(2, noise=kind, estimator="local_reparameterization"),
        ]
    )
    model.compile("adam", "mse")
    history = model.fit(x, np.zeros((32, 2)), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    with noisylayers.noise_scope(model, enabled=False):
        np.testing.assert_array_equal(
            numpy(model(x, training=True)), numpy(model(x, training=False))
        )
    assert not np.allclose(numpy(model(x, training=True)), numpy(model(x, training=True)))


def test_tensorflow_draws_use_philox(monkeypatch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("The explicit algorithm is for the TensorFlow backend only.")
    import tensorflow as tf

    x = np.ones((2, 4), "float32")
    layers = [
        noisylayers.NoisyDense(3, noise="dropconnect", seed=0),
        noisylayers.NoisyDense(3, estimator="flipout", seed=0),
        noisylayers.NoisyDense(3, estimator="local_reparameterization", seed=0),
    ]
    for layer in layers:
        layer.build(x.shape)  # Keras' initializers draw with their own defaults
    seen = []
    for name in ("stateless_normal", "stateless_uniform"):
        original = getattr(tf.random, name)

        def record(*args, _original=original, **kwargs):
            seen.append(kwargs.get("alg"))
            return _original(*args, **kwargs)

        monkeypatch.setattr(tf.random, name, record)
    for layer in layers:
        layer(x, training=True)
    assert seen and set(seen) == {"philox"}


def test_table_windows_under_xla_are_windows():
    # Under TensorFlow's XLA the windows are gathered (a sliced window with a
    # random offset would recompile the step at every call). With a table of
    # consecutive integers, a window mixed by the rotation (cos t, sin t) is
    # an arithmetic sequence of step cos t + sin t, and different seeds
    # choose different windows.
    table = keras.Variable(np.arange(1 << 16, dtype="float32"), trainable=False)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        jit = lambda f: tf.function(f, jit_compile=True)  # noqa: E731
    else:
        import jax

        jit = jax.jit
    draws = {}
    for compiled in (False, True):
        for seed in (3, 4):
            def draw(seed=seed):
                return sampling.table_normal(table, (40, 5), seed)

            mixed = numpy(jit(draw)() if compiled else draw()).ravel()
            steps = np.diff(mixed)
            # float32 rounding of numbers up to 65536: errors below 0.02.
            np.testing.assert_allclose(steps, np.median(steps), atol=0.02)
            assert abs(np.median(steps)) <= np.sqrt(2) + 0.02
            draws[compiled, seed] = mixed
    assert not np.allclose(draws[True, 3], draws[True, 4])


@pytest.mark.parametrize(
    "kind", [noise.Gaussian(0.5), noise.DropConnect(0.5), noise.StuckAt(0.5)], ids=repr
)
def test_seeds_are_read_as_keras_random_reads_them_on_every_backend(kind):
    """`seed=None` draws from Keras' global generator (as `keras.random.normal`
    does): new noise per call, reproducible after `keras.utils.set_random_seed`.
    An integer is a fixed seed: the same noise in every call."""
    w = keras.ops.ones((40, 30))
    keras.utils.set_random_seed(3)
    first, second = numpy(kind(w, None)), numpy(kind(w, None))
    keras.utils.set_random_seed(3)
    again = numpy(kind(w, None))
    assert first.shape == (40, 30) and np.isfinite(first).all()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(numpy(kind(w, 7)), numpy(kind(w, 7)))
    assert not np.array_equal(numpy(kind(w, 7)), numpy(kind(w, 8)))


@pytest.mark.parametrize("seed", ["x", 1.5, [1, 2, 3]])
def test_an_invalid_seed_is_refused_naming_it(seed):
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed="):
        noise.Gaussian(0.1)(keras.ops.ones((2, 3)), seed)


def _refuse_exact_draws(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an exact draw where the table should serve it")

    monkeypatch.setattr(sampling, "normal", refuse)


def _assert_standard_normal(draw):
    n = draw.size
    # As test_table_draws_are_standard_normal_within_a_call: 5 SE each.
    assert abs(draw.mean()) < 5 / np.sqrt(n)
    assert abs(draw.var() - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.corrcoef(draw[:-1], draw[1:])[0, 1]) < 5 / np.sqrt(n)


def test_table_serves_local_reparameterization_output_noise(monkeypatch):
    layer = noisylayers.NoisyDense(
        256, noise=noise.Gaussian(1.0, sampler="table"), seed=3,
        estimator="local_reparameterization", use_bias=False,
    )
    layer.build((None, 32))
    x = np.ones((32, 32), "float32")
    _refuse_exact_draws(monkeypatch)
    out = numpy(layer(x, training=True))
    # Pre-activation noise N(0, sum(x^2) * 1^2) = N(0, 32): 8192 numbers.
    draw = ((out - x @ numpy(layer.kernel)) / np.sqrt(32.0)).ravel()
    _assert_standard_normal(draw)


def test_table_serves_the_learned_kinds_epsilon(monkeypatch):
    layer = table_layer(
        units=256, kind=noise.LearnedGaussian(init_stddev=0.5, kl_weight=1e-3, sampler="table")
    )
    _refuse_exact_draws(monkeypatch)
    draw = perturbations(layer, 1)[0].ravel() / 0.5  # 8192 numbers
    _assert_standard_normal(draw)


def test_tensorflow_normals_are_standard_normal_and_symmetric():
    """On TensorFlow, exact normals are Philox uniforms through the fused
    inverse CDF: N(0, 1) moments, the normal's tail masses, the same
    distribution as TensorFlow's own normal kernel, and a grid symmetric
    about 0 that stays finite at the extreme uniforms."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("The fused inverse CDF is the TensorFlow backend's.")
    import math

    import tensorflow as tf
    from scipy import stats

    from noisylayers.noise import _fused

    n = 1_000_000
    z = np.asarray(sampling.normal((n,), seed=7), "float64")
    # 1e6 draws, each statistic within 5 standard errors.
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96 / n)
    for k in (1.0, 2.0, 3.0):
        p = math.erfc(k / math.sqrt(2))
        assert abs(np.mean(np.abs(z) > k) - p) < 5 * math.sqrt(p * (1 - p) / n), k
    reference = tf.random.stateless_normal((n,), seed=[1, 2], alg="philox").numpy()
    assert stats.ks_2samp(z, reference).pvalue > 1e-4
    # The extreme uniforms (0 and 1 - 2^-23) give finite, opposite normals;
    # 1/2 - 2^-24 sits between two grid points: 0 up to the float step.
    for dtype, bits in (("float32", 23), ("float64", 52)):
        u = tf.constant([0.0, 1.0 - 2.0**-bits, 0.5 - 2.0**-(bits + 1)], dtype)
        lo, hi, mid = _fused.normal_from_uniform(u).numpy()
        assert np.isfinite([lo, hi]).all() and 5.0 < hi < 8.6, (dtype, hi)
        np.testing.assert_allclose(lo, -hi, rtol=1e-5)
        assert abs(mid) < 1e-6
    for dtype in ("float16", "bfloat16", "float64"):
        assert sampling.normal((3,), dtype=dtype, seed=1).dtype == dtype
