"""The `kl` entry of `fit`'s logs: the weighted KL that the training loss included.

A noisy layer with a KL term adds `kl_weight * KL` to the training loss, so
`fit`'s `loss` is the negative ELBO while `val_loss` (inference calls add no
KL) is the data term alone. The `kl` entry tells the two parts apart: the
weighted KL per training step, averaged over the epoch and summed over the
noisy layers. It is an entry of training logs only: `evaluate` (and the
validation of `fit`) return what they return for any model, without it.

How it reaches the logs on every backend: each such layer keeps a running
`(sum, count)` of its weighted KL in a non-trainable variable (`kl_log`,
updated in training calls, so the JAX trainer carries it like any layer
state, and saved like it), and owns a `KLLog` metric named `kl`.
Keras lists the metrics of every layer; each `KLLog` reports the same sum
over all live noisy layers, so the entry appears once. A layer's metric
cannot see which model it is in, hence the sum over the live layers and the
reset of all of them when an epoch starts: only the model being trained adds
to them during its epoch.
"""

import weakref

import keras

from noisylayers import _keras_private

#: The live noisy layers with a KL term, each with its `kl_log` variable.
_LAYERS = weakref.WeakSet()

#: Whether the latest traced call of a noisy layer with a KL term was a
#: training call: a compiled train step (forward pass, then metrics) reports
#: `kl`, a test step does not (see `KLLog.result`).
_LAST_TRACED_CALL_TRAINED = [False]


def note_call(training):
    """Notes whether a KL layer's call (being traced or run) is training."""
    _LAST_TRACED_CALL_TRAINED[0] = bool(training)


def add_kl_log(layer):
    """Creates `layer`'s `kl_log` variable and registers the layer.

    Returns:
        The new non-trainable float32 variable of shape `(2,)`: the sum of
        the weighted KL terms of the training steps since the last reset, and
        their number.
    """
    variable = layer.add_weight(
        name="kl_log",
        shape=(2,),
        dtype="float32",
        initializer="zeros",
        trainable=False,
        autocast=False,
        aggregation="only_first_replica",
    )
    _LAYERS.add(layer)
    return variable


def record(variable, weighted_kl):
    """Adds one training step's weighted KL to a `kl_log` variable."""
    step = keras.ops.stack([keras.ops.cast(weighted_kl, "float32"), 1.0])
    variable.assign_add(step)


class KLLog(keras.metrics.Metric):
    """The `kl` entry of the logs: the weighted KL per training step.

    Reports the sum over the live noisy layers of the mean weighted KL of
    their training steps since the last reset (start of an epoch or of an
    `evaluate`). Keras resets and reads it with the model's other metrics; it
    has no variables of its own.
    """

    def __init__(self, name="kl", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, *args, **kwargs):
        # The layers update their `kl_log` variables in training calls.
        pass

    def result(self):
        # `kl` is an entry of training logs only: `evaluate` (and fit's
        # validation) keep their usual return values. Inside a compiled step
        # the step's own forward pass tells (it was traced just before);
        # eagerly (Keras reads the metrics again at the end of an epoch or
        # an evaluation), whether any layer trained since the last reset.
        logs = list(_LAYERS)
        if _keras_private.tracing():
            if not _LAST_TRACED_CALL_TRAINED[0]:
                return {}
        elif not any(_trained(layer) for layer in logs):
            return {}
        # Inside a JAX training step the layers' state is not readable here
        # (it travels as the step's arguments): the entry is then 0 for that
        # step's progress bar, and exact at the end of the epoch, when Keras
        # reads the metrics again after syncing the state.
        total = keras.ops.zeros((), "float32")
        for layer in logs:
            log = layer.kl_log_variable
            value = None if log is None else _keras_private.read_value_if_current(log)
            if value is not None:
                total = total + keras.ops.divide_no_nan(value[0], value[1])
        return {self.name: total}

    def reset_state(self):
        for layer in list(_LAYERS):
            log = layer.kl_log_variable
            if log is not None:
                log.assign(keras.ops.zeros((2,), "float32"))


def _trained(layer):
    log = layer.kl_log_variable
    return log is not None and float(keras.ops.convert_to_numpy(log)[1]) > 0
