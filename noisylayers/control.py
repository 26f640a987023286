"""Whole-model noise controls: find the noisy layers, switch and scale them.

A *noisy layer* is a `noisylayers.NoisyLayer`: the `WeightNoise` wrapper or
a variant (`NoisyDense`, `NoisyConv2D`, `NoisyLSTM`, ...). Each
has an `enabled` flag and a `scale` factor kept in non-trainable variables,
so the functions here take effect in the next batch of a compiled `fit` or
`evaluate`, without recompiling.
"""

import contextlib
import fnmatch

import keras

from noisylayers import _keras_private
from noisylayers._validation import check_magnitude
from noisylayers.layers import NoisyLayer


def _is_noise_layer(layer):
    return isinstance(layer, NoisyLayer)


def _children(layer):
    """The layers directly inside `layer`, in model order where there is one."""
    if isinstance(layer, keras.Model):
        return layer.layers
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, keras.layers.Wrapper):
        return [layer.layer]
    # Any other layer may hold sublayers as attributes (a custom block);
    # Keras has no public accessor for them.
    return _keras_private.sublayers(layer)[1:]


def _walk(layer, seen):
    if id(layer) in seen:
        return
    seen.add(id(layer))
    if _is_noise_layer(layer):
        yield layer
    for child in _children(layer):
        yield from _walk(child, seen)


def noise_layers(model, layers=None):
    """Returns the noisy layers of a model, in order.

    Recurses into nested models (`Sequential`, functional and subclassed)
    and into wrappers (`TimeDistributed`, `Bidirectional`, and the noisy
    layers themselves), so a noisy layer anywhere in `model` is found. A
    layer used at several places is listed once.

    Args:
        model: A `keras.Model` or any `keras.layers.Layer` (a noisy layer
            itself is included in the result).
        layers: Optional selection, as in `set_noise`: `None` for every
            noisy layer, or a layer name, glob pattern (`"conv*"`) or layer
            object, or a list of these.

    Returns:
        List of the selected noisy layers, in the order they appear in
        `model` (a functional model's order for functional models).

    Raises:
        TypeError: if `model` is not a Keras layer, or `layers` holds
            something other than strings and layers.
        ValueError: if a name or pattern in `layers` matches no noisy layer
            (the message lists the noisy layers), or a layer object in
            `layers` is not a noisy layer of `model`.

    Example:

    >>> [layer.name for layer in noisylayers.noise_layers(model)]
    ['conv1', 'conv2', 'dense']
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a Keras model or layer. "
            f"Received: model={model!r} (of type {type(model).__name__})"
        )
    found = list(_walk(model, set()))
    if layers is None:
        return found
    return _select(model, found, layers)


def _select(model, found, layers):
    return select_layers(model, found, layers, "noisy layer")


def select_layers(model, candidates, layers, what="layer"):
    """The `candidates` that `layers` selects, in `candidates`' order.

    Args:
        model: The model (for messages).
        candidates: The layers that can be selected.
        layers: A layer name, glob pattern (`fnmatch`) or layer object, or
            a non-empty list of these.
        what: What the candidates are, for messages (`"noisy layer"`).

    Raises:
        TypeError: for a malformed `layers`.
        ValueError: for a name or pattern matching no candidate, or a layer
            object that is not a candidate.
    """
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            "Argument `layers` must be None, a layer name, glob pattern or "
            "layer, or a non-empty list of these. "
            f"Received: layers={layers!r}"
        )
    known = [layer.name for layer in candidates]
    selected = set()
    for item in layers:
        if isinstance(item, keras.layers.Layer):
            if not any(item is layer for layer in candidates):
                reason = (
                    f"is not a {what}"
                    if what == "noisy layer" and not _is_noise_layer(item)
                    else f"is not in model '{model.name}'"
                )
                raise ValueError(
                    f"Layer '{item.name}' (of type {type(item).__name__}) "
                    f"{reason}. The {what}s of '{model.name}' are "
                    f"{known}. Received: layers={_names(layers)}"
                )
            selected.add(id(item))
        elif isinstance(item, str):
            matches = [
                layer
                for layer in candidates
                if fnmatch.fnmatchcase(layer.name, item)
            ]
            if not matches:
                raise ValueError(
                    f"No {what} of model '{model.name}' is named "
                    f"{item!r}. Its {what}s are {known}. "
                    f"Received: layers={_names(layers)}"
                )
            selected.update(id(layer) for layer in matches)
        else:
            raise TypeError(
                "Argument `layers` must hold layer names, glob patterns or "
                f"layers. Received: {item!r} (of type {type(item).__name__}) "
                f"in layers={_names(layers)}"
            )
    return [layer for layer in candidates if id(layer) in selected]


def leaf_layers(model):
    """Every layer of `model` that is not itself a model, nested ones'
    included, in model order; a layer used twice is listed once."""
    found, seen = [], set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.Model):
            for child in layer.layers:
                walk(child)
        else:
            found.append(layer)

    walk(model)
    return found


def _names(layers):
    return [
        item.name if isinstance(item, keras.layers.Layer) else item
        for item in layers
    ]


def set_noise(model, enabled=None, scale=None, layers=None):
    """Switches noise on or off and sets its scale, in some or all layers.

    Acts on the noisy layers' `enabled` and `scale` variables, so it takes
    effect from the next batch also inside a compiled `fit` or `evaluate`
    (from a callback, say), without recompiling. Arguments left to `None`
    are not changed. All arguments are checked before anything changes.

    Args:
        model: A `keras.Model` or layer containing noisy layers.
        enabled: Optional boolean: noise on (`True`) or off (`False`).
        scale: Optional non-negative number multiplying the noise (1 is
            each layer's nominal noise, 0 no noise).
        layers: Which noisy layers to change: `None` for all of them, or
            a layer name, glob pattern (`"conv*"`, matched with
            `fnmatch`) or layer object, or a list of these.

    Returns:
        The list of the noisy layers that were changed, in model order.

    Raises:
        TypeError: for an `enabled` that is not a boolean, a `scale` that
            is not a number, or a malformed `layers`.
        ValueError: if `scale` is negative; if `model` has no noisy layer;
            if a name or pattern in `layers` matches no noisy layer (the
            message lists the noisy layers) or a layer object in `layers`
            is not a noisy layer of `model`.

    Example:

    ```python
    noisylayers.set_noise(model, enabled=False)              # all off
    noisylayers.set_noise(model, enabled=True, layers="conv*")
    noisylayers.set_noise(model, scale=0.5, layers=[model.layers[-1]])
    ```
    """
    selected, scale = _checked(model, enabled, scale, layers)
    _apply(selected, enabled, scale)
    return selected


def _checked(model, enabled, scale, layers):
    """Validates `set_noise`'s arguments; returns the selection and scale."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(
            "Argument `enabled` must be None or a boolean. "
            f"Received: enabled={enabled!r}"
        )
    if scale is not None:
        scale = check_magnitude("scale", scale)
    selected = noise_layers(model, layers)
    if not selected:
        raise ValueError(
            f"Model '{model.name}' has no noisy layers (`noisylayers."
            "WeightNoise`): there is no noise to set."
        )
    return selected, scale


def _apply(layers, enabled, scale):
    for layer in layers:
        if enabled is not None:
            layer.enabled = enabled
        if scale is not None:
            layer.scale = scale


@contextlib.contextmanager
def noise_scope(model, enabled=None, scale=None, layers=None):
    """Like `set_noise`, for the duration of a `with` block.

    On exit, also when the block raises, every selected layer gets back the
    `enabled` and `scale` it had on entry, whatever the block did to them.

    Args:
        model, enabled, scale, layers: As in `set_noise`.

    Yields:
        The list of the selected noisy layers.

    Raises:
        As `set_noise`, on entry.

    Example:

    ```python
    with noisylayers.noise_scope(model, enabled=False):
        clean_history = model.fit(x, y, epochs=1)  # no weight noise
    # every noisy layer is back to its previous state here
    with noisylayers.noise_scope(model, scale=2.0, layers="dense*"):
        model.fit(x, y, epochs=1)                 # twice the noise
    ```
    """
    selected, scale = _checked(model, enabled, scale, layers)
    saved = [(layer, layer.enabled, layer.scale) for layer in selected]
    _apply(selected, enabled, scale)
    try:
        yield selected
    finally:
        for layer, was_enabled, was_scale in saved:
            _apply([layer], was_enabled, was_scale)
