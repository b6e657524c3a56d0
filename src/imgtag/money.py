"""Money as people read it: enough digits to show what was spent ($0.0007, not $0.00)."""

from __future__ import annotations

import math


def usd(amount: float | None) -> str:
    """$12.35 from a dollar up; below that two significant digits ($0.50, $0.012, $0.0007); "unknown" for None."""
    if amount is None or not math.isfinite(amount):
        return "unknown"
    if amount == 0:
        return "$0.00"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(abs(amount))))
    text = f"{amount:.{decimals}f}"
    if decimals > 2:
        whole, frac = text.split(".")
        text = f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
    return f"${text}"
