"""Token usage and what it costs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from imgtag.pricing.model_info import Prices

MILLION = 1_000_000


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # The part of cache_creation_input_tokens written with the 1-hour TTL (billed 2x instead of 1.25x).
    cache_creation_1h_input_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_1h_input_tokens + other.cache_creation_1h_input_tokens,
        )


def cost_usd(prices: Prices | None, usage: Usage, *, batch: bool = False, cache_ttl: str = "5m") -> float | None:
    """Dollar cost of one response. None when the model has no known prices.

    Batch bills every token class at half the standard rate (api-facts C), so cache reads and
    writes are halved too. Haiku 5.5 bills the whole request at long-context rates once the
    prompt (input + cache reads + cache writes) passes its threshold.
    """
    if prices is None:
        return None
    prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    input_rate, output_rate = prices.input, prices.output
    long = prices.long_context_threshold is not None and prompt > prices.long_context_threshold
    if long and prices.long_input is not None and prices.long_output is not None:
        scale = prices.long_input / prices.input
        input_rate, output_rate = prices.long_input, prices.long_output
    else:
        scale = 1.0
    # Writes the response says were 1-hour ones are billed as such; the rest at the TTL the caller names.
    one_hour = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
    rest = usage.cache_creation_input_tokens - one_hour
    rest_rate = prices.cache_write_1h if cache_ttl == "1h" else prices.cache_write_5m
    dollars = (
        usage.input_tokens * input_rate
        + usage.output_tokens * output_rate
        + usage.cache_read_input_tokens * prices.cache_read * scale
        + (rest * rest_rate + one_hour * prices.cache_write_1h) * scale
    ) / MILLION
    if batch:
        # The table's batch prices are exactly half; apply the discount uniformly so cache tokens get it too.
        dollars *= 0.5
    return round(dollars, 10)
