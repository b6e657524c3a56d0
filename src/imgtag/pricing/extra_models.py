"""Models beyond Anthropic's table: OpenAI's (openai_models.toml) and the user's own in ./imgtag.toml.

A user describes a model their server runs, with its price and image limit:

    [models."glm-4v-9b"]
    input = 0          # USD per million input tokens (omit both prices: costs are reported as unknown)
    output = 0
    max_edge = 1120    # longest image edge the model sees, px
    temperature = 0.1  # or accepts_temperature = false

The user's entry wins over a built-in one of the same name (their server, their price).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from imgtag.pricing.model_info import ModelInfo, model_from

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

USER_FILE = "imgtag.toml"
_NUMBERS = ("input", "output", "cached_input", "max_edge", "temperature")


class ModelConfigError(ValueError):
    """A broken [models."..."] entry in imgtag.toml: one sentence, exit 2."""


def extra_model(model_id: str) -> ModelInfo | None:
    path = Path(USER_FILE)
    try:
        stamp = path.stat().st_mtime_ns if path.is_file() else None
    except OSError:
        stamp = None
    user = _user_models(str(path.resolve()), stamp) if stamp is not None else {}
    return user.get(model_id) or _builtin().get(model_id)


@lru_cache(maxsize=1)
def _builtin() -> dict[str, ModelInfo]:
    text = resources.files("imgtag").joinpath("pricing/openai_models.toml").read_text(encoding="utf-8")
    return {name: model_from(name, raw) for name, raw in tomllib.loads(text)["models"].items()}


@lru_cache(maxsize=8)
def _user_models(path: str, stamp: int) -> dict[str, ModelInfo]:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelConfigError(f"{USER_FILE}: {exc}") from None
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ModelConfigError(f"{USER_FILE}: [models] must be a table of models")
    return {name: _user_model(name, entry) for name, entry in models.items()}


def _user_model(name: str, entry: Any) -> ModelInfo:
    where = f'{USER_FILE}: [models."{name}"]'
    if not isinstance(entry, dict):
        raise ModelConfigError(f"{where} must be a table")
    for key in _NUMBERS:
        if key in entry and (isinstance(entry[key], bool) or not isinstance(entry[key], (int, float))
                             or entry[key] < 0):
            raise ModelConfigError(f"{where}: {key} must be a number >= 0, not {entry[key]!r}")
    base = _builtin().get(name)
    priced = "input" in entry or "output" in entry
    if priced:
        inp, out = float(entry.get("input", 0)), float(entry.get("output", 0))
        cached = float(entry.get("cached_input", inp))
        prices = {"input": inp, "output": out, "batch_input": inp / 2, "batch_output": out / 2,
                  "cache_read": cached, "cache_write_5m": inp, "cache_write_1h": inp}
    elif base is not None and base.prices is not None:
        p = base.prices
        prices = {"input": p.input, "output": p.output, "batch_input": p.batch_input,
                  "batch_output": p.batch_output, "cache_read": p.cache_read, "cache_write_5m": p.cache_write_5m,
                  "cache_write_1h": p.cache_write_1h}
    else:
        prices = {}
    raw: dict[str, Any] = {
        "family": entry.get("family", base.family if base else "user"), "tier": "standard",
        "min_cache_tokens": 1024, "forced_tool_choice": False, "thinking_default": False,
        "max_edge": entry.get("max_edge", base.max_edge if base else None),
        "temperature": entry.get("temperature", base.temperature if base else None),
        "accepts_temperature": entry.get("accepts_temperature", base.accepts_temperature if base else None),
        "image_tokens": entry.get("image_tokens", base.image_tokens if base else "unknown"),
        "image_token_params": entry.get("image_token_params", list(base.image_token_params) if base else []),
        "source": f"{USER_FILE}", **prices,
    }
    if prices:
        return model_from(name, raw)
    info = model_from(name, {**raw, "input": 0, "output": 0, "batch_input": 0, "batch_output": 0,
                             "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0})
    from dataclasses import replace

    return replace(info, prices=None)
