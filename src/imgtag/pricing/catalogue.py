"""The model catalogue: prices and per-model request capabilities, loaded from data/models.toml."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from imgtag.ingest.sizing import HIGH_RES, STANDARD, VisionTier

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


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


@dataclass(frozen=True)
class Catalogue:
    checked: str
    default_model: str
    models: dict[str, ModelInfo]
    aliases: dict[str, str]

    def lookup(self, model_id: str) -> ModelInfo | None:
        found = self.models.get(self.aliases.get(model_id, model_id))
        if found is not None:
            return found
        # Other providers' models and the user's own (imgtag.toml): looked up by name, never listed in
        # scan's per-model table, which compares this catalogue's models.
        from imgtag.pricing.extra_models import extra_model

        return extra_model(model_id)

    def get(self, model_id: str) -> ModelInfo:
        """Known models come from the table; unknown ones (gateways, local servers) get safe defaults
        and no prices, so estimates say "unknown" instead of inventing a number."""
        info = self.lookup(model_id)
        if info is not None:
            return info
        return ModelInfo(
            image_tokens="unknown",
            id=model_id,
            family="unknown",
            tier=STANDARD,
            prices=None,
            min_cache_tokens=4096,
            forced_tool_choice=True,
            thinking_default=False,
            tokenizer_factor=1.0,
            source="unknown model",
        )


def model_from(model_id: str, raw: dict[str, Any]) -> ModelInfo:
    return _model_from(model_id, raw)


def _model_from(model_id: str, raw: dict[str, Any]) -> ModelInfo:
    prices = Prices(
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
        max_edge=int(raw["max_edge"]) if raw.get("max_edge") else None,
        temperature=float(raw["temperature"]) if raw.get("temperature") is not None else None,
        accepts_temperature=raw.get("accepts_temperature"),
        image_tokens=str(raw.get("image_tokens", "claude")),
        image_token_params=tuple(float(x) for x in raw.get("image_token_params", ())),
    )


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    text = resources.files("imgtag").joinpath("pricing/models.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    models: dict[str, ModelInfo] = {}
    aliases: dict[str, str] = {}
    for model_id, entry in raw["models"].items():
        models[model_id] = _model_from(model_id, entry)
        for alias in entry.get("aliases", []):
            aliases[alias] = model_id
    return Catalogue(
        checked=str(raw["checked"]), default_model=raw["default_model"], models=models, aliases=aliases
    )
