"""A local fake of OpenAI-compatible Chat Completions servers, on real HTTP (loopback).

Variants behave like the servers imgtag meets (api-facts section G2):
- "vllm":     json_schema and json_object accepted; optional xgrammar rejection of a schema.
- "lmstudio": json_schema accepted; json_object -> 400 "'response_format.type' must be 'json_schema' or 'text'";
              a WebP data URL -> 400 "'url' field must be a base64 encoded image".
- "llamacpp": json_schema -> 400 'response_format type must be one of "text" or "json_object"'; WebP rejected.
- "ollama":   response_format ignored (answers may come fenced or wrapped in prose); 503 "server busy" past its queue.
- "openai":   a key is required; strict schema checks (every property required, additionalProperties false);
              x-ratelimit-* headers and 429 with retry-after past the request budget.
- "litellm":  LiteLLM's proxy in front of some API: serves /chat/completions with or without /v1; an unknown model
              alias -> 400 "/chat/completions: Invalid model name passed in model=..."; a wrong key on a proxy
              without a database -> 400 "No connected db." (both bodies as the real proxy sends them).
llama-server also takes {"type": "json_object", "schema": {...}} and enforces the schema with a grammar: its answers
then follow the schema whatever the model would have written. Every variant but litellm serves only /v1/...: a base
URL without /v1 meets 404 "no route POST /chat/completions" (vLLM's FastAPI: {"detail": "Not Found"}).
Any variant can be a reasoning model that thinks first (`reasoning="tags"` puts <think>...</think> in content,
`reasoning="field"` sends reasoning_content); thinking costs `think_tokens`, and a max_tokens below that leaves
no answer at all (finish_reason "length").

Every answer describes its own image: the image's mean colour (#rrggbb, see anthropic_server.image_key) is
woven into every string, so a test can prove that no result was attached to the wrong image. A fixed number
of `slots` serve requests (each takes `latency_s`); requests beyond wait in a queue, like a GPU server.

Standalone, as the Anthropic fake: `python tests/fakes/openai_server.py --config '{"variant": "openai",
"api_key": "sk-test", "models": ["gpt-4o-mini"]}'` prints the base URL (ending in /v1) on its first line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import random
import re
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

if not __package__:  # run as a file (python tests/fakes/openai_server.py): its imports are the package's (PEP 366)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.fakes"

from .anthropic_server import _analyze_image, _InstanceMaker
from .openai_batch_api import BatchAPIConfig, FakeBatchAPI

VARIANTS = ("vllm", "lmstudio", "llamacpp", "ollama", "openai", "litellm")


@dataclass
class OpenAIFakeConfig:
    variant: str = "vllm"
    api_key: str | None = None              # required bearer key (None: anything or nothing is accepted)
    models: tuple[str, ...] = ("glm-4v-9b",)
    vision: bool = True                     # False: every image request is refused (no vision model loaded)
    latency_s: float = 0.0
    jitter_s: float = 0.0
    slots: int | None = None                # concurrent requests served; the rest queue (None: unlimited)
    max_queue: int | None = None            # ollama: past this many waiting, 503 "server busy"
    reasoning: str | None = None            # None | "tags" | "field"
    think_tokens: int = 0                   # tokens of thought before the answer
    reject_schema: bool = False             # vllm: the xgrammar rejection of a schema
    output_mode: str = "json"               # json | fenced | prose | invalid
    rpm: int | None = None                  # openai: requests per minute (x-ratelimit-* headers, 429s)
    retry_after_s: float = 1.0
    cached_tokens: int = 0                  # reported as prompt_tokens_details.cached_tokens
    seed: int = 0
    p_503: float = 0.0
    p_502: float = 0.0
    p_drop: float = 0.0
    fail_first_n: int = 0                   # the first n requests answer 503
    mode_overrides: dict[str, str] = field(default_factory=dict)  # image key -> output mode
    # The Batch API (/v1/files, /v1/batches: tests/fakes/openai_batch_api.py), BatchAPIConfig fields. Served
    # by the "openai" variant only unless {"enabled": True}; the others answer 404, as vLLM, Ollama... do.
    batches: dict[str, Any] = field(default_factory=dict)

    def update(self, data: dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown OpenAIFakeConfig fields: {sorted(unknown)}")
        for key, value in data.items():
            setattr(self, key, tuple(value) if key == "models" else value)


class OpenAIFakeStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.status_counts: Counter[int] = Counter()
        self.answered_by_key: Counter[str] = Counter()
        self.response_formats: Counter[str] = Counter()
        self.request_log: list[dict[str, Any]] = []
        self.open_requests = 0      # received and not yet answered (queued, served or being refused)
        self.in_flight = 0          # being served (in a slot)
        self.waiting = 0            # queued for a slot
        self.peak_in_flight = 0
        self.busy_time = 0.0        # slot-seconds spent serving
        self.first_t: float | None = None
        self.last_t: float | None = None

    @property
    def answered(self) -> int:
        return sum(self.answered_by_key.values())


class _Reply(Exception):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 code: str | None = None, plain: bool = False, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.code, self.plain = status, message, headers or {}, code, plain
        self.body = body  # the whole error body, where a server's own shape matters


class _Drop(Exception):
    pass


class FakeOpenAIServer:
    def __init__(self, config: OpenAIFakeConfig | None = None, **fields: Any) -> None:
        self.config = dataclasses.replace(config or OpenAIFakeConfig(), **fields)
        assert self.config.variant in VARIANTS, self.config.variant
        self.stats = OpenAIFakeStats()
        self._rng = random.Random(self.config.seed)
        self._slots = threading.Semaphore(self.config.slots) if self.config.slots else None
        self._bucket_lock = threading.Lock()
        self._bucket_level = float(self.config.rpm or 0) / 60.0
        self._bucket_t = time.monotonic()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.address = ("127.0.0.1", 0)  # where start() listens (port 0: a free one); the standalone main sets it
        self.batch_api = FakeBatchAPI(self, BatchAPIConfig(**{"enabled": self.config.variant == "openai",
                                                               **self.config.batches}))

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(_Handler):
            fake = server

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # socketserver's default backlog of 5 refuses bursts of connections

        self._httpd = Server(self.address, Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every request received so far has been answered (tests/fakes/idle.py)."""
        from tests.fakes.idle import wait_idle

        wait_idle(lambda: self.stats.open_requests, timeout)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def env(self) -> dict[str, str]:
        env = {"OPENAI_BASE_URL": self.base_url}
        if self.config.api_key:
            env["OPENAI_API_KEY"] = self.config.api_key
        return env

    # -- one request --------------------------------------------------------------------------------

    def handle(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        cfg = self.config
        with self.stats.lock:
            self.stats.requests += 1
            seq = self.stats.requests
            now = time.time()
            self.stats.first_t = self.stats.first_t or now
        if cfg.api_key is not None and headers.get("authorization") != f"Bearer {cfg.api_key}":
            if cfg.variant == "litellm":  # a key that is not the master key, and no database to look it up in
                raise _Reply(400, "No connected db.", body={"error": {
                    "message": "No connected db.", "type": "no_db_connection", "param": None, "code": "400"}})
            raise _Reply(401, "Incorrect API key provided.", code="invalid_api_key")
        limit_headers = self._rate_limit(cfg)
        model = body.get("model")
        if model not in cfg.models:
            if cfg.variant == "litellm":
                said = (f"/chat/completions: Invalid model name passed in model={model}. Call `/v1/models` to view "
                        "available models for your key.")
                raise _Reply(400, said, body={"error": {"message": said, "type": "invalid_request_error",
                                                        "param": None, "code": "400",
                                                        "provider_specific_fields": {"error": said}}})
            if cfg.variant == "ollama":
                raise _Reply(404, f"model '{model}' not found", plain=True)
            raise _Reply(404, f"The model `{model}` does not exist.", code="model_not_found")
        rf = body.get("response_format")
        with self.stats.lock:  # what was sent, counted before any rejection
            self.stats.response_formats[rf.get("type", "text") if isinstance(rf, dict) else "text"] += 1
        fmt = self._check_format(cfg, body)
        key, sent_format, sent_size = self._image(cfg, body)
        with self.stats.lock:
            self.stats.request_log.append({"response_format": fmt, "temperature": body.get("temperature"),
                                           "max_tokens": body.get("max_tokens"),
                                           "max_completion_tokens": body.get("max_completion_tokens"),
                                           "image_format": sent_format, "image_size": sent_size, "key": key,
                                           "authorization": "authorization" in headers})
        override = cfg.mode_overrides.get(key, "")
        if override.startswith("error:"):
            raise _Reply(int(override.split(":")[1]), "Invalid image: the image could not be processed.")
        if seq <= cfg.fail_first_n:
            raise _Reply(503, "Service Unavailable")
        roll = self._rng.random()
        if roll < cfg.p_drop:
            raise _Drop()
        if roll < cfg.p_drop + cfg.p_503:
            raise _Reply(503, "server busy, please try again.  maximum pending requests exceeded")
        if roll < cfg.p_drop + cfg.p_503 + cfg.p_502:
            raise _Reply(502, "Bad Gateway")
        self._serve(cfg)
        return self._answer(cfg, body, key, fmt), limit_headers

    def answer_item(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request of a batch: (HTTP status, body) as /v1/chat/completions would answer it, without pacing,
        latency or random faults (a batch's own faults are configured on the batch API)."""
        cfg = self.config
        try:
            if body.get("model") not in cfg.models:
                raise _Reply(404, f"The model `{body.get('model')}` does not exist.", code="model_not_found")
            fmt = self._check_format(cfg, body)
            images = self._images(cfg, body)
            key = images[0][1]
            override = cfg.mode_overrides.get(key, "")
            if override.startswith("error:"):
                raise _Reply(int(override.split(":")[1]), "Invalid image: the image could not be processed.")
            labelled = [(label, k) for label, k, _f, _s in images] if len(images) > 1 else None
            return 200, self._answer(cfg, body, key, fmt, labelled)
        except _Reply as reply:
            return reply.status, error_payload(reply)

    def _rate_limit(self, cfg: OpenAIFakeConfig) -> dict[str, str]:
        if cfg.variant != "openai" or not cfg.rpm:
            return {}
        with self._bucket_lock:
            now = time.monotonic()
            rate = cfg.rpm / 60.0
            self._bucket_level = min(max(1.0, rate), self._bucket_level + (now - self._bucket_t) * rate)
            self._bucket_t = now
            headers = {"x-ratelimit-limit-requests": str(cfg.rpm), "x-ratelimit-limit-tokens": "2000000",
                       "x-ratelimit-remaining-tokens": "1999000", "x-ratelimit-reset-tokens": "30ms"}
            if self._bucket_level < 1.0:
                wait = (1.0 - self._bucket_level) / rate
                headers.update({"x-ratelimit-remaining-requests": "0",
                                "x-ratelimit-reset-requests": f"{int(wait * 1000) + 1}ms",
                                "retry-after": str(max(1, round(cfg.retry_after_s)))})
                raise _Reply(429, "Rate limit reached for requests", headers=headers, code="rate_limit_exceeded")
            self._bucket_level -= 1.0
            headers.update({"x-ratelimit-remaining-requests": str(int(self._bucket_level)),
                            "x-ratelimit-reset-requests": f"{int((1 - self._bucket_level % 1) / rate * 1000)}ms"})
            return headers

    def _check_format(self, cfg: OpenAIFakeConfig, body: dict[str, Any]) -> str:
        rf = body.get("response_format")
        kind = rf.get("type", "text") if isinstance(rf, dict) else "text"
        if cfg.variant == "ollama":
            return kind  # accepted and (here) ignored
        if kind == "json_object" and cfg.variant == "lmstudio":
            raise _Reply(400, "'response_format.type' must be 'json_schema' or 'text'")
        if kind == "json_object" and cfg.variant == "llamacpp" and isinstance(rf.get("schema"), dict):
            return "json_object+schema"  # enforced by a grammar made from the schema
        if kind == "json_schema":
            if cfg.variant == "llamacpp":
                raise _Reply(400, 'response_format type must be one of "text" or "json_object"')
            spec = rf.get("json_schema") if isinstance(rf, dict) else None
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise _Reply(400, "response_format.json_schema.schema is required")
            if cfg.variant in ("vllm", "openai") and not spec.get("name"):
                raise _Reply(400, "response_format.json_schema.name: Field required")
            if cfg.reject_schema:
                raise _Reply(400, "The provided JSON schema contains features not supported by xgrammar.")
            if cfg.variant == "openai":
                problem = _strict_problem(spec["schema"], "")
                if not spec.get("strict"):
                    problem = problem or "strict must be true"
                if problem:
                    raise _Reply(400, f"Invalid schema for response_format '{spec.get('name')}': {problem}",
                                 code="invalid_json_schema")
        return kind

    def _image(self, cfg: OpenAIFakeConfig, body: dict[str, Any]) -> tuple[str, str, tuple[int, int]]:
        """The first image's key, format and size (every image of the request is checked)."""
        _label, key, fmt, size = self._images(cfg, body)[0]
        return key, fmt, size

    def _images(self, cfg: OpenAIFakeConfig, body: dict[str, Any]) -> list[tuple[str, str, str, tuple[int, int]]]:
        """(label, key, format, size) per image: a model reads a short text part right before an image as its label
        ("Image 2:"), so a request carrying several labelled images (--images-per-request) gets one answer each."""
        found: list[tuple[str, dict[str, Any]]] = []
        for m in body.get("messages", []):
            previous = ""
            for p in m.get("content") if isinstance(m.get("content"), list) else []:
                if not isinstance(p, dict):
                    continue
                if p.get("type") == "image_url":
                    found.append((previous.strip().rstrip(":").strip() if len(previous) <= 40 else "", p))
                previous = str(p.get("text") or "") if p.get("type") == "text" else ""
        if not found:
            raise _Reply(400, "no image in the request")
        if not cfg.vision:
            if cfg.variant == "lmstudio":
                raise _Reply(400, "Model does not support images. Please use a model that does.")
            if cfg.variant == "llamacpp":
                raise _Reply(500, "image input is not supported - hint: if this is unexpected, you may need "
                                  "to provide the mmproj")
            raise _Reply(400, "The model does not support image input.")
        out = []
        for label, part in found:
            url = str(part.get("image_url", {}).get("url", ""))
            match = re.match(r"data:(image/[a-z]+);base64,(.*)$", url, re.DOTALL)
            if not match:
                raise _Reply(400, "image_url must be a base64 data URL")
            media = match.group(1)
            if media == "image/webp" and cfg.variant in ("lmstudio", "llamacpp"):
                if cfg.variant == "lmstudio":
                    raise _Reply(400, "'url' field must be a base64 encoded image")
                raise _Reply(400, "failed to load image or audio file")
            try:
                key, width, height, fmt = _analyze_image(base64.b64decode(match.group(2), validate=True))
            except (binascii.Error, OSError, ValueError):
                raise _Reply(400, "could not decode the image") from None
            out.append((label, key, fmt, (width, height)))
        return out

    def _serve(self, cfg: OpenAIFakeConfig) -> None:
        with self.stats.lock:
            if cfg.max_queue is not None and self.stats.waiting >= cfg.max_queue:
                raise _Reply(503, "server busy, please try again.  maximum pending requests exceeded")
            self.stats.waiting += 1
        if self._slots is not None:
            self._slots.acquire()
        with self.stats.lock:
            self.stats.waiting -= 1
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        began = time.monotonic()
        try:
            delay = cfg.latency_s + (self._rng.uniform(0, cfg.jitter_s) if cfg.jitter_s else 0.0)
            if delay > 0:
                time.sleep(delay)
        finally:
            with self.stats.lock:
                self.stats.in_flight -= 1
                self.stats.busy_time += time.monotonic() - began
            if self._slots is not None:
                self._slots.release()

    def _answer(self, cfg: OpenAIFakeConfig, body: dict[str, Any], key: str, fmt: str,
                labelled: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        schema = _find_schema(body, fmt)
        instance = (_InstanceMaker(schema, key, labelled).make(schema, "value") if schema
                    else {"description": f"img {key}"})
        mode = cfg.mode_overrides.get(key, cfg.output_mode)
        if fmt == "json_object+schema":
            mode = "json"  # the grammar allows nothing else, however the model would have answered
        if cfg.variant == "ollama" and fmt != "text" and mode == "json":
            mode = "fenced"  # ignores the schema and the format: answers the way the model likes
        if mode == "invalid":
            instance = {"unexpected": key}
        text = json.dumps(instance, ensure_ascii=False)
        if mode == "fenced":
            text = "```json\n" + json.dumps(instance, indent=2, ensure_ascii=False) + "\n```"
        elif mode == "prose":
            text = f"Sure! Here is the catalogue data for the photo: {text} Let me know if you need more."
        budget = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        answer_tokens = max(1, len(text) // 4)
        used = answer_tokens
        if cfg.reasoning:
            thought = f"The image is mostly {key}. I should fill in every field. " * max(1, cfg.think_tokens // 14)
            if budget <= cfg.think_tokens:
                # Spent the whole budget thinking: no answer at all.
                message["content"] = "" if cfg.reasoning == "field" else "<think>" + thought
                finish, used = "length", budget
            elif cfg.reasoning == "tags":
                message["content"] = f"<think>{thought}</think>\n\n{text}"
                used += cfg.think_tokens
            else:
                used += cfg.think_tokens
            if cfg.reasoning == "field":
                message["reasoning_content"] = thought
        prompt_tokens = 85 + sum(len(str(m.get("content"))) // 40 for m in body.get("messages", []))
        with self.stats.lock:
            if finish == "stop":
                for answered in [k for _label, k in labelled] if labelled else [key]:
                    self.stats.answered_by_key[answered] += 1
            self.stats.last_t = time.time()
        return {
            "id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used, "total_tokens": prompt_tokens + used,
                      "prompt_tokens_details": {"cached_tokens": min(cfg.cached_tokens, prompt_tokens)}},
        }


def error_payload(reply: _Reply) -> dict[str, Any]:
    if reply.body is not None:
        return reply.body
    if reply.plain:
        return {"error": reply.message}
    return {"error": {"message": reply.message, "type": "invalid_request_error" if reply.status < 500
                      else "server_error", "param": None, "code": reply.code}}


def _find_schema(body: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    """From response_format, else from the instructions (as a model reads it from the prompt)."""
    rf = body.get("response_format")
    if fmt == "json_schema" and isinstance(rf, dict):
        return rf["json_schema"]["schema"]
    if fmt == "json_object+schema" and isinstance(rf, dict):
        return rf["schema"]
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, str):
            for line in content.splitlines():
                if line.startswith("{") and '"properties"' in line:
                    try:
                        return dict(json.loads(line))
                    except ValueError:
                        continue
    return None


def _strict_problem(node: Any, path: str) -> str | None:
    """OpenAI strict mode: every object closed and listing all its properties as required."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            if node.get("additionalProperties") is not False:
                return f"In context={path or '()'}, 'additionalProperties' is required to be supplied and to be false."
            missing = [p for p in props if p not in (node.get("required") or [])]
            if missing:
                return (f"In context={path or '()'}, 'required' is required to be supplied and to be an array "
                        f"including every key in properties. Missing '{missing[0]}'.")
        for key, value in node.items():
            found = _strict_problem(value, f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _strict_problem(value, f"{path}.{i}")
            if found:
                return found
    return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self._batch_route("GET"):
            return
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.fake.config.models]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_DELETE(self) -> None:
        if not self._batch_route("DELETE"):
            self._send(404, {"error": {"message": "not found"}})

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _batch_route(self, method: str) -> bool:
        """Files and batches (the Batch API); False for any other path."""
        url = urlsplit(self.path)
        if not url.path.startswith(("/v1/files", "/v1/batches")):
            return False
        raw = self._body() if method == "POST" else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, data, content_type = self.fake.batch_api.route(method, url.path, dict(parse_qsl(url.query)),
                                                               headers, raw)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req_" + secrets.token_hex(8))
        self.end_headers()
        self.wfile.write(data)
        return True

    def do_POST(self) -> None:
        if self._batch_route("POST"):
            return
        raw = self._body()
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions") or (
                path == "/chat/completions" and self.fake.config.variant != "litellm"):
            if self.fake.config.variant == "vllm":
                self._send(404, {"detail": "Not Found"})
            else:
                self._send(404, {"error": {"message": f"no route POST {self.path}"}})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        stats = self.fake.stats
        with stats.lock:
            stats.open_requests += 1
        try:
            self._chat(raw, headers, stats)
        finally:
            with stats.lock:
                stats.open_requests -= 1

    def _chat(self, raw: bytes, headers: dict[str, str], stats: OpenAIFakeStats) -> None:
        try:
            body = json.loads(raw)
            answer, extra = self.fake.handle(headers, body)
            self._send(200, answer, extra)
        except _Drop:
            with stats.lock:
                stats.status_counts[0] += 1
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except _Reply as reply:
            self._send(reply.status, error_payload(reply), reply.headers)
        except ValueError:
            self._send(400, {"error": {"message": "invalid JSON body"}})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        with self.fake.stats.lock:
            self.fake.stats.status_counts[status] += 1
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req_" + secrets.token_hex(8))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    """Standalone, as the Anthropic fake: the first stdout line is the base URL (ending in /v1)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible server (Chat Completions, and the "
                                                 "Batch API for the openai variant).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--config", default="{}",
                        help='OpenAIFakeConfig fields as JSON, e.g. \'{"variant": "openai", "api_key": "sk-test", '
                             '"models": ["gpt-4o-mini"], "batches": {"processing_s": 20}}\' (variants: '
                             + ", ".join(VARIANTS) + ")")
    args = parser.parse_args(argv)
    cfg = OpenAIFakeConfig()
    cfg.update(json.loads(args.config))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    fake = FakeOpenAIServer(cfg)
    fake.address = (args.host, args.port)
    with fake:
        print(fake.base_url, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
