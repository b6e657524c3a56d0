"""A local fake of the Anthropic Messages + Message Batches HTTP API.

Why a wire-level fake instead of mocking the SDK: the engine's behaviour under rate limits, retries,
dropped connections and batch polling is exactly what we want to test, and that behaviour lives in
the real ``anthropic`` SDK (retry loop, ``retry-after`` parsing, error classes, JSONL decoding).
Mocking above the SDK would test our assumptions about it instead of the SDK itself.

Every answer *describes its own image*: the mean colour of the first base64 image in the request
(``#rrggbb``, the "image key") is woven into every generated string, so a test can prove that no
answer was attached to the wrong image, even under concurrency, retries and shuffled batch results.

Use in-process (``with FakeAnthropicServer(FakeConfig(...)) as fake: ...``) or as a standalone
process (``python -m tests.fakes.anthropic_server --port 0 --config '{"rpm": 60}'``; the first
stdout line is the base URL, ``GET /_fake/stats`` returns the counters as JSON).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import random
import re
import secrets
import signal
import socket
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageStat

__all__ = [
    "FakeAnthropicServer",
    "FakeConfig",
    "FakeStats",
    "image_key",
]

# Hook type: receives a context dict (see FakeConfig.respond) and returns None (default behaviour)
# or a dict describing the reply.
RespondHook = Callable[[dict[str, Any]], "dict[str, Any] | None"]

OUTPUT_MODES = ("json", "prose", "fenced", "truncated", "refusal", "thinking", "thinking_only", "invalid")
# Faults after the answer began (mode_overrides / output_mode values): "midstream_error:<error type>" sends
# an SSE `error` event after message_start, "midstream_drop" closes the connection there. A non-streaming
# request gets what the API would answer instead: the error's status (overloaded_error: 529), or a drop.
MIDSTREAM_ERROR_STATUS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429,
                          "invalid_request_error": 400, "timeout_error": 504}

# Models on which the docs say forced tool_choice ("tool"/"any") returns 400 (api-facts §B).
DEFAULT_FORCED_TOOL_REJECTING_MODELS = (
    "claude-sonnet-5-5",
    "claude-opus-5-5",
    "claude-fable-5-1",
    "claude-mythos-5-1",
)

# Minimum cacheable prefix per model family (api-facts E; Haiku 5.5 from a third-party source).
MIN_CACHE_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-opus-5-5", 512), ("claude-sonnet-5-5", 512), ("claude-haiku-5-5", 512), ("claude-opus-5", 512),
    ("claude-fable-5", 512), ("claude-mythos-5", 512),
    ("claude-opus-4-8", 1024), ("claude-sonnet-5", 1024), ("claude-sonnet-4-6", 1024), ("claude-sonnet-4-5", 1024),
    ("claude-opus-4-7", 2048), ("claude-mythos-preview", 2048), ("claude-3-5-haiku", 2048),
    ("claude-haiku-3-5", 2048),
    ("claude-opus-4-6", 4096), ("claude-opus-4-5", 4096), ("claude-haiku-4-5", 4096),
)
# Text-token multipliers relative to the Haiku 4.5 tokenizer (api-facts F: Haiku 5.5 counts ~30% more).
DEFAULT_TEXT_TOKEN_FACTORS = {"claude-haiku-5-5": 1.3}

_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_STRING = 40
_BATCH_TTL_S = 24 * 3600

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "The requested resource could not be found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "This request would exceed your organization's rate limit. Please try again later.",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "timeout_error": "Request timed out",
    "conflict_error": "Conflict",
}
# http.server only knows IANA reason phrases; 529 is Anthropic's own.
_REASONS = {529: "Overloaded"}


@dataclass
class FakeConfig:
    """Behaviour knobs. Mutable while the server runs (``fake.config.output_mode = "prose"``)."""

    api_key: str = "sk-ant-test-key"
    # Sleep before a 200 answer on /v1/messages (errors answer at once, like the real gateway).
    latency_s: float = 0.0
    jitter_s: float = 0.0
    # Time to first token: when the answer begins (a stream's message_start goes out) and the prompt cache
    # entry becomes usable (api-facts E: "only after the first response begins"). None = at latency_s, i.e.
    # the cache entry appears with the whole answer. Capped at latency_s + jitter.
    ttft_s: float | None = None
    # Rate limits: token buckets with capacity = max(1, limit * burst_s / 60), refilling limit/60 per
    # second. Anthropic enforces per-minute limits over short windows, so a burst never gets 60 s worth.
    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    burst_s: float = 1.0
    # Random faults, drawn from one seeded RNG per server (deterministic for a sequential client).
    seed: int = 0
    p_429: float = 0.0
    p_529: float = 0.0
    p_500: float = 0.0
    p_drop: float = 0.0
    retry_after_s: float | None = None
    # Anthropic sends integer-second `retry-after` only; the SDK would prefer `retry-after-ms`.
    # Off by default so SDK retry timing is what production sees; on to speed up retry tests.
    send_retry_after_ms: bool = False
    output_mode: str = "json"
    # image key (or batch custom_id) -> output mode; also accepts "error:<status>" and "drop".
    mode_overrides: dict[str, str] = field(default_factory=dict)
    # Custom behaviour hook. Called with a context dict:
    #   {"request": body, "image_key": str | None, "image_keys": [...], "headers": {lower-case: value},
    #    "seq": n (1-based /v1/messages count; None for batch items),
    #    "custom_id": str | None, "batch_id": str | None}   (custom_id/batch_id only for batch items)
    # It runs on server threads (concurrently for /v1/messages) and, for batch items, under the
    # server lock: keep it quick and don't call back into the server over HTTP.
    # and returns None (default behaviour) or one of:
    #   {"status": 529, "message"?: str, "error_type"?: str, "headers"?: {...}, "body"?: {...}}  -> error
    #   {"drop": True}                                   -> close the socket without answering
    #   {"output_mode": "prose"}                         -> default answer in that mode
    #   {"text": "..."}                                  -> one text block, stop_reason end_turn
    #   any other dict                                   -> merged over the default Message body
    respond: RespondHook | None = None
    # GET /v1/models: the ids the account may use (newest first, as the API lists them).
    models: tuple[str, ...] = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5",
                               "claude-sonnet-5", "claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5-20251001")
    fail_first_n: int = 0
    status_override: int | None = None
    # Request validation (what the real API rejects and what matters to imgtag).
    allow_sampling_params: bool = False
    forced_tool_rejecting_models: tuple[str, ...] = DEFAULT_FORCED_TOOL_REJECTING_MODELS
    # Third-party SDKs report that the API rejects object schemas that omit additionalProperties
    # (not only those that set it to something other than false); the SDK's own helper always adds it.
    require_additional_properties_false: bool = True
    check_media_type: bool = True
    reject_prefill: bool = True
    max_images_per_request: int = 100
    max_image_base64_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 32 * 1024 * 1024
    # Prompt caching as documented: prefixes shorter than the model's minimum are silently not cached
    # (None = the documented minimum per model, MIN_CACHE_TOKENS; an int overrides it for every model).
    min_cache_tokens: int | None = None
    text_token_factors: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TEXT_TOKEN_FACTORS))
    # Batch items are answered one after another over this many simulated seconds (None: all at once), so
    # a 5-minute cache entry can expire inside a long batch while a 1-hour one survives.
    batch_span_s: float | None = None
    # The answer's shape when a request sends no schema and no tool, only a prompt that spells out the JSON
    # (as tutorial pipelines do); None = a small default object.
    prompt_schema: dict[str, Any] | None = None
    # Batches.
    # Per-batch caps on the create call (requests, body bytes). Over a cap, the answer is worded as
    # batch_cap_style says: "api" = the API's own (413 request_too_large JSON; 400 "requests: List should have
    # at most N items"); "gateway" = a proxy or compatible gateway with lower caps (e.g. 10,000 requests or
    # 32 MB, as older docs said): 413 with its HTML page, 400 JSON naming its maximum number of requests.
    batch_max_requests: int = 100_000
    batch_max_bytes: int = 256 * 1024 * 1024
    batch_cap_style: str = "api"
    batch_processing_s: float = 0.5
    batch_cancel_s: float = 0.05
    p_batch_errored: float = 0.0
    p_batch_expired: float = 0.0
    batch_errored_type: str = "api_error"
    # Faults for the Nth batch create call (0-based list, one entry per call; "" = none):
    #   "reject:<status>" -> answer with that error, no batch is created;
    #   "lost:<status>"   -> the batch IS created, then the answer is that error (a response lost in transit).
    batch_create_faults: list[str] = field(default_factory=list)
    # False: a gateway without the Message Batches API (LiteLLM's proxy answers every /v1/messages/batches route
    # with FastAPI's 404 {"detail": "Not Found"}).
    batches_api: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeConfig:
        """Build from JSON-ish data (standalone mode); unknown keys are an error, not silently ignored."""
        cfg = cls()
        cfg.update(data)
        return cfg

    def update(self, data: dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)} - {"respond"}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown FakeConfig fields: {sorted(unknown)}")
        for key, value in data.items():
            if key == "forced_tool_rejecting_models":
                value = tuple(value)
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "respond"}


class FakeStats:
    """Thread-safe counters. Read attributes directly in-process, or ``GET /_fake/stats`` as JSON."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.total_requests = 0  # every API request (not /_fake/*), any endpoint
            self.messages_requests = 0  # POST /v1/messages only
            self.models_requests = 0  # GET /v1/models and /v1/models/{id}
            self.status_counts: Counter[int] = Counter()  # all API endpoints
            self.answered_by_key: Counter[str] = Counter()  # /v1/messages 200s per image key
            self.rate_limited = 0  # 429s on /v1/messages (random and bucket)
            self.dropped = 0
            # In-flight requests survive a reset (they will still finish and decrement).
            self.in_flight = getattr(self, "in_flight", 0)
            self.peak_concurrency = 0
            self.first_request_t: float | None = None
            self.last_request_t: float | None = None
            self.events: list[tuple[float, int]] = []  # (time.time(), status) per /v1/messages response
            self.input_tokens = 0  # billed usage over all 200 answers (messages + batch items)
            self.output_tokens = 0
            self.cache_creation_input_tokens = 0
            self.cache_read_input_tokens = 0
            self.cache_creation_1h_input_tokens = 0  # the part of the writes made with ttl "1h" (billed 2x)
            self.usages: list[dict[str, Any]] = []  # each billed answer's usage, in the order they were produced
            # A compact log of /v1/messages requests: what the SDK actually sent (headers that matter).
            self.request_log: list[dict[str, Any]] = []
            self.batches_created = 0
            self.batch_creates_refused = 0  # create calls over batch_max_requests / batch_max_bytes
            self.batch_items_by_custom_id: Counter[str] = Counter()
            self.batch_items_by_key: Counter[str] = Counter()
            self.batch_answered_by_key: Counter[str] = Counter()

    def to_dict(self, lists: bool = True) -> dict[str, Any]:
        """JSON-ready snapshot; ``lists=False`` leaves out the per-request events and log (big runs)."""
        with self.lock:
            out = {
                "total_requests": self.total_requests,
                "messages_requests": self.messages_requests,
                "models_requests": self.models_requests,
                "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
                "answered_by_key": dict(self.answered_by_key),
                "answered": sum(self.answered_by_key.values()),
                "rate_limited": self.rate_limited,
                "dropped": self.dropped,
                "in_flight": self.in_flight,
                "peak_concurrency": self.peak_concurrency,
                "first_request_t": self.first_request_t,
                "last_request_t": self.last_request_t,
                "events": [list(e) for e in self.events] if lists else None,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens,
                "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
                "request_log": list(self.request_log) if lists else None,
                "batches_created": self.batches_created,
                "batch_creates_refused": self.batch_creates_refused,
                "batch_items_by_custom_id": dict(self.batch_items_by_custom_id),
                "batch_items_by_key": dict(self.batch_items_by_key),
                "batch_answered_by_key": dict(self.batch_answered_by_key),
            }
        return out


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """An error reply; raised anywhere in request handling, turned into the API's error body."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type or _ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        self.message = message or _ERROR_MESSAGES.get(self.error_type, "Error")
        self.headers = headers or {}
        self.body = body
        super().__init__(f"{status} {self.error_type}: {self.message}")


class _Drop(Exception):
    """Close the connection without a response (the SDK sees a connection error)."""


def _rid(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _rfc3339_seconds(t: float) -> str:
    # Rate-limit resets are whole seconds on the real API; round up so "reset" is never early.
    return datetime.fromtimestamp(math.ceil(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_body(error_type: str, message: str, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def image_key(data: bytes) -> str:
    """The fake's key for an encoded image: its mean colour as ``#rrggbb``.

    Exported so tests compute expected keys with exactly the server's arithmetic.
    """
    return _analyze_image(data)[0]


def _analyze_image(data: bytes) -> tuple[str, int, int, str]:
    """(key, width, height, PIL format). Raises on undecodable data."""
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format or ""
        width, height = im.size
        if fmt == "JPEG":
            # DCT-domain downscale: decoding a 12 MP JPEG at 1/8 is ~20x faster and the mean is the same
            # to within rounding; benchmarks push thousands of images through here.
            im.draft("RGB", (256, 256))
        rgb = im.convert("RGB")  # first frame of animations, like the real API
        mean = ImageStat.Stat(rgb).mean
    r, g, b = (max(0, min(255, round(c))) for c in mean[:3])
    return f"#{r:02x}{g:02x}{b:02x}", width, height, fmt


def _visual_tokens(width: int, height: int) -> int:
    return math.ceil(width / 28) * math.ceil(height / 28)


class _Bucket:
    """Token bucket. ``level`` may go negative (debt) so one request bigger than the bucket can pass
    when the bucket is full instead of being rejected forever."""

    def __init__(self, per_minute: int, burst_s: float, now: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute * burst_s / 60.0)
        self.level = self.capacity
        self.t = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def wait_for(self, need: float) -> float:
        """Seconds until ``level >= need`` (need is capped at capacity); 0 if already there."""
        need = min(need, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def seconds_to_full(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


# ----------------------------------------------------------------------------------------------
# Request analysis and answer generation (shared by /v1/messages and batch items)
# ----------------------------------------------------------------------------------------------


@dataclass
class _Analysis:
    image_keys: list[str]
    input_tokens_total: int  # estimate, before splitting off cached prefix tokens
    breakpoints: list[_Breakpoint]  # cacheable prefixes (at least the model's minimum), shortest first
    image_labels: list[str]  # per image: the short text right before it ("Image 2:" -> "Image 2"), or ""
    schema: dict[str, Any] | None
    tool: dict[str, Any] | None  # the tool to call (forced or sole tool), if answering with tool_use


@dataclass(frozen=True)
class _Breakpoint:
    """One cache_control mark: the prefix up to and including its block."""

    tokens: int  # tokens in that prefix
    key: str  # hash of (model, prefix content)
    ttl_s: float  # 300 or 3600


@dataclass(frozen=True)
class _CacheOutcome:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h


def _is_wide(ch: str) -> bool:
    code = ord(ch)
    return (
        0x3000 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF
        or 0x20000 <= code <= 0x2FFFF
    )


# The fake's tokenizer is its own, not imgtag's estimate (pricing/textcount.py counts characters / 4), so tests that
# hold an estimate to the fake's bill compare two independent counts. It counts the way BPE tokenizers split text:
# an ASCII word is one token per 6 letters begun (common words are one token; long ones split), digits go in
# threes, a run of punctuation is one token per 2 characters (JSON's `": "` and `"],` merge), whitespace joins
# the next token, a CJK/kana/hangul character is one token, and other letters (accented, Cyrillic, ...) one per
# 2 characters. On the English prompts imgtag sends the two counts agree within about 5%; on JSON schemas the
# fake counts 15-35% more, so a whole prefix (schema + system [+ guide]) 1-14% more.
_PIECES = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]+")
# How far imgtag's text estimate may be from this count on what imgtag sends; tests/test_cost.py measures it.
TEXT_TOLERANCE = 0.15


def text_tokens(text: str, factor: float = 1.0) -> int:
    """The fake's count for one block of text, times the model's tokenizer factor (Haiku 5.5 counts ~30% more,
    api-facts F). Rounded up per block."""
    if not text:
        return 0
    count = 0
    for piece in _PIECES.findall(text):
        if piece.isascii() and piece.isalpha():
            count += math.ceil(len(piece) / 6)
        elif piece.isascii() and piece.isdigit():
            count += math.ceil(len(piece) / 3)
        else:
            wide = sum(1 for ch in piece if _is_wide(ch))
            count += wide + math.ceil((len(piece) - wide) / 2)
    return math.ceil(count * factor)



def _mark(block: Any) -> dict[str, Any] | None:
    mark = block.get("cache_control") if isinstance(block, dict) else None
    return mark if isinstance(mark, dict) else None


def _breakpoints(
    blocks: list[tuple[int, Any, dict[str, Any] | None]], body: dict[str, Any], model: str, cfg: FakeConfig
) -> list[_Breakpoint]:
    """Cacheable prefixes of this request, as the prompt-caching docs describe them (api-facts E):
    explicit cache_control on tools, system or message blocks, or the top-level form that marks the last
    block; at most 4; a prefix shorter than the model's minimum is silently not cached."""
    marks = [(i, m) for i, (_, _, m) in enumerate(blocks) if m is not None]
    top = body.get("cache_control")
    if isinstance(top, dict) and blocks and all(i != len(blocks) - 1 for i, _ in marks):
        marks.append((len(blocks) - 1, top))
    if len(marks) > 4:
        raise _ApiError(400, f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}.")
    minimum = cfg.min_cache_tokens if cfg.min_cache_tokens is not None else min_cache_tokens_for(model)
    out: list[_Breakpoint] = []
    for index, mark in marks:
        ttl = mark.get("ttl") or "5m"
        if ttl not in ("5m", "1h"):
            raise _ApiError(400, f"cache_control.ttl: Input should be '5m' or '1h', got {ttl!r}")
        tokens = sum(b[0] for b in blocks[: index + 1])
        if tokens < max(1, minimum):
            continue
        content = [model, [_strip_marks(b[1]) for b in blocks[: index + 1]]]
        key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        out.append(_Breakpoint(tokens, key, 3600.0 if ttl == "1h" else 300.0))
    return out


def _strip_marks(block: Any) -> Any:
    # The cache_control marker itself is not content: moving a breakpoint does not change the prefix.
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def min_cache_tokens_for(model: str) -> int:
    """The documented minimum cacheable prompt length per model (api-facts E)."""
    for prefix, tokens in MIN_CACHE_TOKENS:
        if model.startswith(prefix):
            return tokens
    return 1024


def _text_chars_str(content: Any) -> str:
    parts: list[str] = []
    for block in content:
        if isinstance(block, dict):
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                parts.append(inner if isinstance(inner, str) else _text_chars_str(inner or []))
    return "".join(parts)


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    total = 0
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                total += len(block["text"])
            elif block.get("type") == "tool_result":
                total += _text_chars(block.get("content"))
    return total


def _iter_image_blocks(messages: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, msg in enumerate(messages):
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image":
                yield f"messages.{i}.content.{j}.image", block
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                for k, inner in enumerate(block["content"]):
                    if isinstance(inner, dict) and inner.get("type") == "image":
                        yield f"messages.{i}.content.{j}.tool_result.content.{k}.image", inner


def _schema_problem(node: Any, path: str, require_ap_false: bool) -> str | None:
    """First structured-outputs restriction the schema violates (api-facts §B), or None."""
    if isinstance(node, list):
        for i, sub in enumerate(node):
            problem = _schema_problem(sub, f"{path}.{i}", require_ap_false)
            if problem:
                return problem
        return None
    if not isinstance(node, dict):
        return None
    for kw in ("minLength", "maxLength"):
        if kw in node:
            return f"{path}: '{kw}' is not supported in structured outputs"
    if isinstance(node.get("minItems"), int) and node["minItems"] > 1:
        return f"{path}: 'minItems' values other than 0 or 1 are not supported ({node['minItems']})"
    if "additionalProperties" in node and node["additionalProperties"] is not False:
        return f"{path}: 'additionalProperties' must be set to false for object types"
    types = node.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node
    if require_ap_false and is_object and "additionalProperties" not in node:
        return f"{path}: For 'object' type, 'additionalProperties' must be explicitly set to false"
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        sub = node.get(key)
        if isinstance(sub, dict):
            for name, child in sub.items():
                problem = _schema_problem(child, f"{path}.{key}.{name}", require_ap_false)
                if problem:
                    return problem
    for key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "not"):
        if key in node:
            problem = _schema_problem(node[key], f"{path}.{key}", require_ap_false)
            if problem:
                return problem
    return None


def _analyze_request(body: Any, cfg: FakeConfig) -> _Analysis:
    """Validate what the real API rejects (and imgtag could get wrong); estimate tokens; find the key."""
    if not isinstance(body, dict):
        raise _ApiError(400, "Request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _ApiError(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise _ApiError(400, "max_tokens: Field required")
    if max_tokens < 1:
        raise _ApiError(400, "max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ApiError(400, "messages: Field required (at least one message)")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise _ApiError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(msg.get("content"), (str, list)):
            raise _ApiError(400, f"messages.{i}.content: Field required")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _ApiError(400, "stream: Input should be a valid boolean")
    if not cfg.allow_sampling_params:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise _ApiError(400, f"{name}: This model does not support setting `{name}`.")
    if cfg.reject_prefill and messages[-1].get("role") == "assistant":
        raise _ApiError(400, "This model does not support assistant message prefill.")

    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise _ApiError(400, "tools: Input should be a valid list")
    tool_choice = body.get("tool_choice")
    forced = isinstance(tool_choice, dict) and tool_choice.get("type") in ("tool", "any")
    if forced and model in cfg.forced_tool_rejecting_models:
        raise _ApiError(400, 'tool_choice: type "tool" and "any" are not supported for this model.')

    schema: dict[str, Any] | None = None
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and isinstance(output_config.get("format"), dict):
        fmt = output_config["format"]
        if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise _ApiError(400, "output_config.format: expected {'type': 'json_schema', 'schema': {...}}")
        schema = fmt["schema"]
        problem = _schema_problem(
            schema, "output_config.format.schema", cfg.require_additional_properties_false
        )
        if problem:
            raise _ApiError(400, problem)
        if messages[-1].get("role") == "assistant":
            raise _ApiError(400, "Structured outputs are not compatible with assistant message prefill.")

    tool: dict[str, Any] | None = None
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise _ApiError(400, f"tools.{i}.name: Field required")
        if t.get("strict") and isinstance(t.get("input_schema"), dict):
            problem = _schema_problem(
                t["input_schema"], f"tools.{i}.input_schema", cfg.require_additional_properties_false
            )
            if problem:
                raise _ApiError(400, problem)
    if forced:
        assert isinstance(tool_choice, dict)
        if tool_choice.get("type") == "tool":
            tool = next((t for t in tools if t.get("name") == tool_choice.get("name")), None)
            if tool is None:
                raise _ApiError(400, f"tool_choice.name: no tool named {tool_choice.get('name')!r} in tools")
        elif not tools:
            raise _ApiError(400, "tool_choice: 'any' requires at least one tool")
        else:
            tool = tools[0]
    elif (
        schema is None
        and len(tools) == 1
        and not (isinstance(tool_choice, dict) and tool_choice.get("type") == "none")
    ):
        # tool_choice auto with a single tool and nothing else to answer in: a model would call it.
        tool = tools[0]

    # Images: decode every base64 image (validation), key = first one.
    image_keys: list[str] = []
    dims: list[tuple[str, int, int]] = []
    image_tokens = 0
    blocks = list(_iter_image_blocks(messages))
    if len(blocks) > cfg.max_images_per_request:
        raise _ApiError(400, f"Too many images in request: {len(blocks)} > {cfg.max_images_per_request}")
    for path, block in blocks:
        src = block.get("source")
        if not isinstance(src, dict):
            raise _ApiError(400, f"{path}.source: Field required")
        if src.get("type") != "base64":
            continue  # url/file sources: nothing to decode locally; they simply have no key
        media_type = src.get("media_type")
        if media_type not in _MEDIA_TYPES.values():
            raise _ApiError(
                400,
                f"{path}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                "'image/gif' or 'image/webp'",
            )
        data = src.get("data")
        if not isinstance(data, str):
            raise _ApiError(400, f"{path}.source.base64.data: Field required")
        if len(data) > cfg.max_image_base64_bytes:
            raise _ApiError(
                400,
                f"{path}.source.base64: image exceeds "
                f"{cfg.max_image_base64_bytes // (1024 * 1024)} MB maximum: "
                f"{len(data)} bytes > {cfg.max_image_base64_bytes} bytes",
            )
        try:
            raw = base64.b64decode(data, validate=True)
            key, width, height, pil_fmt = _analyze_image(raw)
        except (binascii.Error, ValueError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise _ApiError(400, f"{path}.source.base64.data: Could not process image") from exc
        actual = _MEDIA_TYPES.get(pil_fmt)
        if actual is None:
            raise _ApiError(400, f"{path}.source.base64.data: Could not process image")
        if cfg.check_media_type and actual != media_type:
            raise _ApiError(
                400,
                f"{path}.source.base64.media_type: Image does not match the provided media type {media_type}",
            )
        image_keys.append(key)
        dims.append((path, width, height))
        image_tokens += _visual_tokens(width, height)
    for path, width, height in dims:
        if max(width, height) > 8000:
            raise _ApiError(
                400,
                f"{path}.source.base64.data: At least one of the image dimensions exceed "
                "max allowed size: 8000 pixels",
            )
        if len(blocks) > 20 and max(width, height) > 2000:
            raise _ApiError(
                400,
                f"{path}.source.base64.data: At least one of the image dimensions exceed max allowed size "
                "for many-image requests: 2000 pixels",
            )

    # Token counting, block by block in prefix order (tools -> the output schema -> system -> messages), so a
    # cache breakpoint on any block knows how many tokens precede and include it.
    factor = cfg.text_token_factors.get(model, 1.0)
    system = body.get("system")
    blocks: list[tuple[int, Any, dict[str, Any] | None]] = []  # (tokens, hashable content, cache_control)
    for t in tools:
        blocks.append((text_tokens(json.dumps(t, sort_keys=True), factor), t, _mark(t)))
    if schema is not None:
        # The API turns the schema into a system prompt and bills it (it also invalidates the cache when it
        # changes, api-facts B); it sits before the system blocks.
        blocks.append((text_tokens(json.dumps(schema, sort_keys=True), factor), schema, None))
    if isinstance(system, str):
        blocks.append((text_tokens(system, factor), system, None))
    elif isinstance(system, list):
        for b in system:
            text = b.get("text") if isinstance(b, dict) and isinstance(b.get("text"), str) else ""
            blocks.append((text_tokens(text, factor), b, _mark(b)))
    dim_tokens = iter(_visual_tokens(w, h) for _, w, h in dims)
    image_labels: list[str] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str):
            blocks.append((text_tokens(content, factor), content, None))
            continue
        previous = ""
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image":
                src = block.get("source")
                tokens = next(dim_tokens, 0) if isinstance(src, dict) and src.get("type") == "base64" else 0
                if isinstance(src, dict) and src.get("type") == "base64":
                    # A model reads a short line right before an image as its label ("Image 2:").
                    image_labels.append(previous.strip().rstrip(":").strip() if len(previous) <= 40 else "")
            else:
                tokens = text_tokens(_text_chars_str([block]), factor)
            blocks.append((tokens, block, _mark(block)))
            previous = block.get("text") if block.get("type") == "text" and isinstance(block.get("text"), str) else ""
    input_total = sum(b[0] for b in blocks)
    breakpoints = _breakpoints(blocks, body, model, cfg)

    return _Analysis(
        image_keys=image_keys,
        input_tokens_total=input_total,
        breakpoints=breakpoints,
        image_labels=image_labels,
        schema=schema,
        tool=tool,
    )


def _fit(text: str) -> str:
    return text[:_MAX_STRING]


class _InstanceMaker:
    """Builds a valid instance of a JSON schema whose strings carry the image key."""

    def __init__(self, root: dict[str, Any], key: str, labelled: list[tuple[str, str]] | None = None) -> None:
        self.root = root
        self.key = key
        # (label, image key) per image of a request with several labelled images: an array of objects with a
        # "label" property gets one item per image, each describing that image (a model answering per label).
        self.labelled = labelled or []

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        seen = 0
        while isinstance(ref, str) and seen < 32:
            seen += 1
            target: Any = self.root
            if ref != "#":
                for part in ref.lstrip("#/").split("/"):
                    target = (
                        target.get(part.replace("~1", "/").replace("~0", "~"), {})
                        if isinstance(target, dict)
                        else {}
                    )
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            ref = target.get("$ref") if isinstance(target, dict) else None
        return node

    def make(self, node: Any, name: str = "value", depth: int = 0) -> Any:
        if not isinstance(node, dict) or depth > 12:
            return None if depth > 12 else f"{name} {self.key}"[:_MAX_STRING]
        node = _described_limits(self._resolve(node))
        if "const" in node:
            return node["const"]
        if isinstance(node.get("enum"), list) and node["enum"]:
            return node["enum"][0]
        for key in ("anyOf", "oneOf"):
            options = node.get(key)
            if isinstance(options, list) and options:
                non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
                return self.make((non_null or options)[0], name, depth + 1)
        if isinstance(node.get("allOf"), list) and node["allOf"]:
            merged: dict[str, Any] = {}
            for part in node["allOf"]:
                merged.update(self._resolve(part) if isinstance(part, dict) else {})
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return self.make({**merged, **rest}, name, depth + 1)
        typ = node.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "null")
        if typ is None:
            typ = "object" if "properties" in node else "array" if "items" in node else "string"
        if typ == "object":
            props = node.get("properties") or {}
            required = [r for r in node.get("required") or [] if r in props]
            # Required properties come first in real structured output (api-facts §B).
            order = required + [p for p in props if p not in required]
            return {p: self.make(props[p], p, depth + 1) for p in order}
        if typ == "array":
            items = node.get("items") if isinstance(node.get("items"), dict) else {"type": "string"}
            lo = node.get("minItems", 0) if isinstance(node.get("minItems"), int) else 0
            hi = node.get("maxItems") if isinstance(node.get("maxItems"), int) else None
            n = max(lo, 3)
            if hi is not None:
                n = min(n, hi)
            resolved = self._resolve(items)
            if self.labelled and "label" in (resolved.get("properties") or {}):
                out = []
                for label, key in self.labelled:
                    item = _InstanceMaker(self.root, key).make(items, name, depth + 1)
                    if isinstance(item, dict):
                        item["label"] = label
                    out.append(item)
                return out
            enum = resolved.get("enum")
            if isinstance(enum, list) and enum:
                # Distinct values where possible, so uniqueItems schemas stay valid.
                return [
                    enum[i % len(enum)] for i in range(min(n, len(enum)) if node.get("uniqueItems") else n)
                ]
            singular = name[:-1] if name.endswith("s") and len(name) > 1 else name
            return [self.make(items, f"{singular}{i + 1}", depth + 1) for i in range(n)]
        if typ == "string":
            return self._string(node, name)
        if typ == "integer":
            return int(self._number(node, 1))
        if typ == "number":
            return self._number(node, 0.5)
        if typ == "boolean":
            return True
        if typ == "null":
            return None
        return f"{name} {self.key}"[:_MAX_STRING]

    def _number(self, node: dict[str, Any], default: float) -> float:
        value = default
        lo = node.get("minimum")
        lo_x = node.get("exclusiveMinimum")
        hi = node.get("maximum")
        hi_x = node.get("exclusiveMaximum")
        if isinstance(lo, (int, float)) and value < lo:
            value = lo
        if isinstance(lo_x, (int, float)) and value <= lo_x:
            value = lo_x + 1 if node.get("type") == "integer" else lo_x + 0.5
        if isinstance(hi, (int, float)) and value > hi:
            value = hi
        if isinstance(hi_x, (int, float)) and value >= hi_x:
            value = hi_x - 1 if node.get("type") == "integer" else hi_x - 0.5
        return value

    def _string(self, node: dict[str, Any], name: str) -> str:
        key = self.key
        fmt = node.get("format")
        fixed = {
            "date-time": "2026-01-01T00:00:00Z",
            "date": "2026-01-01",
            "time": "00:00:00Z",
            "duration": "P1D",
            "email": f"img{key.lstrip('#')}@example.com",
            "hostname": f"img{key.lstrip('#')}.example.com",
            "uri": f"https://example.com/{key.lstrip('#')}",
            "ipv4": "127.0.0.1",
            "ipv6": "::1",
            "uuid": "00000000-0000-4000-8000-" + key.lstrip("#").rjust(12, "0"),
        }
        if fmt in fixed:
            return fixed[fmt]
        lowered = name.lower()
        if any(word in lowered for word in ("color", "colour", "hex", "key")):
            candidates = [key]
        else:
            label = {"description": "desc", "caption": "caption", "title": "title"}.get(lowered, name)
            candidates = [_fit(f"{label[: _MAX_STRING - len(key) - 1]} {key}")]
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            candidates += [key, key.upper(), key.lstrip("#"), key.lstrip("#").upper(), "en", ""]
            for cand in candidates:
                with contextlib.suppress(re.error):
                    if re.search(pattern, cand):
                        return cand
        return candidates[0]


_ITEMS_RANGE = re.compile(r"\b(\d+) to (\d+) items?\b")
_ITEMS_AT_LEAST = re.compile(r"\bat least (\d+) items?\b")
_ITEMS_AT_MOST = re.compile(r"\bat most (\d+) items?\b")
_PATTERN_WORDS = "must match the regular expression "


def _described_limits(node: dict[str, Any]) -> dict[str, Any]:
    """The limits a provider refuses in a schema reach the model as words in the field's description
    (imgtag's validate/schema.py: "(10 to 30 items)", "must match the regular expression ..."). A model reads
    them; so does the fake, or it would answer outside limits a real model keeps (3 keywords for 10 to 30)."""
    text = node.get("description")
    if not isinstance(text, str) or "(" not in text:
        return node
    note = text[text.index("(") + 1:].removesuffix(")")
    found: dict[str, Any] = {}
    if m := _ITEMS_RANGE.search(note):
        found = {"minItems": int(m[1]), "maxItems": int(m[2])}
    else:
        if m := _ITEMS_AT_LEAST.search(note):
            found["minItems"] = int(m[1])
        if m := _ITEMS_AT_MOST.search(note):
            found["maxItems"] = int(m[1])
    if _PATTERN_WORDS in note:
        found["pattern"] = note.split(_PATTERN_WORDS, 1)[1].split("; ", 1)[0]
    return {**found, **node} if found else node


def _invalidate(instance: Any, schema: dict[str, Any] | None, key: str) -> Any:
    """Valid JSON that violates the schema: drop a required field and add an undeclared one."""
    if not isinstance(instance, dict):
        return {"unexpected": key}
    broken = dict(instance)
    required = (schema or {}).get("required") or []
    if required and required[0] in broken:
        del broken[required[0]]
    else:
        first = next(iter(broken), None)
        if first is not None:
            broken[first] = 12345 if isinstance(broken[first], str) else "wrong type"
    broken["unexpected_field"] = key
    return broken


def _out_tokens(chars: int) -> int:
    return chars // 3 + 1


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------


@dataclass
class _BatchItem:
    custom_id: str
    params: Any
    analysis: _Analysis | None
    error: _ApiError | None  # validation failure, reported as an errored result at the end


@dataclass
class _Batch:
    id: str
    created_at: float
    items: list[_BatchItem]
    processing_s: float
    cancel_initiated_at: float | None = None
    ended_at: float | None = None
    results: list[dict[str, Any]] | None = None


def _pieces(text: str, size: int = 24) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _stream_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A finished Message as the event sequence the streaming API sends for it (what the SDK accumulates)."""
    usage = dict(message["usage"])
    start_usage = {**usage, "output_tokens": 1}  # the API reports a placeholder output count at the start
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
        **{k: v for k, v in message.items() if k not in ("content", "stop_details")},
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            start, deltas = {"type": "text", "text": ""}, [
                {"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece}
                      for piece in _pieces(json.dumps(block["input"]))]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            raise ValueError(f"cannot stream a {kind!r} block")
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                   for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta: dict[str, Any] = {"stop_reason": message["stop_reason"], "stop_sequence": message.get("stop_sequence")}
    if message.get("stop_details") is not None:
        delta["stop_details"] = message["stop_details"]
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": {
        k: usage[k] for k in ("output_tokens", "input_tokens", "cache_creation_input_tokens",
                              "cache_read_input_tokens")}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of 100 concurrent connects would then see
    # SYN retransmits (1 s stalls) that look like server latency in benchmarks.
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], fake: FakeAnthropicServer) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        with self.sockets_lock:
            self.open_sockets.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every reply carries Content-Length
    server: _HTTPServer
    # Idle keep-alive connections release their thread eventually.
    timeout = 120
    # Stats callback for the request being handled; fired once, just before the reply goes out.
    on_reply: Callable[[int], None] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stats endpoint is the log; stderr noise would drown pytest output

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")


class FakeAnthropicServer:
    """The fake API. ``with FakeAnthropicServer(cfg) as fake:`` starts it on 127.0.0.1:<free port>."""

    def __init__(self, config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or FakeConfig()
        self.stats = FakeStats()
        self._host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # buckets, RNG, counters, cache registry, batches
        self._rng = random.Random(self.config.seed)
        self._buckets: dict[str, _Bucket] = {}
        self._bucket_shape: tuple[Any, ...] = ()
        self._seq = 0
        self._cache: dict[str, float] = {}  # prefix hash -> expiry on the cache clock
        self._clock_offset = 0.0
        # The rate-limit buckets' clock: a test may stop it (nothing refills, however slow the machine) or
        # shift it. Read under self._lock.
        self.bucket_clock: Callable[[], float] = time.monotonic
        self._batches: dict[str, _Batch] = {}
        self._batch_create_calls = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeAnthropicServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self._host, self._port), self)
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every /v1/messages request received so far has been answered (tests/fakes/idle.py)."""
        from tests.fakes.idle import wait_idle

        wait_idle(lambda: self.stats.in_flight, timeout)

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        # Kill keep-alive connections too, or pooled clients would keep talking to a "stopped" server.
        with httpd.sockets_lock:
            for sock in list(httpd.open_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._httpd = None

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a CLI subprocess that should talk to this fake."""
        return {"ANTHROPIC_API_KEY": self.config.api_key, "ANTHROPIC_BASE_URL": self.base_url}

    def reset(self) -> None:
        """Clear stats, rate-limit buckets, the fail_first_n counter, RNG, prompt cache and batches."""
        with self._lock:
            self.stats.reset()
            self._buckets = {}
            self._bucket_shape = ()
            self._seq = 0
            self._rng = random.Random(self.config.seed)
            self._cache = {}
            self._batches = {}
            self._batch_create_calls = 0

    def client(self, **kwargs: Any) -> Any:
        """A sync ``anthropic.Anthropic`` pointed here (max_retries=0 unless given)."""
        import anthropic

        kwargs.setdefault("api_key", self.config.api_key)
        kwargs.setdefault("max_retries", 0)
        return anthropic.Anthropic(base_url=self.base_url, **kwargs)

    def async_client(self, **kwargs: Any) -> Any:
        """An ``anthropic.AsyncAnthropic`` pointed here (max_retries=0 unless given)."""
        import anthropic

        kwargs.setdefault("api_key", self.config.api_key)
        kwargs.setdefault("max_retries", 0)
        return anthropic.AsyncAnthropic(base_url=self.base_url, **kwargs)

    # -- HTTP plumbing -----------------------------------------------------------------------

    def _read_body(self, h: _Handler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(chunks)
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _send(
        self, h: _Handler, status: int, payload: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        self._fire_reply(h, status)
        try:
            h.send_response(status, _REASONS.get(status))
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client gave up (e.g. its timeout); nothing to answer

    def _send_json(self, h: _Handler, status: int, body: Any, headers: dict[str, str]) -> None:
        self._send(h, status, json.dumps(body).encode(), headers, "application/json")

    def _handle(self, h: _Handler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = self._read_body(h)  # always drain, so an error reply never races an unread upload

        if path.startswith("/_fake/"):
            self._handle_control(h, method, path, raw, query)
            return

        request_id = _rid("req_")
        headers: dict[str, str] = {"request-id": request_id}
        is_messages = method == "POST" and path == "/v1/messages"
        now = time.time()
        with self.stats.lock:
            self.stats.total_requests += 1
            self.stats.first_request_t = self.stats.first_request_t or now
            self.stats.last_request_t = now
            if is_messages:
                self.stats.messages_requests += 1
                self.stats.in_flight += 1
                self.stats.peak_concurrency = max(self.stats.peak_concurrency, self.stats.in_flight)
        log: dict[str, Any] = {
            "t": now,
            "path": path,
            "request_id": request_id,
            "retry_count": h.headers.get("x-stainless-retry-count"),
            "anthropic_version": h.headers.get("anthropic-version"),
            "helper": h.headers.get("x-stainless-helper"),
        }

        def record(status: int) -> None:
            # Runs just before the reply is written: a client that reads /_fake/stats right after its
            # response must already see that response counted.
            with self.stats.lock:
                self.stats.status_counts[status] += 1
                if is_messages:
                    self.stats.in_flight -= 1
                    self.stats.events.append((time.time(), status))
                    if status == 429:
                        self.stats.rate_limited += 1
                    log["status"] = status
                    self.stats.request_log.append(log)

        h.on_reply = record
        try:
            self._route(h, method, path, query, raw, headers, log)
        except _ApiError as err:
            headers.update(err.headers)
            if is_messages and not any(k.startswith("anthropic-ratelimit-") for k in headers):
                self._limit_headers_now(headers)  # e.g. 401/status_override: still report limits
            body = err.body if err.body is not None else _error_body(err.error_type, err.message, request_id)
            self._send_json(h, err.status, body, headers)
        except _Drop:
            with self.stats.lock:
                self.stats.dropped += 1
            self._fire_reply(h, 0)
            h.close_connection = True
        except Exception as exc:
            # A bug in the fake must surface as a loud 500 (with the reason), never as a hung client.
            self._send_json(
                h, 500, _error_body("api_error", f"fake server bug: {exc!r}", request_id), headers
            )
            raise
        finally:
            self._fire_reply(h, 500)  # only fires if nothing was sent

    @staticmethod
    def _fire_reply(h: _Handler, status: int) -> None:
        callback, h.on_reply = h.on_reply, None
        if callback is not None:
            callback(status)

    def _handle_control(self, h: _Handler, method: str, path: str, raw: bytes, query: dict[str, str]) -> None:
        if method == "GET" and path == "/_fake/stats":
            self._send_json(h, 200, self.stats.to_dict(lists=query.get("lists", "1") != "0"), {})
        elif method == "POST" and path == "/_fake/reset":
            self.reset()
            self._send_json(h, 200, {"ok": True}, {})
        elif method == "GET" and path == "/_fake/config":
            self._send_json(h, 200, self.config.to_dict(), {})
        elif method == "POST" and path == "/_fake/config":
            try:
                self.config.update(json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                self._send_json(h, 400, {"error": str(exc)}, {})
                return
            self._send_json(h, 200, self.config.to_dict(), {})
        else:
            self._send_json(h, 404, {"error": f"no control endpoint {method} {path}"}, {})

    def _check_auth(self, h: _Handler) -> None:
        # The 2.12 SDK sends `Authorization: Bearer`; older SDKs and cURL send `x-api-key`. Accept both.
        key = h.headers.get("x-api-key")
        auth = h.headers.get("Authorization") or ""
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if key != self.config.api_key:
            raise _ApiError(401, "invalid x-api-key")

    def _models(self, h: _Handler, path: str, query: dict[str, str], headers: dict[str, str]) -> int:
        """The Models API: a page of model objects (before_id/after_id/limit paging), or one model by id."""
        with self.stats.lock:
            self.stats.models_requests += 1

        def obj(model_id: str) -> dict[str, Any]:
            return {"type": "model", "id": model_id, "display_name": model_id.replace("-", " ").title(),
                    "created_at": "2026-01-01T00:00:00Z"}

        ids = list(self.config.models)
        one = path[len("/v1/models/"):] if path.startswith("/v1/models/") else None
        if one:
            if one not in ids:
                raise _ApiError(404, f"model: {one}", error_type="not_found_error")
            self._send_json(h, 200, obj(one), headers)
            return 200
        start = ids.index(query["after_id"]) + 1 if query.get("after_id") in ids else 0
        limit = int(query.get("limit") or 20)
        page = ids[start:start + limit]
        self._send_json(h, 200, {"data": [obj(i) for i in page], "has_more": start + limit < len(ids),
                                 "first_id": page[0] if page else None, "last_id": page[-1] if page else None},
                        headers)
        return 200

    def _route(
        self,
        h: _Handler,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        headers: dict[str, str],
        log: dict[str, Any],
    ) -> int:
        self._check_auth(h)
        if self.config.status_override is not None:
            raise _ApiError(self.config.status_override)
        if path == "/v1/messages" and method == "POST":
            return self._messages(h, raw, headers, log)
        if path.startswith("/v1/models") and method == "GET":
            return self._models(h, path, query, headers)
        if path.startswith("/v1/messages/batches") and not self.config.batches_api:
            raise _ApiError(404, body={"detail": "Not Found"})
        if path == "/v1/messages/count_tokens" and method == "POST":
            analysis = _analyze_request(self._parse_json(raw), self.config)
            self._send_json(h, 200, {"input_tokens": analysis.input_tokens_total}, headers)
            return 200
        if path == "/v1/messages/batches":
            if method == "POST":
                return self._batch_create(h, raw, headers)
            if method == "GET":
                return self._batch_list(h, query, headers)
        match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/cancel|/results)?", path)
        if match:
            batch_id, action = match.group(1), match.group(2)
            if action is None and method == "GET":
                return self._reply_batch(h, batch_id, headers)
            if action is None and method == "DELETE":
                return self._batch_delete(h, batch_id, headers)
            if action == "/cancel" and method == "POST":
                return self._batch_cancel(h, batch_id, headers)
            if action == "/results" and method == "GET":
                return self._batch_results(h, batch_id, headers)
        raise _ApiError(404, f"Not found: {method} {path}")

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _ApiError(400, "There was an error parsing the body of your request as JSON") from exc

    # -- rate limiting ----------------------------------------------------------------------

    def _get_buckets(self) -> dict[str, _Bucket]:
        cfg = self.config
        shape = (cfg.rpm, cfg.itpm, cfg.otpm, cfg.burst_s)
        if shape != self._bucket_shape:  # config changed at runtime: start fresh buckets
            self._bucket_shape = shape
            self._buckets = {}
            for name, limit in (
                ("requests", cfg.rpm),
                ("input-tokens", cfg.itpm),
                ("output-tokens", cfg.otpm),
            ):
                if limit is not None:
                    self._buckets[name] = _Bucket(limit, cfg.burst_s, self.bucket_clock())
        return self._buckets

    def _ratelimit_headers(self, buckets: dict[str, _Bucket]) -> dict[str, str]:
        now = time.time()
        out: dict[str, str] = {}
        for name, b in buckets.items():
            out[f"anthropic-ratelimit-{name}-limit"] = str(b.limit)
            # Integers (the real API rounds token counts to thousands; exact values keep tests precise).
            out[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, math.floor(b.level)))
            out[f"anthropic-ratelimit-{name}-reset"] = _rfc3339_seconds(now + b.seconds_to_full())
        token_buckets = [b for n, b in buckets.items() if n != "requests"]
        if token_buckets:
            # `tokens-*` reports the most restrictive token limit currently in effect.
            b = min(token_buckets, key=lambda x: x.level)
            out["anthropic-ratelimit-tokens-limit"] = str(b.limit)
            out["anthropic-ratelimit-tokens-remaining"] = str(max(0, math.floor(b.level)))
            out["anthropic-ratelimit-tokens-reset"] = _rfc3339_seconds(now + b.seconds_to_full())
        return out

    def _retry_after_headers(self, seconds: float) -> dict[str, str]:
        out = {"retry-after": str(max(1, math.ceil(seconds)))}
        if self.config.send_retry_after_ms:
            out["retry-after-ms"] = str(max(1, math.ceil(seconds * 1000)))
        return out

    def _admit(self, input_tokens: int, headers: dict[str, str]) -> None:
        """Take from the buckets or raise 429. Rejected requests consume nothing."""
        with self._lock:
            buckets = self._get_buckets()
            if not buckets:
                return
            now = self.bucket_clock()
            for b in buckets.values():
                b.refill(now)
            needs = {"requests": 1.0, "input-tokens": float(input_tokens), "output-tokens": 1.0}
            wait = max(b.wait_for(needs[name]) for name, b in buckets.items())
            if wait > 0:
                headers.update(self._ratelimit_headers(buckets))
                headers.update(self._retry_after_headers(wait))
                raise _ApiError(429)
            for name, b in buckets.items():
                if name != "output-tokens":  # output is charged when the answer is known
                    b.level -= needs[name]
            headers.update(self._ratelimit_headers(buckets))

    def _charge_output(self, output_tokens: int, headers: dict[str, str]) -> None:
        with self._lock:
            buckets = self._get_buckets()
            b = buckets.get("output-tokens")
            if b is not None:
                b.refill(self.bucket_clock())
                b.level -= output_tokens
            if buckets:
                headers.update(self._ratelimit_headers(buckets))

    def _limit_headers_now(self, headers: dict[str, str]) -> None:
        with self._lock:
            buckets = self._get_buckets()
            if buckets:
                now = self.bucket_clock()
                for b in buckets.values():
                    b.refill(now)
                headers.update(self._ratelimit_headers(buckets))

    # -- /v1/messages -----------------------------------------------------------------------

    def _messages(self, h: _Handler, raw: bytes, headers: dict[str, str], log: dict[str, Any]) -> int:
        cfg = self.config
        with self._lock:
            self._seq += 1
            seq = self._seq
            draw = self._rng.random()
            jitter = self._rng.uniform(0, cfg.jitter_s) if cfg.jitter_s > 0 else 0.0
        try:
            if len(raw) > cfg.max_request_bytes:
                raise _ApiError(413)
            if seq <= cfg.fail_first_n:
                raise _ApiError(529)
            # One uniform draw partitioned among the fault kinds keeps the sequence reproducible.
            edge = cfg.p_drop
            if draw < edge:
                raise _Drop()
            edge += cfg.p_429
            if draw < edge:
                wait = cfg.retry_after_s
                if wait is None:
                    with self._lock:
                        buckets = self._get_buckets()
                        wait = max((b.wait_for(1.0) for b in buckets.values()), default=1.0) or 1.0
                headers.update(self._retry_after_headers(wait))
                raise _ApiError(429)
            edge += cfg.p_529
            if draw < edge:
                raise _ApiError(529)
            edge += cfg.p_500
            if draw < edge:
                raise _ApiError(500)

            body = self._parse_json(raw)
            analysis = _analyze_request(body, cfg)
            key = analysis.image_keys[0] if analysis.image_keys else None
            log["image_key"] = key
            log["model"] = body.get("model")
            log["stream"] = bool(body.get("stream"))
            cached = self._cache_lookup(analysis, self._now())
            uncached_input = analysis.input_tokens_total - cached.read
            # Cache reads do not count toward ITPM on current models; cache writes do.
            self._admit(uncached_input, headers)
            ctx = {
                "request": body,
                "image_key": key,
                "image_keys": list(analysis.image_keys),
                "headers": {k.lower(): v for k, v in h.headers.items()},
                "seq": seq,
                "custom_id": None,
                "batch_id": None,
            }
            message = self._answer(ctx, analysis, cached, "standard", override_keys=[key])
        except (_ApiError, _Drop):
            if not any(k.startswith("anthropic-ratelimit-") for k in headers):
                self._limit_headers_now(headers)
            raise

        delay = cfg.latency_s + jitter
        first = min(delay, cfg.ttft_s) if cfg.ttft_s is not None else delay
        if first > 0:
            time.sleep(first)
        self._cache_register(analysis, self._now())  # the answer begins: the cache entry is usable from now
        self._charge_output(message["usage"]["output_tokens"], headers)
        self._count_usage(message["usage"])
        with self.stats.lock:
            self.stats.answered_by_key[key or "none"] += 1
        if body.get("stream"):
            self._stream_message(h, message, headers, rest_s=delay - first)
            log["done_t"] = time.time()
            return 200
        message.pop("_midstream_fault", None)
        if delay - first > 0:
            time.sleep(delay - first)
        log["done_t"] = time.time()
        self._send_json(h, 200, message, headers)
        return 200

    def _stream_message(self, h: _Handler, message: dict[str, Any], headers: dict[str, str], rest_s: float) -> None:
        """Send `message` as the API's server-sent events: message_start at once (the answer has begun), the
        content blocks' deltas spread over `rest_s`, then message_delta (stop reason, output usage) and
        message_stop. Chunked transfer encoding, as the API streams."""
        fault = message.pop("_midstream_fault", None)
        events = _stream_events(message)
        self._fire_reply(h, 200)
        try:
            h.send_response(200, _REASONS.get(200))
            h.send_header("Content-Type", "text/event-stream; charset=utf-8")
            h.send_header("Cache-Control", "no-cache")
            h.send_header("Transfer-Encoding", "chunked")
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()

            def emit(kind: str, data: dict[str, Any]) -> None:
                chunk = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()

            emit(*events[0])  # message_start
            if fault == "midstream_drop":
                with self.stats.lock:
                    self.stats.dropped += 1
                h.close_connection = True
                return
            if fault is not None:
                kind = fault.split(":", 1)[1]
                emit("error", {"type": "error", "error": {"type": kind, "message": f"fake mid-stream {kind}"},
                               "request_id": headers.get("request-id")})
            else:
                body = events[1:]
                pause = rest_s / max(1, len(body))
                for event in body:
                    if pause > 0:
                        time.sleep(pause)
                    emit(*event)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client went away mid-stream

    def _now(self) -> float:
        """The cache clock: monotonic time plus whatever a test skipped with advance_clock()."""
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Let `seconds` pass for the prompt cache (TTL expiry) without sleeping."""
        with self._lock:
            self._clock_offset += seconds

    def _cache_lookup(self, analysis: _Analysis, now: float) -> _CacheOutcome:
        """What this request reads from and writes to the cache: the longest live prefix is read, and the
        rest up to the last breakpoint is written, at the TTL of the breakpoint that covers it."""
        if not analysis.breakpoints:
            return _CacheOutcome()
        with self._lock:
            hit = 0
            for bp in analysis.breakpoints:
                expiry = self._cache.get(bp.key)
                if expiry is not None and expiry > now:
                    hit = max(hit, bp.tokens)
        write_5m = write_1h = 0
        done = hit
        for bp in analysis.breakpoints:
            if bp.tokens <= done:
                continue
            if bp.ttl_s > 300:
                write_1h += bp.tokens - done
            else:
                write_5m += bp.tokens - done
            done = bp.tokens
        return _CacheOutcome(read=hit, write_5m=write_5m, write_1h=write_1h)

    def _cache_register(self, analysis: _Analysis, now: float) -> None:
        # Registered when the response is produced, not when the request arrives: requests that started
        # before the first response all pay the write, as on the real API (api-facts E). A hit refreshes
        # the entry's TTL for free.
        with self._lock:
            for bp in analysis.breakpoints:
                self._cache[bp.key] = max(self._cache.get(bp.key, 0.0), now + bp.ttl_s)

    def _count_usage(self, usage: dict[str, Any]) -> None:
        with self.stats.lock:
            self.stats.input_tokens += usage["input_tokens"]
            self.stats.output_tokens += usage["output_tokens"]
            self.stats.cache_creation_input_tokens += usage.get("cache_creation_input_tokens") or 0
            self.stats.cache_read_input_tokens += usage.get("cache_read_input_tokens") or 0
            self.stats.cache_creation_1h_input_tokens += (usage.get("cache_creation") or {}).get(
                "ephemeral_1h_input_tokens"
            ) or 0
            self.stats.usages.append(dict(usage))

    def _answer(
        self,
        ctx: dict[str, Any],
        analysis: _Analysis,
        cached: _CacheOutcome,
        service_tier: str,
        override_keys: list[str | None],
    ) -> dict[str, Any]:
        """The Message body for a validated request, after the hook and per-image overrides."""
        cfg = self.config
        mode = cfg.output_mode
        for k in override_keys:
            if k is not None and k in cfg.mode_overrides:
                mode = cfg.mode_overrides[k]
                break
        extra: dict[str, Any] = {}
        if cfg.respond is not None:
            reply = cfg.respond(ctx)
            if reply is not None:
                if reply.get("drop"):
                    raise _Drop()
                if "status" in reply:
                    raise _ApiError(
                        int(reply["status"]),
                        reply.get("message"),
                        error_type=reply.get("error_type"),
                        headers=reply.get("headers"),
                        body=reply.get("body"),
                    )
                if "output_mode" in reply:
                    mode = reply["output_mode"]
                elif "text" in reply:
                    extra = {"content": [{"type": "text", "text": reply["text"]}], "stop_reason": "end_turn"}
                else:
                    extra = reply
        if mode == "drop":
            raise _Drop()
        if mode.startswith("error:"):
            raise _ApiError(int(mode.split(":", 1)[1]))
        fault = None
        if mode.startswith("midstream_"):
            fault, mode = mode, "json"
            if not ctx["request"].get("stream"):
                if fault == "midstream_drop":
                    raise _Drop()
                kind = fault.split(":", 1)[1]
                raise _ApiError(MIDSTREAM_ERROR_STATUS.get(kind, 500), error_type=kind)
        if mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output_mode {mode!r}")
        message = self._generate(ctx["request"], analysis, mode, cached, service_tier)
        if fault is not None:
            message["_midstream_fault"] = fault  # popped by _stream_message before anything is sent
        if extra:
            message.update(copy.deepcopy(extra))
        return message

    def _generate(
        self, body: dict[str, Any], analysis: _Analysis, mode: str, cached: _CacheOutcome, service_tier: str
    ) -> dict[str, Any]:
        key = analysis.image_keys[0] if analysis.image_keys else "#noimage"
        max_chars = 3 * int(body["max_tokens"]) - 1  # largest output whose token estimate fits max_tokens
        tool = analysis.tool
        schema = analysis.schema
        if schema is None and tool is not None and isinstance(tool.get("input_schema"), dict):
            schema = tool["input_schema"]
        if schema is None and tool is None:
            schema = self.config.prompt_schema
        if schema is not None:
            labelled = (
                list(zip(analysis.image_labels, analysis.image_keys, strict=False))
                if analysis.image_keys and all(analysis.image_labels)
                else None
            )
            instance = _InstanceMaker(schema, key, labelled).make(schema, "value")
        else:
            instance = {
                "description": _fit(f"An image of mean colour {key}"),
                "tags": [f"tag{i} {key}" for i in (1, 2, 3)],
            }
        if mode == "invalid":
            instance = _invalidate(instance, schema, key)
        text = json.dumps(instance)

        content: list[dict[str, Any]] = []
        stop_reason = "tool_use" if tool is not None else "end_turn"
        stop_details: dict[str, Any] | None = None
        used = 0
        if mode in ("thinking", "thinking_only"):
            thinking = f"The image's mean colour is {key}; describing it in the requested format."
            if mode == "thinking_only":
                # Adaptive thinking ate the whole budget: no text block at all (api-facts §B1).
                thinking = (thinking + " ") * max(1, (max_chars // len(thinking)) + 1)
            if len(thinking) >= max_chars:
                thinking = thinking[:max_chars]
                stop_reason = "max_tokens"
            used += len(thinking)
            content.append(
                {
                    "type": "thinking",
                    "thinking": thinking,
                    "signature": base64.b64encode(secrets.token_bytes(48)).decode(),
                }
            )
        if stop_reason != "max_tokens":
            if mode == "refusal":
                text = "I can't help with describing this image."
                stop_reason = "refusal"
                stop_details = {
                    "type": "refusal",
                    "category": "general_harms",
                    "explanation": "The fake server was configured to refuse (output_mode=refusal).",
                }
                content.append({"type": "text", "text": text})
                used += len(text)
            elif tool is not None:
                tool_input: Any = instance
                if mode == "truncated" or used + len(text) > max_chars:
                    tool_input = {}
                    stop_reason = "max_tokens"
                    used = max_chars
                else:
                    used += len(text)
                content.append(
                    {"type": "tool_use", "id": _rid("toolu_"), "name": tool["name"], "input": tool_input}
                )
            else:
                if mode == "prose":
                    text = f"Here is the JSON describing the image: {text} Anything else?"
                elif mode == "fenced":
                    text = "```json\n" + json.dumps(instance, indent=2) + "\n```"
                elif mode == "truncated":
                    text = text[: max(1, len(text) // 2)]
                    stop_reason = "max_tokens"
                remaining = max_chars - used
                if len(text) > remaining:
                    text = text[: max(0, remaining)]
                    stop_reason = "max_tokens"
                if text:
                    content.append({"type": "text", "text": text})
                used += len(text)

        usage: dict[str, Any] = {
            "input_tokens": analysis.input_tokens_total - cached.read - cached.write,
            # The model's tokenizer counts its output too (Haiku 5.5: ~30% more tokens for the same text).
            "output_tokens": min(
                int(body["max_tokens"]),
                math.ceil(_out_tokens(used) * self.config.text_token_factors.get(body["model"], 1.0)),
            ),
            "cache_creation_input_tokens": cached.write,
            "cache_read_input_tokens": cached.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cached.write_5m,
                "ephemeral_1h_input_tokens": cached.write_1h,
            },
            "service_tier": service_tier,
        }
        return {
            "id": _rid("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "stop_details": stop_details,
            "usage": usage,
        }

    # -- batches -------------------------------------------------------------------------------

    def _batch_create(self, h: _Handler, raw: bytes, headers: dict[str, str]) -> int:
        cfg = self.config
        with self._lock:
            call = self._batch_create_calls
            self._batch_create_calls += 1
        fault = cfg.batch_create_faults[call] if call < len(cfg.batch_create_faults) else ""
        if fault.startswith("reject:"):
            raise _ApiError(int(fault.split(":", 1)[1]))
        gateway = cfg.batch_cap_style == "gateway"
        if len(raw) > cfg.batch_max_bytes:
            with self.stats.lock:
                self.stats.batch_creates_refused += 1
            if gateway:
                page = b"<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>" \
                       b"413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>"
                self._send(h, 413, page, headers, "text/html")
                return 413
            raise _ApiError(413)
        body = self._parse_json(raw)
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise _ApiError(400, "requests: List should have at least 1 item")
        if len(requests) > cfg.batch_max_requests:
            with self.stats.lock:
                self.stats.batch_creates_refused += 1
            if gateway:
                raise _ApiError(
                    400,
                    f"Batch contains {len(requests)} requests, but the maximum number of requests per batch "
                    f"is {cfg.batch_max_requests}.",
                )
            raise _ApiError(
                400,
                f"requests: List should have at most {cfg.batch_max_requests} items after validation, "
                f"not {len(requests)}",
            )
        seen: set[str] = set()
        for i, req in enumerate(requests):
            if not isinstance(req, dict):
                raise _ApiError(400, f"requests.{i}: Input should be an object")
            cid = req.get("custom_id")
            if not isinstance(cid, str) or not _CUSTOM_ID_RE.match(cid):
                raise _ApiError(
                    400, f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                )
            if cid in seen:
                raise _ApiError(
                    400,
                    f"requests.{i}.custom_id: Duplicate custom_id {cid!r}; "
                    "custom_id must be unique within a batch",
                )
            seen.add(cid)
            if not isinstance(req.get("params"), dict):
                raise _ApiError(400, f"requests.{i}.params: Field required")
        items: list[_BatchItem] = []
        for req in requests:
            # Params are validated asynchronously on the real API: failures become errored results.
            try:
                if req["params"].get("stream"):
                    raise _ApiError(400, "stream: streaming is not supported in a message batch")
                analysis: _Analysis | None = _analyze_request(req["params"], cfg)
                error = None
            except _ApiError as err:
                analysis, error = None, err
            items.append(_BatchItem(req["custom_id"], req["params"], analysis, error))
        batch = _Batch(
            id=_rid("msgbatch_"), created_at=time.time(), items=items, processing_s=cfg.batch_processing_s
        )
        with self._lock:
            self._batches[batch.id] = batch
        with self.stats.lock:
            self.stats.batches_created += 1
            for item in items:
                self.stats.batch_items_by_custom_id[item.custom_id] += 1
                if item.analysis is not None and item.analysis.image_keys:
                    self.stats.batch_items_by_key[item.analysis.image_keys[0]] += 1
        if fault.startswith("lost:"):
            raise _ApiError(int(fault.split(":", 1)[1]))
        self._send_json(h, 200, self._batch_object(batch), headers)
        return 200

    def _get_batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise _ApiError(404, f"Message batch {batch_id} not found")
        self._maybe_finish(batch)
        return batch

    def _maybe_finish(self, batch: _Batch) -> None:
        """End the batch lazily once its time has come (no background threads to leak)."""
        now = time.time()
        with self._lock:
            if batch.ended_at is not None:
                return
            if batch.cancel_initiated_at is not None:
                end = min(
                    batch.created_at + batch.processing_s,
                    batch.cancel_initiated_at + self.config.batch_cancel_s,
                )
            else:
                end = batch.created_at + batch.processing_s
            if now < end:
                return
            canceled = (
                batch.cancel_initiated_at is not None
                and batch.cancel_initiated_at + self.config.batch_cancel_s
                <= batch.created_at + batch.processing_s
            )
            # Items are answered in order over batch_span_s simulated seconds, so the cache behaves as in a
            # long batch: a 5-minute entry can lapse between items, a 1-hour one does not.
            start = self._now()
            step = (self.config.batch_span_s or 0.0) / max(1, len(batch.items))
            batch.results = [
                self._item_result(batch, item, canceled, start + i * step) for i, item in enumerate(batch.items)
            ]
            batch.ended_at = end

    def _item_result(self, batch: _Batch, item: _BatchItem, canceled: bool, now: float) -> dict[str, Any]:
        cfg = self.config
        if canceled:
            return {"type": "canceled"}
        if item.error is not None or item.analysis is None:
            # Invalid params always error (before any random outcome), like a permanent failure should.
            return self._errored(item.error or _ApiError(400))
        draw = self._rng.random()
        if draw < cfg.p_batch_errored:
            return self._errored(
                _ApiError(
                    500 if cfg.batch_errored_type != "invalid_request_error" else 400,
                    error_type=cfg.batch_errored_type,
                )
            )
        if draw < cfg.p_batch_errored + cfg.p_batch_expired:
            return {"type": "expired"}
        key = item.analysis.image_keys[0] if item.analysis.image_keys else None
        ctx = {
            "request": item.params,
            "image_key": key,
            "image_keys": list(item.analysis.image_keys),
            "headers": {},
            "seq": None,
            "custom_id": item.custom_id,
            "batch_id": batch.id,
        }
        try:
            cached = self._cache_lookup(item.analysis, now)
            message = self._answer(ctx, item.analysis, cached, "batch", override_keys=[item.custom_id, key])
            self._cache_register(item.analysis, now)
        except _ApiError as err:
            return self._errored(err)
        except _Drop:
            return self._errored(_ApiError(500))
        self._count_usage(message["usage"])
        with self.stats.lock:
            self.stats.batch_answered_by_key[key or "none"] += 1
        return {"type": "succeeded", "message": message}

    @staticmethod
    def _errored(err: _ApiError) -> dict[str, Any]:
        body = err.body or _error_body(err.error_type, err.message, None)
        return {"type": "errored", "error": body}

    def _batch_object(self, batch: _Batch) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.results is None:
            counts["processing"] = len(batch.items)
            status = "canceling" if batch.cancel_initiated_at is not None else "in_progress"
        else:
            for r in batch.results:
                counts[r["type"]] += 1
            status = "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + _BATCH_TTL_S),
            "ended_at": _rfc3339(batch.ended_at) if batch.ended_at is not None else None,
            "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at)
            if batch.cancel_initiated_at is not None
            else None,
            "archived_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch.id}/results"
            if batch.results is not None
            else None,
        }

    def _reply_batch(self, h: _Handler, batch_id: str, headers: dict[str, str]) -> int:
        batch = self._get_batch(batch_id)
        self._send_json(h, 200, self._batch_object(batch), headers)
        return 200

    def _batch_list(self, h: _Handler, query: dict[str, str], headers: dict[str, str]) -> int:
        try:
            limit = int(query.get("limit", "20"))
        except ValueError as exc:
            raise _ApiError(400, "limit: Input should be a valid integer") from exc
        if not 1 <= limit <= 1000:
            raise _ApiError(400, "limit: Input should be between 1 and 1000")
        with self._lock:
            ordered = list(reversed(self._batches.values()))  # newest first
        for batch in ordered:
            self._maybe_finish(batch)
        ids = [b.id for b in ordered]
        after, before = query.get("after_id"), query.get("before_id")
        if after is not None:
            if after not in ids:
                raise _ApiError(400, f"after_id: unknown batch {after}")
            rest = ordered[ids.index(after) + 1 :]
            page, has_more = rest[:limit], len(rest) > limit
        elif before is not None:
            if before not in ids:
                raise _ApiError(400, f"before_id: unknown batch {before}")
            rest = ordered[: ids.index(before)]
            page, has_more = rest[-limit:], len(rest) > limit
        else:
            page, has_more = ordered[:limit], len(ordered) > limit
        data = [self._batch_object(b) for b in page]
        body = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        self._send_json(h, 200, body, headers)
        return 200

    def _batch_cancel(self, h: _Handler, batch_id: str, headers: dict[str, str]) -> int:
        batch = self._get_batch(batch_id)
        with self._lock:
            if batch.ended_at is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = time.time()
        self._send_json(h, 200, self._batch_object(batch), headers)
        return 200

    def _batch_delete(self, h: _Handler, batch_id: str, headers: dict[str, str]) -> int:
        batch = self._get_batch(batch_id)
        if batch.ended_at is None:
            raise _ApiError(
                400, f"Message batch {batch_id} cannot be deleted while it is processing; cancel it first."
            )
        with self._lock:
            self._batches.pop(batch_id, None)
        self._send_json(h, 200, {"id": batch_id, "type": "message_batch_deleted"}, headers)
        return 200

    def _batch_results(self, h: _Handler, batch_id: str, headers: dict[str, str]) -> int:
        batch = self._get_batch(batch_id)
        if batch.results is None:
            raise _ApiError(
                400, f"Message batch {batch_id} has not finished processing; results are not available yet."
            )
        lines = [
            {"custom_id": item.custom_id, "result": result}
            for item, result in zip(batch.items, batch.results, strict=True)
        ]
        # Results come back in any order on the real API; shuffle so tests catch order assumptions.
        with self._lock:
            self._rng.shuffle(lines)
        payload = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self._send(h, 200, payload, headers, "application/binary")
        return 200


# ----------------------------------------------------------------------------------------------
# Standalone process
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Anthropic API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--config", default="{}", help="FakeConfig fields as JSON, or @path/to/file.json")
    args = parser.parse_args(argv)
    text = args.config
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as fh:
            text = fh.read()
    config = FakeConfig.from_dict(json.loads(text))
    server = FakeAnthropicServer(config, host=args.host, port=args.port).start()
    # First stdout line is the contract with benchmark/CLI tests: they read it to find the server.
    print(server.base_url, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
