"""What the noise is doing: `noise_stats` per weight, and `mc_predict`."""

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


def mc_predict(model, x, samples=30, batch_size=None, seed=None):
    """Monte Carlo prediction: the mean and spread over noisy forward passes.

    Runs `model` on `x` `samples` times with weight noise sampled in every
    noisy layer (as a training call would: its own estimator, `enabled` and
    `scale`) and everything else in inference mode (Dropout off,
    BatchNormalization on its moving statistics). Deterministic inference
    (`model.predict`) stays the default everywhere else: this is the
    explicit choice of sampling. Afterwards every weight of the model is as
    it was (nothing is trained or updated).

    Args:
        model: A built `keras.Model` with noisy layers.
        x: The inputs (an array, or a list or dict of arrays for a model
            with several inputs).
        samples: Positive integer, the number of forward passes.
        batch_size: Positive integer, the batch size of each pass
            (default 32, as `predict`).
        seed: Optional integer: with a seed, two calls return identical
            arrays (and the layers' own noise streams are left where they
            were); without, the layers' streams advance.

    Returns:
        `(mean, std)`: NumPy arrays shaped like `model.predict(x)`, the mean
        and standard deviation over the samples (per output element).

    Raises:
        ValueError: for a model without noisy layers or invalid arguments.

    Example:

    ```python
    mean, std = noisylayers.mc_predict(model, x_test, samples=50, seed=0)
    ```
    """
    samples = check_positive_int("samples", samples)
    batch_size = check_positive_int("batch_size", batch_size or 32)
    seed = check_seed(seed)
    layers = control.noise_layers(model)
    if not layers:
        raise ValueError(
            f"Model '{model.name}' has no noisy layers: Monte Carlo "
            "prediction would repeat `predict`. Received: model="
            f"{model.name}"
        )
    n = len(keras.tree.flatten(x)[0])
    saved_states = [
        np.array(keras.ops.convert_to_numpy(layer.seed_generator.state.value))
        for layer in layers
    ]
    outputs = []
    try:
        for index, layer in enumerate(layers):
            layer.sample_at_inference = True
            if seed is not None:
                state = saved_states[index].copy()
                state[:] = [derive_seed(seed, ("mc_predict", index)), 0]
                layer.seed_generator.state.assign(state)
        for _ in range(samples):
            batches = []
            for start in range(0, n, batch_size):
                batch = keras.tree.map_structure(
                    lambda a: a[start : start + batch_size], x
                )
                batches.append(
                    keras.ops.convert_to_numpy(model(batch, training=False))
                )
            outputs.append(np.concatenate(batches, axis=0))
    finally:
        for layer, state in zip(layers, saved_states):
            layer.sample_at_inference = False
            if seed is not None:
                layer.seed_generator.state.assign(state)
    stacked = np.stack(outputs)
    # In float64, so that identical samples give a spread of exactly 0.
    mean = stacked.mean(axis=0, dtype=np.float64)
    std = stacked.std(axis=0, dtype=np.float64)
    return mean.astype(stacked.dtype), std.astype(stacked.dtype)
