"""The targets one output folder holds: a record per (preset, language, categories, provider, model), so results
of every preset, language and model run into the same --out stay retrievable (issue 9 item 2).

`meta["target"]` is the latest target (what results.csv/results.jsonl hold); `meta["targets"]` maps a target's
slug to its record. Once a folder holds more than one target, each target's exports are also written to
`targets/<preset>[-<lang>]--<model>/`, which a later run of another target never replaces. A run with another
category list is another target too (its slug ends in a short hash of the list); an edited preset file is the
same target, newer.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtag.config.errors import UsageError
from imgtag.store import Store, WorkKey
from imgtag.store.db import now_iso
from imgtag.util.urls import public_url

if TYPE_CHECKING:
    from imgtag.config.runconfig import RunConfig, Target

TARGETS_DIR = "targets"


def key_of(meta: dict[str, Any]) -> WorkKey:
    return WorkKey(meta["preset_version"], meta["provider"], meta["model"])


def _variant(meta: dict[str, Any]) -> str:
    """What sets apart runs of one preset and model: the output language, a category list."""
    parts = [meta["lang"]] if meta.get("lang") else []
    if meta.get("categories"):
        parts.append("c" + hashlib.sha256("\n".join(meta["categories"]).encode()).hexdigest()[:6])
    return "".join(f"-{p}" for p in parts)


def slug(meta: dict[str, Any]) -> str:
    """A folder name for the target: preset name, its variant (language, categories) and model (a provider other
    than anthropic is prefixed)."""
    provider = "" if meta.get("provider", "anthropic") == "anthropic" else f"{meta['provider']}-"
    return re.sub(r"[^\w.@+-]+", "_", f"{meta['preset_name']}{_variant(meta)}--{provider}{meta['model']}")


def label(meta: dict[str, Any]) -> str:
    lang = f" ({meta['lang']})" if meta.get("lang") else ""
    return f"{meta['preset_name']}{lang}/{meta['model']}"


def selection_flags(meta: dict[str, Any]) -> str:
    """The status/export flags that select this target."""
    lang = f" --lang {meta['lang']}" if meta.get("lang") else ""
    return f"--preset {meta['preset_name']}{lang} --model {meta['model']}"


def target_dir(store: Store, meta: dict[str, Any]) -> Path:
    return store.out_dir / TARGETS_DIR / slug(meta)


def all_targets(store: Store) -> list[dict[str, Any]]:
    """Every target recorded, latest first (stores from before this record know only the latest)."""
    latest = store.get_meta("target")
    records = [*(store.get_meta("targets") or {}).values(), *([latest] if latest is not None else [])]
    newest: dict[str, dict[str, Any]] = {}
    # Keyed by the slug as computed now: folders written before languages had their own targets kept records
    # under the language-less slug, and the latest record is also among them.
    for meta in sorted(records, key=lambda m: m.get("updated_at", ""), reverse=True):
        newest.setdefault(slug(meta), meta)
    return list(newest.values())


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


def select(store: Store, preset: str | None, model: str | None, lang: str | None = None) -> dict[str, Any] | None:
    """The latest target matching --preset/--model/--lang (None: the latest of all); UsageError if none matches."""
    from imgtag.presets.language import normalise_lang

    targets = all_targets(store)
    if preset is None and model is None and lang is None:
        return targets[0] if targets else None
    lang = normalise_lang(lang)
    for meta in targets:
        if preset not in (None, meta["preset_name"], meta["preset"]):
            continue
        if model not in (None, meta["model"]):
            continue
        if lang is not None and lang != normalise_lang(meta.get("lang")):
            continue
        return meta
    wanted = " ".join(f"--{flag} {value}" for flag, value in (("preset", preset), ("model", model), ("lang", lang))
                      if value)
    held = ", ".join(label(m) for m in targets) or "none"
    from imgtag.config.tomlfile import did_you_mean

    hint = ""  # the model or preset the folder holds that the typo is nearest to
    if model is not None and model not in {m["model"] for m in targets}:
        hint = did_you_mean(model, {m["model"] for m in targets})
    elif preset is not None and preset not in {m["preset_name"] for m in targets}:
        hint = did_you_mean(preset, {m["preset_name"] for m in targets})
    raise UsageError(f"no results for {wanted} in {store.out_dir}{hint}; it holds: {held}")


def target_meta(cfg: RunConfig, target: Target) -> dict[str, Any]:
    """Enough to rebuild the target later (status/export/retry) — never a secret."""
    from imgtag.presets import builtin_names
    from imgtag.presets.language import normalise_lang
    from imgtag.presets.quick import is_quick

    keep = cfg.preset in builtin_names() or is_quick(cfg.preset)  # a name, or --prompt's own spec; else a file
    preset = cfg.preset if keep else str(Path(cfg.preset).resolve())
    return {"preset": preset, "preset_name": target.preset.name, "preset_version": target.preset.version,
            "lang": normalise_lang(cfg.lang), "categories": list(cfg.categories) if cfg.categories else None,
            "provider": cfg.provider, "model": target.model.id, "mode": cfg.mode, "formats": cfg.formats,
            "fields": target.preset.fields, "list_fields": target.preset.list_fields,
            "detail": cfg.detail, "max_edge": cfg.max_edge, "images_per_request": cfg.images_per_request,
            "schema": target.preset.schema, "txt_template": target.preset.txt_template,
            "titles": target.preset.titles,
            "base_url": public_url(  # so `imgtag retry` reaches the same server; never a user:password
                cfg.provider_settings.get("base_url")),
            # caption and XMP naming options a later `imgtag export` reuses (see export/writer.py REMEMBERED)
            "export_options": {k: v for k, v in cfg.export_options.items()
                               if k in ("txt_template", "txt_existing", "xmp_name", "xlsx_thumbnails")
                               and v is not None}}
