"""The Keras-layer variants: `NoisyDense`, `NoisyConv1D/2D/3D`, `NoisyLSTM`, `NoisyGRU`.

Each variant is checked with every estimator it supports ("shared",
"flipout", "local_reparameterization"): it is its Keras layer, it is exactly
that layer in inference, it is noisy in training, gradients reach its weights
without changing them, and it saves, loads and refuses what it cannot do.
The statistics of the estimators are in `test_estimators.py`.
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


# name: (variant factory, plain Keras factory, input shape, estimators).
# The factories take the same keyword arguments so that the variant and the
# plain layer compute the same function.
SPECS = {
    "dense": (
        lambda **kw: noisylayers.NoisyDense(3, activation="tanh", **kw),
        lambda: layers.Dense(3, activation="tanh"),
        (4, 5),
        ALL_ESTIMATORS,
    ),
    "conv2d": (
        lambda **kw: noisylayers.NoisyConv2D(2, 3, **kw),
        lambda: layers.Conv2D(2, 3),
        (2, 5, 5, 2),
        ALL_ESTIMATORS,
    ),
    "lstm": (
        lambda **kw: noisylayers.NoisyLSTM(3, return_sequences=True, **kw),
        lambda: layers.LSTM(3, return_sequences=True),
        (2, 4, 2),
        LSTM_ESTIMATORS,
    ),
    "conv1d_causal": (
        lambda **kw: noisylayers.NoisyConv1D(
            2, 3, padding="causal", dilation_rate=2, **kw
        ),
        lambda: layers.Conv1D(2, 3, padding="causal", dilation_rate=2),
        (2, 9, 3),
        ALL_ESTIMATORS,
    ),
    "conv3d": (
        lambda **kw: noisylayers.NoisyConv3D(2, 2, **kw),
        lambda: layers.Conv3D(2, 2),
        (2, 3, 4, 4, 1),
        ALL_ESTIMATORS,
    ),
}

# Every (layer, estimator) pair that should work.
CASES = [
    (f"{name}_{estimator}", name, estimator)
    for name, spec in SPECS.items()
    for estimator in spec[3]
]
# The same, without the slow recurrent layer (for the heavier checks).
CASES_NO_LSTM = [case for case in CASES if case[1] != "lstm"]


def _json(config):
    # Tuples come back from a `.keras` file as lists.
    return json.loads(json.dumps(config))


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


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
    layer(x)
    plain = make_plain()
    plain(x)
    plain.set_weights([numpy(v.value) for v in layer.trainable_weights])
    return layer, plain, x


class VariantLayerTest(NoiseLayerTestCase):
    @parameterized.named_parameters(
        (f"dense_{e}", e) for e in ALL_ESTIMATORS
    )
    def test_dense_layer_test(self, estimator):
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
        )

    @parameterized.named_parameters(
        (f"conv2d_{e}", e) for e in ALL_ESTIMATORS
    )
    def test_conv2d_layer_test(self, estimator):
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
        )

    @parameterized.named_parameters(
        (f"lstm_{e}", e) for e in LSTM_ESTIMATORS
    )
    def test_lstm_layer_test(self, estimator):
        # The LSTM cell has its own seed generator (for its dropout), so the
        # layer holds two: the cell's and the noise's.
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
            run_mixed_precision_check=False,
        )


class VariantBasicsTest(NoiseLayerTestCase):
    @parameterized.named_parameters(
        ("dense", lambda: noisylayers.NoisyDense(2), layers.Dense),
        ("conv1d", lambda: noisylayers.NoisyConv1D(2, 3), layers.Conv1D),
        ("conv2d", lambda: noisylayers.NoisyConv2D(2, 3), layers.Conv2D),
        ("conv3d", lambda: noisylayers.NoisyConv3D(2, 3), layers.Conv3D),
        ("lstm", lambda: noisylayers.NoisyLSTM(2), layers.LSTM),
        ("gru", lambda: noisylayers.NoisyGRU(2), layers.GRU),
    )
    def test_is_its_keras_layer(self, make, keras_class):
        layer = make()
        self.assertIsInstance(layer, keras_class)
        self.assertIsInstance(layer, noisylayers.NoisyLayer)
        self.assertEqual(layer.estimator, "shared")
        self.assertEqual(layer.noise, noise.Gaussian(0.01))

    def test_weight_names_and_controls(self):
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

    @parameterized.named_parameters(
        ("dense_gaussian", lambda: noisylayers.NoisyDense(2), (1, 3), list(ALL_ESTIMATORS)),
        (
            "dense_dropconnect",
            lambda: noisylayers.NoisyDense(2, noise="dropconnect"),
            (1, 3),
            ["shared"],
        ),
        (
            "conv2d_multiplicative",
            lambda: noisylayers.NoisyConv2D(2, 3, noise="multiplicative_gaussian"),
            (1, 4, 4, 1),
            list(ALL_ESTIMATORS),
        ),
        ("lstm", lambda: noisylayers.NoisyLSTM(2), (1, 3, 2), list(LSTM_ESTIMATORS)),
        ("gru", lambda: noisylayers.NoisyGRU(2), (1, 3, 2), ["shared"]),
    )
    def test_available_estimators(self, make, shape, expected):
        layer = make()
        layer.build(shape)
        self.assertEqual(layer.available_estimators(), expected)

    @parameterized.named_parameters(
        (f"{name}_{e}", name, e)
        for name in ("conv1d_causal", "conv3d")
        for e in ALL_ESTIMATORS
    )
    def test_conv1d_causal_and_conv3d_work(self, name, estimator):
        layer, plain, x = _variant_and_plain(name, estimator)
        self.assertEqual(layer.estimator, estimator)
        self.assertEqual(layer(x, training=True).shape, plain(x).shape)
        self.assert_noisy_in_training_exact_in_inference(layer, plain, x)

    @parameterized.named_parameters((e, e) for e in ALL_ESTIMATORS)
    def test_causal_conv1d_stays_causal_in_training(self, estimator):
        # Changing the inputs from step 5 on leaves the outputs of steps
        # 0..4 of a training call unchanged (same noise draw: the seed state
        # is reset between the two calls).
        layer, _, x = _variant_and_plain("conv1d_causal", estimator, stddev=0.5)
        changed = x.copy()
        changed[:, 5:] += 10.0
        state = numpy(layer.seed_generator.state.value).copy()
        a = numpy(layer(x, training=True))
        layer.seed_generator.state.assign(state)
        b = numpy(layer(changed, training=True))
        np.testing.assert_allclose(b[:, :5], a[:, :5], rtol=1e-5, atol=1e-5)
        self.assertFalse(np.allclose(b[:, 5:], a[:, 5:]))


class VariantSharedEqualsWrapperTest(NoiseLayerTestCase):
    """A variant computes what `WeightNoise` around its Keras layer computes."""

    @parameterized.named_parameters(
        [("dense_shared", "dense", "shared"), ("conv2d_shared", "conv2d", "shared"),
         ("lstm_shared", "lstm", "shared"),
         # The per-example estimators run the same code in both, too.
         ("dense_flipout", "dense", "flipout"),
         ("conv2d_local_reparameterization", "conv2d", "local_reparameterization"),
         ("lstm_flipout", "lstm", "flipout")]
    )
    def test_same_weights_and_seed_give_identical_training_outputs(
        self, name, estimator
    ):
        # Inference calls (in `_variant_and_plain`) draw nothing, so the
        # variant's noise stream starts where the fresh wrapper's does.
        variant, plain, x = _variant_and_plain(name, estimator, stddev=0.3, seed=5)
        wrapper = noisylayers.WeightNoise(
            plain, noise=noise.Gaussian(0.3), seed=5, estimator=estimator
        )
        for _ in range(2):
            np.testing.assert_array_equal(
                numpy(variant(x, training=True)),
                numpy(wrapper(x, training=True)),
            )
        np.testing.assert_array_equal(numpy(variant(x)), numpy(wrapper(x)))


class VariantTrainingAndInferenceTest(NoiseLayerTestCase):
    @parameterized.named_parameters(CASES)
    def test_noisy_in_training_exact_in_inference(self, name, estimator):
        layer, plain, x = _variant_and_plain(name, estimator)
        self.assert_noisy_in_training_exact_in_inference(layer, plain, x)

    @parameterized.named_parameters(CASES)
    def test_gradients_reach_the_weights_which_stay_unchanged(self, name, estimator):
        layer, _, x = _variant_and_plain(name, estimator)
        grads = gradients(layer, x, sum_of_squares)
        self.assertLen(grads, len(layer.trainable_variables))
        self.assertGreaterEqual(len(grads), 2)
        for variable, grad in zip(layer.trainable_variables, grads):
            self.assertEqual(grad.shape, tuple(variable.shape))
            self.assertTrue(np.all(np.isfinite(grad)), variable.path)
            self.assertGreater(np.abs(grad).max(), 0.0, variable.path)
        self.assert_variables_unchanged(layer, x, sum_of_squares)

    @parameterized.named_parameters(
        ("dense", lambda **kw: noisylayers.NoisyDense(4, **kw), lambda: layers.Dense(4), (3, 5)),
        (
            "conv2d_strided_same",
            lambda **kw: noisylayers.NoisyConv2D(
                4, 3, strides=2, padding="same", **kw
            ),
            lambda: layers.Conv2D(4, 3, strides=2, padding="same"),
            (2, 7, 7, 2),
        ),
        (
            "conv2d_dilated",
            lambda **kw: noisylayers.NoisyConv2D(2, 2, dilation_rate=2, **kw),
            lambda: layers.Conv2D(2, 2, dilation_rate=2),
            (2, 6, 6, 1),
        ),
        (
            "conv2d_groups",
            lambda **kw: noisylayers.NoisyConv2D(4, 3, groups=2, **kw),
            lambda: layers.Conv2D(4, 3, groups=2),
            (2, 5, 5, 4),
        ),
        (
            "conv1d_causal",
            lambda **kw: noisylayers.NoisyConv1D(
                2, 3, padding="causal", dilation_rate=2, **kw
            ),
            lambda: layers.Conv1D(2, 3, padding="causal", dilation_rate=2),
            (2, 9, 3),
        ),
    )
    def test_training_at_scale_zero_is_the_plain_layer(self, make, make_plain, shape):
        # Each estimator reimplements the layer's linear map; at scale 0 it
        # must be the Keras layer's (strides, padding, dilation, groups).
        x = _inputs(shape, seed=1)
        plain = make_plain()
        plain(x)
        expected = numpy(plain(x))
        for estimator in ALL_ESTIMATORS:
            layer = make(estimator=estimator, noise=noise.Gaussian(0.5))
            layer(x)
            layer.set_weights(plain.get_weights() + [np.array(True), np.array(0.0)])
            np.testing.assert_allclose(
                numpy(layer(x, training=True)), expected, rtol=1e-5, atol=1e-5,
                err_msg=estimator,
            )
            layer.scale = 1.0
            self.assertFalse(np.allclose(numpy(layer(x, training=True)), expected))


class VariantConfigTest(NoiseLayerTestCase):
    @parameterized.named_parameters(
        (
            "dense",
            lambda: noisylayers.NoisyDense(
                3,
                activation="relu",
                noise=noise.MultiplicativeGaussian(0.2),
                estimator="flipout",
                targets=["kernel"],
                seed=4,
                name="nd",
            ),
        ),
        (
            "conv1d",
            lambda: noisylayers.NoisyConv1D(
                2, 3, padding="causal", estimator="local_reparameterization",
                noise=noise.Gaussian(0.05), seed=1, name="nc1",
            ),
        ),
        (
            "conv2d",
            lambda: noisylayers.NoisyConv2D(
                2, 3, strides=2, noise="dropconnect", name="nc2"
            ),
        ),
        (
            "conv3d",
            lambda: noisylayers.NoisyConv3D(2, 2, estimator="flipout", name="nc3"),
        ),
        (
            "lstm",
            lambda: noisylayers.NoisyLSTM(
                4, return_sequences=True, estimator="flipout",
                targets=["recurrent_kernel"], seed=7, name="nl",
            ),
        ),
        ("gru", lambda: noisylayers.NoisyGRU(4, noise="dropconnect", seed=2, name="ng")),
    )
    def test_config_round_trip(self, make):
        layer = make()
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
        x = rng.normal(size=(16, 6, 6, 1)).astype("float32")
        t = rng.normal(size=(16, 2)).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((6, 6, 1)),
                noisylayers.NoisyConv2D(
                    2, 3, estimator="local_reparameterization",
                    noise=noise.Gaussian(0.05), seed=1, name="conv",
                ),
                layers.Reshape((4, 8)),
                noisylayers.NoisyLSTM(
                    3, estimator="flipout", noise=noise.Gaussian(0.05), seed=2,
                    name="lstm",
                ),
                noisylayers.NoisyDense(
                    2, estimator="flipout",
                    noise=noise.MultiplicativeGaussian(0.1), seed=3, name="dense",
                ),
            ]
        )
        model.compile("adam", "mse")
        model.fit(x, t, epochs=1, batch_size=8, verbose=0)
        conv, _, lstm, dense = model.layers
        conv.scale = 0.5
        dense.enabled = False
        expected = model.predict(x, verbose=0)
        path = os.path.join(self.get_temp_dir(), "variants.keras")
        model.save(path)

        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
        self.assertEqual(_json(loaded.get_config()), _json(model.get_config()))
        l_conv, _, l_lstm, l_dense = loaded.layers
        self.assertIsInstance(l_conv, noisylayers.NoisyConv2D)
        self.assertIsInstance(l_lstm, noisylayers.NoisyLSTM)
        self.assertIsInstance(l_dense, noisylayers.NoisyDense)
        self.assertEqual(
            [l.estimator for l in (l_conv, l_lstm, l_dense)],
            ["local_reparameterization", "flipout", "flipout"],
        )
        self.assertEqual([l.scale for l in (l_conv, l_lstm, l_dense)], [0.5, 1.0, 1.0])
        self.assertEqual(
            [l.enabled for l in (l_conv, l_lstm, l_dense)], [True, True, False]
        )
        for original, restored in zip(model.weights, loaded.weights):
            np.testing.assert_array_equal(numpy(restored.value), numpy(original.value))

        # Training continues: noisy training steps that move the weights.
        loaded.compile("adam", "mse")
        before = [numpy(v.value).copy() for v in loaded.trainable_weights]
        history = loaded.fit(x, t, epochs=1, batch_size=8, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        after = [numpy(v.value) for v in loaded.trainable_weights]
        for b, a in zip(before, after):
            self.assertFalse(np.allclose(a, b))
        self.assertFalse(
            np.allclose(numpy(loaded(x[:4], training=True)), numpy(loaded(x[:4])))
        )


class VariantRefusalsTest(NoiseLayerTestCase):
    @parameterized.named_parameters(
        (
            "embedding_flipout",
            lambda: noisylayers.WeightNoise(
                layers.Embedding(10, 3), estimator="flipout"
            ),
            "Embedding",
            "Gaussian(stddev=0.01)",
            "['shared']",
        ),
        (
            "embedding_local_reparameterization_built",
            lambda: noisylayers.WeightNoise(
                _built(layers.Embedding(10, 3), (2, 4)),
                estimator="local_reparameterization",
            ),
            "Embedding",
            "Gaussian(stddev=0.01)",
            "['shared']",
        ),
        (
            "lstm_local_reparameterization",
            lambda: noisylayers.NoisyLSTM(3, estimator="local_reparameterization"),
            "NoisyLSTM",
            "Gaussian(stddev=0.01)",
            "['shared', 'flipout']",
        ),
        (
            "wrapped_lstm_local_reparameterization",
            lambda: noisylayers.WeightNoise(
                layers.LSTM(3), estimator="local_reparameterization"
            ),
            "LSTM",
            "Gaussian(stddev=0.01)",
            "['shared', 'flipout']",
        ),
        (
            "gru_flipout",
            lambda: noisylayers.NoisyGRU(3, estimator="flipout"),
            "NoisyGRU",
            "Gaussian(stddev=0.01)",
            "['shared']",
        ),
        (
            "dropconnect_flipout",
            lambda: noisylayers.NoisyDense(
                3, noise=noise.DropConnect(0.3), estimator="flipout"
            ),
            "NoisyDense",
            "DropConnect(rate=0.3)",
            "['shared']",
        ),
        (
            "dropconnect_local_reparameterization",
            lambda: noisylayers.NoisyConv2D(
                2, 3, noise="dropconnect", estimator="local_reparameterization"
            ),
            "NoisyConv2D",
            "DropConnect(rate=0.5)",
            "['shared']",
        ),
        (
            "wrapped_dropconnect_lstm_flipout",
            lambda: noisylayers.WeightNoise(
                layers.LSTM(3), noise="dropconnect", estimator="flipout"
            ),
            "LSTM",
            "DropConnect(rate=0.5)",
            "['shared']",
        ),
    )
    def test_refused_estimator(self, make, type_name, kind, works):
        with pytest.raises(ValueError) as info:
            make()
        message = str(info.value)
        self.assertIn(f"type {type_name} ", message)
        self.assertIn(kind, message)
        self.assertIn(works, message)
        self.assertIn("Received: estimator=", message)

    def test_lora_rank_refused(self):
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


def _built(layer, shape):
    layer.build(shape)
    return layer


# The unknown-estimator refusal does not say what the others say: its
# message has neither the layer type nor the noise kind, and it lists every
# estimator name instead of those that work for the layer (an LSTM is offered
# "local_reparameterization", which it then refuses).
@pytest.mark.xfail(
    reason=(
        "library bug: NoisyLayer._check_estimator (noisylayers/layers/base.py) "
        "raises 'Unknown estimator. Expected one of [all ESTIMATORS]' before "
        "it knows the layer type, noise kind and the working estimators"
    ),
    strict=True,
)
@pytest.mark.parametrize(
    "make, type_name, kind, works",
    [
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
            lambda: noisylayers.WeightNoise(layers.Embedding(4, 2), estimator="lrt"),
            "Embedding",
            "Gaussian(stddev=0.01)",
            "['shared']",
        ),
    ],
    ids=["dense", "lstm", "wrapped_embedding"],
)
def test_unknown_estimator_message_names_layer_noise_and_working_estimators(
    make, type_name, kind, works
):
    with pytest.raises(ValueError, match="Unknown estimator"):
        make()
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert f"type {type_name}" in message, message
    assert kind in message, message
    assert works in message, message


def test_unknown_estimator_is_refused():
    # What works today (and must keep working): a ValueError naming the
    # received value.
    for make in (
        lambda: noisylayers.NoisyDense(3, estimator="flipout_typo"),
        lambda: noisylayers.NoisyConv2D(2, 3, estimator="Flipout"),
        lambda: noisylayers.NoisyLSTM(3, estimator="reparameterization"),
        lambda: noisylayers.WeightNoise(layers.Dense(3), estimator=""),
    ):
        with pytest.raises(ValueError, match=r"Received: estimator="):
            make()


class VariantControlsTest(NoiseLayerTestCase):
    def _model(self):
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [
                keras.Input((6, 6, 1)),
                noisylayers.NoisyConv2D(
                    2, 3, estimator="local_reparameterization",
                    noise=noise.Gaussian(0.2), name="conv",
                ),
                layers.Flatten(),
                noisylayers.NoisyDense(
                    4, activation="tanh", estimator="flipout",
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

    def test_noise_layers_lists_the_variants(self):
        model = self._model()
        found = noisylayers.noise_layers(model)
        self.assertEqual([l.name for l in found], ["conv", "hidden", "wrapped", "out"])
        self.assertIs(found[0], model.layers[0])
        self.assertEqual(
            [l.name for l in noisylayers.noise_layers(model, "hidden")], ["hidden"]
        )
        self.assertEqual(
            [l.name for l in noisylayers.noise_layers(model, ["o*", "conv"])],
            ["conv", "out"],
        )

    def test_set_noise_disables_every_variant(self):
        model = self._model()
        x = _inputs((5, 6, 6, 1))
        clean = numpy(model(x))
        self.assertFalse(np.allclose(numpy(model(x, training=True)), clean))
        changed = noisylayers.set_noise(model, enabled=False)
        self.assertLen(changed, 4)
        self.assertEqual([l.enabled for l in changed], [False] * 4)
        np.testing.assert_allclose(
            numpy(model(x, training=True)), clean, rtol=1e-6, atol=1e-6
        )
        noisylayers.set_noise(model, enabled=True, layers="hidden")
        self.assertFalse(np.allclose(numpy(model(x, training=True)), clean))

    def test_noise_scope_restores_scale_and_enabled(self):
        model = self._model()
        x = _inputs((5, 6, 6, 1))
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
        layers_ = noisylayers.noise_layers(model)
        self.assertEqual([l.scale for l in layers_], [1.0, 0.5, 1.0, 1.0])
        self.assertEqual([l.enabled for l in layers_], [True, True, True, False])
        with pytest.raises(RuntimeError):
            with noisylayers.noise_scope(model, enabled=False, layers="conv"):
                raise RuntimeError("boom")
        self.assertTrue(model.get_layer("conv").enabled)

    def test_set_noise_takes_effect_after_compile(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 6, 6, 1)).astype("float32")
        y = rng.normal(size=(32, 2)).astype("float32")
        model = self._model()
        # A zero learning rate keeps the weights: every change in the
        # training loss comes from the noise.
        model.compile(keras.optimizers.SGD(0.0), "mse")

        def fit_loss():
            return model.fit(
                x, y, epochs=1, batch_size=32, shuffle=False, verbose=0
            ).history["loss"][0]

        clean = model.evaluate(x, y, verbose=0)
        self.assertNotAlmostEqual(fit_loss(), clean, places=4)
        noisylayers.set_noise(model, enabled=False)
        self.assertAllClose(fit_loss(), clean, rtol=1e-5)
