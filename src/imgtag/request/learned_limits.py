"""Rate limits learned from a provider's headers, remembered per provider and account between runs.

The account is identified by a fingerprint: SHA-256 of a random per-store salt and the API key. The key
itself is never stored, and the salt keeps the fingerprint from matching a plain hash of the key anywhere
else. The next run seeds its pacer with what was learned (pace, burst depth, and the level the last run
left, aged by the time since), so it starts at the known pace instead of probing from cold.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

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


def fingerprint(store: Store, api_key: str) -> str:
    salt = store.get_meta(SALT_META)
    if not salt:
        salt = secrets.token_hex(16)
        store.set_meta(SALT_META, salt)
    return hashlib.sha256(f"{salt}:{api_key}".encode()).hexdigest()[:32]


def load(store: Store, provider_name: str, print_: str) -> tuple[dict[str, dict[str, float]], float] | None:
    """(learned limits, their age in seconds), or None when nothing usable is remembered."""
    row = store.db.execute("SELECT limits FROM learned_limits WHERE provider=? AND key_fingerprint=?",
                           (provider_name, print_)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row["limits"])
        age = max(0.0, time.time() - float(data["saved_at"]))
        limits = data["buckets"]
    except (ValueError, KeyError, TypeError):
        return None
    if age > MAX_AGE_S or not isinstance(limits, dict):
        return None
    return limits, age


def save(store: Store, provider_name: str, print_: str, pacer: Pacer) -> None:
    learned = pacer.learned()
    if not learned:
        return
    payload = json.dumps({"saved_at": time.time(), "buckets": learned})
    store.db.execute(
        "INSERT INTO learned_limits(provider, key_fingerprint, limits, updated_at) VALUES (?,?,?,datetime('now'))"
        " ON CONFLICT(provider, key_fingerprint) DO UPDATE SET limits=excluded.limits, updated_at=excluded.updated_at",
        (provider_name, print_, payload))


class Memory:
    """What one run reads at start and writes at the end; inert for providers without an API key."""

    def __init__(self, store: Store, provider: Any, provider_name: str) -> None:
        self.store = store
        self.provider_name = provider_name
        key = account_key(provider)
        self.print = fingerprint(store, key) if key else None

    def seed(self, pacer: Pacer) -> bool:
        if self.print is None:
            return False
        found = load(self.store, self.provider_name, self.print)
        if found is None:
            return False
        pacer.seed(*found)
        return pacer.limits_known

    def save(self, pacer: Pacer) -> None:
        if self.print is not None and pacer.limits_known:
            save(self.store, self.provider_name, self.print, pacer)
