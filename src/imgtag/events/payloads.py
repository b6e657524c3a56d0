"""The fields of the events a run builds from its counters (schema.json has every field's meaning)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgtag.app.progress import Snapshot
    from imgtag.app.summary import Summary
    from imgtag.config.runconfig import RunConfig, Target


def dollars(amount: float | None) -> float | None:
    """USD as JSON: null when some tokens were paid at prices nobody knows (never a made-up 0)."""
    return None if amount is None else round(amount, 8)


def target_fields(cfg: RunConfig, target: Target) -> dict[str, object]:
    """What run_started says the run is for; never a key, a base URL or the prompt's text."""
    from imgtag.presets.language import normalise_lang

    return {"preset": target.preset.name, "preset_version": target.preset.version,
            "provider": cfg.provider, "model": target.model.id, "lang": normalise_lang(cfg.lang)}


def progress_fields(snap: Snapshot, elapsed_s: float) -> dict[str, object]:
    batch = snap.batch
    return {"finished": snap.finished, "total_files": snap.total, "ok": snap.ok, "failed": snap.failed,
            "skipped": snap.skipped, "done_before": snap.done_before, "in_flight": snap.in_flight,
            "cost_usd": dollars(snap.spent_usd), "elapsed_s": round(elapsed_s, 3),
            "batch": None if batch is None else {"submitted": batch.submitted, "processing": batch.processing,
                                                 "collected": batch.collected, "batches": batch.batches}}


def finished_fields(summary: Summary, exit_code: int, *, elapsed_s: float, done_before: int,
                    message: str | None, interrupted: bool) -> dict[str, object]:
    return {"exit_code": exit_code, "interrupted": interrupted, "files": summary.files,
            "by_status": dict(summary.by_status), "by_error": dict(summary.by_error), "done_before": done_before,
            "requests": summary.requests, "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens, "cost_usd": dollars(summary.cost_usd),
            "elapsed_s": round(elapsed_s, 3), "message": message}
