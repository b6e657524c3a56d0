"""`imgtag scan`: discover, prefilter and size every file offline, and estimate what a run would cost."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtag.config.runconfig import RunConfig, Target
from imgtag.ingest.pipeline import Ingested, IngestOptions, Ingestor
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.estimate import Estimator, ModeCost, ModelEstimate, image_tokens, prompt_tokens
from imgtag.request.template import prepare_template
from imgtag.store import Store
from imgtag.store.db import DB_NAME


@dataclass
class ScanResult:
    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    distinct: int = 0
    estimator: Estimator | None = None
    missing_args: list[str] = field(default_factory=list)
    ignored_hidden: int = 0
    symlink_loops: int = 0


def scans_own(out: Path) -> bool:
    """Whether `imgtag scan` may use the store in `out`: none there yet, or one only scans have used. A store that
    any other command used belongs to a project and is only read (issue 17 item 2), so it is opened read-only
    here, never migrated or locked."""
    import sqlite3

    db_path = out / DB_NAME
    if not db_path.exists():
        return True
    try:
        with contextlib.closing(sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            (others,) = db.execute("SELECT COUNT(*) FROM runs WHERE command <> 'scan'").fetchone()
    except sqlite3.Error:  # unreadable, locked or not ours: leave it alone
        return False
    return others == 0


def models_to_compare(provider: str, selected: str) -> list[str]:
    """Anthropic's catalogue side by side (the chosen model among them); another provider's chosen model alone,
    priced as the run would price it (imgtag.toml, or unknown)."""
    if provider != "anthropic":
        return [selected]
    models = list(catalogue().models)
    return models if selected in models else [*models, selected]


def file_entry(ing: Ingested, store: Store, target: Target, prompt: int, min_short: int = 200) -> dict[str, Any]:
    r = ing.record
    est = img = None
    if r.status == "ok" and r.width and r.height:
        img = image_tokens(r.width, r.height, target.preset, target.model, min_short)
        est = None if img is None else img + prompt  # None: this model's image tokens are unknown
    return {
        "path": r.display,
        "status": r.status,
        "reason": r.reason,
        "reason_code": r.reason_code,
        "format": r.format,
        "width": r.width,
        "height": r.height,
        "bytes": r.size,
        "sha256": r.sha256,
        "duplicate_of": store.display_of(ing.duplicate_of),
        "near_duplicate_of": store.display_of(ing.near_duplicate_of),
        "blur": round(r.blur, 2) if r.blur is not None else None,
        "est_input_tokens": est,  # image + prompt + schema, before caching
        "image_tokens": img,
    }


def sync_pack_size(cfg: RunConfig) -> int:
    """Images per request of a sync run: --images-per-request where the provider packs in sync mode (Anthropic),
    else 1 (OpenAI packs only through its Batch API; `run` refuses the flag in sync mode there)."""
    from imgtag.providers import provider_class
    from imgtag.request.packing import pack_size

    return pack_size(provider_class(cfg.provider), cfg.images_per_request)


async def scan(cfg: RunConfig, store: Store, target: Target, emit: Callable[[dict[str, Any]], None]) -> ScanResult:
    result = ScanResult(estimator=Estimator(target.preset, models=models_to_compare(cfg.provider, target.model.id),
                                            min_short=cfg.min_side, per_request=cfg.images_per_request,
                                            sync_per_request=sync_pack_size(cfg),
                                            infos={target.model.id: target.model}))
    run_id = store.start_run("scan", key=target.key, preset=target.preset.name)
    ingestor = Ingestor(store, IngestOptions(inputs=cfg.inputs, request=prepare_template(cfg, target, encode=False),
                                             workers=cfg.workers, exclude=[str(store.out_dir.resolve())],
                                             stdin=cfg.stdin), run_id)
    prompt = prompt_tokens(target.preset, target.model)
    seen: set[str] = set()
    try:
        async for ing in ingestor.run():
            entry = file_entry(ing, store, target, prompt, cfg.min_side)
            emit(entry)
            result.by_status[entry["status"]] += 1
            if entry["reason_code"]:
                result.by_reason[entry["reason_code"]] += 1
            sha = ing.record.sha256
            if entry["status"] == "ok" and sha and sha not in seen:
                seen.add(sha)
                result.distinct += 1
                assert result.estimator is not None
                result.estimator.add(ing.record.width or 0, ing.record.height or 0)
    finally:
        ingestor.close()
    stats = ingestor.counters.stats
    result.missing_args = list(stats.missing_args)
    result.ignored_hidden = stats.ignored_hidden
    result.symlink_loops = stats.symlink_loops
    store.finish_run(run_id, 0)
    return result


def summary_object(result: ScanResult, target: Target) -> dict[str, Any]:
    assert result.estimator is not None
    estimates = estimate_objects(result.estimator)
    per_request = result.estimator.per_request
    sync_per_request = result.estimator.sync_per_request or per_request
    return {
        "summary": True,
        "files": sum(result.by_status.values()),
        "by_status": dict(result.by_status),
        "by_reason": dict(result.by_reason),
        "distinct_images": result.distinct,
        "ignored_hidden": result.ignored_hidden,
        "symlink_loops": result.symlink_loops,
        "missing": result.missing_args,
        "preset": target.preset.name,
        "preset_version": target.preset.version,
        "selected_model": target.model.id,
        "images_per_request": {"sync": sync_per_request, "batch": per_request},
        "estimates": estimates,
    }


def _mode(m: ModeCost | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"input_tokens": m.input_tokens, "cache_write_tokens": m.cache_write_tokens,
            "cache_read_tokens": m.cache_read_tokens, "output_tokens": m.output_tokens, "cache_ttl": m.ttl,
            "usd": None if m.usd is None else round(m.usd, 6)}


def estimate_object(t: ModelEstimate) -> dict[str, Any]:
    return {"model": t.model, "images": t.images, "input_tokens": t.input_tokens if t.tokens_known else None,
            "output_tokens": t.output_tokens,
            "standard_usd": None if t.standard_usd is None else round(t.standard_usd, 6),
            "batch_usd": None if t.batch_usd is None else round(t.batch_usd, 6),
            "sync": _mode(t.sync), "batch": _mode(t.batch),
            "per_image": {k: round(v, 1) for k, v in t.per_image.items()},
            "prefix_cached": bool(t.prefix and t.prefix.cache), "caching_known": t.caching_known,
            "guide_sent": bool(t.prefix and t.prefix.guide_tokens)}


def estimate_objects(estimator: Estimator) -> list[dict[str, Any]]:
    return [estimate_object(t) for t in estimator.totals.values()]
