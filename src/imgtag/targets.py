"""The targets one output folder holds: a record per (preset, provider, model), so results of every preset and
model run into the same --out stay retrievable (issue 9 item 2).

`meta["target"]` is the latest target (what results.csv/results.jsonl hold); `meta["targets"]` maps a target's
slug to its record. Once a folder holds more than one target, each target's exports are also written to
`targets/<preset>--<model>/`, which a later run of another target never replaces.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imgtag.configfile import UsageError
from imgtag.store import Store, WorkKey
from imgtag.store.db import now_iso

TARGETS_DIR = "targets"


def key_of(meta: dict[str, Any]) -> WorkKey:
    return WorkKey(meta["preset_version"], meta["provider"], meta["model"])


def slug(meta: dict[str, Any]) -> str:
    """A folder name for the target: preset name and model (a provider other than anthropic is prefixed)."""
    provider = "" if meta.get("provider", "anthropic") == "anthropic" else f"{meta['provider']}-"
    return re.sub(r"[^\w.@+-]+", "_", f"{meta['preset_name']}--{provider}{meta['model']}")


def label(meta: dict[str, Any]) -> str:
    return f"{meta['preset_name']}/{meta['model']}"


def target_dir(store: Store, meta: dict[str, Any]) -> Path:
    return store.out_dir / TARGETS_DIR / slug(meta)


def all_targets(store: Store) -> list[dict[str, Any]]:
    """Every target recorded, latest first (stores from before this record know only the latest)."""
    records = dict(store.get_meta("targets") or {})
    latest = store.get_meta("target")
    if latest is not None:
        records.setdefault(slug(latest), latest)
    return sorted(records.values(), key=lambda m: m.get("updated_at", ""), reverse=True)


def record(store: Store, meta: dict[str, Any]) -> dict[str, Any] | None:
    """Make `meta` the latest target; returns the previous latest when it was a different target."""
    previous = store.get_meta("target")
    meta = {**meta, "updated_at": now_iso()}
    records = dict(store.get_meta("targets") or {})
    if previous is not None:
        records.setdefault(slug(previous), previous)
    records[slug(meta)] = meta
    store.set_meta("targets", records)
    store.set_meta("target", meta)
    if previous is not None and key_of(previous) != key_of(meta):
        return previous
    return None


def select(store: Store, preset: str | None, model: str | None) -> dict[str, Any] | None:
    """The latest target matching --preset/--model (None: the latest of all); UsageError if none matches."""
    targets = all_targets(store)
    if preset is None and model is None:
        return targets[0] if targets else None
    for meta in targets:
        if preset not in (None, meta["preset_name"], meta["preset"]):
            continue
        if model not in (None, meta["model"]):
            continue
        return meta
    wanted = " ".join(x for x in (f"--preset {preset}" if preset else "", f"--model {model}" if model else "") if x)
    held = ", ".join(label(m) for m in targets) or "none"
    raise UsageError(f"no results for {wanted} in {store.out_dir}; it holds: {held}")
