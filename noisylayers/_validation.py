"""Argument checks shared by the public classes (Keras-style messages)."""

import math
import numbers


#: The largest noise magnitude (a stddev, scale or KL weight) accepted: far
#: beyond any useful noise, and small enough that float32 sums and squares of
#: noisy weights cannot overflow to infinity.
MAX_MAGNITUDE = 1e6


#: The smallest positive scale accepted (an initial or prior stddev):
#: smaller ones vanish in float32 arithmetic (their squares underflow).
MIN_SCALE = 1e-6


def check_magnitude(name, value):
    """Validates a noise magnitude: a real number in `[0, MAX_MAGNITUDE]`."""
    return check_number(name, value, 0.0, MAX_MAGNITUDE, high_inclusive=True)


def check_scale(name, value):
    """Validates a positive scale: a real number in `[MIN_SCALE, MAX_MAGNITUDE]`."""
    return check_number(name, value, MIN_SCALE, MAX_MAGNITUDE, high_inclusive=True)


def check_location(name, value):
    """Validates a location: a real number of size at most `MAX_MAGNITUDE`."""
    return check_number(
        name, value, -MAX_MAGNITUDE, MAX_MAGNITUDE, high_inclusive=True
    )


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


def check_positive_int(name, value):
    """Validates a positive-integer argument and returns it as an int.

    Raises:
        TypeError: if `value` is not an integer (booleans included).
        ValueError: if `value` is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be a positive integer. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    if value < 1:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_list(name, values, check):
    """Validates a non-empty list of distinct values, each with `check`.

    Args:
        name: The argument's name, for messages.
        values: The argument.
        check: Function validating and returning one value.

    Returns:
        The list of the checked values.

    Raises:
        TypeError: if `values` is a string or not iterable (or as `check`).
        ValueError: if it is empty or repeats a value (or as `check`).
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"Argument `{name}` must be a list. Received: {name}={values!r}"
        )
    values = [check(v) for v in values]
    if not values or len(set(values)) != len(values):
        raise ValueError(
            f"Argument `{name}` must be a non-empty list of distinct values. "
            f"Received: {name}={values!r}"
        )
    return values


def check_coefficients(name, coefficients, what="standard deviation"):
    """Validates the coefficients of a polynomial noise level on `[0, 1]`.

    `coefficients[k]` multiplies `x**k`: a non-empty sequence of finite
    numbers whose polynomial (`what`, for messages) is non-negative on the
    normalized range `[0, 1]`.

    Returns:
        The coefficients as a list of floats.

    Raises:
        ValueError: for anything else, naming the argument and the value.
    """
    if isinstance(coefficients, (str, bytes)) or not hasattr(
        coefficients, "__iter__"
    ):
        raise ValueError(
            f"Argument `{name}` must be a sequence of numbers. "
            f"Received: {name}={coefficients!r}"
        )
    coefficients = list(coefficients)
    if not coefficients or not all(
        isinstance(c, numbers.Real)
        and not isinstance(c, bool)
        and abs(c) <= MAX_MAGNITUDE
        for c in coefficients
    ):
        raise ValueError(
            f"Argument `{name}` must be a non-empty sequence of "
            f"finite numbers, each at most {MAX_MAGNITUDE:g} in size. "
            f"Received: {name}={coefficients!r}"
        )
    grid = [i / 100 for i in range(101)]
    if min(sum(c * g**k for k, c in enumerate(coefficients)) for g in grid) < 0:
        raise ValueError(
            f"Argument `{name}` gives a negative {what} somewhere on "
            f"[0, 1]. Received: {name}={coefficients!r}"
        )
    return [float(c) for c in coefficients]
