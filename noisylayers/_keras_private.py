"""The only module that relies on Keras (and TensorFlow) internals.

`WeightNoise` runs an unmodified layer on noisy weight values through
`keras.StatelessScope`: inside the scope, reading a mapped variable returns
the mapped tensor. The public scope alone is not enough, so this module also
uses private details of Keras 3 (pinned by `tests/test_keras_private.py`):

- `scope.state_mapping` (a dict keyed by `id(variable)`) and
  `get_stateless_scope()`: reads consult only the innermost scope, so when an
  outer scope exists (the JAX trainer runs the whole model inside one) a
  nested scope would hide the outer mapping. We extend the outer mapping for
  the duration of the call instead, and restore it afterwards.
- `StatelessScope.add_update`: assignments inside a scope are captured, not
  applied. We record which variables were assigned (BatchNormalization
  statistics, the inner layer's seed generators, ...) and write them back.
- `Layer._flatten_layers`: to find LoRA-enabled or quantized sublayers.
- `Layer._get_own_losses`: the losses a layer added itself since its
  outermost call began (`own_losses`), so that a noisy layer called twice
  in one step adds its KL term once.
- `Operation.compute_output_spec` traces `call` on symbolic inputs; a
  `Layer` overrides it, so `WeightNoise` calls the `Operation` version on
  itself (`trace_output_spec`) when its wrapped layer cannot answer.
- `Layer.__call__` runs `self.call`, so an instance attribute `call`
  replaces a layer's computation for a while (`override_call`): the Flipout
  LSTM runs Keras' own recurrent loop (masking, `go_backwards`, states)
  with its own step.
- TensorFlow's `control_flow_util.GraphOrParentsInXlaContext`
  (`in_xla_context`): `tf.function(jit_compile=True)` traces inside an XLA
  context. Under XLA, `tf.slice` needs its `begin` at compile time, so a
  random offset recompiles the step at every call; the noise table takes its
  windows with `tf.gather` there instead.
"""

import contextlib

import keras
from keras.src.backend import AutocastScope
from keras.src.backend.common.stateless_scope import get_stateless_scope

_MISSING = object()


class _RecordingScope(keras.StatelessScope):
    """A `StatelessScope` that remembers which variables were assigned."""

    def __init__(self, state_mapping):
        super().__init__(state_mapping=state_mapping, collect_losses=True)
        self.updated_variables = []

    def add_update(self, update):
        variable, _ = update
        if id(variable) not in self.state_mapping:
            self.updated_variables.append(variable)
        super().add_update(update)


def read_value(variable):
    """The current value of `variable`, in its own dtype.

    Honours an enclosing stateless scope (e.g. the JAX trainer's, where the
    variable's own storage may be empty) and ignores autocasting, so the
    caller perturbs the full-precision weight.
    """
    scope = get_stateless_scope()
    if scope is not None:
        value = scope.get_current_value(variable)
        if value is not None:
            return value
    with AutocastScope(None):
        return variable.value


def tracing():
    """Whether code runs while a function is traced (compiled), not eagerly.

    True inside a TensorFlow graph (`tf.function`) and inside the JAX
    trainer's steps (which run the model in a stateless scope under `jit`).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    return get_stateless_scope() is not None


def read_value_if_current(variable):
    """`read_value(variable)`, or `None` where its value is not current here.

    Inside the JAX trainer's steps the model's state travels as arguments:
    a stateless scope maps the variables the step works on, and the others'
    own storage is detached (`None`) or stale. An unmapped variable there
    reads as `None`; everywhere else (eager code, TensorFlow graphs) this is
    `read_value`.
    """
    scope = get_stateless_scope()
    if scope is not None:
        value = scope.get_current_value(variable)
        if value is not None:
            return value
        if keras.backend.backend() == "jax":
            return None
    with AutocastScope(None):
        return variable.value


@contextlib.contextmanager
def substitute(mapping, owner):
    """Within the block, each variable in `mapping` reads as its new value.

    Nothing is assigned to the mapped variables. Assignments that the block
    makes to other variables take effect (now, or through the enclosing
    stateless scope), and losses it adds are added to `owner` once.

    Args:
        mapping: List of `(variable, value)` pairs; each value has the
            variable's shape.
        owner: The layer that receives the losses added within the block
            when there is no enclosing stateless scope.
    """
    mapping = [
        (v, keras.ops.cast(value, v.dtype)) for v, value in mapping
    ]
    outer = get_stateless_scope()
    if outer is not None:
        saved = [(v, outer.state_mapping.get(id(v), _MISSING)) for v, _ in mapping]
        for variable, value in mapping:
            outer.state_mapping[id(variable)] = value
        try:
            yield
        finally:
            for (variable, old), (_, value) in zip(saved, mapping):
                # Keep a value that the block itself assigned.
                if outer.state_mapping.get(id(variable)) is not value:
                    continue
                if old is _MISSING:
                    del outer.state_mapping[id(variable)]
                else:
                    outer.state_mapping[id(variable)] = old
        return

    scope = _RecordingScope(mapping)
    with scope:
        yield
    for variable in scope.updated_variables:
        variable.assign(scope.get_current_value(variable))
    for loss in scope.losses:
        owner.add_loss(loss)


def own_variables(layer):
    """The variables a layer saves itself, in `Layer.save_own_variables` order."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def own_losses(layer):
    """The losses `layer` added itself (`add_loss`) in the current step.

    Keras clears them when an outermost call begins; inside a stateless
    scope that collects losses (the JAX trainer's) they are the scope's
    losses that `layer` added. Not its sublayers' losses nor its weight
    regularizers.
    """
    return layer._get_own_losses()


def sublayers(layer):
    """`layer` and all the layers it contains, depth first."""
    return list(layer._flatten_layers(include_self=True, recursive=True))


def trace_output_spec(layer, *args, **kwargs):
    """The output spec of `layer(*args, **kwargs)`, by tracing its `call`.

    What `keras.Operation.compute_output_spec` does, bypassing the `Layer`
    override (which would ask the layer's `compute_output_shape`).
    """
    return keras.Operation.compute_output_spec(layer, *args, **kwargs)


@contextlib.contextmanager
def override_call(layer, call):
    """Within the block, `layer(...)` runs `call` instead of `layer.call`."""
    layer.call = call
    try:
        yield
    finally:
        del layer.call


def is_cloneable(model):
    """Whether `keras.models.clone_model` can rebuild `model` layer by layer.

    Only Sequential and functional models can be cloned with a
    `clone_function`; Keras' `Functional` class is not public.
    """
    from keras.src.models.functional import Functional

    return isinstance(model, (keras.Sequential, Functional))


def in_xla_context():
    """Whether TensorFlow is tracing a function for XLA (`jit_compile=True`).

    False on the other backends, eagerly and in plain `tf.function` graphs.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)
