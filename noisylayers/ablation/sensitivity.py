"""Sensitivity ablation: how much noise in each layer hurts a trained model."""

import functools

import keras

from noisylayers import _keras_private
from noisylayers import control
from noisylayers import noise as noise_module
from noisylayers._validation import check_list
from noisylayers._validation import check_number
from noisylayers._validation import check_positive_int
from noisylayers._validation import check_seed
from noisylayers.ablation.checks import check_distinct_names
from noisylayers.ablation.checks import check_model
from noisylayers.ablation.progress import progress_bar
from noisylayers.ablation.results import SensitivityAblationResult
from noisylayers.ablation.settings import SENSITIVITY_DRAWS
from noisylayers.ablation.settings import SENSITIVITY_SCALES
from noisylayers.layers.base import NoisyLayer
from noisylayers.layers.targets import DEFAULT_TARGETS
from noisylayers.layers.targets import matches



def sensitivity_ablation(
    model,
    data,
    scales=SENSITIVITY_SCALES,
    draws=SENSITIVITY_DRAWS,
    layers=None,
    batch_size=256,
    seed=0,
    metadata=None,
    progress=True,
    noise=None,
):
    """Evaluates a trained model with noise in one layer at a time.

    For each selected layer and each scale, draws weight noise `draws`
    times (`noisy = clean + scale * perturbation` for each perturbed
    weight), and evaluates the model with `model.evaluate` on `data`.

    - `noise=None`: each selected *noisy* layer is perturbed with its own
      kind, as it would be in training with its `scale` set to that scale.
    - `noise` given (a kind, an alias or a `"kind:value"` spec, e.g.
      `RelativeGaussian(0.05, per="channel")`): works on any model, also
      one without noisy layers. Each selected layer's kernels, biases,
      recurrent kernels and embeddings are perturbed with that kind; the
      default selection is every layer with a kernel.
 One draw is one perturbed copy of the weights for the whole
    evaluation. The other layers keep their clean weights, and the model
    runs in inference mode (Dropout off, BatchNormalization with its moving
    statistics): only the weights change.

    The noise is put into the layer's variables for each evaluation and the
    clean values are assigned back afterwards, also on an error or an
    interruption. The layers' `enabled` and `scale` settings play no part.

    Args:
        model: A compiled, built `keras.Model`, e.g. a trained one: with
            noisy layers, or any model when `noise` is given.
        data: `(x, y)`, the evaluation data (anything `evaluate` takes).
        scales: Distinct non-negative numbers: the noise scales to try,
            as multiples of each layer's noise.
        draws: Positive integer, the number of noise draws per layer and
            scale.
        layers: Which layers to perturb: `None` for all the noisy layers
            (or, with `noise`, every layer with a kernel), or names, glob
            patterns or layer objects.
        batch_size: Positive integer, for `evaluate`.
        seed: Non-negative integer seeding the noise draws.
        metadata: Optional JSON-compatible dict kept in the result's spec.
        progress: Whether to show a progress bar.
        noise: Optional noise kind for every selected layer (a kind without
            learned variables), instead of each noisy layer's own.

    Returns:
        A `SensitivityAblationResult`: the metrics per layer and scale (mean
        and spread over the draws, difference to the clean model).

    Raises:
        ValueError: for invalid arguments, an uncompiled or unbuilt model,
            a model without noisy layers and no `noise`, a learned kind as
            `noise`, or a selection that matches no layer.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    result = noisylayers.ablation.sensitivity_ablation(
        model, (x_val, y_val), scales=[0.5, 1, 2, 4], draws=5)
    print(result)
    result.plot("sensitivity.png")
    ```
    """
    check_model(model)
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(
            "Argument `data` must be a pair (x, y). "
            f"Received: data of type {type(data).__name__}"
        ) from None
    scales = check_list(
        "scales", scales, functools.partial(check_number, "scales", low=0.0)
    )
    draws = check_positive_int("draws", draws)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_seed(seed)
    perturbed = _perturbed_layers(model, layers, noise)
    names = [name for name, _, _ in perturbed]

    def evaluate():
        metrics = model.evaluate(
            x, y, batch_size=batch_size, verbose=0, return_dict=True
        )
        return {k: float(v) for k, v in metrics.items()}

    spec = {
        "kind": "sensitivity",
        "layers": names,
        "scales": scales,
        "draws": draws,
        "seed": seed,
        "noise": {name: repr(kind) for name, kind, _ in perturbed},
        "clean": evaluate(),
        "metadata": metadata or {},
    }
    generator = keras.random.SeedGenerator(seed)
    records = []
    with progress_bar(
        total=len(perturbed) * len(scales),
        enabled=progress,
        desc="Sensitivity ablation",
        unit="scale",
    ) as bar:
        for name, kind, (variables, sample) in perturbed:
            clean = [keras.ops.copy(v.value) for v in variables]
            try:
                for scale in scales:
                    bar.set_postfix_str(f"{name} x{scale:g}")
                    for draw in range(draws):
                        for variable, value in zip(variables, clean):
                            variable.assign(value)
                        for variable, value in sample(generator, scale):
                            variable.assign(value)
                        records.append(
                            {
                                "layer": name,
                                "scale": scale,
                                "draw": draw,
                                "metrics": evaluate(),
                            }
                        )
                    bar.update()
            finally:
                for variable, value in zip(variables, clean):
                    variable.assign(value)
    return SensitivityAblationResult(spec, records)


def sensitivity_layers(model, layers=None, noise=None):
    """The layers that `sensitivity_ablation` would perturb, and their noise.

    Checks the model, `layers` and `noise` as `sensitivity_ablation` does,
    without evaluating anything.

    Args:
        model, layers, noise: As in `sensitivity_ablation`.

    Returns:
        A list of `(layer name, noise kind)` pairs, in model order.

    Raises:
        TypeError, ValueError: as `sensitivity_ablation`, for the model,
            `layers` and `noise`.
    """
    check_model(model)
    return [(name, kind) for name, kind, _ in _perturbed_layers(model, layers, noise)]


def _perturbed_layers(model, layers, noise):
    """`[(name, kind, (variables, sample))]` for each layer to perturb.

    `sample(generator, scale)` returns `(variable, noisy value)` pairs.
    """
    perturbed = _select_perturbed(model, layers, noise)
    check_distinct_names(model, [name for name, _, _ in perturbed], "selected layers")
    return perturbed


def _select_perturbed(model, layers, noise):
    if noise is None:
        selected = check_model(
            model,
            noisy=True,
            layers=layers,
            built=True,
            nothing_to="perturb",
            hint="Pass `noise=` (e.g. noise='gaussian:0.05'; `--noise` on the "
            "command line) to perturb the weights of a plain model.",
        )
        return [
            (layer.name, layer.noise, (layer.target_variables, layer.noisy_weights))
            for layer in selected
        ]
    kind = noise_module.get(noise)
    if kind.learned:
        raise ValueError(
            f"Argument `noise` must be a kind without learned variables to "
            f"perturb a trained model's weights. Received: noise={kind!r}"
        )
    result = []
    for layer in _select_layers(model, layers):
        if isinstance(layer, NoisyLayer):
            variables = layer.target_variables
        else:
            variables = [
                v
                for v in layer.weights
                if any(matches(v, t) for t in DEFAULT_TARGETS)
                and keras.backend.is_float_dtype(v.dtype)
            ]
        if not variables:
            raise ValueError(
                f"Layer '{layer.name}' has no weight to perturb (kernels, "
                f"biases, recurrent kernels, embeddings). Received: "
                f"layers={layers!r}"
            )
        result.append((layer.name, kind, (variables, _sampler(kind, variables))))
    return result


def _sampler(kind, variables):
    def sample(generator, scale):
        return [
            (v, kind(_keras_private.read_value(v), generator, scale))
            for v in variables
        ]

    return sample


def _select_layers(model, layers):
    candidates = control.leaf_layers(model)
    if layers is not None:
        return control.select_layers(model, candidates, layers)
    selected = [
        layer for layer in candidates if any(matches(v, "kernel") for v in layer.weights)
    ]
    if not selected:
        raise ValueError(
            f"Model '{model.name}' has no layer with a kernel to perturb. "
            "Name the layers with `layers=`."
        )
    return selected
