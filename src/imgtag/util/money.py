"""Money as people read it, one rule everywhere (progress line, summaries, scan, dry run, status, retry, budget).

From a dollar up: whole cents ($12.35, $1,234.50). Below a dollar: three significant digits, so a small spend is
seen and two figures of the same size can be compared ($0.0863, $0.0102, $0.000235), with trailing zeros dropped
down to cents ($0.50, $0.025). Rounded half up on the amount as written in decimal (0.0125 is $0.0125, 12.345
is $12.35), never on the binary float's tail. Nothing spent is "$0.00"; an amount nobody can price is "unknown".
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

SIGNIFICANT = 3


def usd(amount: float | None) -> str:
    if amount is None or not math.isfinite(amount):
        return "unknown"
    value = Decimal(repr(float(amount)))
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value == 0:
        return "$0.00"
    if value < 1:
        decimals = max(2, SIGNIFICANT - 1 - value.adjusted())
        rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        if rounded < 1:
            whole, frac = f"{rounded:f}".split(".")
            return f"{sign}${whole}.{frac.rstrip('0').ljust(2, '0')}"
        value = rounded  # 0.999996 rounds up to a dollar: shown in cents like any dollar amount
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{sign}${cents:,.2f}"
