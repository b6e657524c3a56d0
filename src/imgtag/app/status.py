"""`imgtag status` as data: what a folder holds for one target (the latest, or --preset/--model).

Failures are gathered up to a limit (cli/status.py words the rest as "... and N more"); nested values are objects,
never JSON text, so `--json` and `imgtag.folder_status` give them as they are.
"""

from __future__ import annotations

from typing import Any

from imgtag.app.summary import summarize
from imgtag.export import fileset
from imgtag.export.targets import all_targets, key_of
from imgtag.pricing.estimate import Estimator
from imgtag.store import Store, WorkKey, tallies
from imgtag.store import batches as sb
from imgtag.store.db import KEPT_ANSWER
from imgtag.store.review import review_counts

FAILURES_SHOWN = 50


def gather(store: Store, meta: dict[str, Any] | None) -> dict[str, Any]:
    key = key_of(meta) if meta else None
    file_set = fileset.current(store)  # the latest run's inputs (None: every file, for stores from before sets)
    scope = {"since_run": file_set.run, "counted": file_set.counted} if file_set else {}
    s = summarize(store.db, key, **scope)
    batches = [{"id": b.id, "provider": b.provider, "processing_status": b.processing_status,
                "item_count": b.item_count, "request_counts": b.request_counts, "created_at": b.created_at,
                "live": False}
               for b in sb.live_batches(store)]
    failures: list[dict[str, str]] = []
    failed_total = 0
    if key is not None:
        kp = (key.preset_version, key.provider, key.model)
        in_set, since = ("AND seen_run >= ?", (file_set.run,) * 2) if file_set else ("", ())
        # The job's id stands for its kept answer (KEPT_ANSWER, a lookup in the attempts), fetched for the rows shown
        # only: counting or sorting 10,000 failures then reads no attempt.
        select = ("SELECT f.display, j.error_type, j.error_message, j.id AS id, 0 AS kind, f.id AS fid FROM jobs j"
                  " JOIN files f ON f.id = j.file_id"
                  " WHERE j.status='failed' AND j.preset_version=? AND j.provider=? AND j.model=?"
                  f" {in_set.replace('seen_run', 'f.seen_run')} UNION ALL SELECT display, reason_code, reason, NULL,"
                  f" 1, id FROM files WHERE status='failed' {in_set}")
        (failed_total,) = store.db.execute(f"SELECT COUNT(*) FROM ({select})", (*kp, *since)).fetchone()
        # Failed answers first, then files that could not be read, each in the order the files were found.
        failures = [{"path": r[0], "type": r[1] or "error", "message": r[2] or "", "raw_answer": r[3]}
                    for r in store.db.execute(
                        f"SELECT display, error_type, error_message, ({KEPT_ANSWER.replace('j.id', 'shown.id')})"
                        f" FROM ({select} ORDER BY kind, fid LIMIT {FAILURES_SHOWN}) AS shown ORDER BY kind, fid",
                        (*kp, *since))]
    others = []
    for other in all_targets(store):
        if meta is not None and key_of(other) == key:
            continue
        o = summarize(store.db, key_of(other), **scope)
        others.append({**_identity(other), "by_status": o.by_status, "cost_usd": _dollars(o.cost_usd)})
    this = [{**_identity(meta), "by_status": s.by_status, "cost_usd": _dollars(s.cost_usd)}] if meta else []
    return {"target": meta, "files": s.files, "path_base": fileset.stated_base(store),
            "by_status": s.by_status, "by_error": s.by_error,
            "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
            "cache_creation_input_tokens": s.cache_creation_input_tokens,
            "cache_read_input_tokens": s.cache_read_input_tokens, "cost_usd": _dollars(s.cost_usd),
            "requests": s.requests, "batches": batches, "credits_spent": s.credits_spent,
            "credits_remaining": s.credits_remaining, "failures": failures, "failures_total": failed_total,
            "targets": this + others, "estimate": status_estimate(store.db, meta) if meta else None,
            "review": (review_counts(store.db, key, scope.get("since_run"), s.by_status.get("ok", 0)).as_dict()
                       if key is not None else None)}


def _dollars(amount: float | None) -> float | None:
    """JSON's cost: null when some tokens were paid at prices nobody knows (never a made-up 0)."""
    return None if amount is None else round(amount, 8)


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("preset_name", "lang", "provider", "model", "preset_version")}


async def refresh_batches(batches: list[dict[str, Any]], timeout: float = 15.0,
                          servers: dict[str, dict[str, Any]] | None = None) -> None:
    """Ask the provider for the current state of each live batch (when its key is set); the store is not
    changed: the next `imgtag run` collects and records. Without a key, or on any error, states stay as stored.
    `servers`: a provider's settings (its base_url) where it is not the provider's default server."""
    from imgtag.providers import create_provider
    from imgtag.providers.base import ConfigError, ProviderError
    from imgtag.providers.batch_api import counted

    for name in sorted({b["provider"] for b in batches}):
        try:
            provider = create_provider(name, **(servers or {}).get(name, {}), timeout=timeout)
        except ConfigError:
            continue
        try:
            api = provider.batch_api()
            if api is None:
                continue
            for b in (b for b in batches if b["provider"] == name):
                try:
                    handle = await api.retrieve(b["id"])
                except ProviderError:
                    continue
                handle = counted(handle, int(b["item_count"]))  # OpenAI counts nothing while validating
                b.update(processing_status=handle.processing_status, request_counts=dict(handle.counts), live=True)
        finally:
            await provider.aclose()


def status_estimate(db: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    """What the run's images were estimated to cost in its mode, from the sizes in the store (no image is read)."""
    from imgtag.config.runconfig import RunConfig
    from imgtag.providers import resolve_target

    try:
        cfg = RunConfig(inputs=[], out=None, preset=meta["preset"], lang=meta.get("lang"),  # type: ignore[arg-type]
                        categories=meta.get("categories"), provider=meta["provider"], model=meta["model"],
                        detail=meta.get("detail"), max_edge=meta.get("max_edge"))
        target = resolve_target(cfg)
    except Exception:  # a preset file that moved or changed: no estimate rather than no status
        return None
    if target.preset.version != meta.get("preset_version"):
        return None
    est = Estimator(target.preset, models=[target.model.id], per_request=int(meta.get("images_per_request") or 1),
                    infos={target.model.id: target.model})
    kp = (meta["preset_version"], meta["provider"], meta["model"])
    if est.per_request > 1:
        # In the order the files were found: packs are formed in that order, and a pack's size decides its band.
        for w, h in db.execute(
                "SELECT MAX(f.width), MAX(f.height) FROM jobs j JOIN files f ON f.sha256 = j.sha256"
                " WHERE j.preset_version = ? AND j.provider = ? AND j.model = ? AND f.width IS NOT NULL"
                " GROUP BY j.sha256 ORDER BY MIN(f.id)", kp):
            est.add(int(w), int(h))
    else:
        # One image per request: only the first request's band depends on order (it writes the cached prefix), so
        # the first image goes first and the rest are added by size, one step per distinct size.
        first = db.execute(
            "SELECT f.width, f.height FROM files f CROSS JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = ?"
            " AND j.provider = ? AND j.model = ? WHERE f.width IS NOT NULL ORDER BY f.id LIMIT 1"
            " /* scan: in file order, it stops at the first answered file */", kp).fetchone()
        if first is not None:
            est.add(int(first[0]), int(first[1]))
            # The rest by size, as the store keeps them counted (store/tallies.py): no pass over a million jobs.
            for w, h, n in tallies.sizes(db, WorkKey(*kp)):
                est.add(w, h, n - ((w, h) == (first[0], first[1])))
    t = est.estimate(target.model.id)
    batch = meta.get("mode") == "batch"
    mode = t.batch if batch else t.sync
    return {"mode": "batch" if batch else "sync", "images": t.images,
            "usd": None if mode is None or mode.usd is None else round(mode.usd, 6)}
