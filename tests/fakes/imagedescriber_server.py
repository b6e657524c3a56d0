"""A local fake of the hosted tag API (imagedescriber.app), speaking its documented wire format.

POST /api/v1/generate_tags with `authorization: Bearer <key>` and a JSON body {"image": "data:image/...;base64,...",
"lang": "en"}; every answer is the envelope {"code", "message", "request_id", "data"} where code 0 carries
data.tags.{tags,title,description} and data.credits.{amount,remaining}. Errors carry their code in the same
envelope (with a matching HTTP status unless `errors_http_200` is set, since the documentation does not say).

Behaviour a test can turn on: latency with jitter; a sliding-window rate limit answered with code 1004;
a credit balance that decreases per answer and answers 2002 when empty (`add_credits` tops it up); any
error code on demand through `script` (codes for the next requests, in order) or `respond` (a hook that
sees the image's key and how often that image was asked).

Every answer describes its own image: the first tag is `fp-<perceptual hash>` and the title names the
image's mean colour and size, so a test can prove no answer landed on another image.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import imagehash
from PIL import Image, ImageStat

PATH = "/api/v1/generate_tags"
LANGS = ("en", "zh", "fr", "de", "es", "ja", "ko")
MAX_IMAGE_BYTES = 4 * 1024 * 1024
_DATA_URL = re.compile(r"^data:(image/(?:jpeg|jpg|png|webp));base64,(.*)$", re.DOTALL)
_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MESSAGES = {0: "success", 1002: "Unauthorized", 1003: "Invalid API key", 1004: "Too many requests",
            1005: "Invalid parameters", 2002: "Insufficient credits", 2003: "Content blocked by filter",
            2004: "Invalid image format", 2005: "Image upload failed", 5050: "Internal server error"}
HTTP_STATUS = {1002: 401, 1003: 401, 1004: 429, 1005: 400, 2002: 402, 2003: 400, 2004: 400, 2005: 500, 5050: 500}
FILLER = ("photo", "image", "picture", "scene", "visual", "composition", "colour", "detail", "subject", "view",
          "frame", "content")

# respond(ctx) -> an error code to answer with, or None for the normal behaviour. ctx has "key" (the sha256 of
# the image bytes received, first 16 hex digits), "fp" (its perceptual hash), "asked" (how often these bytes
# were asked, this one included) and "n" (the request number).
RespondHook = Callable[[dict[str, Any]], "int | None"]


@dataclass
class FakeTagConfig:
    api_key: str = field(default_factory=lambda: "idk-" + secrets.token_hex(12))
    latency_s: float = 0.0
    jitter_s: float = 0.0
    rate_limit: int = 30            # accepted requests per window; more get 1004
    rate_window_s: float = 60.0
    credits: float = 1_000_000.0
    cost: float = 1.0               # credits per answered request
    credits_as_strings: bool = False  # the documentation's example shows them as strings
    errors_http_200: bool = False   # error envelopes with HTTP 200 instead of a matching status
    long_descriptions: bool = False  # descriptions over 125 characters (alt-text mapping)
    long_titles: bool = False       # titles over 100 characters: the API's choice, longer than any preset allows
    tag_count: int = 12
    # Parts of data.tags replaced in every answer (a value of None leaves the key out): answers of a shape the
    # documentation does not promise, e.g. {"tags": "a, b"} or {"description": None}.
    reshape: dict[str, Any] = field(default_factory=dict)
    script: list[int] = field(default_factory=list)
    respond: RespondHook | None = None


@dataclass
class FakeTagStats:
    requests: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    answered_by_key: Counter[str] = field(default_factory=Counter)   # code 0 answers per image (bytes digest)
    asked_by_key: Counter[str] = field(default_factory=Counter)
    accepted_at: list[float] = field(default_factory=list)           # monotonic times of answered requests
    langs: Counter[str] = field(default_factory=Counter)
    peak_concurrency: int = 0
    authorization_headers: set[str] = field(default_factory=set)

    @property
    def rate_limited(self) -> int:
        return self.codes[1004]


def fingerprint(data: bytes) -> tuple[str, str, int, int]:
    """(perceptual hash hex, mean colour #rrggbb, width, height) of encoded image bytes. Exported so tests
    compute expected values with exactly the fake's arithmetic."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    mean = ImageStat.Stat(rgb).mean
    r, g, b = (max(0, min(255, round(c))) for c in mean[:3])
    return str(imagehash.phash(rgb)), f"#{r:02x}{g:02x}{b:02x}", rgb.width, rgb.height


class FakeTagServer:
    def __init__(self, config: FakeTagConfig | None = None) -> None:
        self.config = config or FakeTagConfig()
        self.stats = FakeTagStats()
        self.credits = self.config.credits
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeTagServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-tag-api", daemon=True)
        self._thread.start()
        return self

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every request received so far has been answered (tests/fakes/idle.py)."""
        from tests.fakes.idle import wait_idle

        wait_idle(lambda: self._in_flight, timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTagServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {"IMAGEDESCRIBER_BASE_URL": self.base_url, "IMAGEDESCRIBER_API_KEY": self.config.api_key, **extra}

    def add_credits(self, amount: float) -> None:
        with self._lock:
            self.credits += amount

    # -- one request ---------------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        request_id = "req_" + secrets.token_hex(8)
        with self._lock:
            self.stats.requests += 1
            n = self.stats.requests
            self._in_flight += 1
            self.stats.peak_concurrency = max(self.stats.peak_concurrency, self._in_flight)
        try:
            delay = self.config.latency_s + random.uniform(0, self.config.jitter_s)
            if delay > 0:
                time.sleep(delay)
            code, data = self._decide(n, path, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            self.stats.codes[code] += 1
        envelope: dict[str, Any] = {"code": code, "message": MESSAGES.get(code, "error"), "request_id": request_id,
                                    "data": data}
        status = 200 if code == 0 or self.config.errors_http_200 else HTTP_STATUS.get(code, 400)
        return status, envelope

    def _decide(self, n: int, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any] | None]:
        if path != PATH:
            return 1005, None
        auth = headers.get("authorization", "")
        with self._lock:
            self.stats.authorization_headers.add(auth)
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return 1002, None
        if auth[7:] != self.config.api_key:
            return 1003, None
        if not headers.get("content-type", "").startswith("application/json"):
            return 1005, None
        try:
            payload = json.loads(body)
        except ValueError:
            return 1005, None
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            return 1005, None
        lang = payload.get("lang", "en")
        if lang not in LANGS:
            return 1005, None
        match = _DATA_URL.match(payload["image"])
        if match is None:
            return 2004, None
        try:
            raw = base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            return 2004, None
        if len(raw) > MAX_IMAGE_BYTES:
            return 2004, None
        try:
            with Image.open(io.BytesIO(raw)) as im:
                fmt = im.format or ""
            phash, colour, width, height = fingerprint(raw)
        except Exception:
            return 2004, None
        if fmt not in _FORMATS:
            return 2004, None
        key = hashlib.sha256(raw).hexdigest()[:16]
        now = time.monotonic()
        with self._lock:
            self.stats.asked_by_key[key] += 1
            asked = self.stats.asked_by_key[key]
            self.stats.langs[lang] += 1
            while self._window and now - self._window[0] >= self.config.rate_window_s:
                self._window.popleft()
            if len(self._window) >= self.config.rate_limit:
                return 1004, None
            self._window.append(now)
            scripted = self.config.script.pop(0) if self.config.script else None
        forced = scripted or (self.config.respond({"key": key, "fp": phash, "asked": asked, "n": n})
                              if self.config.respond else None)
        if forced:
            return forced, None
        with self._lock:
            if self.credits < self.config.cost:
                return 2002, None
            self.credits -= self.config.cost
            remaining = self.credits
            self.stats.answered_by_key[key] += 1
            self.stats.accepted_at.append(now)
        return 0, self._answer(phash, colour, width, height, lang, remaining)

    def _answer(self, phash: str, colour: str, width: int, height: int, lang: str, remaining: float) -> dict[str, Any]:
        shape = "landscape" if width > height else "portrait" if height > width else "square"
        tags = [f"fp-{phash}", f"colour-{colour[1:]}", shape, f"lang-{lang}", *FILLER][: self.config.tag_count]
        description = f"A {shape} picture with mean colour {colour}, {width}x{height} pixels, fingerprint {phash}."
        if self.config.long_descriptions:
            description += " It goes on to describe the light, the composition and every object in the frame " \
                           "at length, as a detailed description does."
        title = f"Picture {colour} {width}x{height}"
        if self.config.long_titles:
            title += " taken on a bright day, showing the whole scene with every object, the light and the setting"
        amount: Any = self.config.cost
        rest: Any = remaining
        if self.config.credits_as_strings:
            amount, rest = f"{amount:g}", f"{rest:g}"
        answer: dict[str, Any] = {"tags": tags, "title": title, "description": description}
        for name, value in self.config.reshape.items():
            if value is None:
                answer.pop(name, None)
            else:
                answer[name] = value
        return {"tags": answer, "credits": {"amount": amount, "remaining": rest}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTagServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, envelope = self.fake.handle(self.path, headers, body)
        data = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@contextlib.contextmanager
def running(config: FakeTagConfig | None = None) -> Iterator[FakeTagServer]:
    server = FakeTagServer(config).start()
    try:
        yield server
    finally:
        server.stop()
