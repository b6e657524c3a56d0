"""OpenAI's Batch API for the fake OpenAI server (tests/fakes/openai_server.py), on its real wire format.

Routes: POST /v1/files (multipart, purpose "batch"), GET /v1/files/{id}, GET /v1/files/{id}/content,
DELETE /v1/files/{id}; POST /v1/batches, GET /v1/batches (newest first, `limit`/`after` cursor),
GET /v1/batches/{id}, POST /v1/batches/{id}/cancel. Each request line of an input file is answered by the
server's own Chat Completions logic (`FakeOpenAIServer.answer_item`), so answers describe their own image.

A batch ends lazily (when it is next read, no background threads): it is "validating" (request counts 0, as
the real API reports them) for `validating_s`, then "in_progress" until `processing_s` after creation, then
"completed" with an output file (status 200 lines) and an error file (every other line). Faults: the first
`fail_batches` batches end "failed" at validation (no file at all); the first `expire_batches` after those
end "expired" with half their requests answered; `p_item_error` of requests come back as 500 lines;
`create_faults` refuse or lose the answer of the Nth `POST /v1/batches`; uploads and batches over
`max_bytes`/`max_requests` are refused as the API words it. Requests that never ran (expired, cancelled) are
listed in the error file with `batch_expired`/`batch_cancelled` when `list_unprocessed`, else not at all.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .openai_server import FakeOpenAIServer

ENDPOINT = "/v1/chat/completions"


@dataclass
class BatchAPIConfig:
    enabled: bool = True
    validating_s: float = 0.0
    processing_s: float = 0.3
    cancel_s: float = 0.05
    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    fail_batches: int = 0
    fail_code: str = "token_limit_exceeded"
    expire_batches: int = 0
    list_unprocessed: bool = True
    p_item_error: float = 0.0
    # One entry per POST /v1/batches call ("" = none): "reject:<status>" creates nothing; "lost:<status>"
    # creates the batch, then answers with that error (a response lost in transit).
    create_faults: list[str] = field(default_factory=list)
    seed: int = 0


class BatchAPIStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files_uploaded = 0
        self.files_deleted = 0
        self.batches_created = 0
        self.creates_refused = 0
        self.items_by_custom_id: Counter[str] = Counter()   # sent in a created batch
        self.items_by_key: Counter[str] = Counter()         # image keys sent in a created batch
        self.answered_by_key: Counter[str] = Counter()      # image keys answered (status 200) by an ended batch
        self.list_calls = 0


@dataclass
class _File:
    id: str
    purpose: str
    filename: str
    data: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


@dataclass
class _Batch:
    id: str
    seq: int
    input_file_id: str
    lines: list[dict[str, Any]]
    metadata: dict[str, str] | None
    created: float
    fate: str                       # completed | failed | expired
    status: str = "validating"
    cancelling_at: float | None = None
    ended_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, type_: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.type = type_ or ("invalid_request_error" if status < 500 else "server_error")

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


class FakeBatchAPI:
    def __init__(self, server: FakeOpenAIServer, config: BatchAPIConfig) -> None:
        self.server = server
        self.config = config
        self.stats = BatchAPIStats()
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._creates = 0
        self._rng = random.Random(config.seed)

    # -- routing -------------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              raw: bytes) -> tuple[int, bytes, str]:
        """(status, body, content type) for one request under /v1/files or /v1/batches."""
        try:
            if not self.config.enabled:
                raise ApiError(404, f"no route {path}")  # vLLM, Ollama, llama-server: no such endpoint
            key = self.server.config.api_key
            if key is not None and headers.get("authorization") != f"Bearer {key}":
                raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
            return self._route(method, path, query, headers, raw)
        except ApiError as err:
            return err.status, json.dumps(err.payload()).encode(), "application/json"

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               raw: bytes) -> tuple[int, bytes, str]:
        path = path.rstrip("/")
        if path == "/v1/files" and method == "POST":
            return self._json(self._upload(headers.get("content-type", ""), raw))
        if m := re.fullmatch(r"/v1/files/([^/]+)(/content)?", path):
            file = self._file(m.group(1))
            if m.group(2) and method == "GET":
                return 200, file.data, "application/octet-stream"
            if method == "GET":
                return self._json(file.obj())
            if method == "DELETE":
                with self._lock:
                    self._files.pop(file.id, None)
                with self.stats.lock:
                    self.stats.files_deleted += 1
                return self._json({"id": file.id, "object": "file", "deleted": True})
        if path == "/v1/batches" and method == "POST":
            return self._create(raw)
        if path == "/v1/batches" and method == "GET":
            return self._json(self._list(query))
        if m := re.fullmatch(r"/v1/batches/([^/]+)(/cancel)?", path):
            batch = self._batch(m.group(1))
            if m.group(2) and method == "POST":
                return self._json(self._cancel(batch))
            if method == "GET":
                return self._json(self._obj(batch))
        raise ApiError(404, f"Invalid URL ({method} {path})")

    @staticmethod
    def _json(obj: dict[str, Any]) -> tuple[int, bytes, str]:
        return 200, json.dumps(obj).encode(), "application/json"

    # -- files ---------------------------------------------------------------------------------------

    def _upload(self, content_type: str, raw: bytes) -> dict[str, Any]:
        fields = parse_multipart(raw, content_type)
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if "file" not in fields:
            raise ApiError(400, "Missing required parameter: 'file'.")
        filename, data = fields["file"]
        if purpose != "batch":
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}.")
        if len(data) > self.config.max_bytes:
            raise ApiError(413, f"File size of {len(data)} bytes exceeds the maximum of {self.config.max_bytes} "
                                "bytes for batch input files.")
        file = self._add_file("batch", filename or "upload.jsonl", data)
        with self.stats.lock:
            self.stats.files_uploaded += 1
        return file.obj()

    def _add_file(self, purpose: str, filename: str, data: bytes) -> _File:
        file = _File("file-" + secrets.token_hex(12), purpose, filename, data, int(time.time()))
        with self._lock:
            self._files[file.id] = file
        return file

    def _file(self, file_id: str) -> _File:
        with self._lock:
            file = self._files.get(file_id)
        if file is None:
            raise ApiError(404, f"No such File object: {file_id}")
        return file

    # -- batches -------------------------------------------------------------------------------------

    def _create(self, raw: bytes) -> tuple[int, bytes, str]:
        cfg = self.config
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        with self._lock:
            call = self._creates
            self._creates += 1
        fault = cfg.create_faults[call] if call < len(cfg.create_faults) else ""
        if fault.startswith("reject:"):
            raise ApiError(int(fault.split(":")[1]), "The server is overloaded; nothing was created.")
        if body.get("endpoint") != ENDPOINT:
            raise ApiError(400, f"Invalid value for 'endpoint': {body.get('endpoint')!r}.")
        if body.get("completion_window") != "24h":
            raise ApiError(400, "Invalid value for 'completion_window': only '24h' is supported.")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16
                                     or any(len(str(v)) > 512 or len(k) > 64 for k, v in metadata.items())):
            raise ApiError(400, "Invalid 'metadata': at most 16 pairs, keys up to 64 and values up to 512 chars.")
        file = self._file(str(body.get("input_file_id")))
        lines = self._lines(file)
        if len(lines) > cfg.max_requests:
            with self.stats.lock:
                self.stats.creates_refused += 1
            raise ApiError(400, f"The input file has {len(lines)} requests, which exceeds the maximum of "
                                f"{cfg.max_requests} requests per batch.")
        with self._lock:
            seq = len(self._batches)
            fate = ("failed" if seq < cfg.fail_batches else
                    "expired" if seq < cfg.fail_batches + cfg.expire_batches else "completed")
            batch = _Batch("batch_" + secrets.token_hex(12), seq, file.id, lines, metadata, time.time(), fate)
            self._batches[batch.id] = batch
        with self.stats.lock:
            self.stats.batches_created += 1
            for line in lines:
                self.stats.items_by_custom_id[line["custom_id"]] += 1
                for key in self._keys(line["body"]):
                    self.stats.items_by_key[key] += 1
        if fault.startswith("lost:"):
            raise ApiError(int(fault.split(":")[1]), "Internal server error.")
        return self._json(self._obj(batch))

    def _lines(self, file: _File) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        ids: set[str] = set()
        for n, text in enumerate(file.data.decode().splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                raise ApiError(400, f"Line {n} of the input file is not valid JSON.") from None
            cid = line.get("custom_id")
            if not isinstance(cid, str) or cid in ids:
                raise ApiError(400, f"Line {n}: custom_id must be a unique string.")
            if line.get("method") != "POST" or line.get("url") != ENDPOINT or not isinstance(line.get("body"), dict):
                raise ApiError(400, f"Line {n}: each line needs method POST, url {ENDPOINT} and a body.")
            ids.add(cid)
            lines.append(line)
        if not lines:
            raise ApiError(400, "The input file is empty.")
        return lines

    def _keys(self, body: dict[str, Any]) -> list[str]:
        try:
            return [key for _label, key, _fmt, _size in self.server._images(self.server.config, body)]
        except Exception:  # an unreadable image: it has no key (it fails when answered)
            return []

    def _batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"No batch found with id '{batch_id}'.")
        self._advance(batch)
        return batch

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        with self.stats.lock:
            self.stats.list_calls += 1
        limit = max(1, min(100, int(query.get("limit") or 20)))
        with self._lock:
            ordered = sorted(self._batches.values(), key=lambda b: (b.created, b.seq), reverse=True)
        after = query.get("after")
        if after:
            ids = [b.id for b in ordered]
            ordered = ordered[ids.index(after) + 1:] if after in ids else []
        page = ordered[:limit]
        for batch in page:
            self._advance(batch)
        data = [self._obj(b) for b in page]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit}

    def _cancel(self, batch: _Batch) -> dict[str, Any]:
        with self._lock:
            if batch.ended_at is not None:
                raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.")
            if batch.cancelling_at is None:
                batch.cancelling_at = time.time()
                batch.status = "cancelling"
        return self._obj(batch)

    def _advance(self, batch: _Batch) -> None:
        """Move the batch along its timeline (lazily: when it is read)."""
        cfg = self.config
        now = time.time()
        with self._lock:
            if batch.ended_at is not None:
                return
            natural_end = batch.created + max(cfg.processing_s, cfg.validating_s)
            if batch.cancelling_at is not None:
                cancel_end = batch.cancelling_at + cfg.cancel_s
                if cancel_end < natural_end:
                    if now >= cancel_end:
                        self._end(batch, "cancelled", cancel_end, answered=0)
                    return
            if batch.fate == "failed" and now >= batch.created + cfg.validating_s:
                batch.status, batch.ended_at = "failed", now
                return
            if now >= natural_end:
                n = len(batch.lines)
                if batch.fate == "expired":
                    self._end(batch, "expired", natural_end, answered=n // 2)
                else:
                    self._end(batch, "completed", natural_end, answered=n)
            elif batch.cancelling_at is None:
                batch.status = "validating" if now < batch.created + cfg.validating_s else "in_progress"

    def _end(self, batch: _Batch, status: str, at: float, answered: int) -> None:
        out: list[str] = []
        err: list[str] = []
        for i, line in enumerate(batch.lines):
            cid = line["custom_id"]
            rid = "batch_req_" + secrets.token_hex(12)
            if i >= answered:
                if self.config.list_unprocessed:
                    code = "batch_expired" if status == "expired" else "batch_cancelled"
                    text = ("This request could not be executed before the completion window expired."
                            if status == "expired" else "This request was cancelled before it was executed.")
                    err.append(json.dumps({"id": rid, "custom_id": cid, "response": None,
                                           "error": {"code": code, "message": text}}))
                continue
            if self._rng.random() < self.config.p_item_error:
                code, body = 500, {"error": {"message": "The server had an error processing your request.",
                                             "type": "server_error", "param": None, "code": None}}
            else:
                code, body = self.server.answer_item(line["body"])
            record = json.dumps({"id": rid, "custom_id": cid, "response": {
                "status_code": code, "request_id": "req_" + secrets.token_hex(8), "body": body}, "error": None})
            if code == 200:
                batch.completed += 1
                out.append(record)
                with self.stats.lock:
                    for key in self._keys(line["body"]):
                        self.stats.answered_by_key[key] += 1
            else:
                batch.failed += 1
                err.append(record)
        if out:
            batch.output_file_id = self._add_file("batch_output", f"{batch.id}_output.jsonl",
                                                  ("\n".join(out) + "\n").encode()).id
        if err:
            batch.error_file_id = self._add_file("batch_output", f"{batch.id}_error.jsonl",
                                                 ("\n".join(err) + "\n").encode()).id
        batch.status, batch.ended_at = status, at

    def _obj(self, batch: _Batch) -> dict[str, Any]:
        def ts(value: float | None) -> int | None:
            return int(value) if value is not None else None

        counting = batch.status not in ("validating", "failed")
        ended = batch.ended_at
        return {
            "id": batch.id, "object": "batch", "endpoint": ENDPOINT, "input_file_id": batch.input_file_id,
            "completion_window": "24h", "status": batch.status,
            "errors": ({"object": "list", "data": [{"code": self.config.fail_code, "line": None, "param": None,
                                                     "message": "Enqueued token limit reached for this model. "
                                                                "Wait for your batches to finish."}]}
                       if batch.status == "failed" else None),
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": ts(batch.created), "in_progress_at": ts(batch.created + self.config.validating_s)
            if counting else None, "expires_at": ts(batch.created + 86400),
            "finalizing_at": None, "completed_at": ts(ended) if batch.status == "completed" else None,
            "failed_at": ts(ended) if batch.status == "failed" else None,
            "expired_at": ts(ended) if batch.status == "expired" else None,
            "cancelling_at": ts(batch.cancelling_at),
            "cancelled_at": ts(ended) if batch.status == "cancelled" else None,
            "request_counts": {"total": len(batch.lines) if counting else 0, "completed": batch.completed,
                               "failed": batch.failed},
            "metadata": batch.metadata,
        }


def parse_multipart(raw: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ApiError(400, "Expected multipart/form-data.")
    boundary = b"--" + match.group(1).encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = (filename.group(1).decode() if filename else None,
                                              body.removesuffix(b"\r\n"))
    return fields
