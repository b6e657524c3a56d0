"""Prices the user gives (--price-in/--price-out or imgtag.toml, USD per million tokens).

For a model whose price structure imgtag knows (the catalogue, a built-in), every other rate keeps its ratio: batch,
cache reads and writes and long-context input scale with the input price, batch and long-context output with the
output price. For any other model: batch halves both, as on every provider with a batch discount; cache reads cost
a tenth of input (or the `cached_input` given) and cache writes 1.25x (the common Anthropic ratios).
"""

from __future__ import annotations

from dataclasses import replace

from imgtag.pricing.model_info import ModelInfo, Prices

FLAGS = "prices given with --price-in/--price-out"


def with_prices(model: ModelInfo, price_in: float, price_out: float, *, cached_in: float | None = None,
                source: str = FLAGS) -> ModelInfo:
    base = model.prices
    if base is not None and base.input > 0 and base.output > 0:
        prices = scaled(base, price_in, price_out, cached_in)
    else:
        prices = Prices(input=price_in, output=price_out, batch_input=price_in / 2, batch_output=price_out / 2,
                        cache_read=price_in * 0.1 if cached_in is None else float(cached_in),
                        cache_write_5m=price_in * 1.25, cache_write_1h=price_in * 2.0)
    return replace(model, prices=prices, source=source)


def scaled(base: Prices, price_in: float, price_out: float, cached_in: float | None = None) -> Prices:
    """`base`'s structure at the given input and output prices."""
    i, o = price_in / base.input, price_out / base.output
    return Prices(input=price_in, output=price_out, batch_input=base.batch_input * i,
                  batch_output=base.batch_output * o,
                  cache_read=base.cache_read * i if cached_in is None else float(cached_in),
                  cache_write_5m=base.cache_write_5m * i, cache_write_1h=base.cache_write_1h * i,
                  long_context_threshold=base.long_context_threshold,
                  long_input=None if base.long_input is None else base.long_input * i,
                  long_output=None if base.long_output is None else base.long_output * o)
