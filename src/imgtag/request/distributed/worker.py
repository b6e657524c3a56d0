"""The two Ray Data stages. Rows between stages hold encoded bytes, never PIL objects (Ray pickles rows, and
PIL images in rows were once silently dropped).

decode: imgtag's own `prepare` (sniff, orient, colour-convert, resize, encode) on a worker, one image per row;
        it also checks the file still has the content hash it was planned with.
ask:    an actor running imgtag's own Engine (retry policy, validation, re-asks) on a batch of rows, with the
        cluster's shared pacer. Instead of the SQLite store, the engine records into a `Recorder`; the batch
        then becomes one result shard in the work folder, which the driver ingests.
"""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa

from imgtag.ingest.preprocess import PrepareRequest, init_worker, prepare
from imgtag.pricing.estimate import estimate_request, reserve_tokens
from imgtag.providers.base import ImageInput
from imgtag.request.distributed.pacer_actor import NAMESPACE, RemotePacer
from imgtag.request.distributed.workfolder import WorkFolder
from imgtag.request.engine import Engine, EngineSettings, WorkItem
from imgtag.request.packing import pack_images
from imgtag.request.warmup import CacheWarmup

DECODED_SCHEMA = pa.schema([
    ("job_id", pa.int64()),
    ("store_id", pa.string()),
    ("sha256", pa.string()),
    ("display", pa.string()),
    ("encoded", pa.binary()),
    ("media_type", pa.string()),
    ("visual_tokens", pa.int64()),  # Claude's 28-px count, from preprocessing
    ("out_width", pa.int64()),      # the size sent: the model's own image rule reserves from it
    ("out_height", pa.int64()),
    ("problem", pa.string()),      # why this image cannot be sent now (it is left pending)
])

SUMMARY_SCHEMA = pa.schema([
    ("job_id", pa.int64()),
    ("status", pa.string()),
    ("shard", pa.string()),
    ("cost_usd", pa.float64()),
    ("fatal", pa.string()),
])

_READY = False


def decode_batch(batch: pa.Table, request: PrepareRequest) -> pa.Table:
    global _READY
    if not _READY:
        init_worker()
        _READY = True
    out: list[dict[str, Any]] = []
    for row in batch.to_pylist():
        path = os.fsdecode(row["source"])
        report = prepare(replace(request, path=path, want_hashes=False))
        problem = None
        if report.sha256 != row["sha256"]:
            problem = "the file changed (or vanished) since it was planned; the next run plans it again"
        elif report.status != "ok" or report.encoded is None:
            problem = f"could not be prepared on the worker: {report.reason or report.status}"
        out.append({"job_id": row["job_id"], "store_id": row["store_id"], "sha256": row["sha256"],
                    "display": row["display"], "encoded": None if problem else report.encoded,
                    "media_type": report.media_type, "visual_tokens": report.visual_tokens or 0,
                    "out_width": report.out_width, "out_height": report.out_height, "problem": problem})
    return pa.Table.from_pylist(out, schema=DECODED_SCHEMA)


@dataclass
class AskSpec:
    """Everything an ask actor needs, picklable. `env` carries the provider's non-secret variables (base URL) to
    workers that were not started from the driver's environment; keys never travel (driver.shareable_env)."""

    provider: str
    provider_settings: dict[str, Any]
    env: dict[str, str]
    settings: EngineSettings
    pacer_name: str
    work_uri: str
    lease_name: str
    warm_up: bool = False  # the prompt cache is cold: one request in the cluster goes first (driver decides)


@dataclass
class Recorder:
    """Stands in for the store inside a worker: collects what the engine would have written."""

    attempts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    settled: dict[int, dict[str, Any]] = field(default_factory=dict)

    def record_attempt(self, job_id: int, run_id: int | None, *, commit_job: dict[str, Any] | None = None,
                       **attempt: Any) -> None:
        usage = attempt.get("usage")
        attempt["usage"] = asdict(usage) if usage is not None else None
        attempt["credits"] = list(attempt["credits"]) if attempt.get("credits") else None
        self.attempts.setdefault(job_id, []).append(attempt)
        if commit_job is not None:
            self.settled[job_id] = commit_job


class Asker:
    """Ray Data callable class: one provider client and event loop per actor, many requests in flight."""

    def __init__(self, spec: AskSpec) -> None:
        import ray

        self.spec = spec
        self.pacer = RemotePacer(ray.get_actor(spec.pacer_name, namespace=NAMESPACE))
        self.provider, self.fatal = open_worker_provider(spec.provider, spec.provider_settings, spec.env)
        if self.provider is not None:  # --images-per-request: the engine asks packs, PackSender sends them
            self.provider = pack_images(self.provider, spec.settings.images_per_request)
            if spec.warm_up:
                # The cluster pacer lets one permit out until an answer begins (pacer_actor.PacerActor.warm_up);
                # this actor reports that moment, and its own later requests wait for its first answer to begin.
                warmup = CacheWarmup(self.provider)
                warmup.when_warm(self.pacer.began)
                self.provider = warmup
        self.lease = ray.get_actor(spec.lease_name, namespace=NAMESPACE)
        self.folder = WorkFolder(spec.work_uri)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        recorder = Recorder()
        problems: dict[int, str] = {int(r["job_id"]): r["problem"] for r in rows if r["problem"]}
        if self.fatal is None and self.provider is not None and await self._driver_alive():
            engine = Engine(recorder, self.provider, self.spec.settings, self.pacer, None)  # type: ignore[arg-type]
            try:
                await engine.run(_items(rows, self.spec.settings))
            except Exception as exc:  # our bug or a provider's: the batch's images carry it, not a bare traceback
                reason = f"worker error: {type(exc).__name__}: {exc}"
                traceback.print_exc()
                for r in rows:
                    problems.setdefault(int(r["job_id"]), reason)
            if engine.fatal is not None:
                self.fatal = engine.fatal.message
        result = [_result_row(r, recorder, problems.get(int(r["job_id"])), self.fatal) for r in rows]
        shard = await asyncio.to_thread(self.folder.write_results, result)
        return pa.Table.from_pylist(
            [{"job_id": r["job_id"], "status": r["status"], "shard": shard, "cost_usd": r["cost_usd"],
              "fatal": r["fatal"]} for r in result], schema=SUMMARY_SCHEMA)


    async def _driver_alive(self) -> bool:
        """False once the driver that planned this work is gone: a new driver may be planning the same jobs,
        so nothing more is asked (what is in flight finishes and is written)."""
        try:
            return bool(await self.lease.alive.remote())
        except Exception:
            return False


def open_worker_provider(name: str, settings: dict[str, Any], env: dict[str, str]) -> tuple[Any, str | None]:
    """The provider on this worker, or why not (the run stops with that sentence, exit 2). Its key comes from
    the worker's own environment: the driver never sends secrets through Ray (driver.shareable_env)."""
    from imgtag.providers import create_provider
    from imgtag.providers.base import ConfigError

    os.environ.update(env)
    try:
        return create_provider(name, **dict(settings)), None
    except ConfigError as exc:
        return None, (f"on the Ray workers: {exc} (imgtag does not send API keys through Ray; set it in the "
                      "environment of the cluster's nodes, see docs/scale.md)")


async def _items(rows: list[dict[str, Any]], s: EngineSettings) -> Any:
    for r in rows:
        if r["problem"]:
            continue
        yield WorkItem(job_id=int(r["job_id"]), sha256=r["sha256"], display=r["display"],
                       image=ImageInput(r["encoded"], r["media_type"]),
                       estimate=estimate_request(reserve_tokens(int(r["visual_tokens"]), r["out_width"],
                                                                r["out_height"], s.model), s.preset, s.model))


def _result_row(r: dict[str, Any], rec: Recorder, problem: str | None, fatal: str | None) -> dict[str, Any]:
    job_id = int(r["job_id"])
    attempts = rec.attempts.get(job_id, [])
    settled = rec.settled.get(job_id)
    totals = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    for a in attempts:
        for name in totals:
            totals[name] += int((a.get("usage") or {}).get(name, 0))
    status = settled["status"] if settled else "pending"
    fields = settled.get("fields") if settled else None
    return {"job_id": job_id, "store_id": r["store_id"], "sha256": r["sha256"], "display": r["display"],
            "status": status, "fields": json.dumps(fields, ensure_ascii=False) if fields is not None else None,
            "error_type": settled.get("error_type") if settled else None,
            "error_message": (settled.get("error_message") if settled else None) or (None if settled else problem),
            "request_id": settled.get("request_id") if settled else None, **totals,
            "cost_usd": sum(float(a.get("cost") or 0.0) for a in attempts), "attempts": len(attempts),
            "attempt_log": json.dumps(attempts, ensure_ascii=False),
            "fatal": fatal if not settled and problem is None else None}
