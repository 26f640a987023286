"""Is the uncertainty any good? Monte Carlo predictive metrics.

NumPy in and NumPy out (any array-like, including a backend's tensors), in
float64, natural logarithms (nats). The functions take the Monte Carlo
samples of a classifier, as `noisylayers.mc_sample` returns them: an array
of shape `(S, N, K)` (samples, examples, classes), probabilities or, with
`from_logits=True`, logits. A `(N, K)` array is one sample. A binary
classifier's `(S, N, 1)` outputs are the probabilities (or logits) of
class 1.

- Predictive distribution and its uncertainty: `predictive_probs`,
  `predictive_entropy` (total), `expected_entropy` (aleatoric),
  `mutual_information` (epistemic, BALD). The entropy is always that of the
  mean of the per-sample *probabilities*, never of the mean of logits.
- Scores of predicted probabilities `(N, K)` against labels (integer
  classes or one-hot rows): `negative_log_likelihood`, `brier_score`,
  `expected_calibration_error`; `fit_temperature` (temperature scaling).
- Out-of-distribution detection: `auroc`.
- Regression: `gaussian_nll`, `interval_coverage`.
- `evaluate(model, x, y, ...)`: all of it for a model, as a report that
  prints as a table and writes JSON and a figure (reliability diagram and
  entropy histograms). `noisylayers evaluate` runs it from the command line.

Arguments that do not fit (shapes, probabilities that are not
probabilities, labels out of range) raise a `ValueError` naming the
argument.
"""

import json
import math
import numbers
import os

import numpy as np

from noisylayers._validation import check_positive_int

#: Probabilities are clipped below at this value in
#: `negative_log_likelihood` (the default `keras.config.epsilon()`, as Keras'
#: crossentropy losses clip): one example adds at most `-log(1e-7) = 16.1`.
EPSILON = 1e-7

#: Tolerance on a probability row's sum (and on values above 1).
SUM_TOLERANCE = 1e-3

#: Bins of the expected calibration error in `evaluate`.
NUM_BINS = 15

__all__ = [
    "EPSILON",
    "UncertaintyReport",
    "auroc",
    "brier_score",
    "evaluate",
    "expected_calibration_error",
    "expected_entropy",
    "fit_temperature",
    "gaussian_nll",
    "interval_coverage",
    "mutual_information",
    "negative_log_likelihood",
    "predictive_entropy",
    "predictive_probs",
]


# -- array checks ----------------------------------------------------------------


def _array(name, value):
    """`value` as a float64 NumPy array (tensors of any backend too)."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - e.g. a tensor NumPy cannot read
            import keras

            array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise ValueError(
            f"Argument `{name}` must be an array of numbers. Received: "
            f"{name} of dtype {array.dtype}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Argument `{name}` must hold finite numbers; it holds NaN or "
            f"infinite values. Received: {name} of shape {array.shape}"
        )
    return array


def _two_columns(p):
    """`(..., 1)` probabilities of class 1 as `(..., 2)`."""
    return np.concatenate([1.0 - p, p], axis=-1)


def _check_probabilities(name, p):
    """Raises unless every row of `p` (last axis) is a distribution."""
    if np.any(p < 0.0):
        raise ValueError(
            f"Argument `{name}` must hold probabilities (or pass "
            f"`from_logits=True` for logits); it has negative values (min "
            f"{p.min():.4g}). Received: {name} of shape {p.shape}"
        )
    if p.shape[-1] == 1:
        if np.any(p > 1.0 + SUM_TOLERANCE):
            raise ValueError(
                f"Argument `{name}` must hold probabilities of class 1 (one "
                f"column), in [0, 1]; it has values up to {p.max():.4g} (pass "
                f"`from_logits=True` for logits). Received: {name} of shape "
                f"{p.shape}"
            )
        return
    sums = p.sum(axis=-1)
    worst = float(np.max(np.abs(sums - 1.0))) if sums.size else 0.0
    if worst > SUM_TOLERANCE:
        raise ValueError(
            f"Argument `{name}` must hold probabilities whose rows sum to 1 "
            f"(within {SUM_TOLERANCE:g}); a row sums to "
            f"{float(sums.ravel()[np.argmax(np.abs(sums - 1.0))]):.6g} (pass "
            f"`from_logits=True` for logits). Received: {name} of shape "
            f"{p.shape}"
        )


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _per_sample(samples, from_logits):
    """`(S, N, K)` per-sample probabilities and their logs (K >= 2)."""
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(
            "Argument `from_logits` must be a boolean. Received: "
            f"from_logits={from_logits!r}"
        )
    s = _array("samples", samples)
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[-1] < 1 or s.shape[1] < 1:
        raise ValueError(
            "Argument `samples` must have shape (samples, examples, classes) "
            "(or (examples, classes) for one sample), with at least one "
            f"example and class. Received: samples of shape {s.shape}"
        )
    if from_logits:
        if s.shape[-1] == 1:  # the logit of class 1: logits (0, z)
            s = np.concatenate([np.zeros_like(s), s], axis=-1)
        log_p = _log_softmax(s)
        return np.exp(log_p), log_p
    _check_probabilities("samples", s)
    if s.shape[-1] == 1:
        s = _two_columns(np.clip(s, 0.0, 1.0))
    with np.errstate(divide="ignore"):
        return s, np.log(s)


def _entropy(p, log_p):
    """`-sum_k p log p` over the last axis, with `0 log 0 = 0`."""
    with np.errstate(invalid="ignore"):
        return -np.sum(np.where(p > 0.0, p * log_p, 0.0), axis=-1)


def _probs(probs, name="probs"):
    """Validated `(N, K)` probabilities, K >= 2."""
    p = _array(name, probs)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(
            f"Argument `{name}` must have shape (examples, classes), with at "
            f"least one example. Received: {name} of shape {p.shape}"
        )
    _check_probabilities(name, p)
    if p.shape[-1] == 1:
        p = _two_columns(np.clip(p, 0.0, 1.0))
    return p


def as_class_labels(labels, n, k):
    """Integer classes `(n,)` from integer or one-hot labels.

    Args:
        labels: `n` integer classes in `[0, k)`, or `(n, k)` one-hot rows.
        n: The number of examples.
        k: The number of classes.

    Returns:
        An integer NumPy array of shape `(n,)`.

    Raises:
        ValueError: for labels of another shape, non-integer or out-of-range
            classes, or rows that are not one-hot (naming `labels`).
    """
    raw = _array("labels", labels)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim == 2:
        if raw.shape != (n, k):
            raise ValueError(
                f"Argument `labels` of one-hot rows must have shape ({n}, {k}) "
                f"(examples, classes). Received: labels of shape {raw.shape}"
            )
        if not (np.all((raw == 0.0) | (raw == 1.0)) and np.all(raw.sum(1) == 1.0)):
            raise ValueError(
                "Argument `labels` as a 2-D array must hold one-hot rows (a "
                f"single 1, zeros elsewhere). Received: labels of shape "
                f"{raw.shape}, first row {raw[0].tolist()}"
            )
        return raw.argmax(axis=1)
    if raw.ndim != 1 or raw.shape[0] != n:
        raise ValueError(
            f"Argument `labels` must be {n} integer classes (shape ({n},)) or "
            f"one-hot rows (shape ({n}, {k})), one per example. Received: "
            f"labels of shape {raw.shape}"
        )
    if np.any(raw != np.round(raw)) or np.any(raw < 0) or np.any(raw >= k):
        bad = raw[(raw != np.round(raw)) | (raw < 0) | (raw >= k)][0]
        raise ValueError(
            f"Argument `labels` must hold integer classes in [0, {k - 1}]. "
            f"Received: labels with the value {bad:g}"
        )
    return raw.astype(np.int64)


# -- predictive distribution -------------------------------------------------------


def predictive_probs(samples, from_logits=False):
    """The predictive distribution: the mean of the per-sample probabilities.

    Args:
        samples: Array `(S, N, K)` of `S` Monte Carlo samples (as
            `noisylayers.mc_sample` returns them), or `(N, K)` for one.
            `K = 1`: a binary classifier's probability (or logit) of class 1.
        from_logits: Whether `samples` are logits (a softmax, or for
            `K = 1` a sigmoid, is applied to each sample) or probabilities.

    Returns:
        Float64 array `(N, K)` (`(N, 2)` for `K = 1`): `mean_s p_s`.

    Raises:
        ValueError: for a wrong shape, or probabilities that are not
            probabilities (negative, rows not summing to 1 within 1e-3).

    Example:

    >>> draws = noisylayers.mc_sample(model, x_test, samples=30)
    >>> probs = predictive_probs(draws, from_logits=True)
    """
    p, _ = _per_sample(samples, from_logits)
    return p.mean(axis=0)


def predictive_entropy(samples, from_logits=False):
    """Total uncertainty: the entropy of the predictive distribution.

    `H[mean_s p_s] = -sum_k pbar_k log pbar_k` (nats), of the mean of the
    per-sample probabilities (never of the mean of logits).

    Args:
        samples: Array `(S, N, K)` (or `(N, K)`), as in `predictive_probs`.
        from_logits: Whether `samples` are logits.

    Returns:
        Float64 array `(N,)`, between 0 and `log K`.

    Raises:
        ValueError: as `predictive_probs`.
    """
    p = predictive_probs(samples, from_logits)
    with np.errstate(divide="ignore"):
        return _entropy(p, np.log(p))


def expected_entropy(samples, from_logits=False):
    """Aleatoric uncertainty: the mean over samples of each sample's entropy.

    `mean_s H[p_s]` (nats).

    Args:
        samples: Array `(S, N, K)` (or `(N, K)`), as in `predictive_probs`.
        from_logits: Whether `samples` are logits.

    Returns:
        Float64 array `(N,)`.

    Raises:
        ValueError: as `predictive_probs`.
    """
    p, log_p = _per_sample(samples, from_logits)
    return _entropy(p, log_p).mean(axis=0)


def mutual_information(samples, from_logits=False):
    """Epistemic uncertainty: `predictive_entropy - expected_entropy` (BALD).

    The mutual information between the prediction and the weights (Houlsby
    et al. 2011): 0 when every sample predicts the same distribution. It is
    never negative (Jensen's inequality); float rounding below 0 is
    returned as 0.

    Args:
        samples: Array `(S, N, K)` (or `(N, K)`), as in `predictive_probs`.
        from_logits: Whether `samples` are logits.

    Returns:
        Float64 array `(N,)`.

    Raises:
        ValueError: as `predictive_probs`.
    """
    p, log_p = _per_sample(samples, from_logits)
    mean = p.mean(axis=0)
    with np.errstate(divide="ignore"):
        total = _entropy(mean, np.log(mean))
    return np.maximum(total - _entropy(p, log_p).mean(axis=0), 0.0)


# -- scores of predicted probabilities ------------------------------------------------


def negative_log_likelihood(labels, probs):
    """The mean negative log-likelihood of the labels, `mean_n -log p_n[y_n]`.

    Probabilities are clipped below at `EPSILON = 1e-7` (as Keras'
    crossentropy losses clip), so an example given probability 0 adds
    `-log(1e-7) = 16.12` nats rather than infinity.

    Args:
        labels: Integer classes `(N,)` (or `(N, 1)`), or one-hot rows
            `(N, K)`.
        probs: Predicted probabilities `(N, K)` (e.g. `predictive_probs`);
            `(N, 1)`: the probability of class 1 of a binary classifier.

    Returns:
        A float, in nats.

    Raises:
        ValueError: for shapes that do not fit, labels out of range or
            probabilities that are not probabilities.
    """
    p = _probs(probs)
    y = as_class_labels(labels, *p.shape)
    picked = p[np.arange(len(y)), y]
    return float(np.mean(-np.log(np.clip(picked, EPSILON, 1.0))))


def brier_score(labels, probs):
    """The Brier score, `mean_n sum_k (p_nk - onehot(y_n)_k)^2`.

    Between 0 (certain and right) and 2 (certain and wrong). It is
    `tfp.stats.brier_score` (which leaves out the constant 1) plus 1,
    averaged over the examples.

    Args:
        labels: Integer classes `(N,)` or one-hot rows `(N, K)`.
        probs: Predicted probabilities `(N, K)` (`(N, 1)` for binary).

    Returns:
        A float.

    Raises:
        ValueError: as `negative_log_likelihood`.
    """
    p = _probs(probs)
    y = as_class_labels(labels, *p.shape)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _calibration_bins(labels, probs, num_bins):
    """Per bin: count, number right, sum of confidences (top label)."""
    num_bins = check_positive_int("num_bins", num_bins)
    p = _probs(probs)
    y = as_class_labels(labels, *p.shape)
    predicted = p.argmax(axis=1)
    confidence = p[np.arange(len(y)), predicted]
    # Equal-width bins over [0, 1]: [i/B, (i+1)/B), the last one closed
    # (as `tf.histogram_fixed_width_bins`, which TFP uses).
    bins = np.clip(np.floor(confidence * num_bins).astype(np.int64), 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins).astype(np.float64)
    right = np.bincount(bins, weights=predicted == y, minlength=num_bins)
    confident = np.bincount(bins, weights=confidence, minlength=num_bins)
    return count, right, confident


def expected_calibration_error(labels, probs, num_bins=15):
    """The expected calibration error of the top label (Guo et al. 2017).

    The predictions are put into `num_bins` equal-width bins over [0, 1]
    by their confidence `max_k p_k` (bin `b` holds `[b/B, (b+1)/B)`, the
    last one also 1); then `ECE = sum_b n_b / N |accuracy_b -
    confidence_b|`, with `accuracy_b` the fraction of right top-1
    predictions and `confidence_b` the mean confidence in bin `b`. The same
    number as `tfp.stats.expected_calibration_error(num_bins,
    logits=log(probs), labels_true=labels)`.

    Args:
        labels: Integer classes `(N,)` or one-hot rows `(N, K)`.
        probs: Predicted probabilities `(N, K)` (`(N, 1)` for binary).
        num_bins: Positive integer, the number of bins. Defaults to 15.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: for `num_bins < 1`, or as `negative_log_likelihood`.
        TypeError: for a `num_bins` that is not an integer.
    """
    count, right, confident = _calibration_bins(labels, probs, num_bins)
    return float(np.sum(np.abs(right - confident)) / np.sum(count))


def fit_temperature(labels, logits):
    """Temperature scaling (Guo et al. 2017): the `T` that calibrates logits.

    Returns the temperature `T > 0` minimising the negative log-likelihood
    of `softmax(logits / T)` on held-out data (not the training data).
    The NLL is convex in `1 / T`; it is minimised by bisection on its
    derivative, over `T` in `[1e-3, 1e3]` (a bound is returned when the
    minimum lies beyond it, e.g. `1e-3` when every prediction is right).
    Then `evaluate(..., temperature=T)` applies it.

    Args:
        labels: Integer classes `(N,)` or one-hot rows `(N, K)`.
        logits: Logits `(N, K)` (`(N, 1)`: a binary classifier's logit of
            class 1), e.g. a deterministic model's outputs, or the logits
            of the predictive probabilities, `log(predictive_probs(...))`.

    Returns:
        A float, the temperature.

    Raises:
        ValueError: for shapes that do not fit or labels out of range.

    Example:

    >>> T = fit_temperature(y_val, model.predict(x_val))
    >>> report = evaluate(model, x_test, y_test, temperature=T)
    """
    z = _array("logits", logits)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(
            "Argument `logits` must have shape (examples, classes), with at "
            f"least one example. Received: logits of shape {z.shape}"
        )
    if z.shape[1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=1)
    y = as_class_labels(labels, *z.shape)
    picked = z[np.arange(len(y)), y]

    def slope(beta):  # d NLL / d beta, beta = 1 / T: increasing in beta
        p = np.exp(_log_softmax(beta * z))
        return float(np.mean(np.sum(p * z, axis=1) - picked))

    low, high = math.log(1e-3), math.log(1e3)  # of beta
    if slope(math.exp(low)) >= 0.0:
        return 1e3
    if slope(math.exp(high)) <= 0.0:
        return 1e-3
    for _ in range(60):
        middle = 0.5 * (low + high)
        if slope(math.exp(middle)) < 0.0:
            low = middle
        else:
            high = middle
    return float(math.exp(-0.5 * (low + high)))


# -- out-of-distribution detection -----------------------------------------------------


def auroc(scores_in, scores_out):
    """Area under the ROC curve of telling out- from in-distribution inputs.

    Out-of-distribution inputs are the positives, and a larger score means
    "more likely out of distribution" (e.g. the predictive entropy). The
    AUROC is the probability that a random out-of-distribution input scores
    higher than a random in-distribution one, ties counting one half
    (the Mann-Whitney statistic): 1 for perfectly separated scores, 0.5
    for uninformative ones.

    Args:
        scores_in: 1-D array, the scores of in-distribution inputs.
        scores_out: 1-D array, the scores of out-of-distribution inputs.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: for empty or non-1-D scores, or non-finite values.
    """
    a = _array("scores_in", scores_in)
    b = _array("scores_out", scores_out)
    for name, s in (("scores_in", a), ("scores_out", b)):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(
                f"Argument `{name}` must be a non-empty 1-D array of scores. "
                f"Received: {name} of shape {s.shape}"
            )
    values = np.concatenate([a, b])
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # mean ranks
    positives = ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2.0
    return float(positives / (len(a) * len(b)))


# -- regression -------------------------------------------------------------------


def _fit_shape(value, shape):
    """`value` reshaped to `shape` if they differ only by a trailing 1."""
    if value.shape == shape:
        return value
    if value.shape + (1,) == shape or value.shape == shape + (1,):
        return value.reshape(shape)
    return None


def gaussian_nll(y, mean, std):
    """The mean Gaussian negative log-likelihood of regression targets.

    `mean over elements of 0.5 log(2 pi std^2) + (y - mean)^2 / (2 std^2)`
    (nats), e.g. with `(mean, std)` from `noisylayers.mc_predict`.

    Args:
        y: The targets.
        mean: The predicted means, of the same shape as `y` (a trailing
            axis of size 1 on either is accepted).
        std: The predicted standard deviations (positive), of the same
            shape as `mean`.

    Returns:
        A float.

    Raises:
        ValueError: for shapes that do not fit, or a `std` that is not
            positive.
    """
    mu = _array("mean", mean)
    sigma = _array("std", std)
    target = _array("y", y)
    if sigma.shape != mu.shape:
        raise ValueError(
            "Arguments `mean` and `std` must have the same shape. Received: "
            f"mean of shape {mu.shape}, std of shape {sigma.shape}"
        )
    fitted = _fit_shape(target, mu.shape)
    if fitted is None or mu.size == 0:
        raise ValueError(
            f"Argument `y` must have the shape of `mean` {mu.shape} (one "
            f"target per prediction). Received: y of shape {target.shape}"
        )
    if np.any(sigma <= 0.0):
        raise ValueError(
            "Argument `std` must be positive everywhere. Received: std with "
            f"minimum {sigma.min():.4g}"
        )
    z = (fitted - mu) / sigma
    return float(np.mean(0.5 * np.log(2.0 * np.pi) + np.log(sigma) + 0.5 * z**2))


def interval_coverage(y, samples, level=0.95):
    """The fraction of targets inside the central interval of the samples.

    For each target, the interval between the `(1 - level) / 2` and
    `(1 + level) / 2` quantiles of its Monte Carlo samples (linear
    interpolation, `np.quantile`'s default). For a calibrated model the
    fraction is close to `level`.

    Args:
        y: The targets, shape `T` (a trailing axis of size 1 is accepted).
        samples: Array `(S,) + T`, e.g. from `noisylayers.mc_sample`.
        level: Float in (0, 1), the interval's nominal coverage. Defaults
            to 0.95.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: for shapes that do not fit or a `level` outside (0, 1).
    """
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not (
        0.0 < level < 1.0
    ):
        raise ValueError(
            f"Argument `level` must be a number in (0, 1). Received: level={level!r}"
        )
    s = _array("samples", samples)
    target = _array("y", y)
    fitted = None if s.ndim < 1 else _fit_shape(target, s.shape[1:])
    if fitted is None or s.shape[0] < 1 or target.size == 0:
        raise ValueError(
            "Argument `samples` must have shape (samples,) + y.shape. "
            f"Received: samples of shape {s.shape}, y of shape {target.shape}"
        )
    low, high = np.quantile(s, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return float(np.mean((fitted >= low) & (fitted <= high)))


# -- evaluate a model ---------------------------------------------------------------------


_DESCRIPTIONS = {
    "accuracy": "fraction of right top-1 predictions",
    "nll": "negative log-likelihood (nats)",
    "brier": "Brier score, sum over classes (0 best, 2 worst)",
    "ece": f"expected calibration error ({NUM_BINS} bins)",
    "predictive_entropy": "mean predictive entropy (nats): total uncertainty",
    "mutual_information": "mean mutual information (nats): epistemic",
    "ood_predictive_entropy": "mean predictive entropy, out of distribution",
    "ood_mutual_information": "mean mutual information, out of distribution",
    "auroc_entropy": "AUROC of in vs out of distribution, by predictive entropy",
    "auroc_mutual_information": "AUROC of in vs out of distribution, by mutual information",
}

#: Other names `report[name]` accepts.
_ALIASES = {
    "negative_log_likelihood": "nll",
    "brier_score": "brier",
    "expected_calibration_error": "ece",
    "entropy": "predictive_entropy",
    "auroc_predictive_entropy": "auroc_entropy",
    "auroc_mi": "auroc_mutual_information",
}


class UncertaintyReport:
    """The result of `evaluate`: metrics that print as a table.

    Attributes:
        rows: List of dicts `{"metric", "value", "description"}`, one per
            metric: `accuracy`, `nll`, `brier`, `ece`,
            `predictive_entropy`, `mutual_information`, and given
            out-of-distribution inputs `ood_predictive_entropy`,
            `ood_mutual_information`, `auroc_entropy`,
            `auroc_mutual_information`.
        metrics: Dict of the same values by metric; `report["nll"]` (or
            `report["negative_log_likelihood"]`) reads one too.
        settings: Dict: `model`, `samples` (the passes run: 1 for a model
            without noisy layers), `deterministic`, `from_logits` and
            `from_logits_source` (`"given"` or `"decided from the
            outputs"`), `temperature`, `seed`, `examples`, `ood_examples`.
        notes: List of strings the table prints below it.
        confidence, correct: Arrays `(N,)`: the top-label confidence of each
            in-distribution prediction, and whether it is right.
        entropy, ood_entropy: Arrays `(N,)` and `(M,)` (or `None`): the
            predictive entropy of each input.
    """

    def __init__(self, settings, metrics, notes, confidence, correct, entropy,
                 ood_entropy=None):
        self.settings = dict(settings)
        self.metrics = dict(metrics)
        self.notes = list(notes)
        self.confidence = confidence
        self.correct = correct
        self.entropy = entropy
        self.ood_entropy = ood_entropy

    @property
    def rows(self):
        return [
            {"metric": name, "value": value, "description": _DESCRIPTIONS[name]}
            for name, value in self.metrics.items()
        ]

    def __getitem__(self, name):
        return self.metrics[_ALIASES.get(name, name)]

    def reliability(self, num_bins=NUM_BINS):
        """The reliability diagram's bins: dicts of `low`, `high`, `count`,
        `accuracy` and `confidence` (the last two `None` in empty bins)."""
        num_bins = check_positive_int("num_bins", num_bins)
        bins = np.clip(
            np.floor(self.confidence * num_bins).astype(np.int64), 0, num_bins - 1
        )
        out = []
        for b in range(num_bins):
            inside = bins == b
            n = int(inside.sum())
            out.append(
                {
                    "low": b / num_bins,
                    "high": (b + 1) / num_bins,
                    "count": n,
                    "accuracy": float(self.correct[inside].mean()) if n else None,
                    "confidence": float(self.confidence[inside].mean()) if n else None,
                }
            )
        return out

    def _header(self):
        s = self.settings
        passes = (
            "one deterministic pass (no noisy layers)"
            if s["deterministic"]
            else f"{s['samples']} Monte Carlo samples (seed {s['seed']})"
        )
        kind = "logits" if s["from_logits"] else "probabilities"
        scaled = "" if s["temperature"] is None else f", temperature {s['temperature']:.4g}"
        ood = "" if s["ood_examples"] is None else f" and {s['ood_examples']} out of distribution"
        return (
            f"Uncertainty of model '{s['model']}' on {s['examples']} inputs{ood}: "
            f"{passes}; outputs read as {kind} ({s['from_logits_source']}){scaled}."
        )

    def to_markdown(self):
        """The header line, the Markdown table and the notes, as text."""
        from noisylayers.ablation.tables import markdown_table

        lines = [self._header(), ""]
        lines += markdown_table(
            ["metric", "value", "what"],
            [[r["metric"], f"{r['value']:.4f}", r["description"]] for r in self.rows],
        )
        if self.notes:
            lines.append("")
            lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.to_markdown().rstrip("\n")

    def __repr__(self):
        values = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
        return f"<UncertaintyReport {values}>"

    def to_dict(self):
        """The settings, metrics, rows, notes and reliability bins."""
        return {
            "settings": self.settings,
            "metrics": self.metrics,
            "rows": self.rows,
            "notes": self.notes,
            "reliability": self.reliability(),
        }

    def to_json(self, path):
        """Writes `to_dict()` as JSON to `path` (atomically).

        Args:
            path: Path of the `.json` file to write.
        """
        from noisylayers.ablation.store import write_atomic

        write_atomic(os.fspath(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def plot(self, path=None):
        """Draws the reliability diagram and the entropy histograms.

        Left: accuracy against confidence in `NUM_BINS` equal-width bins
        (the diagonal is perfect calibration). Right: histograms of the
        predictive entropy of the in-distribution inputs and, if given, the
        out-of-distribution ones. Needs matplotlib
        (`pip install 'noisylayers[ablation]'`).

        Args:
            path: Optional path of an image file to write (PNG for `.png`),
                written atomically.

        Returns:
            The `matplotlib.figure.Figure`.
        """
        from noisylayers.ablation.optional import require

        Figure = require("matplotlib.figure", "plots").Figure
        fig = Figure(figsize=(10.0, 4.2), layout="constrained")
        left, right = fig.subplots(1, 2)
        draw_reliability(left, self)
        draw_entropy(right, self)
        fig.suptitle(self.settings["model"])
        if path is not None:
            path = os.fspath(path)
            root, ext = os.path.splitext(path)
            tmp = f"{root}.{os.getpid()}.tmp{ext}"
            fig.savefig(tmp, dpi=100)
            os.replace(tmp, path)
        return fig


def draw_reliability(ax, report, num_bins=NUM_BINS):
    """The reliability diagram of an `UncertaintyReport` on a matplotlib axis."""
    bins = report.reliability(num_bins)
    width = 1.0 / num_bins
    lows = [b["low"] for b in bins]
    accuracy = [b["accuracy"] or 0.0 for b in bins]
    confidence = [
        b["confidence"] if b["count"] else b["low"] + width / 2 for b in bins
    ]
    ax.bar(lows, accuracy, width=width, align="edge", color="tab:blue",
           edgecolor="white", label="accuracy")
    # The gap from each bin's accuracy to its mean confidence, hatched.
    ax.bar(lows, [c - a if b["count"] else 0.0
                  for c, a, b in zip(confidence, accuracy, bins)],
           bottom=accuracy, width=width, align="edge", fill=False,
           edgecolor="tab:red", hatch="//", linewidth=0.8,
           label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], ls="--", color="0.3", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ece = report.metrics["ece"]
    ax.set_title(f"reliability: ECE {ece:.3f}, accuracy {report.metrics['accuracy']:.3f}")
    ax.legend(loc="upper left", fontsize=8)


def draw_entropy(ax, report):
    """Histograms of the predictive entropy, in and out of distribution."""
    values = [report.entropy] + (
        [] if report.ood_entropy is None else [report.ood_entropy]
    )
    top = max(float(np.max(v)) for v in values)
    edges = np.linspace(0.0, max(top, 1e-3), 31)
    ax.hist(report.entropy, bins=edges, density=True, alpha=0.6,
            color="tab:blue", label="in distribution")
    title = "predictive entropy"
    if report.ood_entropy is not None:
        ax.hist(report.ood_entropy, bins=edges, density=True, alpha=0.6,
                color="tab:orange", label="out of distribution")
        title += f": AUROC {report.metrics['auroc_entropy']:.3f}"
    ax.set_xlabel("predictive entropy (nats)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)


def _looks_like_probabilities(draws):
    """Whether model outputs are probabilities: in [0, 1], rows summing to 1."""
    if np.any(draws < 0.0) or np.any(draws > 1.0 + 1e-6):
        return False
    if draws.shape[-1] == 1:
        return True
    return bool(np.all(np.abs(draws.sum(axis=-1) - 1.0) <= SUM_TOLERANCE))


def _draws(model, x, samples, seed, batch_size, name, noisy):
    """`(S, N, K)` outputs of `model` on `x` (one pass without noisy layers)."""
    from noisylayers import diagnostics

    if noisy:
        out = diagnostics.mc_sample(model, x, samples=samples, batch_size=batch_size,
                                    seed=seed)
    else:
        out = model.predict(x, batch_size=batch_size, verbose=0)
        out = None if isinstance(out, (list, tuple, dict)) else out[None]
    if not isinstance(out, np.ndarray) or out.ndim != 3:
        shape = getattr(out, "shape", None) if out is not None else "several outputs"
        raise ValueError(
            f"`evaluate` needs a classifier with one output of shape "
            f"(examples, classes). Model '{model.name}' gives {shape} for "
            f"`{name}`. Received: model={model.name}"
        )
    return out.astype(np.float64)


def evaluate(
    model,
    x,
    y,
    samples=30,
    ood=None,
    seed=0,
    from_logits=None,
    batch_size=None,
    temperature=None,
):
    """Scores a classifier's predictive uncertainty: calibration and OOD.

    Draws `samples` Monte Carlo passes (`noisylayers.mc_sample`) of `model`
    on `x` (a model without noisy layers gets one deterministic pass: its
    mutual information is 0, and the report says so), averages the
    per-sample probabilities (`predictive_probs`) and reports accuracy,
    `negative_log_likelihood`, `brier_score`, `expected_calibration_error`
    (15 bins), the mean `predictive_entropy` and `mutual_information`; given
    out-of-distribution inputs `ood`, their mean entropy and mutual
    information and the `auroc` of telling them from `x` by each.

    Args:
        model: A classifier (`keras.Model`) with one output `(N, K)`:
            probabilities or logits (`K = 1`: binary, of class 1).
        x: The in-distribution inputs, anything `model.predict` takes.
        y: Their labels, integer classes `(N,)` or one-hot rows `(N, K)`.
        samples: Positive integer, Monte Carlo passes. Defaults to 30.
        ood: Optional out-of-distribution inputs (no labels needed).
        seed: Seed of the noise draws (`None`: the layers' own streams).
            Defaults to 0: the same call gives the same report.
        from_logits: Whether the outputs are logits. `None` (default)
            decides from the outputs: rows in [0, 1] summing to 1 (within
            1e-3) are probabilities, anything else logits. The report says
            which it used.
        batch_size: Batch size of the passes (default 32, as `predict`).
        temperature: Optional positive float `T` (from `fit_temperature`):
            each sample's logits are divided by `T` (for probability
            outputs, their logarithms).

    Returns:
        An `UncertaintyReport`: prints as a table; `rows`, `metrics`,
        `to_json(path)`, `plot(path)`.

    Raises:
        ValueError: for a model with several outputs, labels that do not
            fit the outputs, or invalid arguments.

    Example:

    ```python
    report = noisylayers.uncertainty.evaluate(
        model, x_test, y_test, samples=30, ood=x_ood
    )
    print(report)
    report.plot("evaluation.png")
    ```
    """
    from noisylayers import control
    from noisylayers._validation import check_seed

    samples = check_positive_int("samples", samples)
    seed = check_seed(seed)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if from_logits is not None and not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(
            "Argument `from_logits` must be True, False or None. Received: "
            f"from_logits={from_logits!r}"
        )
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(
            temperature, numbers.Real
        ) or not (0.0 < temperature < math.inf):
            raise ValueError(
                "Argument `temperature` must be a positive number. Received: "
                f"temperature={temperature!r}"
            )
        temperature = float(temperature)
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. Received: "
            f"model={model!r} (of type {type(model).__name__})"
        )
    noisy = bool(control.noise_layers(model))
    draws = _draws(model, x, samples, seed, batch_size, "x", noisy)
    ood_draws = None
    if ood is not None:
        ood_draws = _draws(model, ood, samples, seed, batch_size, "ood", noisy)
    if from_logits is None:
        source = "decided from the outputs"
        from_logits = not _looks_like_probabilities(draws)
    else:
        source = "given"
        from_logits = bool(from_logits)

    def logits_of(d):
        if not from_logits:
            p = _per_sample(d, False)[0]
            d = np.log(np.clip(p, np.finfo(np.float64).tiny, 1.0))
        elif d.shape[-1] == 1:
            d = np.concatenate([np.zeros_like(d), d], axis=-1)
        return d / temperature

    use_logits = from_logits or temperature is not None
    if temperature is not None:
        draws = logits_of(draws)
        ood_draws = None if ood_draws is None else logits_of(ood_draws)
    probs = predictive_probs(draws, use_logits)
    labels = as_class_labels(y, *probs.shape)
    predicted = probs.argmax(axis=1)
    entropy = predictive_entropy(draws, use_logits)
    mi = np.zeros_like(entropy) if not noisy else mutual_information(draws, use_logits)
    metrics = {
        "accuracy": float(np.mean(predicted == labels)),
        "nll": negative_log_likelihood(labels, probs),
        "brier": brier_score(labels, probs),
        "ece": expected_calibration_error(labels, probs, NUM_BINS),
        "predictive_entropy": float(entropy.mean()),
        "mutual_information": float(mi.mean()),
    }
    notes = []
    if not noisy:
        notes.append(
            f"model '{model.name}' has no noisy layers: one deterministic "
            "pass, so its mutual information is 0"
            + (" and its AUROC by mutual information 0.5." if ood is not None else ".")
        )
    ood_entropy = None
    if ood_draws is not None:
        ood_entropy = predictive_entropy(ood_draws, use_logits)
        ood_mi = (
            np.zeros_like(ood_entropy)
            if not noisy
            else mutual_information(ood_draws, use_logits)
        )
        metrics.update(
            {
                "ood_predictive_entropy": float(ood_entropy.mean()),
                "ood_mutual_information": float(ood_mi.mean()),
                "auroc_entropy": auroc(entropy, ood_entropy),
                "auroc_mutual_information": auroc(mi, ood_mi),
            }
        )
    settings = {
        "model": model.name,
        "samples": samples if noisy else 1,
        "deterministic": not noisy,
        "from_logits": from_logits,
        "from_logits_source": source,
        "temperature": temperature,
        "seed": seed,
        "examples": int(probs.shape[0]),
        "ood_examples": None if ood_draws is None else int(ood_draws.shape[1]),
    }
    confidence = probs[np.arange(len(labels)), predicted]
    return UncertaintyReport(
        settings, metrics, notes, confidence, predicted == labels, entropy,
        ood_entropy,
    )
