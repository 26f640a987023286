"""The statistics of the estimators ("shared", "flipout", "local_reparameterization").

Every statistical check states its number of draws and its tolerance in
standard errors (SE). Everything is seeded, and the tolerances are at least
4 SE, so that the tests are not flaky:

- The mean of N draws of an output of variance V has SE sqrt(V / N) (also
  for Flipout, whose draws within a call are uncorrelated, though not
  independent).
- The sample variance of N independent Gaussian draws has a relative SE of
  sqrt(2 / (N - 1)). This is the whole error for "shared" (one draw per
  call) and "local_reparameterization" (independent draws per row).
- Flipout draws one perturbation per call and decorrelates the rows of the
  call with random signs, so the variance of the rows of one call is that
  call's `V_c = sum_m v_m eps_m^2` (one term per perturbed weight, `v_m` its
  share of the output variance, `eps_m` standard normal), which varies from
  call to call with relative variance `b = 2 sum v_m^2 / (sum v_m)^2`. Over
  C calls of R rows (N = C R draws) the relative SE of the sample variance
  is then about sqrt(2 / (N - 1) + b / C) (given the perturbation, a row is
  a Rademacher sum, whose kurtosis is at most a Gaussian's).

Many calls are made through `model.predict` on a model whose only layer
calls the noisy layer with `training=True`: each predict batch is one
training call with fresh noise, and the compiled loop is fast on every
backend.
"""

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras import layers
from keras import ops

import noisylayers
from noisylayers import noise
from noisylayers.layers import estimators
from noisylayers.layers.estimators.flipout import rademacher
from tests.noise_testing import NoiseLayerTestCase

STDDEV = 0.3
TOLERANCE_SE = 5.0


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _signed(rng, shape, low=0.5, high=1.5):
    """Values of magnitude in [low, high] and random sign (no tiny weights)."""
    magnitude = rng.uniform(low, high, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    return (magnitude * sign).astype("float32")


class _AlwaysTraining(layers.Layer):
    """Calls the noisy layer in training mode, also from `predict`."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x):
        return self.inner(x, training=True)


def _training_outputs(layer, row, calls, rows):
    """Outputs of `calls` training calls on `rows` copies of `row`.

    Returns an array of shape `(calls, rows) + output_shape`.
    """
    model = keras.Sequential([keras.Input(row.shape[1:]), _AlwaysTraining(layer)])
    x = np.repeat(row, calls * rows, axis=0)
    y = model.predict(x, batch_size=rows, verbose=0)
    return y.reshape((calls, rows) + y.shape[1:])


def _relative_se_of_variance(draws, terms=None, calls=None):
    """Relative SE of a sample variance (see the module docstring).

    Args:
        draws: The number of draws N.
        terms: For Flipout, the per-weight variances `v_m` (last axis) of each
            output; `None` for independent draws.
        calls: For Flipout, the number of calls C.
    """
    se2 = 2.0 / (draws - 1)
    if terms is not None:
        b = 2.0 * np.sum(terms**2, axis=-1) / np.sum(terms, axis=-1) ** 2
        se2 = se2 + b / calls
    return np.sqrt(se2)


class MomentsTestCase(NoiseLayerTestCase):
    def assert_moments(self, draws, mean, variance, relative_se, what=""):
        """Per-output mean and variance of `draws` (axis 0) within 5 SE.

        Args:
            draws: Array `(N,) + output_shape`.
            mean, variance: The expected per-output moments.
            relative_se: Relative SE of the sample variance (per output or
                a scalar).
        """
        n = draws.shape[0]
        sample_mean = draws.mean(axis=0)
        sample_var = draws.var(axis=0, ddof=1)
        mean_error = np.abs(sample_mean - mean) / np.sqrt(variance / n)
        var_error = np.abs(sample_var / variance - 1.0) / relative_se
        self.assertLess(
            mean_error.max(), TOLERANCE_SE, f"{what}: means {sample_mean} vs {mean}"
        )
        self.assertLess(
            var_error.max(),
            TOLERANCE_SE,
            f"{what}: variances {sample_var} vs {variance} "
            f"(relative SE {relative_se})",
        )


class DenseMomentsTest(MomentsTestCase):
    """Per-output mean and variance of a NoisyDense's training outputs."""

    D = 32
    UNITS = 6

    def _setup(self, kind, estimator, x_scale):
        rng = np.random.default_rng(0)
        x = _signed(rng, (1, self.D)) * x_scale
        kernel = _signed(rng, (self.D, self.UNITS))
        bias = _signed(rng, (self.UNITS,))
        layer = noisylayers.NoisyDense(
            self.UNITS, noise=kind, estimator=estimator, seed=1
        )
        layer.build((None, self.D))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        return layer, x, kernel, bias

    def _draws(self, layer, x, estimator):
        """(draws, calls): one row per call for "shared" (identical rows of
        one call are identical), one call for local reparameterization."""
        if estimator == "shared":
            # 2000 calls of 1 row: N = 2000 draws.
            calls, rows = 2000, 1
        elif estimator == "flipout":
            # 1000 calls of 64 rows: N = 64000 draws.
            calls, rows = 1000, 64
        else:
            # One call of 20000 independent rows: N = 20000 draws.
            calls, rows = 1, 20000
        out = _training_outputs(layer, x, calls, rows)
        return out.reshape((calls * rows, self.UNITS)), calls

    @parameterized.named_parameters(
        ("shared", "shared"),
        ("flipout", "flipout"),
        ("local_reparameterization", "local_reparameterization"),
    )
    def test_additive_gaussian(self, estimator):
        # sum(x^2) = 3.4, so the bias' noise is a fifth of the variance
        # s^2 (sum(x^2) + 1).
        layer, x, kernel, bias = self._setup(
            noise.Gaussian(STDDEV), estimator, x_scale=0.3
        )
        draws, calls = self._draws(layer, x, estimator)
        mean = x[0] @ kernel + bias
        variance = STDDEV**2 * (np.sum(x**2) + 1.0) * np.ones(self.UNITS)
        terms = None
        if estimator == "flipout":
            # Per-weight shares: s^2 x_m^2 for the kernel, s^2 for the bias.
            terms = STDDEV**2 * np.append(x[0] ** 2, 1.0)
        relative_se = _relative_se_of_variance(len(draws), terms, calls)
        # Tolerance: 5 SE. Relative SE of the variance: 3.2% (shared, N =
        # 2000), 1.4% (flipout, N = 64000 in 1000 calls), 1.0% (local
        # reparameterization, N = 20000).
        self.assertLess(np.max(relative_se), 0.035)
        self.assert_moments(draws, mean, variance, relative_se, estimator)
        if estimator == "shared":
            # The outputs of a call are independent (independent columns of
            # the perturbation) and have the same variance: pooled over the
            # 6 outputs, N = 12000 draws, relative SE 1.3%, tolerance 5 SE.
            pooled = np.var(draws - mean, ddof=1) / variance[0]
            se = _relative_se_of_variance(draws.size)
            self.assertLess(abs(pooled - 1.0), TOLERANCE_SE * se)

    @parameterized.named_parameters(
        ("shared", "shared"),
        ("flipout", "flipout"),
        ("local_reparameterization", "local_reparameterization"),
    )
    def test_multiplicative_gaussian(self, estimator):
        layer, x, kernel, bias = self._setup(
            noise.MultiplicativeGaussian(STDDEV), estimator, x_scale=0.3
        )
        draws, calls = self._draws(layer, x, estimator)
        mean = x[0] @ kernel + bias
        # s^2 (x^2 @ W^2 + b^2).
        variance = STDDEV**2 * ((x[0] ** 2) @ kernel**2 + bias**2)
        terms = None
        if estimator == "flipout":
            terms = STDDEV**2 * np.concatenate(
                [(x[0] ** 2)[:, None] * kernel**2, bias[None, :] ** 2]
            ).T
        relative_se = _relative_se_of_variance(len(draws), terms, calls)
        # Tolerance: 5 SE (draws as in the additive test; Flipout's relative
        # SE is per output, at most 1.7% here).
        self.assertLess(np.max(relative_se), 0.035)
        self.assert_moments(draws, mean, variance, relative_se, estimator)


class Conv2DMomentsTest(MomentsTestCase):
    @parameterized.named_parameters(
        ("flipout", "flipout"),
        ("local_reparameterization", "local_reparameterization"),
    )
    def test_additive_gaussian_per_position(self, estimator):
        rng = np.random.default_rng(1)
        filters, size, channels = 2, 3, 4
        x = _signed(rng, (1, 5, 5, channels)) * 0.3
        kernel = _signed(rng, (size, size, channels, filters))
        bias = _signed(rng, (filters,))
        layer = noisylayers.NoisyConv2D(
            filters, size, padding="valid", noise=noise.Gaussian(STDDEV),
            estimator=estimator, seed=2,
        )
        layer.build((None, 5, 5, channels))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        if estimator == "flipout":
            # 1000 calls of 16 rows: N = 16000 draws per output position.
            calls, rows = 1000, 16
        else:
            # One call of 10000 independent rows: N = 10000 draws.
            calls, rows = 1, 10000
        out = _training_outputs(layer, x, calls, rows)
        draws = out.reshape((calls * rows, 3, 3, filters))

        # The patch of each output position (valid padding, stride 1).
        patches = np.stack(
            [
                np.stack([x[0, i : i + size, j : j + size, :] for j in range(3)])
                for i in range(3)
            ]
        )  # (3, 3, size, size, channels)
        mean = np.einsum("ijhwc,hwcf->ijf", patches, kernel) + bias
        patch_sq = np.sum(patches**2, axis=(2, 3, 4))  # (3, 3)
        # s^2 (sum over the patch of x^2 + 1), the same for every filter.
        variance = STDDEV**2 * (patch_sq + 1.0)[..., None] * np.ones(filters)
        terms = None
        if estimator == "flipout":
            flat = patches.reshape(3, 3, -1) ** 2
            terms = STDDEV**2 * np.concatenate(
                [flat, np.ones((3, 3, 1))], axis=-1
            )[:, :, None, :] * np.ones((1, 1, filters, 1))
        relative_se = _relative_se_of_variance(len(draws), terms, calls)
        # Tolerance: 5 SE; relative SE of the variance at most 2% here.
        self.assertLess(np.max(relative_se), 0.02)
        self.assert_moments(draws, mean, variance, relative_se, estimator)


class DecorrelationTest(NoiseLayerTestCase):
    def test_identical_rows(self):
        rng = np.random.default_rng(3)
        x = np.repeat(rng.normal(size=(1, 5)).astype("float32"), 8, axis=0)
        for estimator in ("shared", "flipout", "local_reparameterization"):
            layer = noisylayers.NoisyDense(
                4, noise=noise.Gaussian(0.5), estimator=estimator, seed=4
            )
            out = numpy(layer(x, training=True))
            self.assertFalse(np.allclose(out, numpy(layer(x))), estimator)
            if estimator == "shared":
                # One weight sample for the whole call (identical up to the
                # matmul's rounding).
                np.testing.assert_allclose(
                    out, np.broadcast_to(out[0], out.shape), rtol=1e-6, atol=1e-6
                )
            else:
                for i in range(1, len(out)):
                    self.assertFalse(np.allclose(out[i], out[0]), estimator)

    def test_rows_of_a_call_are_uncorrelated(self):
        # The noise of row 0 and row 1 of a call (same input) over 500 calls
        # and 8 outputs: n = 4000 pairs. Flipout and local
        # reparameterization: correlation 0, with SE 1/sqrt(n) = 0.016;
        # tolerance 5 SE = 0.08. (Shared: 1, see `test_identical_rows`.)
        rng = np.random.default_rng(5)
        x = rng.normal(size=(1, 6)).astype("float32")
        for estimator in ("flipout", "local_reparameterization"):
            layer = noisylayers.NoisyDense(
                8, noise=noise.Gaussian(0.5), estimator=estimator, seed=6
            )
            layer.build((None, 6))
            clean = numpy(layer(x))
            out = _training_outputs(layer, x, calls=500, rows=2) - clean
            r = np.corrcoef(out[:, 0].ravel(), out[:, 1].ravel())[0, 1]
            self.assertLess(abs(r), 5 / np.sqrt(4000), estimator)


def _kernel_gradient_draws(layer, x, y, draws):
    """`draws` gradients of mean((layer(x) - y)^2) w.r.t. the kernel.

    Each with a fresh noise draw (the seed generator advances between them).
    """
    backend = keras.backend.backend()
    kernel_index = [id(v) for v in layer.trainable_variables].index(id(layer.kernel))
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def grad():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(layer(x, training=True) - y))
            return tape.gradient(loss, layer.kernel.value)

        return np.stack([grad().numpy() for _ in range(draws)])
    if backend == "jax":
        import jax

        def loss(trainable, non_trainable):
            outputs, non_trainable = layer.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return ops.mean(ops.square(outputs - y)), non_trainable

        grad = jax.jit(jax.grad(loss, has_aux=True))
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        result = []
        for _ in range(draws):
            grads, non_trainable = grad(trainable, non_trainable)
            result.append(np.asarray(grads[kernel_index]))
        # Keep the advanced seed state, as a training step would.
        for variable, value in zip(layer.non_trainable_variables, non_trainable):
            variable.assign(value)
        return np.stack(result)
    pytest.skip(f"No gradient helper for backend {backend}.")


class GradientVarianceTest(NoiseLayerTestCase):
    """Flipout's gradient noise falls like 1/batch size; shared's does not."""

    SIZES = (4, 16, 64, 256)
    DRAWS = 100

    def _slope(self, estimator):
        rng = np.random.default_rng(7)
        d = 4
        # A fixed linear-regression problem. The inputs of batch size n are
        # n/4 copies of the same 4 rows, so that X^T X / n is the same for
        # every n: the noise alone decides how the variance scales.
        block = rng.normal(size=(4, d)).astype("float32")
        targets = (block @ rng.normal(size=(d, 1)) + 0.1).astype("float32")
        layer = noisylayers.NoisyDense(
            1, noise=noise.Gaussian(0.1), estimator=estimator, seed=8
        )
        layer.build((None, d))
        layer.kernel.assign(rng.normal(size=(d, 1)).astype("float32"))
        variances = []
        for n in self.SIZES:
            x = np.tile(block, (n // 4, 1))
            y = np.tile(targets, (n // 4, 1))
            grads = _kernel_gradient_draws(layer, x, y, self.DRAWS)
            self.assertTrue(np.all(np.isfinite(grads)))
            # Total variance over the noise draws, summed over the kernel.
            variances.append(grads.reshape(self.DRAWS, -1).var(axis=0, ddof=1).sum())
        slope = np.polyfit(np.log(self.SIZES), np.log(variances), 1)[0]
        return slope, variances

    # 100 draws per batch size: each log-variance has an SE of about
    # sqrt(2/99) = 0.14, so the fitted slope (4 sizes from 4 to 256) has an
    # SE of about 0.14 / sqrt(sum((log n - mean)^2)) = 0.05. Flipout's
    # expected slope is -1 (uncorrelated per-example noise) and the accepted
    # band [-1.35, -0.65] is 7 SE wide on each side; shared's is 0 (one draw
    # for the whole batch) and the bound -0.35 is 7 SE away.
    def test_flipout_variance_falls_like_one_over_batch_size(self):
        slope, variances = self._slope("flipout")
        self.assertBetween(slope, -1.35, -0.65, variances)

    def test_shared_variance_does_not_fall(self):
        slope, variances = self._slope("shared")
        self.assertGreater(slope, -0.35, variances)

    def assertBetween(self, value, low, high, extra=None):
        self.assertGreaterEqual(value, low, extra)
        self.assertLessEqual(value, high, extra)


class TFPFlipoutCrossCheckTest(MomentsTestCase):
    def test_matches_tfp_dense_flipout(self):
        if keras.backend.backend() != "tensorflow":
            pytest.skip(
                "tfp.layers.DenseFlipout is a tf_keras layer: the cross-check "
                "runs on the TensorFlow backend only"
            )
        import tensorflow as tf
        import tensorflow_probability as tfp
        import tf_keras  # noqa: F401  (tfp.layers runs on tf_keras)

        tfd = tfp.distributions
        rng = np.random.default_rng(9)
        d, units = 32, 4
        x = _signed(rng, (1, d)) * 0.35
        kernel = _signed(rng, (d, units))
        bias = _signed(rng, (units,))

        def kernel_posterior(dtype, shape, name, trainable, add_variable_fn):
            return tfd.Independent(
                tfd.Normal(loc=tf.constant(kernel), scale=STDDEV),
                reinterpreted_batch_ndims=2,
            )

        def bias_posterior(dtype, shape, name, trainable, add_variable_fn):
            return tfd.Independent(
                tfd.Deterministic(loc=tf.constant(bias)), reinterpreted_batch_ndims=1
            )

        tf.random.set_seed(0)
        reference = tfp.layers.DenseFlipout(
            units,
            kernel_posterior_fn=kernel_posterior,
            kernel_prior_fn=None,
            kernel_divergence_fn=None,
            bias_posterior_fn=bias_posterior,
            bias_divergence_fn=None,
        )
        calls, rows = 500, 64
        batch = tf.constant(np.repeat(x, rows, axis=0))
        tfp_draws = np.concatenate([reference(batch).numpy() for _ in range(calls)])

        layer = noisylayers.NoisyDense(
            units, estimator="flipout", noise=noise.Gaussian(STDDEV),
            targets=["kernel"], seed=10,
        )
        layer.build((None, d))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        ours = _training_outputs(layer, x, calls, rows).reshape(calls * rows, units)

        # Both: mean x W + b, variance s^2 sum(x^2) (a deterministic bias).
        # 500 calls of 64 rows, N = 32000 draws per output; with sum(x^2) =
        # 5.2 over 32 inputs the relative SE of each variance is
        # sqrt(2/N + b/500) = 1.5%. Tolerance 5 SE against the analytic
        # values, and 5 SE of the difference (sqrt(2) SE) between the two.
        mean = x[0] @ kernel + bias
        variance = STDDEV**2 * np.sum(x**2) * np.ones(units)
        terms = np.broadcast_to(STDDEV**2 * x[0] ** 2, (units, d))
        relative_se = _relative_se_of_variance(calls * rows, terms, calls)
        self.assertLess(np.max(relative_se), 0.02)
        self.assert_moments(tfp_draws, mean, variance, relative_se, "tfp")
        self.assert_moments(ours, mean, variance, relative_se, "noisylayers")
        n = calls * rows
        mean_gap = np.abs(ours.mean(0) - tfp_draws.mean(0)) / np.sqrt(2 * variance / n)
        self.assertLess(mean_gap.max(), TOLERANCE_SE)
        var_gap = np.abs(ours.var(0, ddof=1) / tfp_draws.var(0, ddof=1) - 1.0)
        self.assertLess(np.max(var_gap / (np.sqrt(2) * relative_se)), TOLERANCE_SE)


class LSTMPerturbationTest(NoiseLayerTestCase):
    """One perturbation per call, the same at every time step."""

    UNITS = 3

    def _layer_and_inputs(self, estimator, batch):
        rng = np.random.default_rng(11)
        x = rng.normal(size=(batch, 6, 2)).astype("float32")
        layer = noisylayers.NoisyLSTM(
            self.UNITS,
            return_sequences=True,
            noise=noise.Gaussian(0.3),
            estimator=estimator,
            seed=12,
            bias_initializer="random_normal",
        )
        layer.build(x.shape)
        return layer, x

    def _plain(self, weights, x):
        """A plain LSTM with `weights` (kernel, recurrent kernel, bias) on x."""
        plain = layers.LSTM(self.UNITS, return_sequences=True, unroll=True)
        plain.build(x.shape)
        plain.set_weights([numpy(w) for w in weights])
        return numpy(plain(x))

    def test_shared_is_a_plain_lstm_with_one_noisy_weight_sample(self):
        layer, x = self._layer_and_inputs("shared", batch=2)
        state = numpy(layer.seed_generator.state.value).copy()
        out = numpy(layer(x, training=True))
        second = numpy(layer(x, training=True))
        layer.seed_generator.state.assign(state)
        pairs = layer.noisy_weights(layer.seed_generator)
        self.assertEqual(
            [v.name for v, _ in pairs], ["kernel", "recurrent_kernel", "bias"]
        )
        noisy = [value for _, value in pairs]
        # Every time step used these weights.
        np.testing.assert_allclose(out, self._plain(noisy, x), atol=1e-5)
        clean = [v.value for v, _ in pairs]
        self.assertFalse(np.allclose(out, self._plain(clean, x), atol=1e-3))
        # A new draw at every call.
        self.assertFalse(np.allclose(second, out, atol=1e-3))

    def test_flipout_is_a_plain_lstm_with_per_example_weights(self):
        layer, x = self._layer_and_inputs("flipout", batch=3)
        batch, input_dim = x.shape[0], x.shape[-1]
        units = self.UNITS
        state = numpy(layer.seed_generator.state.value).copy()
        out = numpy(layer(x, training=True))
        second = numpy(layer(x, training=True))

        # What the training call drew, in its order: the perturbations of
        # the targets, then the signs s_x, r_x, s_h, r_h.
        layer.seed_generator.state.assign(state)
        targets = layer.target_variables
        self.assertEqual(
            [v.name for v in targets], ["kernel", "recurrent_kernel", "bias"]
        )
        values = [v.value for v in targets]
        d_kernel, d_recurrent, d_bias = (
            numpy(p)
            for p in layer.noise.perturbations(
                values, layer.seed_generator, [None] * len(values)
            )
        )
        seed = layer.seed_generator
        s_x = numpy(rademacher((batch, input_dim), "float32", seed))
        r_x = numpy(rademacher((batch, 4 * units), "float32", seed))
        s_h = numpy(rademacher((batch, units), "float32", seed))
        r_h = numpy(rademacher((batch, 4 * units), "float32", seed))
        kernel, recurrent, bias = (numpy(v) for v in values)
        for i in range(batch):
            effective = [
                kernel + s_x[i][:, None] * d_kernel * r_x[i][None, :],
                recurrent + s_h[i][:, None] * d_recurrent * r_h[i][None, :],
                bias + d_bias * r_x[i],
            ]
            # Example i ran, at every step, the LSTM with its own weights.
            np.testing.assert_allclose(
                out[i : i + 1], self._plain(effective, x[i : i + 1]), atol=1e-5,
                err_msg=f"example {i}",
            )
        self.assertFalse(np.allclose(second, out, atol=1e-3))
        # The examples got different weights: with identical inputs, the
        # outputs differ.
        same = np.repeat(x[:1], 2, axis=0)
        rows = numpy(layer(same, training=True))
        self.assertFalse(np.allclose(rows[0], rows[1], atol=1e-3))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_reference(x, kernel, recurrent, bias, x_masks, h_masks):
    """A NumPy LSTM of one example `x` (time, features), one dropout mask
    per gate on the inputs (`x_masks[g]`) and on the state (`h_masks[g]`),
    as Keras' `implementation=1`. Returns the outputs at every step."""
    units = recurrent.shape[0]
    h, c, outputs = np.zeros(units), np.zeros(units), []
    for x_t in x:
        z = [
            (x_t * x_masks[g]) @ kernel[:, g * units : (g + 1) * units]
            + (h * h_masks[g]) @ recurrent[:, g * units : (g + 1) * units]
            + bias[g * units : (g + 1) * units]
            for g in range(4)
        ]
        c = _sigmoid(z[1]) * c + _sigmoid(z[0]) * np.tanh(z[2])
        h = _sigmoid(z[3]) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs)


class LSTMFlipoutDropoutTest(NoiseLayerTestCase):
    """Flipout with the LSTM's own dropout (regression: `recurrent_dropout`
    and `dropout` with `implementation=1` raised on the first training
    call, the Flipout step knowing only Keras' `implementation=2`)."""

    @parameterized.named_parameters(
        ("recurrent_dropout", {"dropout": 0.3, "recurrent_dropout": 0.4}),
        ("dropout_implementation_1", {"dropout": 0.3, "implementation": 1}),
        ("dropout_implementation_2", {"dropout": 0.3, "implementation": 2}),
    )
    def test_without_noise_it_is_the_keras_lstm_with_its_dropout(self, config):
        # Disabled noise adds exact zeros: a training call is then the
        # plain LSTM's, dropout masks included (same seed, same masks).
        rng = np.random.default_rng(3)
        x = rng.normal(size=(3, 5, 2)).astype("float32")
        # Keras' own cuDNN attempt fails with `implementation=1` and
        # `dropout` alone (it expects one input mask, gets four).
        plain = layers.LSTM(
            4, return_sequences=True, seed=7, use_cudnn=False, **config
        )
        plain.build(x.shape)
        inner = layers.LSTM(4, return_sequences=True, seed=7, **config)
        wrapper = noisylayers.WeightNoise(inner, estimator="flipout", seed=0)
        wrapper.build(x.shape)
        inner.set_weights(plain.get_weights())
        wrapper.enabled = False
        expected = numpy(plain(x, training=True))
        np.testing.assert_allclose(
            numpy(wrapper(x, training=True)), expected, atol=1e-6
        )
        self.assertFalse(np.allclose(expected, numpy(plain(x, training=False))))

    def test_flipout_uses_one_dropout_mask_per_gate(self):
        # With `recurrent_dropout` Keras runs `implementation=1`: each gate
        # has its own masks. Example i runs, at every step, the LSTM with
        # its Flipout weights and its masks (redrawn here from the same
        # seed states, in Keras' order: 4 input masks, 4 state masks).
        batch, units, rates = 3, 3, (0.3, 0.4)
        rng = np.random.default_rng(5)
        x = rng.normal(size=(batch, 6, 2)).astype("float32")
        layer = noisylayers.NoisyLSTM(
            units, return_sequences=True, noise=noise.Gaussian(0.3),
            estimator="flipout", seed=12, bias_initializer="random_normal",
            dropout=rates[0], recurrent_dropout=rates[1],
        )
        layer.build(x.shape)
        noise_state = numpy(layer.seed_generator.state.value).copy()
        mask_state = numpy(layer.cell.seed_generator.state.value).copy()
        out = numpy(layer(x, training=True))

        layer.seed_generator.state.assign(noise_state)
        layer.cell.seed_generator.state.assign(mask_state)
        values = [v.value for v in layer.target_variables]
        d_kernel, d_recurrent, d_bias = (
            numpy(p)
            for p in layer.noise.perturbations(
                values, layer.seed_generator, [None] * 3
            )
        )
        seed = layer.seed_generator
        s_x = numpy(rademacher((batch, 2), "float32", seed))
        r_x = numpy(rademacher((batch, 4 * units), "float32", seed))
        s_h = numpy(rademacher((batch, units), "float32", seed))
        r_h = numpy(rademacher((batch, 4 * units), "float32", seed))
        x_masks = [
            numpy(keras.random.dropout(
                ops.ones((batch, 2)), rates[0], seed=layer.cell.seed_generator
            ))
            for _ in range(4)
        ]
        h_masks = [
            numpy(keras.random.dropout(
                ops.ones((batch, units)), rates[1], seed=layer.cell.seed_generator
            ))
            for _ in range(4)
        ]
        self.assertFalse(np.allclose(x_masks[0], x_masks[1]))
        kernel, recurrent, bias = (numpy(v) for v in values)
        for i in range(batch):
            expected = _lstm_reference(
                x[i],
                kernel + s_x[i][:, None] * d_kernel * r_x[i][None, :],
                recurrent + s_h[i][:, None] * d_recurrent * r_h[i][None, :],
                bias + d_bias * r_x[i],
                [m[i] for m in x_masks],
                [m[i] for m in h_masks],
            )
            np.testing.assert_allclose(
                out[i], expected, atol=1e-5, err_msg=f"example {i}"
            )


class EstimatorRegistryTest(NoiseLayerTestCase):
    def test_names_and_lookup(self):
        self.assertEqual(
            estimators.ESTIMATORS,
            ("shared", "flipout", "local_reparameterization"),
        )
        for name in estimators.ESTIMATORS:
            self.assertIsInstance(estimators.get(name), estimators.Estimator)
            self.assertEqual(estimators.get(name).name, name)
        with self.assertRaisesRegex(ValueError, "Received: estimator='bogus'"):
            estimators.get("bogus")


class Conv2DLocalReparameterizationConfigsTest(MomentsTestCase):
    def test_variance_follows_strides_padding_dilation_and_groups(self):
        # The variance of each output is s^2 (sum of x^2 over its receptive
        # field + 1), the receptive field being the one the convolution's
        # configuration gives: computed here with a plain Conv2D of kernel
        # ones on x^2. One call of 20000 independent rows: relative SE of
        # each variance 1.0%, tolerance 5 SE.
        rng = np.random.default_rng(13)
        x = rng.normal(size=(1, 6, 6, 4)).astype("float32")
        configs = [
            {"filters": 4, "kernel_size": 2, "dilation_rate": 2, "groups": 2},
            {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"},
        ]
        for config in configs:
            layer = noisylayers.NoisyConv2D(
                **config, estimator="local_reparameterization",
                noise=noise.Gaussian(STDDEV), bias_initializer="random_normal",
                seed=14,
            )
            layer.build(x.shape)
            plain = layers.Conv2D(**config)
            plain.build(x.shape)
            plain.set_weights(layer.get_weights()[:2])
            ones = layers.Conv2D(**config, use_bias=False, kernel_initializer="ones")
            ones.build(x.shape)
            mean = numpy(plain(x))[0]
            variance = STDDEV**2 * (numpy(ones(np.square(x)))[0] + 1.0)
            draws = numpy(layer(np.repeat(x, 20000, axis=0), training=True))
            self.assert_moments(
                draws, mean, variance, _relative_se_of_variance(20000), str(config)
            )


def test_lstm_flipout_input_products_before_the_loop_match_the_step_by_step_ones(
    monkeypatch,
):
    # The input side of every step is computed for all the steps at once
    # (implementation 2, no input dropout); the per-step path must give the
    # same outputs for the same draws: same weights, same seed, a mask and
    # go_backwards, up to float32 rounding.
    from noisylayers.layers.estimators import flipout

    x = np.random.default_rng(0).normal(size=(8, 7, 5)).astype("float32")
    mask = np.ones((8, 7), bool)
    mask[:3, 5:] = False
    outputs = []
    for hoist in (True, False):
        if not hoist:
            monkeypatch.setattr(flipout, "_can_hoist_inputs", lambda cell: False)
        keras.utils.set_random_seed(0)
        layer = noisylayers.NoisyLSTM(
            6, noise=noise.Gaussian(0.3), estimator="flipout", seed=4,
            go_backwards=True, return_sequences=True,
        )
        outputs.append(keras.ops.convert_to_numpy(layer(x, mask=mask, training=True)))
    assert flipout._can_hoist_inputs(layer.cell) is False  # the patched run
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
    assert np.abs(outputs[0]).max() > 0.1  # not a trivial comparison
