"""How numbers read on pages and in PR comments: one definition each."""

import math


def percent(fraction: float | None, *, signed: bool = True, digits: int = 2) -> str:
    """0.0123 → "+1.23 %"; None or a non-finite value → "—"."""
    if fraction is None or not math.isfinite(fraction):
        return "—"
    sign = "+" if signed else ""
    return f"{100 * fraction:{sign}.{digits}f} %"
