"""`imgtag status`: what a folder holds for one target (the latest, or --preset/--model), as text or JSON.

Failures are listed up to a limit with "... and N more"; nested values in JSON are objects, never JSON text.
"""

from __future__ import annotations

from typing import Any

from imgtag.app.summary import summarize
from imgtag.cli.costview import status_estimate, status_estimate_line
from imgtag.export import fileset
from imgtag.export.targets import all_targets, key_of, label, selection_flags
from imgtag.store import Store
from imgtag.store import batches as sb
from imgtag.store.db import KEPT_ANSWER
from imgtag.store.review import review_counts
from imgtag.util.money import usd
from imgtag.util.words import failure_text, plural

FAILURES_SHOWN = 50
KEPT_ANSWER_SHOWN = 160  # characters of a kept answer on the text page; --json and the results hold all of it


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
        select = (f"SELECT f.display, j.error_type, j.error_message, ({KEPT_ANSWER}), 0 AS kind, f.id AS id FROM jobs j"
                  " JOIN files f ON f.id = j.file_id"
                  " WHERE j.status='failed' AND j.preset_version=? AND j.provider=? AND j.model=?"
                  f" {in_set.replace('seen_run', 'f.seen_run')} UNION ALL SELECT display, reason_code, reason, NULL,"
                  f" 1, id FROM files WHERE status='failed' {in_set}")
        (failed_total,) = store.db.execute(f"SELECT COUNT(*) FROM ({select})", (*kp, *since)).fetchone()
        # Failed answers first, then files that could not be read, each in the order the files were found.
        failures = [{"path": r[0], "type": r[1] or "error", "message": r[2] or "", "raw_answer": r[3]}
                    for r in store.db.execute(f"{select} ORDER BY kind, id LIMIT {FAILURES_SHOWN}", (*kp, *since))]
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


def render(report: dict[str, Any], credits_line: str | None) -> list[str]:
    meta = report["target"]
    if not meta:
        return [f"{report['files']} files scanned; no results yet (run `imgtag run`)"]
    lines = [f"preset {meta['preset_name']} ({meta['preset_version']}), {meta['provider']} {meta['model']}"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["by_status"].items())) or "none"
    lines.append(f"files {report['files']}: {counts}")
    if report.get("path_base"):
        lines.append(f"paths relative to {report['path_base']}")
    lines.append(f"requests {report['requests']}; tokens in {report['input_tokens']:,}, "
                 f"out {report['output_tokens']:,}, cache write {report['cache_creation_input_tokens']:,}, "
                 f"cache read {report['cache_read_input_tokens']:,}; spent to date {usd(report['cost_usd'])}")
    review = report.get("review")
    if review and report["by_status"].get("ok"):
        lines.append(review_line(review))
    if report.get("estimate"):
        lines.append(status_estimate_line(report["estimate"], report["cost_usd"]))
    if credits_line:
        lines.append(credits_line)
    if report["by_error"]:
        lines.append("by cause: " + ", ".join(f"{k} {v}" for k, v in sorted(report["by_error"].items())))
    for b in report["batches"]:
        counts_text = ", ".join(f"{k} {v}" for k, v in (b["request_counts"] or {}).items() if v) or "none yet"
        source = "live" if b.get("live") else "as of the last run"
        lines.append(f"batch {b['id']}: {b['processing_status']}, {plural(b['item_count'], 'request')} "
                     f"({counts_text}; {source})")
    if any(b.get("live") and b["processing_status"] == "ended" for b in report["batches"]):
        lines.append("ended batches are collected by running the same `imgtag run` command again")
    for f in report["failures"]:
        lines.append(f"  failed {f['path']}: {failure_text(f['type'], f['message'])}")
        if f.get("raw_answer"):
            lines.append(f"    answer kept: {_excerpt(f['raw_answer'])}")
    more = report["failures_total"] - len(report["failures"])
    if more > 0:
        lines.append(f"  ... and {more} more (`imgtag status --json` or results.jsonl has them all)")
    if any(f.get("raw_answer") for f in report["failures"]):
        lines.append("  answers kept in full: `imgtag status --json`, and error.raw_answer in results.jsonl")
    for other in report["targets"][1:]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(other["by_status"].items())) or "none"
        lines.append(f"also here: {label(other)} ({counts}; spent {usd(other['cost_usd'])}); "
                     f"`imgtag status {selection_flags(other)}`")
    return lines


def review_line(review: dict[str, int]) -> str:
    """`imgtag review` progress over the answered images: 'review: 3 reviewed, 1 edited, 96 not yet reviewed'."""
    parts = [f"{review['reviewed']} reviewed"]
    if review["rejected"]:
        parts.append(f"{review['rejected']} rejected")
    parts += [f"{review['edited']} edited", f"{review['not_reviewed']} not yet reviewed"]
    return "review: " + ", ".join(parts)


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= KEPT_ANSWER_SHOWN else line[:KEPT_ANSWER_SHOWN - 1] + "…"
