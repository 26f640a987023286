"""Tests of `noisylayers.uncertainty`: the metrics against closed forms and
TFP, and `evaluate` on a small model.

The metrics are NumPy: their checks run on the TensorFlow backend only
(where TFP cross-checks them too); `evaluate` runs on every backend.
"""

import json
import math
import re

import keras
import numpy as np
import pytest
from keras import layers

import noisylayers
from noisylayers import noise
from noisylayers import uncertainty as unc

ON_TF = keras.backend.backend() == "tensorflow"
numpy_only = pytest.mark.skipif(
    not ON_TF, reason="backend-independent NumPy check: runs on TensorFlow only"
)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- entropies -------------------------------------------------------------------


@numpy_only
def test_entropies_closed_forms():
    k = 4
    uniform = np.full((3, 5, k), 1.0 / k)
    for samples, logits in [(uniform, False), (np.zeros((3, 5, k)), True)]:
        np.testing.assert_allclose(unc.predictive_entropy(samples, logits), math.log(k))
        np.testing.assert_allclose(unc.expected_entropy(samples, logits), math.log(k))
        np.testing.assert_allclose(unc.mutual_information(samples, logits), 0.0, atol=1e-12)
    # Two certain samples that disagree: total log 2, aleatoric 0, all
    # of it epistemic.
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(unc.predictive_entropy(disagree), [math.log(2)])
    np.testing.assert_allclose(unc.expected_entropy(disagree), [0.0])
    np.testing.assert_allclose(unc.mutual_information(disagree), [math.log(2)])
    # A binary classifier's one column is the probability of class 1.
    np.testing.assert_allclose(
        unc.predictive_entropy(np.array([[[0.5], [1.0]]])), [math.log(2), 0.0]
    )
    sigmoid = 1 / (1 + math.exp(-4.0))
    np.testing.assert_allclose(
        unc.predictive_probs(np.array([[[0.0]], [[4.0]]]), from_logits=True),
        [[(0.5 + 1 - sigmoid) / 2, (0.5 + sigmoid) / 2]],
    )


@numpy_only
def test_entropy_is_of_the_mean_probabilities_not_of_the_mean_logits():
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.normal(size=(8, 20, 5))
    probs = softmax(logits)
    np.testing.assert_allclose(unc.predictive_probs(logits, True), probs.mean(0), rtol=1e-12)
    np.testing.assert_allclose(unc.predictive_probs(probs), probs.mean(0), rtol=1e-12)
    mean = probs.mean(0)
    total = -np.sum(mean * np.log(mean), axis=1)
    aleatoric = -np.sum(probs * np.log(probs), axis=2).mean(0)
    np.testing.assert_allclose(unc.predictive_entropy(logits, True), total, rtol=1e-10)
    np.testing.assert_allclose(unc.expected_entropy(logits, True), aleatoric, rtol=1e-10)
    mi = unc.mutual_information(logits, True)
    np.testing.assert_allclose(mi, total - aleatoric, rtol=1e-8, atol=1e-12)
    assert np.all(mi > 0.01)  # samples that disagree
    # The entropy of the averaged logits is another, wrong, number.
    wrong = unc.predictive_entropy(logits.mean(0, keepdims=True), True)
    assert np.mean(np.abs(wrong - total)) > 0.1
    # Identical samples: mutual information 0; one (N, K) array is one sample.
    same = np.repeat(logits[:1], 6, axis=0)
    np.testing.assert_allclose(unc.mutual_information(same, True), 0.0, atol=1e-12)
    np.testing.assert_allclose(unc.mutual_information(logits[0], True), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        unc.predictive_entropy(probs[0]), -np.sum(probs[0] * np.log(probs[0]), 1)
    )


# -- scores ---------------------------------------------------------------------------


@numpy_only
def test_nll_and_brier_by_hand():
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.0, 1.0]])
    labels = np.array([0, 1, 0])
    onehot = np.eye(2)[labels]
    # The third example has probability 0: clipped at EPSILON = 1e-7.
    nll = -(math.log(0.8) + math.log(0.6) + math.log(unc.EPSILON)) / 3
    brier = (0.08 + 0.32 + 2.0) / 3
    for y in (labels, onehot, labels[:, None], labels.astype("float32")):
        assert unc.negative_log_likelihood(y, probs) == pytest.approx(nll, rel=1e-12)
        assert unc.brier_score(y, probs) == pytest.approx(brier, rel=1e-12)
    # A binary classifier's column of class-1 probabilities.
    assert unc.negative_log_likelihood(labels[:2], probs[:2, 1:]) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2
    )


@numpy_only
def test_expected_calibration_error_by_hand():
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.4, 0.3, 0.3], [0.45, 0.35, 0.2]]
    )
    labels = np.array([0, 1, 0, 2])  # right, wrong, right, wrong
    # Two bins: [0, 0.5) holds confidences 0.4, 0.45 (accuracy 1/2), [0.5, 1]
    # holds 0.9, 0.8 (accuracy 1/2).
    expected = 0.5 * abs(0.5 - 0.425) + 0.5 * abs(0.5 - 0.85)
    assert unc.expected_calibration_error(labels, probs, num_bins=2) == pytest.approx(expected)
    # One bin: |accuracy - mean confidence|; confidence 1 is in the last bin.
    assert unc.expected_calibration_error(labels, probs, num_bins=1) == pytest.approx(
        abs(0.5 - (0.9 + 0.8 + 0.4 + 0.45) / 4)
    )
    assert unc.expected_calibration_error([0], [[1.0, 0.0]], num_bins=10) == 0.0


@numpy_only
def test_expected_calibration_error_of_a_calibrated_predictor():
    # Labels drawn from the predicted probabilities: calibrated by
    # construction. 20000 examples, 15 bins. E[ECE] <= sqrt(B sum_i
    # c_i (1 - c_i)) / N (Cauchy-Schwarz on the per-bin sampling errors).
    rng = np.random.default_rng(1)
    n, bins = 20000, 15
    probs = rng.dirichlet(np.full(3, 0.7), size=n)
    labels = (rng.random(n)[:, None] > probs.cumsum(1)).sum(1)
    confidence = probs.max(1)
    bound = math.sqrt(bins * np.sum(confidence * (1 - confidence))) / n
    ece = unc.expected_calibration_error(labels, probs, num_bins=bins)
    assert ece < 2 * bound, (ece, bound)
    # The same predictions sharpened (p^3, renormalised) are overconfident.
    sharp = probs**3 / np.sum(probs**3, axis=1, keepdims=True)
    assert unc.expected_calibration_error(labels, sharp, num_bins=bins) > 5 * bound


@pytest.mark.skipif(not ON_TF, reason="tensorflow-probability runs on TensorFlow")
def test_ece_brier_and_nll_agree_with_tfp_and_keras():
    import tensorflow as tf
    import tensorflow_probability as tfp

    rng = np.random.default_rng(2)
    logits = (2.0 * rng.normal(size=(500, 6))).astype("float32")
    labels = rng.integers(0, 6, size=500)
    probs = softmax(logits.astype("float64"))
    for bins in (1, 10, 15):
        expected = tfp.stats.expected_calibration_error(
            bins, logits=logits, labels_true=labels.astype("int32")
        )
        assert unc.expected_calibration_error(labels, probs, bins) == pytest.approx(
            float(expected), abs=1e-6
        )
    tfp_brier = tfp.stats.brier_score(labels.astype("int32"), logits)
    assert unc.brier_score(labels, probs) == pytest.approx(
        float(tf.reduce_mean(tfp_brier)) + 1.0, abs=1e-6
    )
    keras_nll = keras.losses.sparse_categorical_crossentropy(labels, probs.astype("float32"))
    assert unc.negative_log_likelihood(labels, probs) == pytest.approx(
        float(np.mean(keras.ops.convert_to_numpy(keras_nll))), rel=1e-5
    )


@numpy_only
def test_auroc():
    assert unc.auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
    assert unc.auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
    assert unc.auroc([0.4] * 5, [0.4] * 3) == 0.5
    # Ties count one half: (1 > 0) + (1 = 1) / 2 + (2 > 0) + (2 > 1).
    assert unc.auroc([0, 1], [1, 2]) == pytest.approx(3.5 / 4)
    # Against counting every pair, with many ties.
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 6, 300), rng.integers(2, 9, 200)
    pairs = (b[:, None] > a[None, :]) + 0.5 * (b[:, None] == a[None, :])
    assert unc.auroc(a, b) == pytest.approx(pairs.mean(), rel=1e-12)


@numpy_only
def test_fit_temperature_recovers_a_known_temperature():
    # Labels drawn from softmax(z / 2.5): 5000 examples, 5 classes.
    rng = np.random.default_rng(4)
    true_t = 2.5
    z = 3.0 * rng.normal(size=(5000, 5))
    p = softmax(z / true_t)
    labels = (rng.random(len(z))[:, None] > p.cumsum(1)).sum(1)
    t = unc.fit_temperature(labels, z)
    # The maximum-likelihood estimate's standard error from the curvature:
    # se(1/T) = 1 / sqrt(sum_n Var_{p_n}[z_n]) at the estimate.
    fitted = softmax(z / t)
    info = np.sum(np.sum(fitted * z**2, 1) - np.sum(fitted * z, 1) ** 2)
    se_t = t**2 / math.sqrt(info)
    assert abs(t - true_t) < 4 * se_t, (t, se_t)
    # It is the minimum of the NLL.
    nll = [unc.negative_log_likelihood(labels, softmax(z / s)) for s in (t * 0.9, t, t * 1.1)]
    assert nll[1] < nll[0] and nll[1] < nll[2]
    # One-hot labels and a binary classifier's one logit column.
    assert unc.fit_temperature(np.eye(5)[labels], z) == pytest.approx(t)
    zb = 2.0 * rng.normal(size=(3000, 1))
    yb = (rng.random(3000) < 1 / (1 + np.exp(-zb[:, 0] / 0.5))).astype(int)
    assert unc.fit_temperature(yb, zb) == pytest.approx(0.5, rel=0.15)


@numpy_only
def test_regression_metrics():
    y = np.array([0.0, 1.0, -2.0])
    mean = np.array([0.5, 1.0, 0.0])
    std = np.array([1.0, 2.0, 0.5])
    expected = np.mean(
        0.5 * np.log(2 * np.pi * std**2) + (y - mean) ** 2 / (2 * std**2)
    )
    assert unc.gaussian_nll(y, mean, std) == pytest.approx(expected, rel=1e-12)
    # mc_predict's (N, 1) against targets (N,).
    assert unc.gaussian_nll(y, mean[:, None], std[:, None]) == pytest.approx(expected)
    # Samples 0..100 for every target: the central 90% is [5, 95].
    samples = np.repeat(np.arange(101.0)[:, None], 5, axis=1)
    targets = np.array([0.0, 5.0, 50.0, 95.0, 96.0])
    assert unc.interval_coverage(targets, samples, level=0.9) == pytest.approx(3 / 5)
    # Calibrated Gaussian samples: coverage 0.95 within 4 standard errors
    # (2000 targets, 1000 samples each).
    rng = np.random.default_rng(5)
    coverage = unc.interval_coverage(rng.normal(size=2000), rng.normal(size=(1000, 2000)))
    assert abs(coverage - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 2000)


@numpy_only
def test_bad_arguments_name_the_argument():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    cases = [
        (lambda: unc.predictive_entropy(np.array([[[0.5, 0.6]]])), "samples"),
        (lambda: unc.predictive_probs(-probs[None]), "samples"),
        (lambda: unc.predictive_probs(np.ones((2, 2, 2, 2))), "samples"),
        (lambda: unc.mutual_information(np.array([[[np.nan, 1.0]]])), "samples"),
        (lambda: unc.brier_score([0, 1], probs * 1.01), "probs"),
        (lambda: unc.negative_log_likelihood([0, 2], probs), "labels"),
        (lambda: unc.negative_log_likelihood([0, 0.5], probs), "labels"),
        (lambda: unc.negative_log_likelihood([0, 1, 1], probs), "labels"),
        (lambda: unc.brier_score([[1, 1], [0, 1]], probs), "labels"),
        (lambda: unc.expected_calibration_error([0, 1], probs, num_bins=0), "num_bins"),
        (lambda: unc.auroc([], [1.0]), "scores_in"),
        (lambda: unc.auroc([1.0], [[1.0, 2.0]]), "scores_out"),
        (lambda: unc.fit_temperature([0, 1], np.ones(2)), "logits"),
        (lambda: unc.gaussian_nll(np.ones(3), np.ones(3), np.zeros(3)), "std"),
        (lambda: unc.gaussian_nll(np.ones(4), np.ones(3), np.ones(3)), "y"),
        (lambda: unc.interval_coverage(np.ones(3), np.ones((5, 4))), "samples"),
        (lambda: unc.interval_coverage(np.ones(3), np.ones((5, 3)), level=1.0), "level"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=rf"`{name}`"):
            call()


# -- evaluate -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    """A noisy classifier with logits, the same with a softmax, a plain one."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = noisylayers.NoisyDense(
        16, activation="relu", noise=noise.LearnedGaussian(init_stddev=0.3, kl_weight=0.0),
        seed=1,
    )(inputs)
    logits = noisylayers.NoisyDense(
        3, noise=noise.Gaussian(0.3), estimator="flipout", seed=2
    )(hidden)
    noisy = keras.Model(inputs, logits, name="noisy")
    probs = keras.Sequential([keras.Input((4,)), noisy, layers.Softmax()], name="probs")
    plain = keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(8, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ],
        name="plain",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype("float32")
    y = rng.integers(0, 3, size=30)
    ood = 5.0 * rng.normal(size=(30, 4)).astype("float32")
    return noisy, probs, plain, x, y, ood


def test_evaluate_is_the_metrics_of_the_samples(models, tmp_path):
    noisy, probs_model, _, x, y, ood = models
    report = unc.evaluate(noisy, x, y, samples=5, ood=ood, seed=3)
    draws = noisylayers.mc_sample(noisy, x, samples=5, seed=3)
    ood_draws = noisylayers.mc_sample(noisy, ood, samples=5, seed=3)
    p = unc.predictive_probs(draws, from_logits=True)
    entropy = unc.predictive_entropy(draws, True)
    ood_entropy = unc.predictive_entropy(ood_draws, True)
    mi = unc.mutual_information(draws, True)
    ood_mi = unc.mutual_information(ood_draws, True)
    expected = {
        "accuracy": np.mean(p.argmax(1) == y),
        "nll": unc.negative_log_likelihood(y, p),
        "brier": unc.brier_score(y, p),
        "ece": unc.expected_calibration_error(y, p, 15),
        "predictive_entropy": entropy.mean(),
        "mutual_information": mi.mean(),
        "ood_predictive_entropy": ood_entropy.mean(),
        "ood_mutual_information": ood_mi.mean(),
        "auroc_entropy": unc.auroc(entropy, ood_entropy),
        "auroc_mutual_information": unc.auroc(mi, ood_mi),
    }
    assert [row["metric"] for row in report.rows] == list(expected)
    for name, value in expected.items():
        assert report[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert report["negative_log_likelihood"] == report["nll"]
    assert report.metrics["mutual_information"] > 0
    settings = report.settings
    assert settings["from_logits"] is True
    assert settings["from_logits_source"] == "decided from the outputs"
    assert settings["samples"] == 5 and not settings["deterministic"]
    # The same network with a softmax: probabilities, the same metrics.
    same = unc.evaluate(probs_model, x, y, samples=5, ood=ood, seed=3)
    assert same.settings["from_logits"] is False
    for name, value in report.metrics.items():
        assert same[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    # The table, the JSON and the figure.
    text = str(report)
    assert "5 Monte Carlo samples" in text and "logits (decided from the outputs)" in text
    assert re.search(r"^\| ece \| \d\.\d{4} \|", text, re.M)
    report.to_json(tmp_path / "report.json")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"] == pytest.approx(report.metrics)
    assert sum(b["count"] for b in saved["reliability"]) == len(x)
    report.plot(tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_with_a_temperature(models):
    noisy, _, _, x, y, _ = models
    report = unc.evaluate(noisy, x, y, samples=4, seed=0, temperature=2.0)
    draws = noisylayers.mc_sample(noisy, x, samples=4, seed=0) / 2.0
    p = unc.predictive_probs(draws, True)
    assert report["nll"] == pytest.approx(unc.negative_log_likelihood(y, p), rel=1e-5)
    assert report["ece"] == pytest.approx(unc.expected_calibration_error(y, p), rel=1e-5)
    assert report.settings["temperature"] == 2.0
    with pytest.raises(ValueError, match="temperature=0"):
        unc.evaluate(noisy, x, y, temperature=0)


def test_evaluate_a_model_without_noisy_layers(models):
    _, _, plain, x, y, ood = models
    report = unc.evaluate(plain, x, np.eye(3)[y], samples=7, ood=ood)
    p = plain.predict(x, verbose=0)
    assert report.settings["deterministic"] and report.settings["samples"] == 1
    assert report.settings["from_logits"] is False
    assert report["mutual_information"] == 0.0
    assert report["auroc_mutual_information"] == 0.5
    assert report["nll"] == pytest.approx(unc.negative_log_likelihood(y, p), rel=1e-5)
    assert "no noisy layers" in str(report) and "mutual information is 0" in str(report)


def test_evaluate_refuses_what_does_not_fit(models):
    noisy, _, _, x, y, _ = models
    with pytest.raises(ValueError, match="`labels`"):
        unc.evaluate(noisy, x, y[:10], samples=2)
    with pytest.raises(ValueError, match="`labels`"):
        unc.evaluate(noisy, x, y + 3, samples=2)
    with pytest.raises(ValueError, match="samples=0"):
        unc.evaluate(noisy, x, y, samples=0)
    two = keras.Model(noisy.inputs, [noisy.outputs[0], noisy.outputs[0]])
    with pytest.raises(ValueError, match="one output"):
        unc.evaluate(two, x, y, samples=2)
