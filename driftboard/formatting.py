"""How numbers read on pages and in PR comments: one definition each."""

import math


def percent(fraction: float | None, *, signed: bool = True, digits: int = 2) -> str:
    """0.0123 → "+1.23 %"; None or a non-finite value → "—"."""
    if fraction is None or not math.isfinite(fraction):
        return "—"
    sign = "+" if signed else ""
    # A change that rounds to nothing reads as no change, never "-0.00 %" (adding 0.0 turns -0.0 into 0.0).
    shown = round(100 * fraction, digits) + 0.0
    return f"{shown:{sign}.{digits}f} %"


def percent_points(points: float | None, *, signed: bool = True, digits: int = 2) -> str:
    """A change already in percent: 12.3 → "+12.30 %" (never "-0.00 %"); None → "—"."""
    return percent(None if points is None else points / 100, signed=signed, digits=digits)


NUMBER_DIGITS = 6


def number(value: object, digits: int = NUMBER_DIGITS) -> object:
    """A float to `digits` significant digits (1.9607943846870806 → "1.96079", never "-0"); any other value
    (an integer, a text, a date) as it is."""
    if not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return "—"
    return f"{value + 0.0:.{digits}g}"  # adding 0.0 turns -0.0 into 0.0


# Below this a p-value is written as a bound: its digits say nothing more and would round to 0.
P_FLOOR = 1e-4


def p_value(p: float | None) -> str:
    """0.0123 → "p = 0.012"; 3e-9 → "p < 0.0001" (never "p = 0.0000"); None or NaN → "p —"."""
    if p is None or not math.isfinite(p):
        return "p —"
    if p < P_FLOOR:
        return f"p < {P_FLOOR:.4f}"
    return f"p = {p:.2g}" if p < 0.01 else f"p = {p:.3f}".rstrip("0").rstrip(".")
