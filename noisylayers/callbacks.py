"""Keras callbacks that act on weight noise during training."""

import math
import numbers

import keras

from noisylayers import control
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_positive_int

SCHEDULES = ("constant", "linear", "cosine")
_UNITS = ("epoch", "step")


class NoiseSchedule(keras.callbacks.Callback):
    """Sets the noise `scale` of noisy layers per epoch or per step.

    A ramp goes from `start` to `end` over `duration` epochs (or steps) and
    stays at `end` afterwards:

    - `"constant"`: one scale throughout: `start` or `end`, whichever is
      given (1 if neither).
    - `"linear"`: a straight line from `start` (at index 0) to `end` (at
      index `duration - 1`).
    - `"cosine"`: half a cosine wave from `start` to `end`, flat at both
      ends: `end + (start - end) * (1 + cos(pi * t)) / 2`, `t` going from
      0 to 1.
    - a callable: `schedule(index)` returns the scale for that index (the
      epoch, or the step, counted from 0): a function, or any of Keras'
      schedules (`keras.optimizers.schedules.CosineDecay`,
      `ExponentialDecay`, `PiecewiseConstantDecay`, a
      `LearningRateSchedule` of your own, ...), whose value (a tensor) is
      taken as a float.

    The callback only changes `scale`: use `noisylayers.set_noise` to
    switch layers on or off. Like `set_noise`, it acts on the layers'
    variables, so compiled training picks up each new value in its next
    batch without recompiling. A step index counts the training batches
    since the start of this `fit` call; with `steps_per_execution > 1` the
    scale can only change between executions. At the end of each epoch the
    scale in use is logged as `logs["noise_scale"]` (and so appears in the
    `History`).

    Args:
        schedule: `"constant"`, `"linear"`, `"cosine"` or a callable taking
            the epoch (or step) index and returning a non-negative number
            (or a scalar tensor), such as a Keras learning-rate schedule.
        start: Non-negative number, the scale at index 0 of a ramp.
            Defaults to `0.0` (see `"constant"`).
        end: Non-negative number, the scale at the end of the ramp and
            after. Defaults to `1.0`.
        duration: Positive integer, the number of epochs (or steps) of the
            ramp, or `None` (default) for the whole `fit` call (its
            `epochs`, or its `epochs * steps` with `per="step"`).
        per: `"epoch"` (default): set the scale at the start of each epoch;
            or `"step"`: at the start of each training batch.
        layers: Which noisy layers to schedule, as in
            `noisylayers.set_noise`: `None` for all of them, or names, glob
            patterns or layer objects.
        verbose: `0` (default) is quiet, `1` prints each change of scale.

    Raises:
        ValueError: for an unknown `schedule` or `per`, a negative `start`
            or `end` (or two different ones for `"constant"`), a `duration`
            below 1; during `fit`, if the model has
            no noisy layer, `layers` selects none, a callable returns an
            invalid scale, or `duration` is `None` with `per="step"` and
            the number of steps per epoch is unknown.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    # Warm up: no noise in the first epoch, full noise from the fifth on.
    schedule = noisylayers.callbacks.NoiseSchedule(
        "linear", start=0.0, end=1.0, duration=5)
    model.fit(x, y, epochs=20, callbacks=[schedule])

    # Half the noise, from the first batch of `fit` on.
    noisylayers.callbacks.NoiseSchedule("constant", start=0.5)

    # Any function of the epoch.
    def halve_every_10_epochs(epoch):
        return 0.5 ** (epoch // 10)

    noisylayers.callbacks.NoiseSchedule(halve_every_10_epochs, layers="conv*")

    # Keras' schedules: from 1 down to 0 along a cosine over 10 epochs.
    noisylayers.callbacks.NoiseSchedule(keras.optimizers.schedules.CosineDecay(1.0, 10))
    ```
    """

    def __init__(
        self,
        schedule="linear",
        start=None,
        end=None,
        duration=None,
        per="epoch",
        layers=None,
        verbose=0,
    ):
        super().__init__()
        if not callable(schedule) and schedule not in SCHEDULES:
            raise ValueError(
                f"Argument `schedule` must be one of {list(SCHEDULES)} or a "
                f"callable. Received: schedule={schedule!r}"
            )
        if per not in _UNITS:
            raise ValueError(
                f"Argument `per` must be one of {list(_UNITS)}. "
                f"Received: per={per!r}"
            )
        if duration is not None:
            duration = check_positive_int("duration", duration)
        if start is not None:
            start = check_magnitude("start", start)
        if end is not None:
            end = check_magnitude("end", end)
        if schedule == "constant":
            if start is not None and end is not None and start != end:
                raise ValueError(
                    "A constant schedule has one scale: pass `start` or "
                    f"`end`. Received: start={start!r}, end={end!r}"
                )
            start = end = next((v for v in (start, end) if v is not None), 1.0)
        self.schedule = schedule
        self.start = 0.0 if start is None else start
        self.end = 1.0 if end is None else end
        self.duration = duration
        self.per = per
        self.layers = layers
        self.verbose = verbose
        self._scale = None
        self._step = 0

    def scale_at(self, index):
        """Returns the scale this schedule sets at an epoch or step index.

        Args:
            index: Non-negative integer, the epoch (or step) index.

        Returns:
            The scale, a non-negative float.
        """
        if callable(self.schedule):
            return check_magnitude("scale", _python_number(self.schedule(index)))
        if self.schedule == "constant":
            return self.end
        duration = self._duration()
        t = 1.0 if duration == 1 else min(index / (duration - 1), 1.0)
        if self.schedule == "cosine":
            t = (1.0 - math.cos(math.pi * t)) / 2.0
        return self.start + (self.end - self.start) * t

    def _duration(self):
        if self.duration is not None:
            return self.duration
        if not self.params:
            raise ValueError(
                "With duration=None the ramp spans the `fit` call, so its "
                "length is only known during `fit`. Pass `duration` to use "
                "`scale_at` outside `fit`. Received: duration=None"
            )
        epochs = self.params.get("epochs") or 1
        if self.per == "epoch":
            return epochs
        steps = self.params.get("steps")
        if not steps:
            raise ValueError(
                "NoiseSchedule(per='step') needs the number of steps of the "
                "ramp: the number of steps per epoch is unknown for this "
                "data. Pass `duration`. Received: duration=None"
            )
        return epochs * steps

    _log_key = "noise_scale"
    _what = "noise scale"

    def _apply(self, value):
        control.set_noise(self.model, scale=value, layers=self.layers)

    def _set(self, index, kind):
        scale = self.scale_at(index)
        if scale == self._scale:
            return
        # Under JAX, `self.model` syncs the training state into the variables
        # first, and the trainer reads the new values back at the next batch.
        self._apply(scale)
        self._scale = scale
        if self.verbose:
            print(
                f"\n{kind.capitalize()} {index + 1}: {type(self).__name__} "
                f"setting the {self._what} to {scale:g}."
            )

    def on_train_begin(self, logs=None):
        self._scale = None
        self._step = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.per == "epoch":
            self._set(epoch, "epoch")

    def on_train_batch_begin(self, batch, logs=None):
        if self.per == "step":
            self._set(self._step, "step")
            self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._scale is not None:
            logs[self._log_key] = self._scale


def _python_number(value):
    """A schedule's value as a float: Keras' schedules return tensors."""
    if isinstance(value, (numbers.Number, str)) or value is None:
        return value  # `check_number` accepts or refuses it
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return value


class KLWarmup(NoiseSchedule):
    """Ramps the KL term of learned noise kinds, per epoch or per step.

    KL warm-up (annealing): start training with little or no KL and raise
    it to its full weight, so the learned noise does not collapse to the
    prior before the data has shaped the weights. The schedule's value is a
    *factor* on each noisy layer's configured `kl_weight` (the kind's
    `kl_weight`, e.g. `1 / dataset_size`): 0 means no KL, 1 the full KL.
    The layers' `kl_weight` variables are set, so compiled training picks up
    each value in its next batch without recompiling. At the end of each
    epoch the factor is logged as `logs["kl_factor"]`.

    Takes the arguments of `NoiseSchedule` (`schedule`, `start`, `end`,
    `duration`, `per`, `layers`, `verbose`), with the same meaning for the
    factor; `layers=None` selects every noisy layer whose kind has a KL.

    Raises:
        ValueError: as `NoiseSchedule`; during `fit`, if no selected layer
            has a KL term.

    Example:

    ```python
    warmup = noisylayers.callbacks.KLWarmup("linear", start=0.0, end=1.0,
                                            duration=10)
    model.fit(x, y, epochs=50, callbacks=[warmup])
    ```
    """

    _log_key = "kl_factor"
    _what = "KL factor"

    def _apply(self, value):
        layers = [
            layer
            for layer in control.noise_layers(self.model, self.layers)
            if layer.kl_weight is not None
        ]
        if not layers:
            raise ValueError(
                f"Model '{self.model.name}' has no noisy layer with a KL term "
                "(a learned kind such as `LearnedGaussian`) to warm up. "
                f"Received: layers={self.layers!r}"
            )
        for layer in layers:
            layer.kl_weight = value * layer.noise.kl_weight


class NoiseStats(keras.callbacks.Callback):
    """Logs `noisylayers.noise_stats` per layer at the end of each epoch.

    For each noisy layer and perturbed weight, adds
    `"{layer}/{weight}/stddev"` (e.g. `"dense/kernel/stddev"`), `".../snr"`, `".../kl"` (kinds with a
    KL) and `".../sparsity"` (variational dropout) to the epoch's `logs`,
    so they appear in the `History`; given `log_dir`, also writes them as
    TensorBoard scalars (this uses TensorFlow's summary writer, imported
    on first use).

    Args:
        log_dir: Optional directory for TensorBoard event files.
        layers: Which noisy layers, as in `noisylayers.set_noise`.

    Example:

    ```python
    history = model.fit(x, y, epochs=5,
                        callbacks=[noisylayers.callbacks.NoiseStats("logs")])
    history.history["dense/kernel/stddev"]
    ```
    """

    def __init__(self, log_dir=None, layers=None):
        super().__init__()
        if log_dir is not None:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ImportError(
                    "NoiseStats(log_dir=...) writes TensorBoard event files, "
                    "which needs the `tensorboard` package (TensorFlow 2.20+ "
                    "no longer installs it): `pip install "
                    '"noisylayers[tensorboard]"`. Received: '
                    f"log_dir={log_dir!r}"
                ) from None
        self.log_dir = log_dir
        self.layers = layers
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        from noisylayers.diagnostics import noise_stats

        figures = {}
        for row in noise_stats(self.model, self.layers):
            name = row["weight"]
            for key in ("stddev", "snr", "kl", "sparsity"):
                if row.get(key) is not None:
                    figures[f"{row['layer']}/{name}/{key}"] = row[key]
        if logs is not None:
            logs.update(figures)
        if self.log_dir is not None:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                for key, value in figures.items():
                    tf.summary.scalar(key, value, step=epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
