"""The Keras-layer variants: `NoisyDense`, `NoisyConv1D/2D/3D`, `NoisyLSTM`, `NoisyGRU`.

Each variant is checked with every estimator it supports ("shared",
"flipout", "local_reparameterization"): it is its Keras layer, it is exactly
that layer in inference, it is noisy in training, gradients reach its weights
without changing them, and it saves, loads and refuses what it cannot do.
The statistics of the estimators are in `test_estimators.py`.

Every test pays for a Keras session reset (about 0.3 s), so the cases of one
kind of check run in one test, in a loop that names the failing case.
Recurrent layers run with `unroll=True` where the recurrent loop itself is
not under test: the JAX backend compiles a `lax.scan` at every eager call.
"""

import json
import os

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras import layers
from keras import ops

import noisylayers
from noisylayers import noise
from tests.noise_testing import NoiseLayerTestCase
from tests.noise_testing import gradients

ALL_ESTIMATORS = ("shared", "flipout", "local_reparameterization")
LSTM_ESTIMATORS = ("shared", "flipout")


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def sum_of_squares(y):
    return ops.sum(ops.square(y))


def _json(config):
    # Tuples come back from a `.keras` file as lists.
    return json.loads(json.dumps(config))


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# name: (variant factory, plain Keras factory, input shape, estimators).
# The two factories take the same keyword arguments, so that the variant and
# the plain layer compute the same function.
SPECS = {
    "dense": (
        lambda **kw: noisylayers.NoisyDense(3, activation="tanh", **kw),
        lambda **kw: layers.Dense(3, activation="tanh", **kw),
        (4, 5),
        ALL_ESTIMATORS,
    ),
    "conv2d": (
        lambda **kw: noisylayers.NoisyConv2D(2, 3, **kw),
        lambda **kw: layers.Conv2D(2, 3, **kw),
        (2, 5, 5, 2),
        ALL_ESTIMATORS,
    ),
    "lstm": (
        lambda **kw: noisylayers.NoisyLSTM(
            3, return_sequences=True, unroll=True, **kw
        ),
        lambda **kw: layers.LSTM(3, return_sequences=True, unroll=True, **kw),
        (2, 4, 2),
        LSTM_ESTIMATORS,
    ),
    "conv1d_causal": (
        lambda **kw: noisylayers.NoisyConv1D(
            2, 3, padding="causal", dilation_rate=2, **kw
        ),
        lambda **kw: layers.Conv1D(2, 3, padding="causal", dilation_rate=2, **kw),
        (2, 9, 3),
        ALL_ESTIMATORS,
    ),
    "conv3d": (
        lambda **kw: noisylayers.NoisyConv3D(2, 2, **kw),
        lambda **kw: layers.Conv3D(2, 2, **kw),
        (2, 3, 4, 4, 1),
        ALL_ESTIMATORS,
    ),
}
KINDS = [(name, name) for name in SPECS]


def _variant_and_plain(name, estimator, stddev=0.2, seed=3):
    """A built variant and a plain Keras layer with the same weights."""
    make, make_plain, shape, _ = SPECS[name]
    x = _inputs(shape)
    layer = make(
        noise=noise.Gaussian(stddev),
        estimator=estimator,
        seed=seed,
        bias_initializer="random_normal",
    )
    layer(x)  # An inference call: it builds the layer and draws nothing.
    plain = make_plain()
    plain(x)
    plain.set_weights([numpy(v.value) for v in layer.trainable_weights])
    return layer, plain, x


def _extra_checks(estimator):
    """`run_layer_test`'s training (`fit`) and mixed-precision checks run for
    the per-example estimators, whose code is the variants' own; "shared"
    runs the Keras layer's own call, as `WeightNoise` does (tested there)."""
    full = estimator != "shared"
    return {"run_training_check": full, "run_mixed_precision_check": full}


class VariantLayerTest(NoiseLayerTestCase):
    def test_dense_layer_test(self):
        for estimator in ALL_ESTIMATORS:
            self.run_layer_test(
                noisylayers.NoisyDense,
                init_kwargs={
                    "units": 3,
                    "noise": noise.Gaussian(0.1),
                    "estimator": estimator,
                    "seed": 1,
                },
                input_shape=(2, 4),
                expected_output_shape=(2, 3),
                expected_num_trainable_weights=2,
                expected_num_non_trainable_weights=2,
                expected_num_non_trainable_variables=3,
                expected_num_seed_generators=1,
                supports_masking=True,
                **_extra_checks(estimator),
            )

    def test_conv2d_layer_test(self):
        for estimator in ALL_ESTIMATORS:
            self.run_layer_test(
                noisylayers.NoisyConv2D,
                init_kwargs={
                    "filters": 2,
                    "kernel_size": 3,
                    "noise": "multiplicative_gaussian",
                    "estimator": estimator,
                    "seed": 2,
                },
                input_shape=(2, 5, 5, 1),
                expected_output_shape=(2, 3, 3, 2),
                expected_num_trainable_weights=2,
                expected_num_non_trainable_weights=2,
                expected_num_non_trainable_variables=3,
                expected_num_seed_generators=1,
                **_extra_checks(estimator),
            )

    def test_lstm_layer_test(self):
        # The LSTM cell has its own seed generator (for its dropout), so the
        # layer holds two: the cell's and the noise's.
        for estimator in LSTM_ESTIMATORS:
            self.run_layer_test(
                noisylayers.NoisyLSTM,
                init_kwargs={
                    "units": 3,
                    "noise": noise.Gaussian(0.1),
                    "estimator": estimator,
                    "seed": 3,
                },
                input_shape=(2, 4, 2),
                expected_output_shape=(2, 3),
                expected_num_trainable_weights=3,
                expected_num_non_trainable_weights=2,
                expected_num_non_trainable_variables=4,
                expected_num_seed_generators=2,
                **_extra_checks(estimator),
            )


class VariantBasicsTest(NoiseLayerTestCase):
    def test_is_its_keras_layer(self):
        cases = [
            (noisylayers.NoisyDense(2), layers.Dense),
            (noisylayers.NoisyConv1D(2, 3), layers.Conv1D),
            (noisylayers.NoisyConv2D(2, 3), layers.Conv2D),
            (noisylayers.NoisyConv3D(2, 3), layers.Conv3D),
            (noisylayers.NoisyLSTM(2), layers.LSTM),
            (noisylayers.NoisyGRU(2), layers.GRU),
        ]
        for layer, keras_class in cases:
            self.assertIsInstance(layer, keras_class)
            self.assertIsInstance(layer, noisylayers.NoisyLayer)
            # The defaults: the documented Gaussian, estimator "shared".
            self.assertEqual(layer.estimator, "shared")
            self.assertEqual(layer.noise, noise.Gaussian(0.01))

    def test_weight_names_targets_and_controls(self):
        dense = noisylayers.NoisyDense(3)
        dense.build((None, 4))
        self.assertEqual(
            [v.name for v in dense.trainable_weights], ["kernel", "bias"]
        )
        self.assertEqual(
            [v.name for v in dense.non_trainable_weights],
            ["noise_enabled", "noise_scale"],
        )
        self.assertIs(dense.target_variables[0], dense.kernel)
        self.assertIs(dense.target_variables[1], dense.bias)

        lstm = noisylayers.NoisyLSTM(3)
        lstm.build((None, 5, 4))
        self.assertEqual(
            [v.name for v in lstm.trainable_weights],
            ["kernel", "recurrent_kernel", "bias"],
        )
        self.assertEqual(
            [v.name for v in lstm.target_variables],
            ["kernel", "recurrent_kernel", "bias"],
        )
        self.assertIs(lstm.target_variables[1], lstm.cell.recurrent_kernel)

        targeted = noisylayers.NoisyConv2D(2, 3, targets=["kernel"])
        targeted.build((None, 5, 5, 1))
        self.assertEqual([v.name for v in targeted.target_variables], ["kernel"])
        no_bias = noisylayers.NoisyConv1D(2, 3, use_bias=False, estimator="flipout")
        no_bias.build((None, 5, 1))
        self.assertEqual([v.name for v in no_bias.target_variables], ["kernel"])

        self.assertTrue(dense.enabled)
        self.assertEqual(dense.scale, 1.0)
        dense.enabled = False
        dense.scale = 0.25
        self.assertFalse(dense.enabled)
        self.assertEqual(dense.scale, 0.25)
        with pytest.raises(TypeError, match=r"Received: enabled=1"):
            dense.enabled = 1
        with pytest.raises(ValueError, match=r"Received: scale=-1"):
            dense.scale = -1
        self.assertFalse(dense.enabled)
        self.assertEqual(dense.scale, 0.25)

    def test_available_estimators(self):
        cases = [
            (noisylayers.NoisyDense(2), list(ALL_ESTIMATORS)),
            (noisylayers.NoisyDense(2, noise="dropconnect"), ["shared"]),
            (
                noisylayers.NoisyConv2D(2, 3, noise="multiplicative_gaussian"),
                list(ALL_ESTIMATORS),
            ),
            (noisylayers.NoisyConv3D(2, 3), list(ALL_ESTIMATORS)),
            (noisylayers.NoisyLSTM(2), list(LSTM_ESTIMATORS)),
            (noisylayers.NoisyLSTM(2, noise="dropconnect"), ["shared"]),
            (noisylayers.NoisyGRU(2), ["shared"]),
        ]
        for layer, expected in cases:
            self.assertEqual(layer.available_estimators(), expected, layer.name)

    def test_causal_conv1d_stays_causal_in_training(self):
        # Changing the inputs from step 5 on leaves the outputs of steps
        # 0..4 of a training call unchanged (same noise draw: the seed state
        # is reset between the two calls).
        for estimator in ALL_ESTIMATORS:
            layer, _, x = _variant_and_plain("conv1d_causal", estimator, stddev=0.5)
            changed = x.copy()
            changed[:, 5:] += 10.0
            state = numpy(layer.seed_generator.state.value).copy()
            a = numpy(layer(x, training=True))
            layer.seed_generator.state.assign(state)
            b = numpy(layer(changed, training=True))
            np.testing.assert_allclose(
                b[:, :5], a[:, :5], rtol=1e-5, atol=1e-5, err_msg=estimator
            )
            self.assertFalse(np.allclose(b[:, 5:], a[:, 5:]), estimator)


class VariantEqualsWrapperTest(NoiseLayerTestCase):
    """A variant computes what `WeightNoise` around its Keras layer computes."""

    @parameterized.named_parameters(
        ("dense", "dense", ALL_ESTIMATORS),
        ("conv2d", "conv2d", ALL_ESTIMATORS),
        ("lstm", "lstm", LSTM_ESTIMATORS),
    )
    def test_same_weights_and_seed_give_identical_training_outputs(
        self, name, estimators
    ):
        # "shared" is the required case; the per-example estimators run the
        # same code in both, so they must agree too.
        for estimator in estimators:
            variant, plain, x = _variant_and_plain(name, estimator, stddev=0.3, seed=5)
            wrapper = noisylayers.WeightNoise(
                plain, noise=noise.Gaussian(0.3), seed=5, estimator=estimator
            )
            self.assertEqual(wrapper.estimator, estimator)
            for _ in range(2):
                np.testing.assert_array_equal(
                    numpy(variant(x, training=True)),
                    numpy(wrapper(x, training=True)),
                    err_msg=estimator,
                )
            np.testing.assert_array_equal(numpy(variant(x)), numpy(wrapper(x)))


class VariantTrainingAndInferenceTest(NoiseLayerTestCase):
    @parameterized.named_parameters(KINDS)
    def test_noisy_in_training_exact_in_inference(self, name):
        # Includes NoisyConv1D(padding="causal") and NoisyConv3D with every
        # estimator.
        for estimator in SPECS[name][3]:
            layer, plain, x = _variant_and_plain(name, estimator)
            self.assertEqual(layer.estimator, estimator)
            self.assertEqual(layer(x, training=True).shape, plain(x).shape)
            # Training calls differ call to call and from the plain layer;
            # training=False and training=None are the plain layer exactly.
            self.assert_noisy_in_training_exact_in_inference(layer, plain, x)

    # (Conv3D runs the same convolution code as Conv2D; its backward pass is
    # slow to compile on JAX.)
    @parameterized.named_parameters(k for k in KINDS if k[0] != "conv3d")
    def test_gradients_reach_the_weights_which_stay_unchanged(self, name):
        for estimator in SPECS[name][3]:
            layer, _, x = _variant_and_plain(name, estimator)
            grads = gradients(layer, x, sum_of_squares)
            self.assertLen(grads, len(layer.trainable_variables))
            self.assertGreaterEqual(len(grads), 2)
            for variable, grad in zip(layer.trainable_variables, grads):
                what = f"{estimator}: {variable.path}"
                self.assertEqual(grad.shape, tuple(variable.shape), what)
                self.assertTrue(np.all(np.isfinite(grad)), what)
                self.assertGreater(np.abs(grad).max(), 0.0, what)
            self.assert_variables_unchanged(layer, x, sum_of_squares)

    def test_training_at_scale_zero_is_the_plain_layer(self):
        # Each per-example estimator reimplements the layer's linear map; at
        # scale 0 it must be the Keras layer's (strides, padding, dilation,
        # groups, causal padding).
        # (Shapes as in SPECS where possible: the JAX backend compiles every
        # new shape of an eager op.)
        cases = [
            ("dense", lambda **kw: layers.Dense(3, **kw), (4, 5)),
            (
                "conv2d_strided_same_groups",
                lambda **kw: layers.Conv2D(
                    2, 3, strides=2, padding="same", groups=2, **kw
                ),
                (2, 5, 5, 2),
            ),
            (
                "conv1d_causal_dilated",
                lambda **kw: layers.Conv1D(
                    2, 3, padding="causal", dilation_rate=2, **kw
                ),
                (2, 9, 3),
            ),
        ]
        variants = {
            layers.Dense: noisylayers.NoisyDense,
            layers.Conv1D: noisylayers.NoisyConv1D,
            layers.Conv2D: noisylayers.NoisyConv2D,
        }
        for name, make, shape in cases:
            x = _inputs(shape)
            plain = make(bias_initializer="random_normal")
            expected = numpy(plain(x))
            config = plain.get_config()
            del config["name"]
            for estimator in ALL_ESTIMATORS:
                what = f"{name} {estimator}"
                layer = variants[type(plain)].from_config(
                    {**config, "estimator": estimator, "noise": noise.Gaussian(0.5)}
                )
                layer(x)
                layer.set_weights(plain.get_weights() + [np.array(True), np.array(1.0)])
                layer.scale = 0.0
                np.testing.assert_allclose(
                    numpy(layer(x, training=True)), expected, rtol=1e-5,
                    atol=1e-5, err_msg=what,
                )
                layer.scale = 1.0
                self.assertFalse(
                    np.allclose(numpy(layer(x, training=True)), expected), what
                )


class VariantConfigTest(NoiseLayerTestCase):
    def test_config_round_trip(self):
        layers_ = [
            noisylayers.NoisyDense(
                3,
                activation="relu",
                noise=noise.MultiplicativeGaussian(0.2),
                estimator="flipout",
                targets=["kernel"],
                seed=4,
                name="nd",
            ),
            noisylayers.NoisyConv1D(
                2, 3, padding="causal", estimator="local_reparameterization",
                noise=noise.Gaussian(0.05), seed=1, name="nc1",
            ),
            noisylayers.NoisyConv2D(2, 3, strides=2, noise="dropconnect", name="nc2"),
            noisylayers.NoisyConv3D(2, 2, estimator="flipout", name="nc3"),
            noisylayers.NoisyLSTM(
                4, return_sequences=True, estimator="flipout",
                targets=["recurrent_kernel"], seed=7, name="nl",
            ),
            noisylayers.NoisyGRU(4, noise="dropconnect", seed=2, name="ng"),
        ]
        for layer in layers_:
            config = layer.get_config()
            self.assertEqual(config["estimator"], layer.estimator)
            self.assertEqual(config["seed"], layer.seed)
            clone = type(layer).from_config(config)
            self.assertIs(type(clone), type(layer))
            self.assertEqual(clone.get_config(), config)
            self.assertEqual(clone.noise, layer.noise)
            self.assertEqual(clone.estimator, layer.estimator)
            self.assertEqual(clone.targets, layer.targets)
            self.assertEqual(clone.name, layer.name)
            # Also through Keras' generic serialization (what `.keras` uses).
            again = keras.saving.deserialize_keras_object(
                keras.saving.serialize_keras_object(layer)
            )
            self.assertEqual(again.get_config(), config)

    def test_keras_file_round_trip(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(8, 4, 4, 1)).astype("float32")
        t = rng.normal(size=(8, 2)).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((4, 4, 1)),
                noisylayers.NoisyConv2D(
                    2, 3, estimator="local_reparameterization",
                    noise=noise.Gaussian(0.05), seed=1, name="conv",
                    bias_initializer="random_normal",
                ),
                layers.Reshape((2, 4)),
                noisylayers.NoisyLSTM(
                    3, estimator="flipout", noise=noise.Gaussian(0.05), seed=2,
                    name="lstm", bias_initializer="random_normal",
                ),
                noisylayers.NoisyDense(
                    2, estimator="flipout",
                    noise=noise.MultiplicativeGaussian(0.1), seed=3, name="dense",
                    bias_initializer="random_normal",
                ),
            ]
        )
        conv, _, lstm, dense = model.layers
        conv.scale = 0.5
        lstm.scale = 0.25
        dense.enabled = False
        expected = model.predict(x, verbose=0)
        path = os.path.join(self.get_temp_dir(), "variants.keras")
        model.save(path)

        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
        self.assertEqual(_json(loaded.get_config()), _json(model.get_config()))
        restored = loaded.layers[0], loaded.layers[2], loaded.layers[3]
        for layer, cls in zip(
            restored,
            (noisylayers.NoisyConv2D, noisylayers.NoisyLSTM, noisylayers.NoisyDense),
        ):
            self.assertIs(type(layer), cls)
        self.assertEqual(
            [l.estimator for l in restored],
            ["local_reparameterization", "flipout", "flipout"],
        )
        self.assertEqual([l.scale for l in restored], [0.5, 0.25, 1.0])
        self.assertEqual([l.enabled for l in restored], [True, True, False])
        for original, copy in zip(model.weights, loaded.weights):
            self.assertEqual(copy.name, original.name)
            np.testing.assert_array_equal(numpy(copy.value), numpy(original.value))

        # Training continues: noisy training steps that move the weights.
        loaded.compile("adam", "mse")
        before = [numpy(v.value).copy() for v in loaded.trainable_weights]
        history = loaded.fit(x, t, epochs=1, batch_size=8, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        after = [numpy(v.value) for v in loaded.trainable_weights]
        for b, a in zip(before, after):
            self.assertFalse(np.allclose(a, b))
        self.assertEqual([l.scale for l in restored], [0.5, 0.25, 1.0])
        self.assertEqual([l.enabled for l in restored], [True, True, False])


class VariantRefusalsTest(NoiseLayerTestCase):
    def test_refused_estimators(self):
        def built_embedding():
            layer = layers.Embedding(10, 3)
            layer.build((2, 4))
            return layer

        # (what, constructor, layer type, noise repr, estimators that work)
        cases = [
            (
                "embedding flipout",
                lambda: noisylayers.WeightNoise(
                    layers.Embedding(10, 3), estimator="flipout"
                ),
                "Embedding",
                "Gaussian(stddev=0.01)",
                "['shared']",
            ),
            (
                "built embedding local reparameterization",
                lambda: noisylayers.WeightNoise(
                    built_embedding(), estimator="local_reparameterization"
                ),
                "Embedding",
                "Gaussian(stddev=0.01)",
                "['shared']",
            ),
            (
                "lstm local reparameterization",
                lambda: noisylayers.NoisyLSTM(3, estimator="local_reparameterization"),
                "NoisyLSTM",
                "Gaussian(stddev=0.01)",
                "['shared', 'flipout']",
            ),
            (
                "wrapped lstm local reparameterization",
                lambda: noisylayers.WeightNoise(
                    layers.LSTM(3),
                    noise=noise.MultiplicativeGaussian(0.2),
                    estimator="local_reparameterization",
                ),
                "LSTM",
                "MultiplicativeGaussian(stddev=0.2)",
                "['shared', 'flipout']",
            ),
            (
                "gru flipout",
                lambda: noisylayers.NoisyGRU(3, estimator="flipout"),
                "NoisyGRU",
                "Gaussian(stddev=0.01)",
                "['shared']",
            ),
            (
                "dropconnect flipout",
                lambda: noisylayers.NoisyDense(
                    3, noise=noise.DropConnect(0.3), estimator="flipout"
                ),
                "NoisyDense",
                "DropConnect(rate=0.3)",
                "['shared']",
            ),
            (
                "dropconnect local reparameterization",
                lambda: noisylayers.NoisyConv2D(
                    2, 3, noise="dropconnect", estimator="local_reparameterization"
                ),
                "NoisyConv2D",
                "DropConnect(rate=0.5)",
                "['shared']",
            ),
            (
                "wrapped dropconnect lstm flipout",
                lambda: noisylayers.WeightNoise(
                    layers.LSTM(3), noise="dropconnect", estimator="flipout"
                ),
                "LSTM",
                "DropConnect(rate=0.5)",
                "['shared']",
            ),
        ]
        for what, make, type_name, kind, works in cases:
            with pytest.raises(ValueError) as info:
                make()
            message = str(info.value)
            self.assertIn(f"of type {type_name} ", message, what)
            self.assertIn(kind, message, what)
            self.assertIn(works, message, what)
            self.assertIn("Received: estimator=", message, what)

    def test_unknown_estimator_is_refused(self):
        # What the unknown-name refusal must say at least (see also the
        # test of its full message below).
        for make in (
            lambda: noisylayers.NoisyDense(3, estimator="flipout_typo"),
            lambda: noisylayers.NoisyConv2D(2, 3, estimator="Flipout"),
            lambda: noisylayers.NoisyLSTM(3, estimator="reparameterization"),
            lambda: noisylayers.WeightNoise(layers.Dense(3), estimator=""),
        ):
            with pytest.raises(ValueError, match=r"Received: estimator="):
                make()

    def test_lora_and_quantization_refused(self):
        with pytest.raises(ValueError, match=r"NoisyDense.*LoRA.*lora_rank=2"):
            noisylayers.NoisyDense(3, lora_rank=2)
        with pytest.raises(ValueError, match=r"NoisyConv2D.*LoRA"):
            noisylayers.NoisyConv2D(2, 3, lora_rank=2)
        dense = noisylayers.NoisyDense(3, name="nd")
        dense.build((None, 4))
        with pytest.raises(ValueError, match=r"'nd'.*LoRA"):
            dense.enable_lora(2)
        with pytest.raises(ValueError, match=r"'nd'.*quantization"):
            dense.quantize("int8")


def test_unknown_estimator_message_names_layer_noise_and_working_estimators():
    # Like every other refusal, the unknown-name one names the layer type,
    # the noise kind and the estimators that work for them.
    cases = [
        (
            lambda: noisylayers.NoisyDense(3, estimator="flipout_typo"),
            "NoisyDense",
            "Gaussian(stddev=0.01)",
            "['shared', 'flipout', 'local_reparameterization']",
        ),
        (
            lambda: noisylayers.NoisyLSTM(3, estimator="reparameterization"),
            "NoisyLSTM",
            "Gaussian(stddev=0.01)",
            "['shared', 'flipout']",
        ),
        (
            lambda: noisylayers.WeightNoise(
                layers.Embedding(4, 2), noise="dropconnect", estimator="lrt"
            ),
            "Embedding",
            "DropConnect(rate=0.5)",
            "['shared']",
        ),
    ]
    for make, type_name, kind, works in cases:
        with pytest.raises(ValueError) as info:
            make()
        message = str(info.value)
        assert f"type {type_name}" in message, message
        assert kind in message, message
        assert works in message, message


def test_seed_makes_a_recurrent_variant_with_dropout_reproducible():
    # `keras.layers.LSTM(..., dropout=0.5, seed=1)` is reproducible; the
    # variants take "every argument of keras.layers.LSTM (same names and
    # defaults)", so `NoisyLSTM(..., dropout=0.5, seed=1)` must be too. Its
    # noise is seeded, but its dropout masks are not.
    x = _inputs((2, 5, 3))
    for cls in (noisylayers.NoisyLSTM, noisylayers.NoisyGRU):
        outputs = []
        for _ in range(2):
            layer = cls(
                4, dropout=0.5, seed=1, unroll=True, noise=noise.Gaussian(0.1),
                kernel_initializer="ones", recurrent_initializer="zeros",
            )
            outputs.append(numpy(layer(x, training=True)))
        np.testing.assert_allclose(outputs[0], outputs[1], err_msg=cls.__name__)


class VariantControlsTest(NoiseLayerTestCase):
    def _model(self):
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [
                keras.Input((5,)),
                noisylayers.NoisyDense(
                    3, estimator="local_reparameterization",
                    noise=noise.Gaussian(0.2), name="lrt",
                ),
                noisylayers.NoisyDense(
                    3, activation="tanh", estimator="flipout",
                    noise=noise.Gaussian(0.2), name="hidden",
                ),
                noisylayers.WeightNoise(
                    layers.Dense(3), noise=noise.Gaussian(0.2), name="wrapped"
                ),
                noisylayers.NoisyDense(
                    2, estimator="shared", noise=noise.Gaussian(0.2), name="out"
                ),
            ]
        )

    def test_noise_layers_and_set_noise(self):
        model = self._model()
        found = noisylayers.noise_layers(model)
        self.assertEqual([l.name for l in found], ["lrt", "hidden", "wrapped", "out"])
        self.assertIs(found[0], model.layers[0])
        self.assertEqual(
            [l.name for l in noisylayers.noise_layers(model, ["o*", "lrt"])],
            ["lrt", "out"],
        )

        x = _inputs((4, 5))
        clean = numpy(model(x))
        self.assertFalse(np.allclose(numpy(model(x, training=True)), clean))
        changed = noisylayers.set_noise(model, enabled=False)
        self.assertEqual([l.name for l in changed], [l.name for l in found])
        self.assertEqual([l.enabled for l in found], [False] * 4)
        np.testing.assert_allclose(
            numpy(model(x, training=True)), clean, rtol=1e-6, atol=1e-6
        )
        noisylayers.set_noise(model, enabled=True, layers="hidden")
        self.assertFalse(np.allclose(numpy(model(x, training=True)), clean))

    def test_noise_scope_restores_scale_and_enabled(self):
        model = self._model()
        x = _inputs((4, 5))
        clean = numpy(model(x))
        hidden = model.get_layer("hidden")
        hidden.scale = 0.5
        model.get_layer("out").enabled = False
        with noisylayers.noise_scope(model, scale=0.0) as selected:
            self.assertLen(selected, 4)
            self.assertEqual([l.scale for l in selected], [0.0] * 4)
            np.testing.assert_allclose(
                numpy(model(x, training=True)), clean, rtol=1e-6, atol=1e-6
            )
            hidden.scale = 3.0
        found = noisylayers.noise_layers(model)
        self.assertEqual([l.scale for l in found], [1.0, 0.5, 1.0, 1.0])
        self.assertEqual([l.enabled for l in found], [True, True, True, False])
        with pytest.raises(RuntimeError):
            with noisylayers.noise_scope(model, enabled=False, layers="lrt"):
                raise RuntimeError("boom")
        self.assertTrue(model.get_layer("lrt").enabled)
