"""Argument checks shared by the public classes (Keras-style messages)."""

import math
import numbers


def check_number(name, value, low, high=math.inf, high_inclusive=False):
    """Validates a real-number argument and returns it as a float.

    Raises:
        TypeError: if `value` is not a real number (booleans included).
        ValueError: if `value` is NaN or outside `[low, high]` (`[low, high)`
            unless `high_inclusive`), naming the argument and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a real number. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    number = float(value)
    above = number > high if high_inclusive else number >= high
    if math.isnan(number) or number < low or above:
        bracket = "]" if high_inclusive else ")"
        raise ValueError(
            f"Argument `{name}` must be in [{low:g}, {high:g}{bracket}. "
            f"Received: {name}={value!r}"
        )
    return number


def check_seed(seed):
    """Validates a `seed` argument: `None` or a non-negative integer."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "Argument `seed` must be an integer or None. "
            f"Received: seed={seed!r} (of type {type(seed).__name__})"
        )
    if seed < 0:
        raise ValueError(
            f"Argument `seed` must be non-negative. Received: seed={seed!r}"
        )
    return int(seed)
