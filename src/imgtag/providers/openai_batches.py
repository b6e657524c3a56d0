"""OpenAI's Batch API behind the provider-neutral `BatchAPI` (providers/batch_api.py), through the official SDK.

A batch is a JSONL file of Chat Completions requests uploaded to /v1/files (purpose "batch"), then
`POST /v1/batches` naming it (completion window 24h) with the submission's label in its metadata, so a crash
between create and commit is reconciled by that label. Results are two files: `output_file_id` (requests that
ran, whatever their HTTP status) and `error_file_id` (requests that did not; expired and cancelled ones are
listed there too, or not at all: the batch's status then says what became of them, see `BatchHandle.unlisted`).
Everything that knows this wire lives here; the flow (chunk, commit first, poll, collect, resubmit, cancel)
is request/batch/'s.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

import openai

from imgtag.config.options import option
from imgtag.providers.base import (
    Fatal,
    ImageInput,
    Permanent,
    ProviderError,
    RequestOptions,
    Transient,
    Unreachable,
    connection_refused,
    public_url,
    redact,
)
from imgtag.providers.batch_api import (
    CANCELED,
    CANCELING,
    ENDED,
    ERRORED,
    EXPIRED,
    IN_PROGRESS,
    SUCCEEDED,
    BatchHandle,
    BatchRequest,
    ItemResult,
)
from imgtag.providers.openai_wire import KEY_VARIABLE, answer_from_completion, classify, error_text


class ChatServer(Protocol):
    """What the batches need of the OpenAI provider (openai_provider.py, which makes them): its client, where the
    server is, its key, and its requests (built for the response format this server accepts). A protocol, so
    this module does not import the provider that imports it."""

    api_key: str | None
    base_url: str | None

    @property
    def server(self) -> str: ...

    @property
    def client(self) -> Any: ...

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]: ...

# Documented limits of one batch input file: 50,000 requests and 200 MB.
API_MAX_REQUESTS = 50_000
API_MAX_BYTES = 200 * 1024 * 1024
ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
LABEL_KEY = "imgtag_submission"  # metadata key holding the submission's label
# JSONL: every line ends in a newline; the chunker adds 1 byte between requests, this is the last one's.
ENVELOPE_BYTES = 1
# Each line is measured with the custom_id at 64 characters: ids are assigned when the chunk is committed.
_FRAME = {"custom_id": "x" * 64, "method": "POST", "url": ENDPOINT}
LIST_PAGE = 100
PROBE_TIMEOUT_S = 15.0
# Batch states -> the flow's. "failed" is a batch refused at validation (no request ran).
_STATES = {"validating": IN_PROGRESS, "in_progress": IN_PROGRESS, "finalizing": IN_PROGRESS,
           "cancelling": CANCELING, "completed": ENDED, "failed": ENDED, "expired": ENDED, "cancelled": ENDED}
_UNLISTED = {"cancelled": CANCELED, "expired": EXPIRED, "failed": ERRORED}
# Error codes of requests that never ran, as the error file names them.
_NOT_RUN = {"batch_expired": EXPIRED, "batch_cancelled": CANCELED, "batch_canceled": CANCELED}


def line_of(custom_id: str, params: dict[str, Any]) -> str:
    """One request line, exactly as uploaded (compact separators, UTF-8, no ASCII escaping)."""
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": params},
                      ensure_ascii=False, separators=(",", ":"))


def request_bytes(params: dict[str, Any]) -> int:
    return len(line_of(_FRAME["custom_id"], params).encode())


class OpenAIBatches:
    """`BatchAPI` over `client.files` and `client.batches` of the provider's async client (SDK retries off)."""

    max_requests = API_MAX_REQUESTS
    max_bytes = API_MAX_BYTES
    envelope_bytes = ENVELOPE_BYTES
    packs_images = True      # a Chat Completions request carries several labelled images as well as one
    labels_batches = True    # metadata on the batch

    def __init__(self, provider: ChatServer) -> None:
        self.provider = provider
        self.client = provider.client
        # label -> uploaded input file, so a create retried after an ambiguous failure does not upload again.
        self._uploaded: dict[str, str] = {}

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]:
        return self.provider.build_params(image, options)

    def request_bytes(self, params: dict[str, Any]) -> int:
        return request_bytes(params)

    # -- before anything is created ----------------------------------------------------------------

    def unavailable(self) -> str | None:
        p = self.provider
        where = public_url(p.server) or p.server
        with openai.OpenAI(api_key=p.api_key or "no-key-needed", base_url=p.base_url, max_retries=0,
                           timeout=PROBE_TIMEOUT_S) as client:
            try:
                raw = client.batches.with_raw_response.list(limit=1)
            except openai.APIStatusError as exc:
                if exc.status_code in (404, 405, 501):
                    return _no_batch_api(where, f"answered {exc.status_code}")
                if exc.status_code in (401, 403):
                    message = redact(error_text(exc.body, str(exc.message)), p.api_key)
                    return classify(exc.status_code, message, exc.response.headers, exc.body, None,
                                    KEY_VARIABLE).message
                return None  # overloaded, rate limited...: the run itself retries and reports
            except openai.APIConnectionError as exc:
                if connection_refused(exc):
                    return (f"could not connect to {where}: check the base URL and that the server is running; "
                            "nothing was submitted")
                return None
            try:
                body = raw.http_response.json()
            except ValueError:
                body = None
        if not (isinstance(body, dict) and isinstance(body.get("data"), list)):
            # e.g. LM Studio answers 200 {"error": "Unexpected endpoint or method. (GET /v1/batches)"}
            return _no_batch_api(where, "did not answer with a list of batches")
        return None

    # -- create ---------------------------------------------------------------------------------------

    async def create(self, requests: Sequence[BatchRequest], *, timeout: float, label: str) -> BatchHandle:
        file_id = self._uploaded.get(label)
        if file_id is None:
            file_id = await self._upload(requests, timeout, label)
            self._uploaded[label] = file_id
        try:
            batch = await self.client.batches.create(
                input_file_id=file_id, endpoint=ENDPOINT, completion_window=WINDOW,
                metadata={LABEL_KEY: label}, timeout=timeout)
        except openai.OpenAIError as exc:
            err = self.classify(exc)
            if isinstance(err, (Permanent, Fatal)):
                # Refused: no batch exists, and a new try uploads again (perhaps split); leave nothing behind.
                self._uploaded.pop(label, None)
                await self._forget_file(file_id)
            raise err from None
        self._uploaded.pop(label, None)
        return handle(batch)

    async def _upload(self, requests: Sequence[BatchRequest], timeout: float, label: str) -> str:
        # Spooled to disk: the lines are written one at a time, never held as one string beside the requests.
        with tempfile.TemporaryFile() as spool:
            for request in requests:
                spool.write(line_of(request.custom_id, request.params).encode())
                spool.write(b"\n")
            spool.seek(0)
            try:
                uploaded = await self.client.files.create(file=(f"{label}.jsonl", spool, "application/jsonl"),
                                                          purpose="batch", timeout=timeout)
            except openai.OpenAIError as exc:
                raise self.classify(exc) from None
        return str(uploaded.id)

    async def _forget_file(self, file_id: str) -> None:
        with contextlib.suppress(openai.OpenAIError):  # best effort: a file the API keeps expires on its own
            await self.client.files.delete(file_id)

    # -- poll, results, cancel, list ------------------------------------------------------------------

    async def retrieve(self, batch_id: str) -> BatchHandle:
        try:
            return handle(await self.client.batches.retrieve(batch_id))
        except openai.OpenAIError as exc:
            raise self.classify(exc) from None

    async def results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        try:
            batch = await self.client.batches.retrieve(batch_id)
        except openai.OpenAIError as exc:
            raise self.classify(exc) from None
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            async for line in self._lines(file_id):
                result = item_result(line)
                if result is not None:
                    yield result

    async def _lines(self, file_id: str) -> AsyncIterator[str]:
        """A result file's lines, streamed (an output file can hold 50,000 answers)."""
        try:
            async with self.client.files.with_streaming_response.content(file_id) as response:
                async for line in response.iter_lines():
                    if line.strip():
                        yield line
        except openai.OpenAIError as exc:
            raise self.classify(exc) from None

    async def cancel(self, batch_id: str) -> None:
        try:
            await self.client.batches.cancel(batch_id)
        except openai.OpenAIError as exc:
            raise self.classify(exc) from None

    async def list_recent(self) -> AsyncIterator[BatchHandle]:
        try:
            async for batch in self.client.batches.list(limit=LIST_PAGE):
                yield handle(batch)
        except openai.OpenAIError as exc:
            raise self.classify(exc) from None

    def classify(self, exc: BaseException) -> ProviderError:
        """SDK exception -> our error kinds (Fatal stops the run; Transient is retried later)."""
        key = self.provider.api_key
        if isinstance(exc, openai.APIStatusError):
            message = redact(error_text(exc.body, str(exc.message)), key)
            request_id = exc.response.headers.get("x-request-id") or getattr(exc, "request_id", None)
            if exc.status_code == 404:
                # Here a 404 names a batch or file the account does not have, not an unknown model.
                return Fatal(f"not found (404): {message}", http_status=404, request_id=request_id,
                             error_type="not_found_error")
            return classify(exc.status_code, message, exc.response.headers, exc.body, request_id, KEY_VARIABLE)
        if isinstance(exc, openai.APITimeoutError):
            return Transient("timeout: no response in time", error_type="timeout")
        if isinstance(exc, openai.APIConnectionError):
            kind = Unreachable if connection_refused(exc) else Transient
            return kind(f"connection error: {redact(str(exc), key)}", error_type="connection_error")
        return Transient(redact(" ".join(str(exc).split())[:300], key), error_type="api_error")


def handle(batch: Any) -> BatchHandle:
    status = str(batch.status)
    rc = batch.request_counts
    total = int(getattr(rc, "total", 0) or 0)
    done = int(getattr(rc, "completed", 0) or 0)
    failed = int(getattr(rc, "failed", 0) or 0)
    state = _STATES.get(status, IN_PROGRESS)
    rest = max(0, total - done - failed)
    counts = {"processing": 0 if state == ENDED else rest, "succeeded": done, "errored": failed,
              "canceled": rest if status == "cancelled" else 0, "expired": rest if status == "expired" else 0}
    ended = batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at
    metadata = batch.metadata or {}
    return BatchHandle(id=batch.id, processing_status=state, created_at=_when(batch.created_at),
                       ended_at=_when(ended) if ended and state == ENDED else None, counts=counts,
                       label=metadata.get(LABEL_KEY), unlisted=_UNLISTED.get(status) if state == ENDED else None,
                       error=_batch_error(batch) if status == "failed" else None)


def item_result(line: str) -> ItemResult | None:
    """One line of an output or error file; None for a line that is not a result (no custom_id)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        return None
    cid = data["custom_id"]
    response = data.get("response") if isinstance(data.get("response"), dict) else None
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    if response is None:
        code = str((error or {}).get("code") or "batch_error")
        if code in _NOT_RUN:
            return ItemResult(cid, _NOT_RUN[code])
        message = " ".join(str((error or {}).get("message") or code).split())[:300]
        return ItemResult(cid, ERRORED, error_type=code, error_message=message)
    status = int(response.get("status_code") or 0)
    body = response.get("body")
    if status == 200 and isinstance(body, dict):
        from openai.types.chat import ChatCompletion

        answer = answer_from_completion(ChatCompletion.construct(**body))
        answer.request_id = response.get("request_id") or body.get("id")
        return ItemResult(cid, SUCCEEDED, answer=answer)
    err = classify(status, error_text(body, f"HTTP {status}"), {}, body, response.get("request_id"), KEY_VARIABLE)
    # A request the API refused (400: a bad image) can never succeed; 429/5xx may in a new batch. Inside a
    # batch nothing stops the run: an unknown model or a refused key fails the request, never loops.
    permanent = isinstance(err, (Permanent, Fatal))
    return ItemResult(cid, ERRORED, error_type=err.error_type, error_message=err.message, permanent=permanent)


def _batch_error(batch: Any) -> str:
    data = getattr(getattr(batch, "errors", None), "data", None) or []
    words = [f"{e.code}: {e.message}" if getattr(e, "code", None) else str(getattr(e, "message", "") or "")
             for e in data[:3]]
    text = "; ".join(w for w in words if w) or "the batch failed validation"
    return "the batch failed as a whole: " + " ".join(text.split())[:300]


def _no_batch_api(where: str, what: str) -> str:
    return (f"{where} has no OpenAI Batch API (GET /v1/batches {what}), so {option('mode', 'batch')} cannot run "
            f"there; use {option('mode', 'sync')} (vLLM, Ollama, LM Studio, llama-server and most gateways have none)")


def _when(value: int | float | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), tz=timezone.utc)

