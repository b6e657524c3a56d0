"""The model catalogue: prices and per-model request capabilities, loaded from data/models.toml."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from imgtag.pricing.extra_models import extra_model, user_model
from imgtag.pricing.model_info import ModelInfo, model_from
from imgtag.pricing.sizing import STANDARD

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Catalogue:
    checked: str
    default_model: str
    models: dict[str, ModelInfo]
    aliases: dict[str, str]

    def lookup(self, model_id: str) -> ModelInfo | None:
        found = self.models.get(self.aliases.get(model_id, model_id))
        if found is not None:
            # The user's imgtag.toml entry for it wins (docs/config.md): their contract or gateway, their price.
            return user_model(model_id, found) or found
        # Other providers' models and the user's own (imgtag.toml): looked up by name, never listed in
        # scan's per-model table, which compares this catalogue's models.
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
            caching_known=False,
        )


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    text = resources.files("imgtag").joinpath("pricing/models.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    models: dict[str, ModelInfo] = {}
    aliases: dict[str, str] = {}
    for model_id, entry in raw["models"].items():
        models[model_id] = model_from(model_id, entry)
        for alias in entry.get("aliases", []):
            aliases[alias] = model_id
    return Catalogue(
        checked=str(raw["checked"]), default_model=raw["default_model"], models=models, aliases=aliases
    )
