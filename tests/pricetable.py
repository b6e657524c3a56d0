"""Expected costs computed straight from the price table (pricing/models.toml), token class by token class,
without imgtag's cost function: a test that checks a recorded cost against `cost_usd` would pass whatever
`cost_usd` got wrong."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def table_prices(model: str) -> dict[str, Any]:
    """USD per million tokens, as the table lists them."""
    text = resources.files("imgtag").joinpath("pricing/models.toml").read_text(encoding="utf-8")
    entry = tomllib.loads(text)["models"][model]
    assert "long_context_threshold" not in entry, "long-context rates: not what these tests expect"
    return entry


def batch_cost(model: str, *, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write_5m: int = 0,
               cache_write_1h: int = 0) -> float:
    """A Message Batches request: input and output at the table's batch prices, cache reads and writes at half
    their standard rates (batch halves every token class)."""
    p = table_prices(model)
    return (input_tokens * p["batch_input"] + output_tokens * p["batch_output"] + cache_read * p["cache_read"] / 2
            + cache_write_5m * p["cache_write_5m"] / 2 + cache_write_1h * p["cache_write_1h"] / 2) / 1_000_000
