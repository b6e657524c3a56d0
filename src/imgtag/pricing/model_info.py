"""What one model is: its prices and request capabilities, and how a table entry (models.toml, imgtag.toml)
becomes one. Both the built-in catalogue (catalogue.py) and the models beyond it (extra_models.py) build on this,
so neither needs the other's module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgtag.pricing.sizing import HIGH_RES, STANDARD, VisionTier


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: float
    output: float
    batch_input: float
    batch_output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    long_context_threshold: int | None = None
    long_input: float | None = None
    long_output: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    family: str
    tier: VisionTier
    prices: Prices | None
    min_cache_tokens: int
    forced_tool_choice: bool
    thinking_default: bool
    tokenizer_factor: float
    source: str
    max_edge: int | None = None          # longest image edge the model sees, px (None: the tier decides)
    # Sampling temperature to send; None = the provider's default policy. accepts_temperature=False: never send.
    temperature: float | None = None
    accepts_temperature: bool | None = None
    # How estimates count image tokens: "claude" (28 px patches), "openai-tiles" (base, per tile),
    # "openai-patches" (multiplier), "unknown" (estimates say so instead of inventing a number).
    image_tokens: str = "claude"
    image_token_params: tuple[float, ...] = ()
    # False: min_cache_tokens is a stand-in (a model outside imgtag's tables: whether and from what length its
    # server caches is unknown), so nothing shown may claim a caching minimum for it.
    caching_known: bool = True


def model_from(model_id: str, raw: dict[str, Any]) -> ModelInfo:
    """A model from its table entry; an entry without `input` has no prices (costs are reported as unknown)."""
    prices = None if "input" not in raw else Prices(
        input=raw["input"],
        output=raw["output"],
        batch_input=raw["batch_input"],
        batch_output=raw["batch_output"],
        cache_read=raw["cache_read"],
        cache_write_5m=raw["cache_write_5m"],
        cache_write_1h=raw["cache_write_1h"],
        long_context_threshold=raw.get("long_context_threshold"),
        long_input=raw.get("long_input"),
        long_output=raw.get("long_output"),
    )
    return ModelInfo(
        id=model_id,
        family=raw["family"],
        tier=HIGH_RES if raw["tier"] == "high" else STANDARD,
        prices=prices,
        min_cache_tokens=int(raw["min_cache_tokens"]),
        forced_tool_choice=bool(raw["forced_tool_choice"]),
        thinking_default=bool(raw["thinking_default"]),
        tokenizer_factor=float(raw.get("tokenizer_factor", 1.0)),
        source=str(raw.get("source", "")),
        caching_known=bool(raw.get("caching_known", True)),
        max_edge=int(raw["max_edge"]) if raw.get("max_edge") else None,
        temperature=float(raw["temperature"]) if raw.get("temperature") is not None else None,
        accepts_temperature=raw.get("accepts_temperature"),
        image_tokens=str(raw.get("image_tokens", "claude")),
        image_token_params=tuple(float(x) for x in raw.get("image_token_params", ())),
    )
