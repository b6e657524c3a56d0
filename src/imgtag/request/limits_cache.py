"""The user-level cache: one small JSON file in the platform's cache folder, so any new --out starts from what this
machine last saw for the account: the learned rate limits (request/learned_limits.py decides what to seed from)
and when each prompt prefix was last used on the server (request/warm_prefix.py: a run within the prompt cache's
lifetime skips the warm-up).

Entries are keyed by provider and a fingerprint of the API key: SHA-256 of a random salt kept in the same file
and the key, never the key; a prompt prefix's entry hashes the prefix in as well (never the prompt). The file is
readable by the user alone, written atomically (a temp file renamed over it), and a folder that cannot be used
costs nothing but the head start: a cache never fails a run.
IMGTAG_CACHE_DIR overrides the folder (tests point it at a temporary one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CACHE_ENV = "IMGTAG_CACHE_DIR"
FILE_NAME = "learned-limits.json"
PREFIXES = "prompt_prefixes"  # fingerprint of (provider, key, prefix) -> when it was last used on the server
PREFIX_KEEP_S = 3600.0


def cache_dir() -> Path:
    """IMGTAG_CACHE_DIR, else the platform's per-user cache folder (as platformdirs would name it)."""
    if override := os.environ.get(CACHE_ENV):
        return Path(override)
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "imgtag"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "imgtag" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "imgtag"


def _fingerprint(salt: str, api_key: str) -> str:
    return hashlib.sha256(f"{salt}:{api_key}".encode()).hexdigest()[:32]


class UserCache:
    def __init__(self, folder: Path | None = None) -> None:
        try:
            self.path: Path | None = (folder or cache_dir()) / FILE_NAME
        except RuntimeError:  # no home folder to be found (Path.home): no user cache, the store's copy still works
            self.path = None

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, provider: str, api_key: str) -> dict[str, Any] | None:
        """The saved entry ({"saved_at", "buckets"}) for this provider and key, or None."""
        data = self._read()
        salt, accounts = data.get("salt"), data.get("accounts")
        if not isinstance(salt, str) or not isinstance(accounts, dict):
            return None
        entry = accounts.get(f"{provider}:{_fingerprint(salt, api_key)}")
        return entry if isinstance(entry, dict) else None

    def save(self, provider: str, api_key: str, entry: dict[str, Any]) -> None:
        data = self._read()
        salt = data.get("salt") if isinstance(data.get("salt"), str) else secrets.token_hex(16)
        accounts = data.get("accounts") if isinstance(data.get("accounts"), dict) else {}
        accounts[f"{provider}:{_fingerprint(salt, api_key)}"] = entry
        # Accounts not seen for a month are dropped, so the file stays small however many keys pass through.
        cutoff = time.time() - 30 * 24 * 3600
        accounts = {k: v for k, v in accounts.items()
                    if isinstance(v, dict) and isinstance(v.get("saved_at"), (int, float)) and v["saved_at"] > cutoff}
        self._write({**data, "salt": salt, "accounts": accounts})

    def prefix_used_at(self, provider: str, api_key: str, prefix: str) -> float | None:
        """When (time.time()) a request with this prompt prefix, from this account, was last sent and answered
        with the prompt cache read or written; None when unknown."""
        data = self._read()
        salt, prefixes = data.get("salt"), data.get(PREFIXES)
        if not isinstance(salt, str) or not isinstance(prefixes, dict):
            return None
        at = prefixes.get(_fingerprint(salt, f"{provider}:{api_key}:{prefix}"))
        return float(at) if isinstance(at, (int, float)) else None

    def note_prefix_used(self, provider: str, api_key: str, prefix: str, at: float) -> None:
        data = self._read()
        salt = data.get("salt") if isinstance(data.get("salt"), str) else secrets.token_hex(16)
        prefixes = data.get(PREFIXES) if isinstance(data.get(PREFIXES), dict) else {}
        name = _fingerprint(salt, f"{provider}:{api_key}:{prefix}")
        now = time.time()
        # A prompt cache entry lives minutes (an hour at most): older notes can never matter again, and a note
        # from the future (the clock was set back) must not outlive its mistake. Two runs ending together: the
        # newer use stands.
        prefixes = {k: v for k, v in prefixes.items() if isinstance(v, (int, float)) and now - PREFIX_KEEP_S < v <= now}
        prefixes[name] = max(at, prefixes.get(name, at))
        self._write({**data, "salt": salt, PREFIXES: prefixes})

    def _write(self, data: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".learned-limits.", dir=self.path.parent)  # mode 0600
        except OSError:
            return  # no usable cache folder: the next new --out starts cold, nothing worse
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
