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


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def sum_of_squares(y):
    return ops.sum(ops.square(y))


def draw_like_call(wrapper, seed_state, scale=1.0):
    """The noisy values a training call of `wrapper` draws from `seed_state`.

    A training call draws one perturbation per target variable, in the order
    of `target_variables`, from the wrapper's seed generator.
    """
    wrapper.seed_generator.state.assign(seed_state)
    return [
        numpy(wrapper.noise(v.value, wrapper.seed_generator, scale))
        for v in wrapper.target_variables
    ]


class WeightNoiseBasicsTest(NoiseLayerTestCase):
    def test_dense_layer_test(self):
        self.run_layer_test(
            noisylayers.WeightNoise,
            init_kwargs={"layer": layers.Dense(3), "seed": 1},
            input_shape=(2, 4),
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=2,
            expected_num_non_trainable_variables=3,
            expected_num_seed_generators=1,
            supports_masking=True,
        )

    def test_conv2d_layer_test(self):
        self.run_layer_test(
            noisylayers.WeightNoise,
            init_kwargs={
                "layer": layers.Conv2D(2, 3),
                "noise": "multiplicative_gaussian",
            },
            input_shape=(2, 5, 5, 1),
            expected_output_shape=(2, 3, 3, 2),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=2,
        )

    def test_lstm_layer_test(self):
        self.run_layer_test(
            noisylayers.WeightNoise,
            init_kwargs={"layer": layers.LSTM(3), "noise": "dropconnect"},
            input_shape=(2, 4, 2),
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=2,
        )

    def test_embedding_layer_test(self):
        self.run_layer_test(
            noisylayers.WeightNoise,
            init_kwargs={"layer": layers.Embedding(10, 3)},
            input_data=np.array([[1, 2], [3, 9]], dtype="int32"),
            expected_output_shape=(2, 2, 3),
            expected_num_trainable_weights=1,
            expected_num_non_trainable_weights=2,
            run_training_check=False,
            run_mixed_precision_check=False,
        )

    @parameterized.named_parameters(
        ("dense", lambda: layers.Dense(4, activation="tanh"), (3, 5), "float32"),
        ("conv2d", lambda: layers.Conv2D(2, 3), (2, 6, 6, 1), "float32"),
        ("lstm", lambda: layers.LSTM(3), (2, 4, 2), "float32"),
        ("gru", lambda: layers.GRU(3), (2, 4, 2), "float32"),
        ("simple_rnn", lambda: layers.SimpleRNN(3), (2, 4, 2), "float32"),
        ("depthwise", lambda: layers.DepthwiseConv2D(3), (2, 5, 5, 2), "float32"),
        ("separable", lambda: layers.SeparableConv2D(2, 3), (2, 5, 5, 2), "float32"),
        ("embedding", lambda: layers.Embedding(10, 3), (2, 4), "int32"),
        (
            "bidirectional",
            lambda: layers.Bidirectional(layers.LSTM(3)),
            (2, 4, 2),
            "float32",
        ),
        (
            "time_distributed",
            lambda: layers.TimeDistributed(layers.Dense(3)),
            (2, 4, 2),
            "float32",
        ),
    )
    def test_noisy_in_training_exact_in_inference(self, make, shape, dtype):
        rng = np.random.default_rng(0)
        if dtype == "int32":
            x = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            x = rng.normal(size=shape).astype(dtype)
        plain = make()
        plain(x)
        layer = make()
        layer(x)
        layer.set_weights(plain.get_weights())
        wrapper = noisylayers.WeightNoise(layer, noise=noise.Gaussian(0.1))
        self.assertTrue(wrapper.target_variables)
        self.assert_noisy_in_training_exact_in_inference(wrapper, plain, x)

    def test_default_targets(self):
        cases = [
            (layers.Dense(2), (1, 3), ["kernel", "bias"]),
            (layers.Dense(2, use_bias=False), (1, 3), ["kernel"]),
            (layers.LSTM(2), (1, 2, 3), ["kernel", "recurrent_kernel", "bias"]),
            (
                layers.SeparableConv2D(2, 3),
                (1, 4, 4, 1),
                ["depthwise_kernel", "pointwise_kernel", "bias"],
            ),
            (layers.Embedding(5, 2), (1, 3), ["embeddings"]),
        ]
        for layer, shape, names in cases:
            layer.build(shape)
            wrapper = noisylayers.WeightNoise(layer)
            self.assertEqual([v.name for v in wrapper.target_variables], names)

    def test_bidirectional_targets_both_directions(self):
        wrapper = noisylayers.WeightNoise(layers.Bidirectional(layers.GRU(2)))
        wrapper.build((1, 3, 4))
        self.assertLen(wrapper.target_variables, 6)
        paths = [v.path for v in wrapper.target_variables]
        self.assertTrue(any("forward" in p for p in paths))
        self.assertTrue(any("backward" in p for p in paths))

    def test_explicit_targets(self):
        wrapper = noisylayers.WeightNoise(layers.LSTM(2), targets=["recurrent_kernel"])
        wrapper.build((1, 3, 4))
        self.assertEqual(
            [v.name for v in wrapper.target_variables], ["recurrent_kernel"]
        )
        # A path suffix selects one variable among several of that name.
        bidi = noisylayers.WeightNoise(
            layers.Bidirectional(layers.LSTM(2, name="fw")),
            targets=["forward_fw/lstm_cell/kernel"],
        )
        bidi.build((1, 3, 4))
        self.assertLen(bidi.target_variables, 1)
        self.assertTrue(
            bidi.target_variables[0].path.endswith("forward_fw/lstm_cell/kernel")
        )

    def test_explicit_targets_only_perturb_those(self):
        x = np.ones((4, 3), "float32")
        dense = layers.Dense(2)
        wrapper = noisylayers.WeightNoise(
            dense, noise=noise.Gaussian(1.0), targets=["bias"]
        )
        wrapper(x)
        # With zero inputs only the bias can move the output.
        zeros = np.zeros((4, 3), "float32")
        noisy = numpy(wrapper(zeros, training=True))
        self.assertGreater(np.abs(noisy).max(), 0.0)
        # Every row gets the same bias sample: one draw per call.
        np.testing.assert_array_equal(noisy, np.broadcast_to(noisy[0], noisy.shape))
        self.assertEqual(wrapper.targets, ("bias",))

    def test_wraps_a_block_of_layers(self):
        block = keras.Sequential(
            [keras.Input((3,)), layers.Dense(4), layers.Dense(2)]
        )
        wrapper = noisylayers.WeightNoise(block)
        self.assertLen(wrapper.target_variables, 4)
        x = np.ones((2, 3), "float32")
        self.assert_noisy_in_training_exact_in_inference(wrapper, block, x)

    def test_works_in_sequential_and_functional_models(self):
        x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
        seq = keras.Sequential(
            [
                keras.Input((5,)),
                noisylayers.WeightNoise(layers.Dense(4, activation="relu")),
                noisylayers.WeightNoise(layers.Dense(1), noise="dropconnect"),
            ]
        )
        self.assertEqual(seq.output_shape, (None, 1))
        inputs = keras.Input((5,))
        outputs = noisylayers.WeightNoise(layers.Dense(3))(inputs)
        func = keras.Model(inputs, outputs)
        for model in (seq, func):
            a = numpy(model(x, training=True))
            b = numpy(model(x, training=True))
            self.assertFalse(np.allclose(a, b))
            np.testing.assert_array_equal(numpy(model(x)), numpy(model.predict(x, verbose=0)))

    def test_output_shape_inside_time_distributed(self):
        inputs = keras.Input((4, 3))
        wrapper = noisylayers.WeightNoise(layers.Dense(2), noise=noise.Gaussian(1.0))
        outputs = layers.TimeDistributed(wrapper)(inputs)
        self.assertEqual(outputs.shape, (None, 4, 2))
        self.assertEqual(wrapper.compute_output_shape((None, 3)), (None, 2))
        model = keras.Model(inputs, outputs)
        x = np.ones((1, 4, 3), "float32")
        self.assertFalse(np.allclose(numpy(model(x, training=True)), numpy(model(x))))

    def test_output_spec_of_a_layer_without_compute_output_shape(self):
        class Scale(layers.Layer):
            def build(self, input_shape):
                self.kernel = self.add_weight(shape=(input_shape[-1],), name="kernel")

            def call(self, x):
                return x[..., :2] * self.kernel[:2]

        inputs = keras.Input((5,))
        wrapper = noisylayers.WeightNoise(Scale())
        outputs = wrapper(inputs)
        self.assertEqual(outputs.shape, (None, 2))
        with pytest.raises(NotImplementedError):
            wrapper.compute_output_shape((None, 5))

    def test_masking_is_passed_to_the_wrapped_layer(self):
        tokens = np.array([[3, 4, 0, 0], [5, 0, 0, 0]], "int32")
        inputs = keras.Input((4,), dtype="int32")
        embedded = layers.Embedding(10, 3, mask_zero=True)(inputs)
        lstm = layers.LSTM(2, return_sequences=True)
        outputs = noisylayers.WeightNoise(lstm)(embedded)
        model = keras.Model(inputs, outputs)
        out = numpy(model(tokens))
        # Masked steps repeat the last unmasked output.
        np.testing.assert_allclose(out[0, 2], out[0, 1])
        np.testing.assert_allclose(out[1, 3], out[1, 0])
        noisy = numpy(model(tokens, training=True))
        np.testing.assert_allclose(noisy[1, 3], noisy[1, 0])

    def test_extra_call_arguments_are_passed_through(self):
        lstm = layers.LSTM(2)
        wrapper = noisylayers.WeightNoise(lstm, noise=noise.Gaussian(0.0))
        x = np.ones((1, 3, 2), "float32")
        state = [np.ones((1, 2), "float32"), np.ones((1, 2), "float32")]
        with_state = numpy(wrapper(x, initial_state=state, training=True))
        np.testing.assert_allclose(with_state, numpy(lstm(x, initial_state=state)))
        self.assertFalse(np.allclose(with_state, numpy(lstm(x))))


class ContextScale(layers.Layer):
    """A layer of two inputs, built from both shapes: `x * (context @ w)`."""

    def build(self, x_shape, context_shape):
        self.kernel = self.add_weight(
            shape=(context_shape[-1], x_shape[-1]), initializer="ones", name="kernel"
        )

    def call(self, x, context):
        return x * ops.matmul(context, self.kernel)


class WeightNoiseMultiInputTest(NoiseLayerTestCase):
    """Layers called with several inputs: attention, custom layers."""

    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(3)
        self.query = rng.normal(size=(2, 5, 4)).astype("float32")
        self.value = rng.normal(size=(2, 7, 4)).astype("float32")

    def test_attention_positional_inputs(self):
        attention = layers.MultiHeadAttention(2, 4)
        wrapper = noisylayers.WeightNoise(attention, seed=1)
        # Eagerly, the second input is `value`, not `training`.
        clean = numpy(wrapper(self.query, self.value))
        self.assertEqual(clean.shape, (2, 5, 4))
        np.testing.assert_array_equal(
            clean, numpy(attention(self.query, self.value))
        )
        noisy = numpy(wrapper(self.query, self.value, training=True))
        self.assertGreater(np.abs(noisy - clean).max(), 1e-4)
        # Query, key, value and output projections: a kernel and a bias each.
        self.assertLen(wrapper.target_variables, 8)

    def test_attention_keyword_inputs(self):
        attention = layers.MultiHeadAttention(2, 4)
        wrapper = noisylayers.WeightNoise(attention, seed=1)
        clean = numpy(wrapper(query=self.query, value=self.value))
        np.testing.assert_array_equal(
            clean, numpy(attention(self.query, self.value))
        )
        noisy = numpy(wrapper(query=self.query, value=self.value, training=True))
        self.assertGreater(np.abs(noisy - clean).max(), 1e-4)

    def test_attention_in_a_functional_model_trains_saves_and_loads(self):
        query = keras.Input((5, 4))
        value = keras.Input((7, 4))
        wrapper = noisylayers.WeightNoise(layers.MultiHeadAttention(2, 4), seed=2)
        model = keras.Model([query, value], wrapper(query, value, key=value))
        model.compile("sgd", "mse")
        before = [numpy(v) for v in model.weights]
        x = [self.query, self.value]
        model.fit(x, np.zeros((2, 5, 4)), epochs=1, verbose=0)
        after = [numpy(v) for v in model.weights]
        self.assertTrue(any(not np.array_equal(a, b) for a, b in zip(after, before)))
        self.assertEqual(
            wrapper.get_build_config(),
            {
                "shapes_dict": {
                    "query_shape": (None, 5, 4),
                    "value_shape": (None, 7, 4),
                    "key_shape": (None, 7, 4),
                }
            },
        )
        path = self.get_temp_dir() + "/attention.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0)
        )

    def test_custom_layer_of_two_inputs(self):
        inner = ContextScale()
        wrapper = noisylayers.WeightNoise(inner, noise=noise.Gaussian(0.5), seed=3)
        x = np.ones((3, 2), "float32")
        context = np.ones((3, 6), "float32")
        np.testing.assert_array_equal(numpy(wrapper(x, context)), np.full((3, 2), 6.0))
        self.assertEqual(inner.kernel.shape, (6, 2))
        state = numpy(wrapper.seed_generator.state.value).copy()
        noisy = numpy(wrapper(x, context=context, training=True))
        (kernel,) = draw_like_call(wrapper, state)
        self.assertFalse(np.allclose(kernel, 1.0))
        np.testing.assert_allclose(noisy, context @ kernel, rtol=1e-5)


class WeightNoiseGradientTest(NoiseLayerTestCase):
    """The wrapper's gradient w.r.t. the clean weights, for a fixed draw."""

    def _wrapper_grads_and_noisy(self, wrapper, x, loss_fn):
        state = numpy(wrapper.seed_generator.state.value).copy()
        grads = gradients(wrapper, x, loss_fn)
        return grads, draw_like_call(wrapper, state)

    @parameterized.named_parameters(
        ("additive", noise.Gaussian(0.3)),
        ("multiplicative", noise.MultiplicativeGaussian(0.3)),
        ("dropconnect", noise.DropConnect(0.3)),
    )
    def test_dense_by_hand(self, kind):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(5, 4)).astype("float32")
        dense = layers.Dense(3, activation="tanh", bias_initializer="random_normal")
        wrapper = noisylayers.WeightNoise(dense, noise=kind, seed=7)
        wrapper.build(x.shape)
        clean_w, clean_b = (numpy(v.value) for v in dense.weights)
        (g_w, g_b), (noisy_w, noisy_b) = self._wrapper_grads_and_noisy(
            wrapper, x, sum_of_squares
        )
        self.assertFalse(np.allclose(noisy_w, clean_w))
        # d/dz sum(tanh(z)^2) with z = x @ W_noisy + b_noisy.
        y = np.tanh(x @ noisy_w + noisy_b)
        dz = 2 * y * (1 - y**2)
        grad_noisy_w, grad_noisy_b = x.T @ dz, dz.sum(0)
        if isinstance(kind, noise.Gaussian):
            expected_w, expected_b = grad_noisy_w, grad_noisy_b
        else:
            # noisy = clean * factor, so d noisy / d clean = factor.
            expected_w = grad_noisy_w * noisy_w / clean_w
            expected_b = grad_noisy_b * noisy_b / clean_b
        np.testing.assert_allclose(g_w, expected_w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(g_b, expected_b, rtol=1e-4, atol=1e-5)

    @parameterized.named_parameters(
        ("conv2d", lambda: layers.Conv2D(2, 3), (2, 5, 5, 2), "float32"),
        ("lstm", lambda: layers.LSTM(3), (2, 4, 2), "float32"),
        ("embedding", lambda: layers.Embedding(6, 3), (3, 4), "int32"),
    )
    def test_equals_plain_layer_at_the_noisy_weights(self, make, shape, dtype):
        rng = np.random.default_rng(2)
        if dtype == "int32":
            x = rng.integers(0, 6, size=shape).astype(dtype)
        else:
            x = rng.normal(size=shape).astype(dtype)
        wrapper = noisylayers.WeightNoise(make(), noise=noise.Gaussian(0.2), seed=3)
        wrapper.build(x.shape)
        grads, noisy = self._wrapper_grads_and_noisy(wrapper, x, sum_of_squares)
        reference_layer = make()
        reference_layer.build(x.shape)
        reference_layer.set_weights(noisy)
        expected = gradients(reference_layer, x, sum_of_squares)
        self.assertLen(grads, len(expected))
        for g, e in zip(grads, expected):
            self.assertGreater(np.abs(e).max(), 0.0)
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)

    def test_multiplicative_conv2d(self):
        x = np.random.default_rng(3).normal(size=(2, 5, 5, 1)).astype("float32")
        conv = layers.Conv2D(2, 3, bias_initializer="ones")
        wrapper = noisylayers.WeightNoise(
            conv, noise=noise.MultiplicativeGaussian(0.5), seed=4
        )
        wrapper.build(x.shape)
        clean = [numpy(v.value) for v in conv.weights]
        grads, noisy = self._wrapper_grads_and_noisy(wrapper, x, sum_of_squares)
        reference_layer = layers.Conv2D(2, 3)
        reference_layer.build(x.shape)
        reference_layer.set_weights(noisy)
        expected = gradients(reference_layer, x, sum_of_squares)
        for g, e, n, c in zip(grads, expected, noisy, clean):
            np.testing.assert_allclose(g, e * n / c, rtol=1e-4, atol=1e-5)

    def test_variables_bit_identical_after_forward_backward(self):
        x = np.random.default_rng(4).normal(size=(3, 4, 2)).astype("float32")
        for kind in ("gaussian", "multiplicative_gaussian", "dropconnect"):
            wrapper = noisylayers.WeightNoise(layers.LSTM(3), noise=kind)
            wrapper.build(x.shape)
            self.assert_variables_unchanged(wrapper, x, sum_of_squares)

    def test_gradients_reach_the_clean_weights_under_fit(self):
        x = np.random.default_rng(5).normal(size=(16, 4)).astype("float32")
        y = np.ones((16, 1), "float32")
        wrapper = noisylayers.WeightNoise(layers.Dense(1), seed=0)
        model = keras.Sequential([keras.Input((4,)), wrapper])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        before = [numpy(v.value).copy() for v in wrapper.target_variables]
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        after = [numpy(v.value) for v in wrapper.target_variables]
        for b, a in zip(before, after):
            self.assertFalse(np.allclose(a, b))


class WeightNoiseStatisticsTest(NoiseLayerTestCase):
    UNITS = 4000

    def _one_hot_outputs(self, kind, draws=4, kernel_initializer="zeros"):
        """Outputs of Dense(UNITS, no bias) on a one-hot input: one kernel row."""
        dense = layers.Dense(
            self.UNITS, use_bias=False, kernel_initializer=kernel_initializer
        )
        wrapper = noisylayers.WeightNoise(dense, noise=kind, seed=11)
        x = np.zeros((1, 3), "float32")
        x[0, 1] = 1.0
        return np.concatenate(
            [numpy(wrapper(x, training=True))[0] for _ in range(draws)]
        )

    def test_gaussian_output_stddev(self):
        # 16000 samples: the sample stddev is within 5% with overwhelming
        # probability (its relative standard error is about 0.6%).
        out = self._one_hot_outputs(noise.Gaussian(0.3))
        self.assertAllClose(out.mean(), 0.0, atol=0.02)
        self.assertAllClose(out.std(), 0.3, rtol=0.05)

    def test_multiplicative_output_stddev(self):
        out = self._one_hot_outputs(
            noise.MultiplicativeGaussian(0.2), kernel_initializer="ones"
        )
        self.assertAllClose(out.mean(), 1.0, atol=0.02)
        self.assertAllClose(out.std(), 0.2, rtol=0.05)

    def test_multiplicative_leaves_zero_weights_alone(self):
        out = self._one_hot_outputs(noise.MultiplicativeGaussian(0.5), draws=1)
        np.testing.assert_array_equal(out, 0.0)

    def test_dropconnect_zero_fraction_and_scaling(self):
        # 16000 Bernoulli draws: the zero fraction is within 0.02 of `rate`
        # (standard error about 0.004).
        out = self._one_hot_outputs(noise.DropConnect(0.3), kernel_initializer="ones")
        self.assertAllClose(np.mean(out == 0.0), 0.3, atol=0.02)
        kept = out[out != 0.0]
        np.testing.assert_allclose(kept, 1.0 / 0.7, rtol=1e-6)
        self.assertAllClose(out.mean(), 1.0, atol=0.03)

    def test_scale_multiplies_the_noise_magnitude(self):
        dense = layers.Dense(self.UNITS, use_bias=False, kernel_initializer="zeros")
        wrapper = noisylayers.WeightNoise(dense, noise=noise.Gaussian(0.1), seed=2)
        x = np.eye(3, dtype="float32")[1:2]
        wrapper.scale = 3.0
        out = np.concatenate([numpy(wrapper(x, training=True))[0] for _ in range(4)])
        self.assertAllClose(out.std(), 0.3, rtol=0.05)
        wrapper.scale = 0.0
        np.testing.assert_array_equal(numpy(wrapper(x, training=True)), 0.0)

    def test_recurrent_noise_is_shared_across_time_steps(self):
        # With identity-free inputs, a SimpleRNN whose kernel alone is noisy
        # and recurrent kernel zero gives h_t = tanh(x_t @ W_noisy): equal
        # inputs at every step must give equal outputs at every step.
        rnn = layers.SimpleRNN(
            5,
            return_sequences=True,
            recurrent_initializer="zeros",
            use_bias=False,
        )
        wrapper = noisylayers.WeightNoise(
            rnn, noise=noise.Gaussian(0.5), targets=["kernel"]
        )
        x = np.ones((2, 6, 3), "float32")
        out = numpy(wrapper(x, training=True))
        for t in range(1, 6):
            np.testing.assert_allclose(out[:, t], out[:, 0], rtol=1e-6)
        self.assertFalse(np.allclose(out, numpy(rnn(x))))


class WeightNoiseSeedTest(NoiseLayerTestCase):
    def _model(self, seed):
        keras.utils.set_random_seed(0)
        return keras.Sequential(
            [
                keras.Input((4,)),
                noisylayers.WeightNoise(layers.Dense(8), seed=seed),
                noisylayers.WeightNoise(layers.Dense(2), seed=None if seed is None else seed + 1),
            ]
        )

    def test_seed_makes_noise_reproducible(self):
        x = np.ones((3, 4), "float32")
        a, b = self._model(5), self._model(5)
        np.testing.assert_array_equal(numpy(a(x)), numpy(b(x)))
        for _ in range(2):
            np.testing.assert_array_equal(
                numpy(a(x, training=True)), numpy(b(x, training=True))
            )

    def test_unseeded_wrappers_draw_independent_noise(self):
        x = np.ones((1, 4), "float32")
        dense = layers.Dense(64, use_bias=False, kernel_initializer="zeros")
        first = noisylayers.WeightNoise(dense)
        second = noisylayers.WeightNoise(dense)
        a = numpy(first(x, training=True))
        b = numpy(second(x, training=True))
        self.assertFalse(np.allclose(a, b))
        # Independent: correlation near zero (64 samples: |r| < 0.5 is a
        # 4-sigma bound).
        self.assertLess(abs(np.corrcoef(a[0], b[0])[0, 1]), 0.5)


class WeightNoiseStateTest(NoiseLayerTestCase):
    def test_batch_norm_statistics_update_in_eager_training_calls(self):
        block = keras.Sequential(
            [keras.Input((3,)), layers.Dense(4), layers.BatchNormalization()]
        )
        wrapper = noisylayers.WeightNoise(block)
        bn = block.layers[-1]
        x = np.random.default_rng(0).normal(3.0, 1.0, size=(32, 3)).astype("float32")
        wrapper(x, training=True)
        self.assertGreater(np.abs(numpy(bn.moving_mean)).max(), 0.0)
        self.assertFalse(np.allclose(numpy(bn.moving_variance), 1.0))

    def test_batch_norm_statistics_update_under_fit(self):
        block = keras.Sequential(
            [keras.Input((3,)), layers.Dense(4), layers.BatchNormalization()]
        )
        model = keras.Sequential(
            [keras.Input((3,)), noisylayers.WeightNoise(block), layers.Dense(1)]
        )
        model.compile("sgd", "mse")
        x = np.random.default_rng(0).normal(3.0, 1.0, size=(32, 3)).astype("float32")
        model.fit(x, np.zeros((32, 1)), epochs=2, batch_size=8, verbose=0)
        bn = block.layers[-1]
        self.assertGreater(np.abs(numpy(bn.moving_mean)).max(), 0.0)
        self.assertFalse(np.allclose(numpy(bn.moving_variance), 1.0))

    def test_batch_norm_gamma_beta_can_be_targets(self):
        bn = layers.BatchNormalization()
        wrapper = noisylayers.WeightNoise(
            bn, noise=noise.Gaussian(0.5), targets=["gamma", "beta"]
        )
        x = np.random.default_rng(0).normal(2.0, 1.0, size=(16, 3)).astype("float32")
        wrapper(x, training=True)
        self.assertGreater(np.abs(numpy(bn.moving_mean)).max(), 0.0)
        np.testing.assert_array_equal(numpy(bn.gamma), 1.0)

    def test_inner_dropout_masks_still_vary(self):
        lstm = layers.LSTM(4, dropout=0.5, recurrent_dropout=0.5, seed=1)
        wrapper = noisylayers.WeightNoise(lstm, noise=noise.Gaussian(0.0))
        x = np.ones((2, 5, 3), "float32")
        wrapper(x)
        cell_state = lstm.cell.seed_generator.state
        before = numpy(cell_state.value).copy()
        a = numpy(wrapper(x, training=True))
        b = numpy(wrapper(x, training=True))
        self.assertFalse(np.array_equal(numpy(cell_state.value), before))
        self.assertFalse(np.allclose(a, b))

    def test_inner_dropout_masks_vary_under_fit(self):
        lstm = layers.LSTM(4, dropout=0.5, seed=1)
        model = keras.Sequential(
            [keras.Input((5, 3)), noisylayers.WeightNoise(lstm, noise=noise.Gaussian(0.0))]
        )
        model.compile("sgd", "mse")
        before = numpy(lstm.cell.seed_generator.state.value).copy()
        x = np.ones((8, 5, 3), "float32")
        model.fit(x, np.zeros((8, 4)), epochs=1, batch_size=4, verbose=0)
        self.assertFalse(np.array_equal(numpy(lstm.cell.seed_generator.state.value), before))

    def test_losses_counted_once(self):
        x = np.ones((4, 3), "float32")
        dense = layers.Dense(
            2, kernel_regularizer="l2", activity_regularizer="l2"
        )
        wrapper = noisylayers.WeightNoise(dense)
        wrapper(x, training=True)
        self.assertLen(wrapper.losses, 2)
        model = keras.Sequential([keras.Input((3,)), wrapper])
        model(x, training=True)
        self.assertLen(model.losses, 2)

    def test_add_loss_sees_the_noisy_weights_once(self):
        @keras.saving.register_keras_serializable(package="noisylayers_tests")
        class KernelSum(layers.Layer):
            def build(self, input_shape):
                self.kernel = self.add_weight(
                    shape=(input_shape[-1], 2), initializer="ones", name="kernel"
                )

            def call(self, x):
                self.add_loss(ops.sum(self.kernel))
                return ops.matmul(x, self.kernel)

        inner = KernelSum()
        wrapper = noisylayers.WeightNoise(inner, noise=noise.Gaussian(0.5), seed=1)
        x = np.ones((1, 3), "float32")
        wrapper(x)
        state = numpy(wrapper.seed_generator.state.value).copy()
        wrapper(x, training=True)
        self.assertLen(wrapper.losses, 1)
        (noisy_kernel,) = draw_like_call(wrapper, state)
        self.assertAllClose(wrapper.losses[0], noisy_kernel.sum(), rtol=1e-5)
        self.assertNotAllClose(wrapper.losses[0], 6.0)

    def test_losses_collected_by_an_outer_stateless_scope(self):
        dense = layers.Dense(2, activity_regularizer="l2")
        wrapper = noisylayers.WeightNoise(dense)
        x = np.ones((4, 3), "float32")
        wrapper(x)
        _, _, losses = wrapper.stateless_call(
            [v.value for v in wrapper.trainable_variables],
            [v.value for v in wrapper.non_trainable_variables],
            x,
            training=True,
            return_losses=True,
        )
        self.assertLen(losses, 1)

    @parameterized.named_parameters(
        ("dense", lambda: layers.Dense(3, activity_regularizer="l2"), (4, 5)),
        ("conv2d", lambda: layers.Conv2D(2, 3, activity_regularizer="l2"), (2, 5, 5, 1)),
    )
    def test_activity_regularizer_loss_with_every_estimator(self, make, shape):
        # Regression: Flipout and local reparameterization compute the
        # linear map themselves, and dropped the wrapped layer's activity
        # loss. With the noise disabled every estimator computes the plain
        # layer's outputs, so each adds the plain layer's loss, once.
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        plain = make()
        plain(x)
        expected = numpy(plain.losses[0])
        for estimator in ("shared", "flipout", "local_reparameterization"):
            inner = make()
            inner.build(shape)
            inner.set_weights(plain.get_weights())
            wrapper = noisylayers.WeightNoise(inner, estimator=estimator)
            wrapper.enabled = False
            wrapper(x, training=True)
            self.assertLen(wrapper.losses, 1, msg=estimator)
            self.assertAllClose(wrapper.losses[0], expected, rtol=1e-5, msg=estimator)
            model = keras.Sequential([keras.Input(shape[1:]), wrapper])
            model(x, training=True)
            self.assertLen(model.losses, 1, msg=estimator)
            # Inside a stateless scope (the JAX trainer's) too.
            _, _, losses = wrapper.stateless_call(
                [v.value for v in wrapper.trainable_variables],
                [v.value for v in wrapper.non_trainable_variables],
                x,
                training=True,
                return_losses=True,
            )
            self.assertLen(losses, 1, msg=estimator)
            self.assertAllClose(losses[0], expected, rtol=1e-5, msg=estimator)
            # Inference adds it too, as a plain layer does.
            wrapper(x, training=False)
            self.assertLen(wrapper.losses, 1, msg=estimator)

    def test_summary_expand_nested_shows_the_wrapped_layer(self):
        model = keras.Sequential(
            [
                keras.Input((4,)),
                noisylayers.WeightNoise(layers.Dense(3, name="inner_dense"), name="noisy"),
            ]
        )
        lines = []
        model.summary(expand_nested=True, print_fn=lines.append)
        expanded = "\n".join(lines)
        self.assertIn("noisy (WeightNoise)", expanded)
        (row,) = [line for line in expanded.splitlines() if "inner_dense" in line]
        self.assertIn("└ inner_dense (Dense)", row)
        self.assertIn("15", row)  # its 4 * 3 + 3 parameters
        lines.clear()
        model.summary(print_fn=lines.append)
        self.assertNotIn("inner_dense", "\n".join(lines))


class WeightNoiseToggleTest(NoiseLayerTestCase):
    def _model(self):
        keras.utils.set_random_seed(0)
        wrapper = noisylayers.WeightNoise(layers.Dense(1), noise=noise.Gaussian(0.5), seed=3)
        model = keras.Sequential([keras.Input((8,)), wrapper])
        # A zero learning rate keeps the weights fixed, so every difference in
        # the training loss comes from the noise.
        model.compile(keras.optimizers.SGD(0.0), "mse")
        return model, wrapper

    def _fit_loss(self, model, x, y):
        return model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0).history["loss"][0]

    def test_enabled_and_scale_take_effect_after_compile(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 8)).astype("float32")
        y = rng.normal(size=(64, 1)).astype("float32")
        model, wrapper = self._model()
        clean = model.evaluate(x, y, verbose=0)
        noisy = self._fit_loss(model, x, y)
        self.assertGreater(noisy, clean * 1.2)

        wrapper.enabled = False
        self.assertFalse(wrapper.enabled)
        self.assertAllClose(self._fit_loss(model, x, y), clean, rtol=1e-5)

        wrapper.enabled = True
        wrapper.scale = 0.0
        self.assertAllClose(self._fit_loss(model, x, y), clean, rtol=1e-5)

        wrapper.scale = 4.0
        self.assertEqual(wrapper.scale, 4.0)
        self.assertGreater(self._fit_loss(model, x, y), noisy)

    def test_enabled_and_scale_are_saved_weights(self):
        wrapper = noisylayers.WeightNoise(layers.Dense(2))
        wrapper.build((1, 3))
        wrapper.enabled = False
        wrapper.scale = 0.25
        names = [v.name for v in wrapper.non_trainable_weights]
        self.assertEqual(names, ["noise_enabled", "noise_scale"])
        clone = noisylayers.WeightNoise.from_config(wrapper.get_config())
        clone.build((1, 3))
        clone.set_weights(wrapper.get_weights())
        self.assertFalse(clone.enabled)
        self.assertEqual(clone.scale, 0.25)


class WeightNoiseConfigTest(NoiseLayerTestCase):
    def test_config_round_trip(self):
        wrapper = noisylayers.WeightNoise(
            layers.Dense(3, name="inner"),
            noise=noise.DropConnect(0.2),
            targets=["kernel"],
            seed=9,
            name="noisy",
        )
        config = wrapper.get_config()
        self.assertEqual(config["seed"], 9)
        self.assertEqual(config["targets"], ["kernel"])
        self.assertEqual(config["noise"]["class_name"], "DropConnect")
        clone = noisylayers.WeightNoise.from_config(config)
        self.assertEqual(clone.noise, noise.DropConnect(0.2))
        self.assertEqual(clone.targets, ("kernel",))
        self.assertEqual(clone.seed, 9)
        self.assertEqual(clone.name, "noisy")
        self.assertEqual(clone.layer.name, "inner")
        self.assertEqual(clone.get_config(), config)

    def test_default_noise_is_documented_gaussian(self):
        wrapper = noisylayers.WeightNoise(layers.Dense(2))
        self.assertEqual(wrapper.noise, noise.Gaussian(0.01))

    @parameterized.named_parameters(
        ("alias", "multiplicative_gaussian", noise.MultiplicativeGaussian()),
        ("object", noise.Gaussian(0.2), noise.Gaussian(0.2)),
        ("dict", {"class_name": "DropConnect", "config": {"rate": 0.1}}, noise.DropConnect(0.1)),
    )
    def test_noise_argument_forms(self, identifier, expected):
        wrapper = noisylayers.WeightNoise(layers.Dense(2), noise=identifier)
        self.assertEqual(wrapper.noise, expected)


class WeightNoiseErrorsTest(NoiseLayerTestCase):
    def test_not_a_layer(self):
        with pytest.raises(ValueError, match=r"Received: layer="):
            noisylayers.WeightNoise("dense")

    def test_a_noisy_layer_cannot_be_wrapped(self):
        # Regression: the second noise silently stacked on the first.
        wrapped = noisylayers.WeightNoise(layers.Dense(2), name="wn")
        variant = noisylayers.NoisyDense(2, name="nd")
        block = keras.Sequential([noisylayers.NoisyDense(2, name="inside")], name="block")
        for layer, message in [
            (wrapped, r"'wn' in WeightNoise: it is already a noisy layer \(WeightNoise"),
            (variant, r"'nd' in WeightNoise: it is already a noisy layer \(NoisyDense"),
            (block, r"'inside' \(inside layer 'block'\)"),
        ]:
            with pytest.raises(ValueError, match=message):
                noisylayers.WeightNoise(layer)
        with pytest.raises(ValueError, match="wrap the plain Keras layer"):
            noisylayers.WeightNoise(variant)

    def test_layer_with_nothing_to_perturb(self):
        with pytest.raises(ValueError, match=r"'flatten'.*no weights to perturb"):
            noisylayers.WeightNoise(layers.Flatten(name="flatten"))
        # Known only once built: BatchNormalization has weights, none of them
        # a default target.
        wrapper = noisylayers.WeightNoise(layers.BatchNormalization(name="bn"))
        with pytest.raises(ValueError, match=r"'bn'.*no weights to perturb"):
            wrapper(np.ones((2, 3), "float32"))

    def test_unknown_target_name(self):
        dense = layers.Dense(2, name="d")
        dense.build((1, 3))
        with pytest.raises(ValueError, match=r"'d' does not have: 'kernal'.*Received: targets=\['kernal'\]"):
            noisylayers.WeightNoise(dense, targets=["kernal"])
        wrapper = noisylayers.WeightNoise(layers.Dense(2, name="e"), targets=["gamma"])
        with pytest.raises(ValueError, match=r"'e' does not have: 'gamma'"):
            wrapper(np.ones((1, 3), "float32"))

    @parameterized.named_parameters(
        ("number", 3, TypeError),
        ("mixed", ["kernel", 1], TypeError),
        ("empty", [], ValueError),
    )
    def test_bad_targets(self, targets, error):
        with pytest.raises(error, match=r"Received: targets="):
            noisylayers.WeightNoise(layers.Dense(2), targets=targets)

    def test_lora_enabled_layer(self):
        dense = layers.Dense(4, name="lora_dense")
        dense.build((1, 3))
        dense.enable_lora(2)
        with pytest.raises(ValueError, match=r"'lora_dense'.*LoRA is enabled"):
            noisylayers.WeightNoise(dense)

    def test_quantized_layer(self):
        dense = layers.Dense(4, name="q_dense")
        dense.build((1, 8))
        dense.quantize("int8")
        with pytest.raises(ValueError, match=r"'q_dense'.*quantized"):
            noisylayers.WeightNoise(dense)

    @parameterized.named_parameters(
        ("negative", "stddev", -1, ValueError, r"Received: stddev=-1"),
        ("string", "stddev", "big", TypeError, r"Received: stddev='big'"),
        ("nan", "stddev", float("nan"), ValueError, r"Received: stddev=nan"),
        ("bool", "stddev", True, TypeError, r"Received: stddev=True"),
        # Larger noise would overflow float32 sums (tests/test_properties.py).
        ("huge", "stddev", 1e7, ValueError, r"\[0, 1e\+06\]. Received: stddev=1"),
    )
    def test_bad_gaussian(self, name, value, error, message):
        for cls in (noise.Gaussian, noise.MultiplicativeGaussian):
            with pytest.raises(error, match=message):
                cls(**{name: value})

    @parameterized.named_parameters(
        ("one", 1.0, ValueError),
        ("negative", -0.1, ValueError),
        ("string", "half", TypeError),
    )
    def test_bad_dropconnect_rate(self, rate, error):
        with pytest.raises(error, match=r"Received: rate="):
            noise.DropConnect(rate)

    def test_unknown_alias(self):
        with pytest.raises(ValueError, match=r"Unknown noise kind.*Received: noise='gausian'"):
            noisylayers.WeightNoise(layers.Dense(2), noise="gausian")
        with pytest.raises(TypeError, match=r"Received: noise=0.1"):
            noisylayers.WeightNoise(layers.Dense(2), noise=0.1)

    @parameterized.named_parameters(
        ("float", 1.5, TypeError),
        ("string", "1", TypeError),
        ("negative", -3, ValueError),
    )
    def test_bad_seed(self, seed, error):
        with pytest.raises(error, match=r"Received: seed="):
            noisylayers.WeightNoise(layers.Dense(2), seed=seed)

    def test_bad_enabled_and_scale(self):
        wrapper = noisylayers.WeightNoise(layers.Dense(2))
        with pytest.raises(TypeError, match=r"Received: enabled='yes'"):
            wrapper.enabled = "yes"
        with pytest.raises(ValueError, match=r"Received: scale=-1"):
            wrapper.scale = -1
        with pytest.raises(TypeError, match=r"Received: scale=None"):
            wrapper.scale = None
        with pytest.raises(ValueError, match=r"Received: scale=inf"):
            wrapper.scale = float("inf")
        self.assertTrue(wrapper.enabled)
        self.assertEqual(wrapper.scale, 1.0)
