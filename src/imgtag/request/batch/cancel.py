"""`imgtag cancel`: cancel every live batch, store what was already answered (it is paid for), and return
every unanswered item to pending, so the next `imgtag run` submits it again."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgtag.config.runconfig import RunConfig
from imgtag.export.writer import write_exports
from imgtag.presets import PresetError
from imgtag.providers import open_provider, resolve_target
from imgtag.providers.base import ConfigError, ProviderError
from imgtag.providers.batch_api import BatchHandle
from imgtag.request.batch.collect import Collector
from imgtag.request.batch.common import BatchContext, BatchStop, stop_if_fatal
from imgtag.request.batch.submit import Submitter
from imgtag.store import Store, StoreBusyError
from imgtag.store import batches as sb

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
_GONE = object()  # a polled batch the API no longer knows


def _print(text: str, err: bool = False) -> None:
    print(text if not err else f"imgtag: {text}", file=sys.stderr if err else sys.stdout, flush=True)


# Where a line for the person goes (text, to stderr); the CLI passes one that fits the line to the terminal.
Say = Callable[[str, bool], None]


ServerFor = Callable[[dict[str, Any]], dict[str, Any]]  # the latest target's record -> its provider settings


def cancel_all(out: Path, *, wait_s: float = 120.0, server: ServerFor | None = None, say: Say | None = None) -> int:
    say = say or _print

    try:
        store = Store(out, create=False)
    except (FileNotFoundError, StoreBusyError) as exc:
        say(str(exc), True)
        return EXIT_CONFIG
    with store:
        meta = store.get_meta("target")
        if not meta or not (sb.live_batches(store) or sb.orphan_submissions(store)):
            say(f"no live batches in {out}", False)
            return EXIT_OK
        # The last run's target judges the answers (its preset's schema) and prices them.
        cfg = RunConfig(inputs=[], out=out, preset=meta["preset"], lang=meta.get("lang"),
                        categories=meta.get("categories"), provider=meta["provider"], model=meta["model"],
                        mode="batch", formats=meta.get("formats") or "csv,jsonl", progress=False,
                        provider_settings=server(meta) if server is not None else _stored_server(meta))
        try:
            target = resolve_target(cfg)
            provider = open_provider(cfg)
        except (ConfigError, PresetError, OSError) as exc:
            say(str(exc), True)
            return EXIT_CONFIG
        run_id = store.start_run("cancel", key=target.key, preset=target.preset.name, mode="batch")
        ctx = BatchContext(store, provider, target, cfg, run_id)
        code = EXIT_CONFIG
        try:
            code = asyncio.run(_cancel_and_close(ctx, wait_s, say))
        finally:
            store.finish_run(run_id, code)
        if ctx.stats.ok or ctx.stats.failed:
            write_exports(store, meta)
    return code


def _stored_server(meta: dict[str, Any]) -> dict[str, Any]:
    """The server the latest run used (the batches are there), when it was not the provider's default."""
    return {"base_url": meta["base_url"]} if meta.get("base_url") else {}


async def _cancel_and_close(ctx: BatchContext, wait_s: float, say: Say) -> int:
    try:
        return await _cancel(ctx, wait_s, say)
    except BatchStop as stop:
        say(stop.message, True)
        return EXIT_CONFIG if stop.fatal is not None else EXIT_FAILED
    finally:
        await ctx.provider.aclose()


async def _cancel(ctx: BatchContext, wait_s: float, say: Say) -> int:
    store = ctx.store
    # Adopt batches a crash left unrecorded first, so they are canceled too rather than forgotten.
    await Submitter(ctx).reconcile()
    waiting: dict[str, bool] = {}  # batch id -> whether we asked to cancel it
    unanswered = 0
    for row in sb.live_batches(store):
        if row.processing_status == "ended":
            waiting[row.id] = False
            continue
        asked = await _request_cancel(ctx, row.id, say)
        if isinstance(asked, str):
            # No answer at all (a server down, a wrong base URL): polling it for minutes would only end in
            # "still canceling", of a batch that was never asked to stop.
            say(f"batch {row.id}: not canceled: the server did not answer ({asked}); check the base URL and that "
                "the server is running, then run `imgtag cancel` again", True)
            unanswered += 1
        elif asked:
            waiting[row.id] = True
    collector = Collector(ctx)
    deadline = time.monotonic() + wait_s
    interval = 0.25
    while waiting:
        for batch_id in list(waiting):
            batch = await _poll(ctx, collector, batch_id, say)
            if batch is _GONE:
                waiting.pop(batch_id)
                continue
            if batch is None or not batch.ended:
                continue
            if sb.batch_key(store, batch_id) not in (ctx.target.key, None):
                say(f"batch {batch_id}: canceled; it holds another preset's or model's work, so run the "
                    "command that submitted it to collect its results", False)
                waiting.pop(batch_id)
                continue
            tally = await collector.collect(batch_id, batch)
            if tally is None:
                continue  # the results stream broke off: try again on the next pass
            say(_line(batch_id, waiting.pop(batch_id), tally), False)
        if not waiting or time.monotonic() >= deadline:
            break
        await asyncio.sleep(interval)
        interval = min(5.0, interval * 1.5)
    for batch_id in waiting:
        say(f"batch {batch_id}: still canceling after {wait_s:.0f} s; run `imgtag cancel` again "
            "(or `imgtag run`) to collect it", False)
    return EXIT_CONFIG if unanswered else EXIT_OK


async def _request_cancel(ctx: BatchContext, batch_id: str, say: Say) -> bool | str:
    """True when the cancel was asked (or may have been: poll it), False when there is nothing to cancel, and
    what went wrong when the server gave no answer at all."""
    try:
        await ctx.api.cancel(batch_id)
        return True
    except ProviderError as err:
        if err.http_status == 404:
            n = sb.mark_batch_missing(ctx.store, batch_id)
            say(f"batch {batch_id}: unknown to the API (404); its {n} unanswered items are pending again", False)
            return False
        stop_if_fatal(err)
        if err.error_type == "connection_error":  # never reached the server (a timeout may have: poll it)
            return str(err).rstrip(".")
        return True  # transient: still poll it; a later cancel attempt is not needed if it ends anyway


async def _poll(ctx: BatchContext, collector: Collector, batch_id: str,
                say: Say) -> BatchHandle | object | None:
    try:
        return await collector.poll(batch_id)
    except BatchStop as stop:
        if stop.fatal is not None and stop.fatal.http_status == 404:
            n = sb.mark_batch_missing(ctx.store, batch_id)
            say(f"batch {batch_id}: unknown to the API (404); its {n} unanswered items are pending again", False)
            return _GONE
        raise


def _line(batch_id: str, canceled: bool, tally: Counter[str]) -> str:
    verb = "canceled" if canceled else "had already ended"
    answered = tally.get("ok", 0)
    failed = tally.get("failed", 0)
    pending = sum(v for k, v in tally.items() if k not in ("ok", "failed", "superseded"))
    return (f"batch {batch_id}: {verb}; {answered} answered and recorded, {failed} failed, "
            f"{pending} back to pending")
