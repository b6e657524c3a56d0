"""Is this run's prompt prefix already in the server's prompt cache? Then the warm-up (request/warmup.py) is
skipped and the first requests go together.

Two memories answer, either is enough:
- the store: an answer for this target read or wrote the cache in the last 4 minutes (a rerun into the same --out);
- the user cache (request/limits_cache.py): a run from this machine, into any --out, sent a request with exactly
  this prefix, from this account, to this endpoint in the last 4 minutes, and its answer read or wrote the cache.

The Anthropic prompt cache is per organisation (workspace) and per exact prefix, and an entry lives 5 minutes
from its last use. So the user cache's note is keyed by provider, API key fingerprint (a key belongs to one
workspace) and the prefix itself: endpoint, model id, the system blocks as sent and the output schema (what
precedes the image in every request), never by anything looser such as the preset's name. The time noted is when
that request was *sent*: the server refreshed the entry after that, so it lives at least 5 minutes past the
note, and trusting it for 4 leaves a minute to spare for clocks and slow starts.

A wrong guess is cheap: if the entry is gone after all, the run's first concurrent requests each pay one cache
write (1.25x the prefix) instead of one request paying it alone; nothing is lost or paid twice. Still, the rule
stays conservative, since that is what the warm-up exists to avoid.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.prefix import plan_prefix
from imgtag.request.learned_limits import account_key
from imgtag.request.limits_cache import UserCache
from imgtag.request.warmup import CACHE_STILL_WARM_S
from imgtag.store import Store, WorkKey
from imgtag.validate.schema import to_anthropic_schema


def prefix_id(provider: Any, preset: Preset, model: ModelInfo) -> str:
    """What makes two runs' prefixes one cache entry, hashed: the endpoint, the model and the prefix's content."""
    plan = plan_prefix(preset, model)
    material = [provider.name, getattr(provider, "base_url", None) or "", model.id, list(plan.system_blocks),
                plan.ttl, to_anthropic_schema(preset.schema)]
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PrefixMemory:
    """One run's view: `known_warm()` at its start, `remember()` at its end (also after an interruption)."""

    def __init__(self, store: Store, key: WorkKey, provider: Any, preset: Preset, model: ModelInfo,
                 user_cache: UserCache | None = None) -> None:
        self.store = store
        self.key = key
        self.provider_name = key.provider
        self._api_key = account_key(provider)  # only ever hashed
        self.cached = plan_prefix(preset, model).cache
        self.prefix = prefix_id(provider, preset, model) if self.cached else ""
        self.user_cache = user_cache or UserCache()
        # Attempts after this one are this run's: the end of the run looks no further back.
        self._first_attempt = store.last_attempt_id()

    def known_warm(self) -> bool:
        if not self.cached:
            return False
        if self.store.prefix_cached_within(self.key, CACHE_STILL_WARM_S):
            return True
        if self._api_key is None:
            return False
        at = self.user_cache.prefix_used_at(self.provider_name, self._api_key, self.prefix)
        # A note from the future (the clock was set back) proves nothing.
        return at is not None and 0.0 <= time.time() - at < CACHE_STILL_WARM_S

    def remember(self) -> None:
        """Note when this run last sent a request whose answer used the cache (for any --out's next run)."""
        if not self.cached or self._api_key is None:
            return
        sent = self.store.last_cache_use_since(self._first_attempt)
        if sent is not None:
            self.user_cache.note_prefix_used(self.provider_name, self._api_key, self.prefix, sent)
