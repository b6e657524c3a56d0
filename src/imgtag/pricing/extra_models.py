"""Models beyond Anthropic's table: OpenAI's (openai_models.toml) and the user's own from imgtag.toml
(given by the settings path, app/settings.py: `use_models_table`).

A user describes a model their server runs, with its price and image limit:

    [models."glm-4v-9b"]
    input = 0          # USD per million input tokens: 0 declares it free (omit both: costs are reported as unknown)
    output = 0
    max_edge = 1120    # longest image edge the model sees, px
    temperature = 0.1  # or accepts_temperature = false

The user's entry wins over a built-in one of the same name, and over the catalogue's (their server or contract,
their price): for a model imgtag knows, its request capabilities stay and the other rates (batch, cache,
long context) keep their ratios to the input and output prices given (pricing/user_prices.py).
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from typing import Any

from imgtag.config.errors import ConfigurationError
from imgtag.pricing.model_info import ModelInfo, model_from
from imgtag.pricing.user_prices import with_prices

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

USER_FILE = "imgtag.toml"
_NUMBERS = ("input", "output", "cached_input", "max_edge", "temperature")
# Every key an entry may have: anything else is a typo that would otherwise leave a price unset, silently.
_KEYS = (*_NUMBERS, "accepts_temperature", "image_tokens", "image_token_params", "family")


class ModelConfigError(ConfigurationError):
    """A broken [models."..."] entry in imgtag.toml: one sentence, exit 2."""


def extra_model(model_id: str) -> ModelInfo | None:
    """A model outside Anthropic's table: the user's entry (over a built-in one of that name), or the built-in."""
    return user_model(model_id, None) or _builtin().get(model_id)


def user_model(model_id: str, base: ModelInfo | None) -> ModelInfo | None:
    """The user's [models."<id>"] entry over `base` (the catalogue's entry of that name; else a built-in one), or
    None when imgtag.toml has none. It wins for catalogue models too: their contract, their gateway, their price."""
    entry = _user_entries().get(model_id)
    if entry is None:
        return None
    return _user_model(model_id, entry, base if base is not None else _builtin().get(model_id))


def user_model_names() -> list[str]:
    """The models imgtag.toml describes (for a did-you-mean)."""
    return list(_user_entries())


def builtin_model_names() -> list[str]:
    return list(_builtin())


# The [models] table of the imgtag.toml the settings read (app/settings.py: the one place that reads the file), and
# its entries once checked. Set per command; nothing here looks for a file.
_table: Any = None
_checked_table: dict[str, dict[str, Any]] | None = None


def use_models_table(models: Any) -> None:
    """The user's [models."..."] entries from now on (raw, as the TOML parser gave them; None: none)."""
    global _table, _checked_table
    if models is not _table:
        _table, _checked_table = models, None


def _user_entries() -> dict[str, dict[str, Any]]:
    global _checked_table
    if _table is None:
        return {}
    if _checked_table is None:
        _checked_table = _checked_entries(_table)
    return _checked_table


@lru_cache(maxsize=1)
def _builtin() -> dict[str, ModelInfo]:
    text = resources.files("imgtag").joinpath("pricing/openai_models.toml").read_text(encoding="utf-8")
    return {name: model_from(name, raw) for name, raw in tomllib.loads(text)["models"].items()}


def _checked_entries(models: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(models, dict):
        raise ModelConfigError(f"{USER_FILE}: [models] must be a table of models")
    for name, entry in models.items():
        _check(name, entry)
    return models


def _check(name: str, entry: Any) -> None:
    where = f'{USER_FILE}: [models."{name}"]'
    if not isinstance(entry, dict):
        raise ModelConfigError(f"{where} must be a table")
    for key in entry:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(_KEYS)})"
            raise ModelConfigError(f"{where}: unknown key {key!r}{hint}")
    for key in _NUMBERS:
        if key in entry and (isinstance(entry[key], bool) or not isinstance(entry[key], (int, float))
                             or entry[key] < 0):
            raise ModelConfigError(f"{where}: {key} must be a number >= 0, not {entry[key]!r}")


def _user_model(name: str, entry: dict[str, Any], base: ModelInfo | None) -> ModelInfo:
    priced = "input" in entry or "output" in entry
    if base is not None:
        # A model imgtag knows: its request capabilities stay, the user's prices and limits replace its own.
        info = replace(base, source=USER_FILE, **_limits(entry))
        if not priced:
            return info
        return with_prices(info, float(entry.get("input", 0)), float(entry.get("output", 0)),
                           cached_in=entry.get("cached_input"), source=USER_FILE)
    prices: dict[str, Any] = {}
    if priced:
        inp, out = float(entry.get("input", 0)), float(entry.get("output", 0))
        cached = float(entry.get("cached_input", inp))
        prices = {"input": inp, "output": out, "batch_input": inp / 2, "batch_output": out / 2,
                  "cache_read": cached, "cache_write_5m": inp, "cache_write_1h": inp}
    # imgtag.toml says nothing about caching: the 1024-token minimum is a stand-in, so caching_known is False.
    return model_from(name, {
        "family": entry.get("family", "user"), "tier": "standard", "min_cache_tokens": 1024, "caching_known": False,
        "forced_tool_choice": False, "thinking_default": False, "max_edge": entry.get("max_edge"),
        "temperature": entry.get("temperature"), "accepts_temperature": entry.get("accepts_temperature"),
        "image_tokens": entry.get("image_tokens", "unknown"), "image_token_params": entry.get("image_token_params", []),
        "source": USER_FILE, **prices,
    })


def _limits(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's non-price keys, typed as ModelInfo holds them."""
    out: dict[str, Any] = {}
    if "max_edge" in entry:
        out["max_edge"] = int(entry["max_edge"]) if entry["max_edge"] else None
    if "temperature" in entry:
        out["temperature"] = float(entry["temperature"])
    if "accepts_temperature" in entry:
        out["accepts_temperature"] = bool(entry["accepts_temperature"])
    if "image_tokens" in entry:
        out["image_tokens"] = str(entry["image_tokens"])
    if "image_token_params" in entry:
        out["image_token_params"] = tuple(float(x) for x in entry["image_token_params"])
    if "family" in entry:
        out["family"] = str(entry["family"])
    return out
