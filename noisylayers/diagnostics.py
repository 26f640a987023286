"""What the noise is doing: `noise_stats` per weight, `mc_sample` and `mc_predict`."""

import keras
import numpy as np

from noisylayers import _keras_private
from noisylayers import control
from noisylayers._seeds import derive_seed
from noisylayers._validation import check_positive_int
from noisylayers._validation import check_seed

_COLUMNS = ("layer", "weight", "kind", "stddev", "snr", "kl", "sparsity")


class NoiseStatsTable(list):
    """The rows of `noise_stats`: a list of dicts that prints as a table."""

    def __str__(self):
        columns = [c for c in _COLUMNS if any(c in row for row in self)]
        cells = [[_cell(row.get(c)) for c in columns] for row in self]
        widths = [
            max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)
        ]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def noise_stats(model, layers=None):
    """One row of figures per (noisy layer, perturbed weight) of a model.

    Args:
        model: A built `keras.Model` (or layer) with noisy layers.
        layers: Optional selection, as in `noisylayers.set_noise`.

    Returns:
        A `NoiseStatsTable`: a list of dicts, one per perturbed weight, with
        `"layer"` (the noisy layer's name), `"weight"` (the weight's path
        below the perturbed layer: `"kernel"`, `"lstm_cell/kernel"`, the
        same for a variant and for a `WeightNoise`), `"path"` (its full
        path),
        `"kind"` (the noise kind's class name), `"stddev"` (the mean
        standard deviation of the weight's perturbation, before the layer's
        `scale`: the mean sigma for learned kinds), `"snr"` (mean |w| /
        stddev), `"kl"` (the weight's KL term without `kl_weight`, `None`
        for kinds without one; a one-sample estimate for Monte Carlo priors),
        `"scale"`, `"enabled"`, and for `VariationalDropout` `"sparsity"`
        (the fraction of weights pruned at inference). Printing it shows a
        table.

    Raises:
        ValueError: if the model has no (built) noisy layer.

    Example:

    >>> print(noisylayers.noise_stats(model))
    layer   weight          kind             stddev  snr    kl
    ------  --------------  ---------------  ------  -----  -----
    hidden  hidden/kernel   LearnedGaussian  0.05    0.912  163.2
    """
    selected = control.noise_layers(model, layers)
    if not selected:
        raise ValueError(
            f"Model '{model.name}' has no noisy layers: there are no noise "
            "statistics."
        )
    seed = keras.random.SeedGenerator(0)
    rows = NoiseStatsTable()
    for layer in selected:
        if not layer.built or layer.noise_states is None:
            raise ValueError(
                f"Noisy layer '{layer.name}' is not built: call or train the "
                "model first."
            )
        for variable, state in zip(layer.target_variables, layer.noise_states):
            value = _keras_private.read_value(variable)
            stddev = _number(
                keras.ops.mean(layer.noise.perturbation_stddev(value, state))
            )
            mean_abs = _number(keras.ops.mean(keras.ops.abs(value)))
            kl = None
            if layer.noise.has_kl:
                kl = _number(layer.noise.kl(value, state, seed))
            row = {
                "layer": layer.name,
                "weight": _relative_path(variable, layer.perturbed_layer()),
                "path": variable.path,
                "kind": type(layer.noise).__name__,
                "stddev": stddev,
                "snr": mean_abs / stddev if stddev > 0 else float("inf"),
                "kl": kl,
                "scale": layer.scale,
                "enabled": layer.enabled,
            }
            row.update(layer.noise.stats(value, state))
            rows.append(row)
    return rows


def _relative_path(variable, owner):
    """`variable`'s path below the layer `owner` (`"kernel"`,
    `"lstm_cell/kernel"`): the same for a variant and for a `WeightNoise`,
    whatever the wrapper and the wrapped layer are named."""
    prefix = owner.path + "/"
    if variable.path.startswith(prefix):
        return variable.path[len(prefix):]
    return variable.path


def _number(x):
    return float(keras.ops.convert_to_numpy(x))


#: The model attribute holding `mc_sample`'s predict function.
_SAMPLING_FUNCTION = "_noisylayers_sampling_function"


def _sampling_settings(model, layers):
    """What a traced sampling function depends on besides the model's own.

    (`compile` also replaces the model's predict function, which is checked
    separately.) A noisy layer's estimator and noise kind are read when
    tracing.
    """
    return (
        model.run_eagerly,
        model.jit_compile,
        model.steps_per_execution,
        tuple((layer, layer.estimator, layer.noise) for layer in layers),
    )


class _Kept:
    """`mc_sample`'s predict function and what it was traced for.

    A plain object, not a tuple: Keras' saving walks tuples and lists among
    a model's attributes, and this one holds layers.
    """

    __slots__ = ("model_function", "settings", "function")

    def __init__(self, model_function, settings, function):
        self.model_function = model_function
        self.settings = settings
        self.function = function


def _same(a, b):
    """Whether two `_sampling_settings` are the same (objects by identity)."""
    return (
        a[:3] == b[:3]
        and len(a[3]) == len(b[3])
        and all(
            p[0] is q[0] and p[1] == q[1] and p[2] is q[2]
            for p, q in zip(a[3], b[3])
        )
    )


def mc_sample(model, x, samples=30, batch_size=None, seed=None):
    """Monte Carlo samples: the outputs of `samples` noisy forward passes.

    Runs `model.predict(x)` `samples` times with weight noise sampled in
    every noisy layer (as a training call would: its own estimator,
    `enabled` and `scale`) and everything else in inference mode (Dropout
    off, BatchNormalization on its moving statistics). Each pass draws new
    noise for every batch. The passes run through the model's own compiled
    predict function, traced once with the noise on (the model's cached
    predict function is put back afterwards). Deterministic inference
    (`model.predict`) stays the default everywhere else: this is the
    explicit choice of sampling. Afterwards every weight of the model is as
    it was (nothing is trained or updated).

    Args:
        model: A `keras.Model` with noisy layers.
        x: The inputs, anything `model.predict` takes: an array, a list or
            dict of arrays for a model with several inputs, a
            `tf.data.Dataset` or a `keras.utils.PyDataset` (iterated once
            per sample: do not shuffle it).
        samples: Positive integer, the number of forward passes.
        batch_size: Positive integer, the batch size of each pass (default
            32, as `predict`; leave it out for datasets, which batch
            themselves).
        seed: Optional integer: with a seed, two calls return identical
            arrays (and the layers' own noise streams are left where they
            were); without, the layers' streams advance, so successive
            calls draw new noise.

    Returns:
        A NumPy array of shape `(samples,) + model.predict(x).shape`; for a
        model with several outputs, the structure `predict` returns (a list
        or dict) of such arrays.

    Raises:
        TypeError: if `model` is not a Keras model, or for arguments of the
            wrong type.
        ValueError: for a model without noisy layers or invalid arguments.

    Example:

    ```python
    draws = noisylayers.mc_sample(model, x_test, samples=50, seed=0)
    draws.shape  # (50, len(x_test), 10)
    ```
    """
    samples = check_positive_int("samples", samples)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    seed = check_seed(seed)
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model` (with a `predict` "
            f"method). Received: model={model!r} (of type "
            f"{type(model).__name__})"
        )
    layers = control.noise_layers(model)
    if not layers:
        raise ValueError(
            f"Model '{model.name}' has no noisy layers: Monte Carlo "
            "prediction would repeat `predict`. Received: model="
            f"{model.name}"
        )
    saved_states = [
        np.array(keras.ops.convert_to_numpy(layer.seed_generator.state.value))
        for layer in layers
    ]
    cached_function = model.predict_function
    outputs = []
    try:
        for index, layer in enumerate(layers):
            layer.sample_at_inference = True
            if seed is not None:
                state = saved_states[index].copy()
                state[:] = [derive_seed(seed, ("mc_predict", index)), 0]
                layer.seed_generator.state.assign(state)
        # A predict function traced with the noise on (Keras caches one per
        # model: the cached one was traced without it), kept for the next
        # call while the model's own one and its settings stay the same.
        settings = _sampling_settings(model, layers)
        kept = getattr(model, _SAMPLING_FUNCTION, None)
        reuse = (
            isinstance(kept, _Kept)
            and kept.model_function is cached_function
            and _same(kept.settings, settings)
        )
        model.predict_function = kept.function if reuse else None
        for _ in range(samples):
            outputs.append(model.predict(x, batch_size=batch_size, verbose=0))
        setattr(
            model,
            _SAMPLING_FUNCTION,
            _Kept(cached_function, settings, model.predict_function),
        )
    finally:
        model.predict_function = cached_function
        for layer, state in zip(layers, saved_states):
            layer.sample_at_inference = False
            if seed is not None:
                layer.seed_generator.state.assign(state)
    return keras.tree.map_structure(lambda *a: np.stack(a), *outputs)


def mc_predict(model, x, samples=30, batch_size=None, seed=None):
    """Monte Carlo prediction: the mean and spread over noisy forward passes.

    The mean and standard deviation over the samples of
    `noisylayers.mc_sample(model, x, samples, batch_size, seed)`: `samples`
    forward passes with weight noise sampled in every noisy layer (as a
    training call would: its own estimator, `enabled` and `scale`) and
    everything else in inference mode (Dropout off, BatchNormalization on
    its moving statistics), run through the model's compiled predict
    function. Deterministic inference (`model.predict`) stays the default
    everywhere else: this is the explicit choice of sampling. Afterwards
    every weight of the model is as it was (nothing is trained or updated).

    For a classifier, the mean of its logits is not its predictive
    distribution: take the samples (`mc_sample`) and average the
    probabilities (`noisylayers.uncertainty.predictive_probs`).

    Args:
        model: A `keras.Model` with noisy layers.
        x: The inputs, anything `model.predict` takes (an array, a list or
            dict of arrays for a model with several inputs, a
            `tf.data.Dataset` or a `keras.utils.PyDataset`).
        samples: Positive integer, the number of forward passes.
        batch_size: Positive integer, the batch size of each pass
            (default 32, as `predict`).
        seed: Optional integer: with a seed, two calls return identical
            arrays (and the layers' own noise streams are left where they
            were); without, the layers' streams advance.

    Returns:
        `(mean, std)`: NumPy arrays shaped like `model.predict(x)` (for a
        model with several outputs, two lists or dicts of them, as
        `predict` returns), the mean and standard deviation over the
        samples (per output element).

    Raises:
        TypeError: if `model` is not a Keras model, or for arguments of the
            wrong type.
        ValueError: for a model without noisy layers or invalid arguments.

    Example:

    ```python
    mean, std = noisylayers.mc_predict(model, x_test, samples=50, seed=0)
    ```
    """
    stacked = mc_sample(model, x, samples=samples, batch_size=batch_size, seed=seed)
    # In float64, so that identical samples give a spread of exactly 0.
    mean = keras.tree.map_structure(
        lambda a: a.mean(axis=0, dtype=np.float64).astype(a.dtype), stacked
    )
    std = keras.tree.map_structure(
        lambda a: a.std(axis=0, dtype=np.float64).astype(a.dtype), stacked
    )
    return mean, std
