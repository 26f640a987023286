"""`.keras` and weights round-trips, loaded in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from tests import saving_models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in a fresh process: loads each model with no custom_objects (importing
# noisylayers registers its classes), checks its config, inference
# predictions and noise settings, then trains it one more epoch.
LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import noisylayers
    import tests.saving_models  # registers the subclassed model
    cases = json.load(open(sys.argv[1]))
    for kind, case in cases.items():
        data = np.load(case["data"])
        model = keras.models.load_model(case["path"])
        np.testing.assert_array_equal(
            model.predict(data["x"], verbose=0), data["y"], err_msg=kind
        )
        config = json.loads(json.dumps(model.get_config()))
        assert config == case["config"], f"{kind}: config differs"
        noisy = [l for l in model._flatten_layers()
                 if isinstance(l, noisylayers.NoisyLayer)]
        assert [l.enabled for l in noisy] == case["enabled"], kind
        assert [l.scale for l in noisy] == case["scales"], kind
        for v, saved in zip(model.weights, np.load(case["weights"]).values()):
            np.testing.assert_array_equal(np.asarray(v), saved, err_msg=v.path)
        model.compile("adam", "mse", run_eagerly=keras.backend.backend() == "tensorflow")
        history = model.fit(data["x"], data["t"], epochs=1, batch_size=8, verbose=0)
        assert np.isfinite(history.history["loss"][0]), kind
        print("OK", kind)
    """
)


def _compilation_cache_env():
    """The JAX compilation cache of this process, for a child process."""
    if keras.backend.backend() != "jax":
        return {}
    import jax

    return {"JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def _noisy_layers(model):
    import noisylayers

    return [l for l in model._flatten_layers() if isinstance(l, noisylayers.NoisyLayer)]


def _train_a_little(model, x, t, run_eagerly=False):
    model.compile("adam", "mse", run_eagerly=run_eagerly)
    model.fit(x, t, epochs=2, batch_size=8, verbose=0)


def test_keras_file_round_trip_in_a_fresh_process(tmp_path, jax_compilation_cache):
    rng = np.random.default_rng(0)
    cases = {}
    for kind, build in sorted(saving_models.BUILDERS.items()):
        shape = (4, 6) if kind in ("recurrent", "variants") else (6,)
        x = rng.normal(size=(16, *shape)).astype("float32")
        t = rng.normal(size=(16, 3)).astype("float32")
        model = build()
        # This test is about the file: on TensorFlow the steps run eagerly
        # (tracing a train and a predict function for every model, here and
        # again in the child, took a minute); on JAX eager steps are slower
        # than compiled ones, and the child finds this process's compiled
        # steps in the compilation cache. Compiled training is tested
        # everywhere else.
        _train_a_little(model, x, t, run_eagerly=keras.backend.backend() == "tensorflow")
        noisy = _noisy_layers(model)
        noisy[0].scale = 0.5
        noisy[-1].enabled = False
        path = str(tmp_path / f"{kind}.keras")
        model.save(path)
        data = str(tmp_path / f"{kind}.npz")
        np.savez(data, x=x, t=t, y=model.predict(x, verbose=0))
        weights = str(tmp_path / f"{kind}-weights.npz")
        np.savez(weights, *[keras.ops.convert_to_numpy(v) for v in model.weights])
        cases[kind] = {
            "path": path,
            "data": data,
            "weights": weights,
            "config": json.loads(json.dumps(model.get_config())),
            "enabled": [l.enabled for l in noisy],
            "scales": [l.scale for l in noisy],
        }
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT, **_compilation_cache_env()},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("OK ")]
    assert loaded == sorted(saving_models.BUILDERS)


def test_weights_file_round_trip(tmp_path):
    x = np.random.default_rng(1).normal(size=(8, 6)).astype("float32")
    model = saving_models.sequential()
    _train_a_little(model, x, np.zeros((8, 3), "float32"))
    _noisy_layers(model)[1].scale = 2.0
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = saving_models.sequential()
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    assert _noisy_layers(fresh)[1].scale == 2.0
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_reloaded_noise_restarts_from_the_seed(tmp_path):
    """Keras does not save generator state: noise restarts from `seed`."""
    x = np.ones((2, 6), "float32")
    model = saving_models.functional()
    path = str(tmp_path / "m.keras")
    model.save(path)
    seeded = _noisy_layers(model)[0]  # seed=1; the second layer is unseeded
    expected = keras.ops.convert_to_numpy(seeded(x, training=True))
    for _ in range(2):
        reloaded = _noisy_layers(keras.models.load_model(path))[0]
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(reloaded(x, training=True)), expected
        )
    assert not np.allclose(expected, keras.ops.convert_to_numpy(seeded(x)))
