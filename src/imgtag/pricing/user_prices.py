"""Prices the user gives (--price-in/--price-out, USD per million tokens) for a model the catalogue lacks.

Batch halves both, as on every provider with a batch discount; cache reads cost a tenth of input and cache writes
1.25x (the common Anthropic ratios), so an estimate errs a little high rather than low.
"""

from __future__ import annotations

from dataclasses import replace

from imgtag.pricing.model_info import ModelInfo, Prices


def with_prices(model: ModelInfo, price_in: float, price_out: float) -> ModelInfo:
    prices = Prices(input=price_in, output=price_out, batch_input=price_in / 2, batch_output=price_out / 2,
                    cache_read=price_in * 0.1, cache_write_5m=price_in * 1.25, cache_write_1h=price_in * 2.0)
    return replace(model, prices=prices, source="prices given with --price-in/--price-out")
