"""What a server accepted, remembered per (base URL, model): a rerun starts from it instead of probing."""

from __future__ import annotations

import json
from typing import Any

from imgtag.store.db import Store, now_iso


def load(store: Store, base_url: str, model: str) -> dict[str, Any]:
    row = store.db.execute("SELECT caps FROM server_caps WHERE base_url = ? AND model = ?",
                           (base_url, model)).fetchone()
    return dict(json.loads(row[0])) if row else {}


def save(store: Store, base_url: str, model: str, caps: dict[str, Any]) -> None:
    store.db.execute(
        "INSERT INTO server_caps (base_url, model, caps, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (base_url, model) DO UPDATE SET caps = excluded.caps, updated_at = excluded.updated_at",
        (base_url, model, json.dumps(caps, sort_keys=True), now_iso()))
