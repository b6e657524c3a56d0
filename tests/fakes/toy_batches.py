"""A provider whose batch API is not Anthropic's: proves `request/batch/` needs only the BatchAPI protocol.

In memory, no network. It is shaped like a file-based batch API (OpenAI's: one JSONL line per request, no
envelope), names its batches `toybatch_…`, and answers each request with the image's mean colour, so a test
can check every result landed on its own image. Batches live in a module-level registry so they survive
from one CLI invocation to the next within a test (like a server would); `reset()` clears it.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from PIL import Image, ImageStat

from imgtag.pricing.costs import Usage
from imgtag.providers.base import Capabilities, Fatal, ImageInput, ModelAnswer, Provider, RequestOptions
from imgtag.providers.batch_api import CANCELED, ENDED, IN_PROGRESS, SUCCEEDED, BatchHandle, BatchRequest, ItemResult


@dataclass
class _Batch:
    id: str
    created_at: datetime
    requests: list[BatchRequest]
    held: bool = False           # stays in progress until cancelled
    canceled: bool = False


_BATCHES: dict[str, _Batch] = {}
_IDS = itertools.count(1)
CREATED: list[str] = []          # ids in creation order (what a test asserts on)
HOLD = False                     # batches created while True stay in progress until cancelled


def reset() -> None:
    global HOLD
    _BATCHES.clear()
    CREATED.clear()
    HOLD = False


class ToyBatches:
    """Every batch ends as soon as it is created (unless HOLD), or when cancelled."""

    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024
    envelope_bytes = 0           # JSONL: lines joined by newlines, nothing around them
    packs_images = False         # its requests are plain dicts, not Messages content
    labels_batches = False       # keeps no metadata: reconciled by request count

    def unavailable(self) -> str | None:
        return None

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]:
        return {"model": options.model.id, "image": base64.b64encode(image.data).decode("ascii"),
                "media_type": image.media_type, "schema": options.preset.schema}

    def request_bytes(self, params: dict[str, Any]) -> int:
        return len(json.dumps({"custom_id": "x" * 64, "body": params}, separators=(",", ":")).encode())

    async def create(self, requests: Sequence[BatchRequest], *, timeout: float, label: str) -> BatchHandle:
        batch = _Batch(f"toybatch_{next(_IDS):06d}", datetime.now(timezone.utc), list(requests), held=HOLD)
        _BATCHES[batch.id] = batch
        CREATED.append(batch.id)
        return _handle(batch)

    async def retrieve(self, batch_id: str) -> BatchHandle:
        return _handle(self._get(batch_id))

    async def results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        batch = self._get(batch_id)
        for request in batch.requests:
            if batch.canceled:
                yield ItemResult(request.custom_id, CANCELED)
                continue
            yield ItemResult(request.custom_id, SUCCEEDED, answer=_answer(request.params))

    async def cancel(self, batch_id: str) -> None:
        self._get(batch_id).canceled = True

    async def list_recent(self) -> AsyncIterator[BatchHandle]:
        for batch in sorted(_BATCHES.values(), key=lambda b: b.created_at, reverse=True):
            yield _handle(batch)

    @staticmethod
    def _get(batch_id: str) -> _Batch:
        batch = _BATCHES.get(batch_id)
        if batch is None:
            raise Fatal(f"no batch {batch_id} (404)", http_status=404, error_type="not_found_error")
        return batch


class ToyBatchProvider(Provider):
    name = "toy"
    capabilities = Capabilities(native_schema=True, batch=True)
    default_model = "toy-1"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        return _answer(ToyBatches().build_params(image, options))

    def batch_api(self) -> ToyBatches:
        return ToyBatches()


def _handle(batch: _Batch) -> BatchHandle:
    n = len(batch.requests)
    if batch.held and not batch.canceled:
        counts = {"processing": n}
        return BatchHandle(batch.id, IN_PROGRESS, batch.created_at, None, counts)
    counts = {"processing": 0, "succeeded": 0 if batch.canceled else n, "errored": 0,
              "canceled": n if batch.canceled else 0, "expired": 0}
    return BatchHandle(batch.id, ENDED, batch.created_at, batch.created_at, counts)


def _answer(params: dict[str, Any]) -> ModelAnswer:
    with Image.open(io.BytesIO(base64.b64decode(params["image"]))) as im:
        r, g, b = (round(c) for c in ImageStat.Stat(im.convert("RGB")).mean[:3])
    colour = f"#{r:02x}{g:02x}{b:02x}"
    return ModelAnswer(stop_reason="end_turn", usage=Usage(input_tokens=10, output_tokens=5),
                       obj=_instance(params["schema"], colour, "value"), request_id=None)


def _instance(schema: dict[str, Any], colour: str, name: str) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {prop: _instance(sub, colour, prop) for prop, sub in schema.get("properties", {}).items()
                if prop in schema.get("required", [])}
    if kind == "array":
        return [_instance(schema.get("items", {}), colour, name)] * max(1, int(schema.get("minItems", 1)))
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return colour if name in ("color", "colour") else f"{name} {colour}"[: schema.get("maxLength", 40)]
