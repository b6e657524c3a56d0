"""Rate limits learned from a provider's headers, remembered per provider and account between runs.

Two copies, written together at the end of every run: the store's `learned_limits` table (what this folder's
runs learned) and the user-level cache (request/limits_cache.py: what this machine last learned for the
account, whichever folder it ran into). A run seeds from the newer of the two, so the user cache is the source
for a new --out and for a folder whose copy is older; the store's copy stands when the cache is missing or
unusable, or the folder moved to another machine. Limits older than a week are not trusted at all.

The account is identified by a fingerprint: SHA-256 of a random salt (per store; the user cache has its own)
and the API key with the endpoint it is used at (`account_identity`). The key itself is never stored, and the
salt keeps the fingerprint from matching a plain hash of the key anywhere else. The next run seeds its pacer
with what was learned (pace, burst depth, and the level the last run left, aged by the time since), so it starts
at the known pace instead of probing from cold.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from imgtag.request.limits_cache import UserCache
from imgtag.request.pacer import Pacer
from imgtag.store import Store

SALT_META = "key_fingerprint_salt"
# Limits older than this are not trusted to describe the account any more (tiers change).
MAX_AGE_S = 7 * 24 * 3600


def account_key(provider: Any) -> str | None:
    """The provider's API key, if it has one (only ever hashed)."""
    key = getattr(provider, "api_key", None)
    if not key:
        key = getattr(getattr(provider, "client", None), "api_key", None)
    return key if isinstance(key, str) and key else None


def account_identity(provider: Any) -> str | None:
    """Whose limits these are: the API key at this endpoint (only ever hashed). One key at two servers, say a
    gateway and the API behind it, or two local servers that accept any key, has two sets of limits: a server
    that sends no rate-limit headers must not be paced at what another server said. The default endpoint (no
    base URL) is the key alone."""
    key = account_key(provider)
    if key is None:
        return None
    endpoint = getattr(provider, "base_url", None)
    return f"{endpoint}\n{key}" if isinstance(endpoint, str) and endpoint else key


def fingerprint(store: Store, api_key: str) -> str:
    salt = store.get_meta(SALT_META)
    if not salt:
        salt = secrets.token_hex(16)
        store.set_meta(SALT_META, salt)
    return hashlib.sha256(f"{salt}:{api_key}".encode()).hexdigest()[:32]


def usable(entry: Any) -> tuple[dict[str, dict[str, float]], float] | None:
    """(learned limits, their age in seconds) from a saved entry, or None when it is unusable or too old."""
    try:
        age = max(0.0, time.time() - float(entry["saved_at"]))
        limits = entry["buckets"]
    except (KeyError, TypeError, ValueError):
        return None
    if age > MAX_AGE_S or not isinstance(limits, dict):
        return None
    return limits, age


def load(store: Store, provider_name: str, print_: str) -> tuple[dict[str, dict[str, float]], float] | None:
    """The store's copy: (learned limits, their age in seconds), or None when nothing usable is remembered."""
    row = store.db.execute("SELECT limits FROM learned_limits WHERE provider=? AND key_fingerprint=?",
                           (provider_name, print_)).fetchone()
    if row is None:
        return None
    try:
        return usable(json.loads(row["limits"]))
    except ValueError:
        return None


def save(store: Store, provider_name: str, print_: str, entry: dict[str, Any]) -> None:
    store.db.execute(
        "INSERT INTO learned_limits(provider, key_fingerprint, limits, updated_at) VALUES (?,?,?,datetime('now'))"
        " ON CONFLICT(provider, key_fingerprint) DO UPDATE SET limits=excluded.limits, updated_at=excluded.updated_at",
        (provider_name, print_, json.dumps(entry)))


class Memory:
    """What one run reads at start and writes at the end; inert for providers without an API key."""

    def __init__(self, store: Store, provider: Any, provider_name: str, user_cache: UserCache | None = None) -> None:
        self.store = store
        self.provider_name = provider_name
        self._key = account_identity(provider)  # only ever hashed, here and in the user cache
        self.print = fingerprint(store, self._key) if self._key else None
        self.user_cache = user_cache or UserCache()

    def seed(self, pacer: Pacer) -> bool:
        if self.print is None or self._key is None:
            return False
        found = [x for x in (load(self.store, self.provider_name, self.print),
                             usable(self.user_cache.load(self.provider_name, self._key))) if x is not None]
        if not found:
            return False
        pacer.seed(*min(found, key=lambda limits_age: limits_age[1]))  # the newer copy
        return pacer.limits_known

    def save(self, pacer: Pacer) -> None:
        if self.print is None or self._key is None or not pacer.limits_known:
            return
        learned = pacer.learned()
        if not learned:
            return
        entry = {"saved_at": time.time(), "buckets": learned}
        save(self.store, self.provider_name, self.print, entry)
        self.user_cache.save(self.provider_name, self._key, entry)
