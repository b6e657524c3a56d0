"""How estimates are shown: scan's table and JSON, the dry-run line, and `status`'s estimate beside the actual."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from imgtag.cli.screen import Lines
from imgtag.pricing.estimate import Estimator, ModeCost, ModelEstimate
from imgtag.util.money import usd


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
            "prefix_cached": bool(t.prefix and t.prefix.cache),
            "guide_sent": bool(t.prefix and t.prefix.guide_tokens)}


def estimate_objects(estimator: Estimator) -> list[dict[str, Any]]:
    return [estimate_object(t) for t in estimator.totals.values()]


def print_estimates(console: Lines, preset: str, estimates: list[dict[str, Any]], selected: str | None) -> None:
    table = Table(title=f"Estimated cost, preset {preset} (prompt caching included)", show_edge=False)
    rows = []
    for e in estimates:
        s = e["sync"] or {}
        tokens_in = f"{s.get('input_tokens', 0):,}" if e["input_tokens"] is not None else "unknown"
        rows.append((e["model"], tokens_in, f"{s.get('cache_write_tokens', 0):,}", f"{s.get('cache_read_tokens', 0):,}",
                     f"{e['output_tokens']:,}", usd(e["standard_usd"]), usd(e["batch_usd"])))
    for i, col in enumerate(("model", "input", "cache write", "cache read", "output", "sync", "batch")):
        money = col in ("sync", "batch")  # never cut short: on a narrow terminal the token headers wrap instead
        table.add_column(col, justify="right" if col != "model" else "left", no_wrap=col == "model" or money,
                         min_width=max((len(r[i]) for r in rows), default=0) if money else None)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    chosen = next((e for e in estimates if e["model"] == selected), estimates[0] if estimates else None)
    if chosen is not None and chosen["images"]:
        console.print(where_tokens_go(chosen), markup=False)


def where_tokens_go(e: dict[str, Any]) -> str:
    p = e["per_image"]
    cached = ("cached: read at 0.1x after one write" + (", guide included" if e["guide_sent"] else "")
              if e["prefix_cached"] else "not cached: below the model's caching minimum")
    image = f"image {p['image']:,.0f} tokens" if e["input_tokens"] is not None else "image tokens unknown"
    return (f"per image on {e['model']}: {image}, prompt {p['prompt']:,.0f}, "
            f"schema {p['schema']:,.0f} (prompt + schema {cached}), output {p['output']:,.0f}")


def dry_run_line(est: ModelEstimate) -> str:
    cached = ""
    if est.sync is not None and est.sync.ttl:
        cached = (f" (prefix cached: {est.sync.cache_write_tokens:,} written once, "
                  f"{est.sync.cache_read_tokens:,} read at 0.1x)")
    tokens_in = f"{est.input_tokens:,}" if est.tokens_known else "an unknown number of"
    return (f"dry run: {est.images} images to tag with {est.model}, about {tokens_in} input tokens before "
            f"caching{cached} + {est.output_tokens:,} output; estimated {usd(est.standard_usd)} standard, "
            f"{usd(est.batch_usd)} batch. Nothing was sent.")


SIZE_PACK = 1 << 32  # width and height as one integer (width * SIZE_PACK + height): one GROUP BY key


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
        # the first image goes first and the rest are added by size, one step per distinct size. A million images
        # are counted in SQL, index to index (jobs_target, files_content): each content's size as one number.
        first = db.execute(
            "SELECT f.width, f.height FROM files f CROSS JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = ?"
            " AND j.provider = ? AND j.model = ? WHERE f.width IS NOT NULL ORDER BY f.id LIMIT 1"
            " /* scan: in file order, it stops at the first answered file */", kp).fetchone()
        if first is not None:
            est.add(int(first[0]), int(first[1]))
            # LIMIT -1 keeps the inner query a co-routine, so each job's size is looked up once, not per use.
            for size, n in db.execute(
                    f"SELECT size, COUNT(*) FROM (SELECT (SELECT f.width * {SIZE_PACK} + f.height FROM files f"
                    " WHERE f.sha256 = j.sha256 AND f.width IS NOT NULL LIMIT 1) AS size FROM jobs j"
                    " WHERE j.preset_version = ? AND j.provider = ? AND j.model = ? LIMIT -1) GROUP BY size", kp):
                if size is not None:
                    w, h = divmod(int(size), SIZE_PACK)
                    est.add(w, h, int(n) - ((w, h) == (first[0], first[1])))
    t = est.estimate(target.model.id)
    batch = meta.get("mode") == "batch"
    mode = t.batch if batch else t.sync
    return {"mode": "batch" if batch else "sync", "images": t.images,
            "usd": None if mode is None or mode.usd is None else round(mode.usd, 6)}


def status_estimate_line(estimate: dict[str, Any], actual_usd: float | None) -> str:
    est = estimate["usd"]
    if est is None:
        return f"estimate: unknown (no prices for this model); actual {usd(actual_usd)}"
    ratio = f" ({actual_usd / est:.2f}x the estimate)" if est > 0 and actual_usd else ""
    return (f"estimate {usd(est)} for {estimate['images']} images ({estimate['mode']}, caching included); "
            f"actual {usd(actual_usd)}{ratio}")
