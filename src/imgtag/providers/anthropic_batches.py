"""Anthropic Message Batches behind the provider-neutral `BatchAPI` (providers/batch_api.py).

Everything that knows the Message Batches wire lives here: the SDK calls, the create body's framing (for
exact byte accounting), the batch object's fields, result lines, and which errored results are permanent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any

import anthropic

from imgtag.config.options import option
from imgtag.providers.anthropic_wire import answer_from_message, build_params, classify_status
from imgtag.providers.base import (
    ImageInput,
    ProviderError,
    RequestOptions,
    Transient,
    Unreachable,
    connection_refused,
    redact,
)
from imgtag.providers.batch_api import (
    COUNT_NAMES,
    ERRORED,
    SUCCEEDED,
    BatchHandle,
    BatchRequest,
    ItemResult,
)

# Documented limits of one batch: 100,000 requests or 256 MB, whichever comes first.
API_MAX_REQUESTS = 100_000
API_MAX_BYTES = 256 * 1024 * 1024
ENVELOPE_BYTES = len('{"requests":[]}')
# Each request is measured as `{"custom_id":"<id>","params":<params>}` with the id at its 64-char maximum:
# the id is only assigned when the chunk is committed, and 64 bytes are noise next to an image.
REQUEST_FRAME_BYTES = len('{"custom_id":"","params":}') + 64
# errored results that a new batch cannot fix: the request itself is bad (e.g. an image the API rejects).
PERMANENT_ERRORS = frozenset({"invalid_request_error", "request_too_large", "not_found_error",
                              "authentication_error", "permission_error", "billing_error"})
LIST_PAGE = 100
PROBE_TIMEOUT_S = 15.0
def no_batch_api() -> str:
    return f"this server has no Message Batches API; run without {option('mode', 'batch')}"


def request_bytes(params: dict[str, Any]) -> int:
    """Encoded size exactly as the SDK serialises it (compact separators, UTF-8, no ASCII escaping)."""
    return len(json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()) + REQUEST_FRAME_BYTES


class AnthropicBatches:
    """`BatchAPI` over `client.messages.batches` of the provider's async client (SDK retries off)."""

    max_requests = API_MAX_REQUESTS
    max_bytes = API_MAX_BYTES
    envelope_bytes = ENVELOPE_BYTES
    packs_images = True  # --images-per-request: a batch request is a Messages request, so it carries packs too
    api_name = "Message Batches API"  # what a server without it lacks, in the sentence that says so
    labels_batches = False  # a Message Batch keeps no metadata: a reconcile matches by time and request count

    def __init__(self, client: anthropic.AsyncAnthropic, api_key: str) -> None:
        self.api_key = api_key
        self.base_url = client.base_url
        self.batches = client.messages.batches

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]:
        return build_params(image, options)

    def request_bytes(self, params: dict[str, Any]) -> int:
        return request_bytes(params)

    def unavailable(self) -> str | None:
        """A gateway in front of the API may have no Message Batches (LiteLLM's proxy: 404 on every
        /v1/messages/batches route). One GET of the first page says so before the store is opened and anything is
        submitted; any other answer leaves it to the run (which maps a 404 on create to the same sentence)."""
        client = anthropic.Anthropic(api_key=self.api_key, base_url=str(self.base_url), max_retries=0,
                                     timeout=PROBE_TIMEOUT_S)
        try:
            client.messages.batches.list(limit=1)
        except anthropic.APIStatusError as exc:
            return no_batch_api() if exc.status_code in (404, 405, 501) else None
        except anthropic.AnthropicError:
            return None  # unreachable, timed out: the run says it with its own words
        finally:
            client.close()
        return None

    async def create(self, requests: Sequence[BatchRequest], *, timeout: float, label: str) -> BatchHandle:
        body = [{"custom_id": r.custom_id, "params": r.params} for r in requests]
        try:
            batch = await self.batches.create(requests=body, timeout=timeout)  # type: ignore[arg-type]
        except anthropic.AnthropicError as exc:
            raise self.classify(exc) from None
        return handle(batch)

    async def retrieve(self, batch_id: str) -> BatchHandle:
        try:
            return handle(await self.batches.retrieve(batch_id))
        except anthropic.AnthropicError as exc:
            raise self.classify(exc) from None

    async def results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        try:
            lines = await self.batches.results(batch_id)
            async for line in lines:
                yield item_result(line)
        except anthropic.AnthropicError as exc:
            raise self.classify(exc) from None

    async def cancel(self, batch_id: str) -> None:
        try:
            await self.batches.cancel(batch_id)
        except anthropic.AnthropicError as exc:
            raise self.classify(exc) from None

    async def list_recent(self) -> AsyncIterator[BatchHandle]:
        try:
            async for batch in self.batches.list(limit=LIST_PAGE):
                yield handle(batch)
        except anthropic.AnthropicError as exc:
            raise self.classify(exc) from None

    def classify(self, exc: BaseException) -> ProviderError:
        """SDK exception -> our error kinds (Fatal stops the run; Transient is retried later)."""
        if isinstance(exc, anthropic.APIStatusError):
            return classify_status(exc, self.api_key)
        if isinstance(exc, anthropic.APITimeoutError):
            return Transient("timeout: no response in time", error_type="timeout")
        key = self.api_key
        if isinstance(exc, anthropic.APIConnectionError):
            kind = Unreachable if connection_refused(exc) else Transient
            return kind(f"connection error: {redact(str(exc), key)}", error_type="connection_error")
        return Transient(redact(" ".join(str(exc).split())[:300], key), error_type="api_error")


def handle(batch: Any) -> BatchHandle:
    rc = batch.request_counts
    return BatchHandle(id=batch.id, processing_status=batch.processing_status,
                       created_at=_aware(batch.created_at), ended_at=_aware(batch.ended_at) if batch.ended_at else None,
                       counts={name: int(getattr(rc, name, 0) or 0) for name in COUNT_NAMES})


def item_result(line: Any) -> ItemResult:
    result = line.result
    kind = str(result.type)
    if kind == SUCCEEDED:
        answer = answer_from_message(result.message)
        answer.request_id = getattr(result.message, "id", None)
        return ItemResult(line.custom_id, kind, answer=answer)
    if kind == ERRORED:
        err = getattr(result.error, "error", None)
        error_type = str(getattr(err, "type", None) or "api_error")
        message = " ".join(str(getattr(err, "message", "") or error_type).split())[:300]
        return ItemResult(line.custom_id, kind, error_type=error_type, error_message=message,
                          permanent=error_type in PERMANENT_ERRORS)
    return ItemResult(line.custom_id, kind)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
