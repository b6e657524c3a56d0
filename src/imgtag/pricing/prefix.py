"""The shared request prefix (output schema + system prompt): how long it is and whether to cache it, per model.

Every request of a run starts with the same schema and system prompt. Cached, that prefix costs 1.25x (5-minute
TTL) or 2x (1-hour TTL) once and 0.1x on every later request; uncached it costs 1x every time. The API caches
nothing shorter than the model's minimum (pricing/models.toml `min_cache_tokens`), silently. So, per model:

- the prefix already reaches the minimum: mark it for caching;
- the preset's `guide` (field guidance and a worked example: content that helps the answer, not padding) lifts
  it over the minimum, and reading the longer prefix from the cache costs less than sending the short one
  uncached: send the guide and cache both;
- otherwise keep the prefix small and do not mark it (a mark would buy a write premium for nothing): the
  preset's `system_compact` (the same rules, stated briefly) where it has one, else its system prompt.

Batch mode uses the 1-hour TTL: a batch may take far longer than 5 minutes, and the batch docs advise it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.textcount import estimate_text_tokens
from imgtag.validate.schema import to_anthropic_schema

# Our text-token estimate is not the provider's tokenizer: only rely on reaching the minimum with room to spare,
# because a prefix that falls short is silently billed in full.
CACHE_MARGIN = 1.10
DEFAULT_READ_RATIO = 0.1


@dataclass(frozen=True)
class PrefixPlan:
    system_blocks: tuple[str, ...]  # system prompt, then the guide when it is sent
    cache: bool
    ttl: str  # "5m" or "1h" (only meaningful when cache)
    schema_tokens: int
    system_tokens: int
    guide_tokens: int  # 0 when the guide is not sent

    @property
    def tokens(self) -> int:
        return self.schema_tokens + self.system_tokens + self.guide_tokens


def _tokens(text: str, model: ModelInfo) -> int:
    return int(estimate_text_tokens(text) * model.tokenizer_factor)


def schema_tokens(preset: Preset, model: ModelInfo) -> int:
    return _tokens(json.dumps(to_anthropic_schema(preset.schema), ensure_ascii=False), model)


def read_ratio(model: ModelInfo) -> float:
    p = model.prices
    return p.cache_read / p.input if p is not None and p.input else DEFAULT_READ_RATIO


_PLANS: dict[tuple[object, ...], PrefixPlan] = {}


def plan_prefix(preset: Preset, model: ModelInfo, *, batch: bool = False) -> PrefixPlan:
    """Computed once per (preset version, model, mode): it is asked for on every request."""
    key = (preset.version, preset.system, preset.compact_system, preset.guide, model, batch)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _plan(preset, model, batch)
    return plan


def _plan(preset: Preset, model: ModelInfo, batch: bool) -> PrefixPlan:
    schema = schema_tokens(preset, model)
    system = _tokens(preset.system, model)
    guide = _tokens(preset.guide, model) if preset.guide else 0
    need = model.min_cache_tokens * CACHE_MARGIN
    ttl = "1h" if batch else "5m"
    base = schema + system
    # Sent uncached, the prefix is paid in full on every request: the preset's compact prompt, if it has one.
    short_text = preset.compact_system or preset.system
    short = _tokens(short_text, model)
    if base >= need and read_ratio(model) * base < schema + short:
        return PrefixPlan((preset.system,), True, ttl, schema, system, 0)
    if guide and base + guide >= need and read_ratio(model) * (base + guide) < schema + short:
        return PrefixPlan((preset.system, preset.guide), True, ttl, schema, system, guide)
    return PrefixPlan((short_text,), False, ttl, schema, short, 0)
