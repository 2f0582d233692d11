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
