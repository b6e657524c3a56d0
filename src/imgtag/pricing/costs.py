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


def prompt_tokens(usage: Usage) -> int:
    """What a long-context threshold is compared with: one request's input + cache reads + cache writes."""
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def is_long(prices: Prices, prompt: int) -> bool:
    """True when a request of this prompt size is billed at the model's long-context rates."""
    return (prices.long_context_threshold is not None and prompt > prices.long_context_threshold
            and prices.long_input is not None and prices.long_output is not None)


def cost_usd(prices: Prices | None, usage: Usage, *, batch: bool = False, cache_ttl: str = "5m",
             request_prompt: int | None = None) -> float | None:
    """Dollar cost of one response. None when the model has no known prices.

    The long-context threshold is a rule about one request (api-facts F): `usage` is one request's, or, for an
    image of a pack, its share of one request, whose whole prompt is then given as `request_prompt`.
    """
    if prices is None:
        return None
    prompt = prompt_tokens(usage) if request_prompt is None else request_prompt
    return priced(prices, usage, long=is_long(prices, prompt), batch=batch, cache_ttl=cache_ttl)


def priced(prices: Prices, usage: Usage, *, long: bool, batch: bool = False, cache_ttl: str = "5m") -> float:
    """Dollars for these tokens at the standard or the long-context rates (`usage` may sum several requests that
    share one band: the estimate prices a run's requests band by band).

    Batch bills every token class at half the standard rate (api-facts C), so cache reads and writes are halved
    too. In the long band every token class of the request costs more: input and output at their long rates,
    cache reads and writes scaled like input.
    """
    input_rate, output_rate = prices.input, prices.output
    scale = 1.0
    if long and prices.long_input is not None and prices.long_output is not None:
        scale = prices.long_input / prices.input if prices.input else 1.0
        input_rate, output_rate = prices.long_input, prices.long_output
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
