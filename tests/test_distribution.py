"""Training under data parallelism: tf.distribute and Keras' JAX DataParallel.

Each check runs in a fresh process, which must configure its devices before
TensorFlow or JAX starts.
"""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = textwrap.dedent(
    """
    import contextlib
    import numpy as np, keras, noisylayers
    from noisylayers import noise

    KINDS = dict(
        gaussian=noise.Gaussian(0.1),
        learned=noise.LearnedGaussian(kl_weight=1e-2),
        adaptive=noise.AdaptiveGaussian(kl_weight=1e-2),
        factorized=noise.Factorized(),
        vd=noise.VariationalDropout(kl_weight=1e-2),
        table=noise.Gaussian(0.1, sampler="table"),
    )

    def model():  # every kind, each on an LSTM, a variant Dense and a wrapper
        lstms, denses, wrapped = [], [], []
        for i, (name, kind) in enumerate(KINDS.items()):
            est = "shared" if name == "factorized" else "flipout"
            last = i == len(KINDS) - 1
            lstms.append(noisylayers.NoisyLSTM(
                4, noise=kind, estimator=est, seed=i, return_sequences=not last))
            denses.append(noisylayers.NoisyDense(4, noise=kind, seed=10 + i,
                estimator="local_reparameterization" if est == "flipout" else est))
            wrapped.append(noisylayers.WeightNoise(
                keras.layers.Dense(4 if not last else 2), noise=kind, seed=20 + i))
        return keras.Sequential([keras.Input((5, 3)), *lstms, *denses, *wrapped])

    def train_save_load(path, scope):  # build and compile in `scope`
        # One model holds every kind: one compilation instead of six.
        with scope():
            m = model()
            m.compile("adam", "mse")
        history = m.fit(x, y, epochs=2, batch_size=8, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        m.save(f"{path}/all.keras")
        loaded = keras.models.load_model(f"{path}/all.keras")
        np.testing.assert_allclose(loaded.predict(x, verbose=0),
                                   m.predict(x, verbose=0), atol=1e-6)
        print("TRAINED", ",".join(KINDS))

    x = np.random.default_rng(0).normal(size=(16, 5, 3)).astype("float32")
    y = np.zeros((16, 2), "float32")
    """
)

TF_SCRIPT = COMMON + textwrap.dedent(
    """
    import sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    train_save_load(sys.argv[1], strategy.scope)

    # Each replica draws its own noise: identical inputs, different outputs.
    with strategy.scope():
        layer = noisylayers.NoisyDense(3, noise=noise.Gaussian(0.5), seed=0)
        layer.build((None, 4))
    ones = tf.ones((2, 4))
    out = strategy.run(lambda: layer(ones, training=True))
    a, b = [v.numpy() for v in strategy.experimental_local_results(out)]
    assert not np.allclose(a, b), "replicas drew the same noise"
    print("REPLICAS DIFFER")

    # A layer loss (the KL) is reduced like the single-device loss, not summed
    # over replicas: with the noise scale at 0 the losses agree.
    def kl_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5, 3)), keras.layers.Flatten(),
            noisylayers.NoisyDense(2, noise=noise.LearnedGaussian(kl_weight=0.1), seed=0)])
        noisylayers.set_noise(model, scale=0.0)
        return model
    single = kl_model()
    single.compile(keras.optimizers.SGD(0.0), "mse")
    with strategy.scope():
        mirrored = kl_model()
        mirrored.compile(keras.optimizers.SGD(0.0), "mse")
    mirrored.set_weights(single.get_weights())
    l1 = single.evaluate(x, y, verbose=0)
    h1 = single.fit(x, y, epochs=1, batch_size=16, verbose=0).history["loss"][0]
    h2 = mirrored.fit(x, y, epochs=1, batch_size=16, verbose=0).history["loss"][0]
    np.testing.assert_allclose(h2, h1, rtol=1e-5)
    assert h1 > l1 + 1e-3  # the KL is in the training loss
    print("KL REDUCED")
    """
)

JAX_SCRIPT = COMMON + textwrap.dedent(
    """
    import sys, jax
    assert len(jax.devices()) == 2, jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    train_save_load(sys.argv[1], contextlib.nullcontext)
    """
)


def _run(script, tmp_path, env):
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT, **env},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_mirrored_strategy_trains_saves_and_draws_per_replica(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute is the TensorFlow backend's.")
    out = _run(TF_SCRIPT, tmp_path, {"KERAS_BACKEND": "tensorflow"})
    assert "TRAINED gaussian,learned,adaptive,factorized,vd,table" in out
    assert "REPLICAS DIFFER" in out and "KL REDUCED" in out


def test_jax_data_parallel_trains_and_saves(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution.DataParallel is tested on the JAX backend.")
    out = _run(
        JAX_SCRIPT,
        tmp_path,
        {
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    assert "TRAINED gaussian,learned,adaptive,factorized,vd,table" in out
