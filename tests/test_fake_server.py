"""Tests of the fake Anthropic server itself, driven through the real ``anthropic`` SDK.

If the SDK can parse every reply, raise the right error class and run its retry loop against the
fake, then product tests built on the fake exercise the same code paths as production.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anthropic
import pytest
from anthropic.types import RefusalStopDetails
from PIL import Image
from pydantic import BaseModel, Field

try:
    from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig, image_key, text_tokens
except ModuleNotFoundError:  # tests/ is not a package and the repo root is not on sys.path
    from fakes.anthropic_server import FakeAnthropicServer, FakeConfig, image_key, text_tokens

ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-haiku-5-5"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "dominant_color": {"type": "string"},
        "kind": {"type": "string", "enum": ["photo", "drawing", "screenshot"]},
        "people": {"type": "integer", "minimum": 0},
        "nsfw": {"type": "boolean"},
    },
    "required": ["description", "tags", "dominant_color", "kind", "people", "nsfw"],
    "additionalProperties": False,
}


def encode(color: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def hexkey(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def image_messages(data: str, media_type: str = "image/png", text: str = "Describe this image.") -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}},
                {"type": "text", "text": text},
            ],
        }
    ]


def params(color: tuple[int, int, int] = (160, 176, 192), **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 512,
        "messages": image_messages(encode(color)),
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    }
    p.update(extra)
    return p


def get_json(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def make_fake() -> Iterator[Callable[..., FakeAnthropicServer]]:
    servers: list[FakeAnthropicServer] = []

    def make(**fields: Any) -> FakeAnthropicServer:
        server = FakeAnthropicServer(dataclasses.replace(FakeConfig(), **fields)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended" or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# /v1/messages: answers
# ---------------------------------------------------------------------------------------------


def test_json_answer_describes_its_own_image(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    color = (10, 200, 30)
    msg = fake.client().messages.create(**params(color))
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert msg.stop_reason == "end_turn"
    assert [b.type for b in msg.content] == ["text"]
    data = json.loads(msg.content[0].text)
    key = hexkey(color)
    assert data["dominant_color"] == key
    assert key in data["description"] and len(data["description"]) <= 40
    assert len(data["tags"]) == 3 and all(key in t for t in data["tags"])
    assert data["kind"] == "photo" and data["people"] == 1 and data["nsfw"] is True
    assert list(data)[:2] == ["description", "tags"]  # required first, in schema order
    # 64x48 px -> 3x2 patches; the schema (billed: the API turns it into a prompt) and "Describe this image."
    # ("Describe" 2 tokens, "this", "image" and "." one each: 5) by the fake's word-and-character count, times
    # Haiku 5.5's tokenizer factor 1.3.
    schema_tokens = text_tokens(json.dumps(SCHEMA, sort_keys=True), 1.3)
    assert msg.usage.input_tokens == 6 + schema_tokens + math.ceil(5 * 1.3)
    assert msg.usage.output_tokens == math.ceil((len(msg.content[0].text) // 3 + 1) * 1.3)  # Haiku 5.5 tokenizer
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    assert msg._request_id and msg._request_id.startswith("req_")
    assert fake.stats.answered_by_key == {key: 1}
    assert fake.stats.status_counts[200] == 1


def test_image_key_helper_matches_server_for_jpeg(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    data = encode((200, 100, 50), size=(400, 300), fmt="JPEG")
    msg = fake.client().messages.create(**params(messages=image_messages(data, "image/jpeg")))
    key = image_key(base64.b64decode(data))
    assert json.loads(msg.content[0].text)["dominant_color"] == key
    r, g, b = (int(key[i : i + 2], 16) for i in (1, 3, 5))
    assert abs(r - 200) <= 2 and abs(g - 100) <= 2 and abs(b - 50) <= 2


@pytest.mark.parametrize(
    ("mode", "blocks", "stop_reason"),
    [
        ("json", ["text"], "end_turn"),
        ("prose", ["text"], "end_turn"),
        ("fenced", ["text"], "end_turn"),
        ("truncated", ["text"], "max_tokens"),
        ("refusal", ["text"], "refusal"),
        ("thinking", ["thinking", "text"], "end_turn"),
        ("thinking_only", ["thinking"], "max_tokens"),
        ("invalid", ["text"], "end_turn"),
    ],
)
def test_output_modes_parse(
    make_fake: Callable[..., FakeAnthropicServer], mode: str, blocks: list[str], stop_reason: str
) -> None:
    fake = make_fake(output_mode=mode)
    msg = fake.client().messages.create(**params())
    assert [b.type for b in msg.content] == blocks
    assert msg.stop_reason == stop_reason
    key = "#a0b0c0"
    text = msg.content[-1].text if msg.content[-1].type == "text" else ""
    if mode == "json":
        json.loads(text)
    elif mode == "prose":
        assert not text.startswith("{") and json.loads(text[text.index("{") : text.rindex("}") + 1])
    elif mode == "fenced":
        assert text.startswith("```json\n") and text.endswith("\n```")
        json.loads(text[len("```json\n") : -len("\n```")])
    elif mode == "truncated":
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    elif mode == "refusal":
        assert isinstance(msg.stop_details, RefusalStopDetails)
        assert msg.stop_details.type == "refusal" and msg.stop_details.category == "general_harms"
    elif mode == "thinking":
        assert key in msg.content[0].thinking and msg.content[0].signature
        assert json.loads(text)["dominant_color"] == key
    elif mode == "thinking_only":
        assert msg.usage.output_tokens <= 512
    elif mode == "invalid":
        data = json.loads(text)
        assert "description" not in data and data["unexpected_field"] == key


def test_max_tokens_cuts_the_answer(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    msg = make_fake().client().messages.create(**params(max_tokens=10))
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens <= 10
    assert len(msg.content[0].text) == 29


def test_forced_tool_answers_with_tool_use(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    client = make_fake().client()
    tool = {"name": "record_tags", "description": "Record tags", "input_schema": SCHEMA}
    p = params(tools=[tool], tool_choice={"type": "tool", "name": "record_tags"})
    del p["output_config"]
    msg = client.messages.create(**p)
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "record_tags" and block.id.startswith("toolu_")
    assert block.input["dominant_color"] == "#a0b0c0"
    with pytest.raises(anthropic.BadRequestError, match='type "tool" and "any" are not supported'):
        client.messages.create(**{**p, "model": "claude-sonnet-5-5"})


def test_default_object_without_schema(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    p = params()
    del p["output_config"]
    msg = make_fake().client().messages.create(**p)
    data = json.loads(msg.content[0].text)
    assert "#a0b0c0" in data["description"] and len(data["tags"]) == 3


def test_sdk_parse_helper_schema_is_accepted(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    # The SDK's own schema transform ($defs/$ref, anyOf-with-null, enums) must pass validation and
    # come back as an instance pydantic accepts.
    class Obj(BaseModel):
        label: str
        confidence: float = Field(ge=0, le=1)

    class Tags(BaseModel):
        caption: str = Field(max_length=80)
        kind: Literal["photo", "drawing"]
        objects: list[Obj] = Field(min_length=1)
        year: int | None = None
        color_hex: str

    p = params()
    del p["output_config"]
    msg = make_fake().client().messages.parse(**p, output_format=Tags)
    out = msg.parsed_output
    assert out is not None and out.color_hex == "#a0b0c0" and out.kind == "photo"
    assert len(out.objects) == 3 and all("#a0b0c0" in o.label for o in out.objects)


def test_mode_overrides_and_hook(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    seen: list[dict[str, Any]] = []

    def hook(ctx: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(ctx)
        return {"text": "custom"} if ctx["image_key"] == "#0000ff" else None

    fake = make_fake(mode_overrides={"#ff0000": "prose", "#00ff00": "error:500"}, respond=hook)
    client = fake.client()
    assert client.messages.create(**params((255, 0, 0))).content[0].text.startswith("Here is")
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**params((0, 255, 0)))
    assert client.messages.create(**params((0, 0, 255))).content[0].text == "custom"
    assert [c["image_key"] for c in seen] == ["#ff0000", "#00ff00", "#0000ff"]
    assert seen[0]["headers"]["authorization"] == "Bearer sk-ant-test-key"


def test_async_concurrent_answers_never_mix(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    colors = [(i * 20, 255 - i * 20, 7) for i in range(10)]
    # No answer goes out until all ten requests are being served at once: a server that took them one after
    # another would break the barrier (after its timeout), however fast or slow the machine.
    barrier = threading.Barrier(len(colors), timeout=30)

    def together(ctx: dict[str, Any]) -> None:
        barrier.wait()
        return None

    fake = make_fake(respond=together)

    async def run() -> list[Any]:
        async with fake.async_client(max_retries=0) as client:
            return await asyncio.gather(*(client.messages.create(**params(c)) for c in colors))

    messages = asyncio.run(run())
    for color, msg in zip(colors, messages, strict=True):
        assert json.loads(msg.content[0].text)["dominant_color"] == hexkey(color)
    assert fake.stats.peak_concurrency == 10
    assert fake.stats.answered_by_key == {hexkey(c): 1 for c in colors}
    assert fake.stats.in_flight == 0


# ---------------------------------------------------------------------------------------------
# /v1/messages: validation
# ---------------------------------------------------------------------------------------------


def _schema(**prop: Any) -> dict[str, Any]:
    return {"format": {"type": "json_schema", "schema": {**SCHEMA, **prop}}}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extra_body": {"temperature": 0.2}}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"output_config": _schema(properties={"a": {"type": "string", "minLength": 3}})}, "minLength"),
        ({"output_config": _schema(properties={"a": {"type": "array", "minItems": 2}})}, "minItems"),
        ({"output_config": _schema(additionalProperties=True)}, "additionalProperties"),
        ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}, "additional"),
        ({"messages": image_messages(base64.b64encode(b"not an image").decode())}, "Could not process image"),
        (
            {"messages": image_messages(encode((1, 2, 3)), "image/jpeg")},
            "does not match the provided media type",
        ),
        ({"messages": image_messages(encode((1, 2, 3), size=(300, 300)))}, "image exceeds"),
        ({"messages": image_messages(encode((1, 2, 3)), "image/bmp")}, "media_type"),
    ],
)
def test_rejects_what_the_real_api_rejects(
    make_fake: Callable[..., FakeAnthropicServer], change: dict[str, Any], match: str
) -> None:
    fake = make_fake(max_image_base64_bytes=1000)
    with pytest.raises(anthropic.BadRequestError, match=match) as info:
        fake.client().messages.create(**{**params(), **change})
    assert info.value.type == "invalid_request_error"
    assert info.value.body["request_id"] == info.value.request_id  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# /v1/messages: errors, faults, retries
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error_class", "error_type"),
    [
        ({"p_429": 1.0}, anthropic.RateLimitError, "rate_limit_error"),
        ({"p_529": 1.0}, anthropic.OverloadedError, "overloaded_error"),
        ({"p_500": 1.0}, anthropic.InternalServerError, "api_error"),
        ({"fail_first_n": 1}, anthropic.OverloadedError, "overloaded_error"),
        ({"api_key": "something-else"}, anthropic.AuthenticationError, "authentication_error"),
        ({"status_override": 403}, anthropic.PermissionDeniedError, "permission_error"),
        ({"status_override": 413}, anthropic.ContentTooLargeError, "request_too_large"),
        ({"status_override": 400}, anthropic.BadRequestError, "invalid_request_error"),
    ],
)
def test_error_classes(
    make_fake: Callable[..., FakeAnthropicServer], fields: dict[str, Any], error_class: type, error_type: str
) -> None:
    fake = make_fake(**fields)
    client = anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-test-key", max_retries=0)
    with pytest.raises(error_class) as info:
        client.messages.create(**params())
    err = info.value
    assert err.type == error_type
    assert err.request_id and err.request_id.startswith("req_")
    assert err.body == {
        "type": "error",
        "error": {"type": error_type, "message": err.api_message},
        "request_id": err.request_id,
    }
    if error_class is anthropic.InternalServerError:
        assert not isinstance(err, anthropic.OverloadedError)
    if error_class is anthropic.RateLimitError:
        assert err.response.headers["retry-after"] == "1"


def test_random_429_retry_after_override(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(p_429=1.0, retry_after_s=7.2)
    with pytest.raises(anthropic.RateLimitError) as info:
        fake.client().messages.create(**params())
    assert info.value.response.headers["retry-after"] == "8"  # integer seconds, rounded up
    assert fake.stats.rate_limited == 1


def test_drop_is_a_connection_error(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(p_drop=1.0)
    with pytest.raises(anthropic.APIConnectionError):
        fake.client().messages.create(**params())
    assert fake.stats.dropped == 1
    fake.config.p_drop = 0.0  # the server survives a dropped connection
    assert fake.client().messages.create(**params()).stop_reason == "end_turn"


def test_sdk_retries_overloaded_then_succeeds(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(fail_first_n=1)
    msg = fake.client(max_retries=1).messages.create(**params())
    assert msg.stop_reason == "end_turn"
    assert [e[1] for e in fake.stats.events] == [529, 200]
    assert [r["retry_count"] for r in fake.stats.request_log] == ["0", "1"]


def test_sdk_honours_hook_retry_after_ms(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    def hook(ctx: dict[str, Any]) -> dict[str, Any] | None:
        if ctx["seq"] <= 2:
            return {"status": 429, "headers": {"retry-after": "30", "retry-after-ms": "20"}}
        return None

    fake = make_fake(respond=hook)
    started = time.monotonic()
    fake.client(max_retries=2).messages.create(**params())
    # 2 x 20 ms, not 2 x 30 s: a bound no loaded machine comes near, that the wrong header would break
    assert time.monotonic() - started < 10
    assert fake.stats.status_counts == {429: 2, 200: 1}


def test_x_api_key_header_is_accepted(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    req = urllib.request.Request(
        fake.base_url + "/v1/messages",
        data=json.dumps(params()).encode(),
        headers={"x-api-key": "sk-ant-test-key", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200 and resp.headers["request-id"].startswith("req_")
        assert json.loads(resp.read())["content"][0]["type"] == "text"


# ---------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------


def test_rate_limit_headers_on_raw_response(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(rpm=600, itpm=60_000, otpm=12_000)  # buckets: 10 req, 1000 in, 200 out
    raw = fake.client().messages.with_raw_response.create(**params())
    h = raw.headers
    msg = raw.parse()
    assert h["request-id"] == msg._request_id
    assert h["anthropic-ratelimit-requests-limit"] == "600"
    assert h["anthropic-ratelimit-requests-remaining"] == "9"
    assert h["anthropic-ratelimit-input-tokens-limit"] == "60000"
    assert int(h["anthropic-ratelimit-input-tokens-remaining"]) == 1000 - msg.usage.input_tokens
    assert int(h["anthropic-ratelimit-output-tokens-remaining"]) == 200 - msg.usage.output_tokens
    assert h["anthropic-ratelimit-tokens-limit"] == "12000"  # the more restrictive bucket
    for name in ("requests", "input-tokens", "output-tokens", "tokens"):
        reset = datetime.fromisoformat(h[f"anthropic-ratelimit-{name}-reset"].replace("Z", "+00:00"))
        assert 0 <= reset.timestamp() - time.time() <= 3


def test_request_bucket_limits_a_burst(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(rpm=120, burst_s=1.0)  # capacity 2, refill 2/s
    frozen = time.monotonic()
    fake.bucket_clock = lambda: frozen  # nothing refills during the burst, however slow the machine is
    client = fake.client()
    outcomes = []
    for _ in range(10):
        try:
            client.messages.create(**params())
            outcomes.append(200)
        except anthropic.RateLimitError as err:
            outcomes.append(429)
            assert err.response.headers["retry-after"] == "1"
            assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
            assert err.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert outcomes.count(200) == 2 and outcomes[:2] == [200, 200]
    assert fake.stats.rate_limited == 8
    # The SDK honours the bucket's retry-after and gets through on its own. (The bucket's time runs again
    # from where it stopped: the next request still finds it empty.)
    resumed = time.monotonic()
    fake.bucket_clock = lambda: frozen + time.monotonic() - resumed
    started = time.monotonic()
    fake.client(max_retries=2).messages.create(**params())
    assert time.monotonic() - started >= 0.9
    assert fake.stats.rate_limited == 9


def test_input_token_bucket(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(itpm=250, burst_s=60)  # capacity 250 tokens, slow refill; each request costs 198
    client = fake.client()
    client.messages.create(**params())
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(**params())
    assert info.value.response.headers["anthropic-ratelimit-input-tokens-remaining"] == "52"


def test_prompt_cache_usage(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    system = [{"type": "text", "text": "word " * 1000, "cache_control": {"type": "ephemeral"}}]
    client = fake.client()
    plain = client.messages.create(**params())
    first = client.messages.create(**params(system=system))
    second = client.messages.create(**params((1, 2, 3), system=system))
    # The prefix is schema + system (1000 short words = 1000 tokens, x1.3 on Haiku 5.5); the image and text after it.
    prefix = plain.usage.input_tokens - 6 - math.ceil(5 * 1.3) + 1300
    assert first.usage.cache_creation_input_tokens == prefix and first.usage.cache_read_input_tokens == 0
    assert (
        first.usage.cache_creation is not None
        and first.usage.cache_creation.ephemeral_5m_input_tokens == prefix
        and first.usage.cache_creation.ephemeral_1h_input_tokens == 0
    )
    assert second.usage.cache_read_input_tokens == prefix and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == 6 + 7  # cached tokens are reported separately, not twice


def _cached_params(model: str, chars: int, ttl: str | None = None, color: tuple[int, int, int] = (9, 9, 9)) -> Any:
    """A cached system prompt of `chars` characters: short words, about one token per 4 characters."""
    mark: dict[str, Any] = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    return params(color, model=model,
                  system=[{"type": "text", "text": "yes " * (chars // 4), "cache_control": mark}])


def test_prompt_cache_minimum_is_per_model(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    client = fake.client()
    # ~2,150 prefix tokens: above Sonnet 4.6's 1,024 minimum, below Haiku 4.5's 4,096 -> silently not cached.
    for model, cached in (("claude-sonnet-4-6", True), ("claude-haiku-4-5", False)):
        first = client.messages.create(**_cached_params(model, 8000))
        second = client.messages.create(**_cached_params(model, 8000, color=(200, 9, 9)))
        assert (first.usage.cache_creation_input_tokens > 2000) is cached
        assert (second.usage.cache_read_input_tokens > 2000) is cached
        if not cached:
            assert second.usage.input_tokens == first.usage.input_tokens > 2000


def test_prompt_cache_ttl_expiry_and_refresh(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    client = fake.client()
    model = "claude-sonnet-4-6"
    assert client.messages.create(**_cached_params(model, 8000)).usage.cache_creation_input_tokens > 0
    fake.advance_clock(240)
    assert client.messages.create(**_cached_params(model, 8000)).usage.cache_read_input_tokens > 0  # refreshed
    fake.advance_clock(240)
    assert client.messages.create(**_cached_params(model, 8000)).usage.cache_read_input_tokens > 0
    fake.advance_clock(301)
    assert client.messages.create(**_cached_params(model, 8000)).usage.cache_read_input_tokens == 0  # expired
    one_hour = client.messages.create(**_cached_params(model, 9000, "1h"))
    assert one_hour.usage.cache_creation is not None
    assert one_hour.usage.cache_creation.ephemeral_1h_input_tokens == one_hour.usage.cache_creation_input_tokens > 0
    fake.advance_clock(3000)
    assert client.messages.create(**_cached_params(model, 9000, "1h")).usage.cache_read_input_tokens > 0


def test_prompt_cache_breakpoint_rules(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(min_cache_tokens=10)
    client = fake.client()
    mark = {"type": "ephemeral"}
    five = [{"type": "text", "text": f"block {i} " * 20, "cache_control": mark} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks"):
        client.messages.create(**params(system=five))
    # Concurrent first requests all pay the write: the entry exists only once a response is produced.
    fake.config.latency_s = 0.3
    system = [{"type": "text", "text": "z" * 400, "cache_control": mark}]

    async def burst() -> list[Any]:
        aclient = fake.async_client()
        return await asyncio.gather(*(aclient.messages.create(**params(system=system)) for _ in range(3)))

    answers = asyncio.run(burst())
    assert all(a.usage.cache_creation_input_tokens > 0 for a in answers)
    # A breakpoint on the user text caches the image too (prefix = schema + system + image + text).
    msgs = image_messages(encode((5, 6, 7)))
    msgs[0]["content"][1]["cache_control"] = mark
    fake.config.latency_s = 0.0
    a = client.messages.create(**params(messages=msgs))
    b = client.messages.create(**params(messages=msgs))
    assert b.usage.cache_read_input_tokens == a.usage.cache_creation_input_tokens == a.usage.input_tokens + (
        a.usage.cache_creation_input_tokens) - b.usage.input_tokens
    assert b.usage.input_tokens == 0


def test_batch_cache_ttl_over_a_long_batch(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    # 4 items spread over 1,800 simulated seconds: 450 s apart, longer than the 5-minute TTL.
    fake = make_fake(batch_processing_s=0.05, batch_span_s=1800)
    client = fake.client()
    model = "claude-sonnet-4-6"
    for ttl, reads in ((None, 0), ("1h", 3)):
        fake.reset()
        requests = [{"custom_id": f"r{i}", "params": _cached_params(model, 8000, ttl, (i, 40, 40))} for i in range(4)]
        batch = client.messages.batches.create(requests=requests)
        wait_ended(client, batch.id)
        results = list(client.messages.batches.results(batch.id))
        got = [r.result.message.usage for r in results if r.result.type == "succeeded"]
        assert len(got) == 4
        assert sum(1 for u in got if u.cache_read_input_tokens) == reads
        assert fake.stats.cache_read_input_tokens == sum(u.cache_read_input_tokens for u in got)


# ---------------------------------------------------------------------------------------------
# Control endpoints and standalone process
# ---------------------------------------------------------------------------------------------


def test_stats_and_reset_endpoints(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    fake.client().messages.create(**params())
    stats = get_json(fake.base_url + "/_fake/stats")
    assert stats["answered_by_key"] == {"#a0b0c0": 1} and stats["status_counts"] == {"200": 1}
    assert stats["events"][0][1] == 200 and stats["first_request_t"] <= stats["last_request_t"]
    get_json(fake.base_url + "/_fake/reset", method="POST")
    assert get_json(fake.base_url + "/_fake/stats")["total_requests"] == 0


def test_standalone_process() -> None:
    config = json.dumps({"rpm": 600, "output_mode": "fenced"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.anthropic_server", "--port", "0", "--config", config],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        client = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test-key", max_retries=0)
        assert client.messages.create(**params()).content[0].text.startswith("```json")
        assert get_json(base_url + "/_fake/stats")["answered"] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


# ---------------------------------------------------------------------------------------------
# Message Batches
# ---------------------------------------------------------------------------------------------


def batch_requests(colors: list[tuple[int, int, int]], **extra: Any) -> list[dict[str, Any]]:
    return [{"custom_id": f"img-{i}", "params": params(c, **extra)} for i, c in enumerate(colors)]


def test_batch_round_trip(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_processing_s=0.3)
    client = fake.client()
    colors = [(i * 12, 100, 255 - i * 12) for i in range(20)]
    batch = client.messages.batches.create(requests=batch_requests(colors))
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 20 and batch.request_counts.succeeded == 0
    assert batch.results_url is None and batch.ended_at is None
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(86400)
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)

    ended = wait_ended(client, batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.succeeded == 20 and ended.request_counts.processing == 0
    assert ended.results_url == f"{fake.base_url}/v1/messages/batches/{batch.id}/results"

    results = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] != [f"img-{i}" for i in range(20)]  # shuffled
    by_id = {r.custom_id: r for r in results}
    for i, color in enumerate(colors):
        result = by_id[f"img-{i}"].result
        assert result.type == "succeeded"
        assert json.loads(result.message.content[0].text)["dominant_color"] == hexkey(color)
        assert result.message.usage.service_tier == "batch"
    assert fake.stats.batches_created == 1
    assert fake.stats.batch_items_by_key == {hexkey(c): 1 for c in colors}
    assert fake.stats.batch_answered_by_key == {hexkey(c): 1 for c in colors}
    assert set(fake.stats.batch_items_by_custom_id) == set(by_id)


def test_batch_errored_and_expired(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_processing_s=0.0, p_batch_errored=0.4, p_batch_expired=0.3)
    client = fake.client()
    reqs = batch_requests([(i, i, i) for i in range(30)])
    reqs.append({"custom_id": "bad", "params": params(max_tokens=0)})  # params are validated late
    batch = wait_ended(client, client.messages.batches.create(requests=reqs).id)
    counts = batch.request_counts
    assert counts.errored > 0 and counts.expired > 0 and counts.succeeded > 0
    assert counts.errored + counts.expired + counts.succeeded == 31
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    bad = results["bad"]
    assert bad.type == "errored" and bad.error.error.type == "invalid_request_error"
    errored = [r for cid, r in results.items() if r.type == "errored" and cid != "bad"]
    assert errored and all(r.error.type == "error" and r.error.error.type == "api_error" for r in errored)


def test_batch_permanent_error_type(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_processing_s=0.0, p_batch_errored=1.0, batch_errored_type="invalid_request_error")
    client = fake.client()
    batch = client.messages.batches.create(requests=batch_requests([(1, 1, 1)]))
    (line,) = list(client.messages.batches.results(wait_ended(client, batch.id).id))
    assert line.result.type == "errored" and line.result.error.error.type == "invalid_request_error"


def test_batch_cancel_and_delete(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_processing_s=30.0)
    client = fake.client()
    batch = client.messages.batches.create(requests=batch_requests([(1, 1, 1), (2, 2, 2)]))
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # only after processing ends
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    ended = wait_ended(client, batch.id)
    assert ended.request_counts.canceled == 2 and ended.request_counts.processing == 0
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"canceled"}
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.type == "message_batch_deleted" and deleted.id == batch.id
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_batch_list_paging(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    client = make_fake().client()
    ids = [client.messages.batches.create(requests=batch_requests([(i, 0, 0)])).id for i in range(5)]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more is True and page.first_id == ids[4] and page.last_id == ids[3]
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-paging
    older = client.messages.batches.list(limit=10, after_id=ids[2])
    assert [b.id for b in older.data] == [ids[1], ids[0]] and older.has_more is False
    newer = client.messages.batches.list(limit=1, before_id=ids[2])
    assert [b.id for b in newer.data] == [ids[3]] and newer.has_more is True


def test_batch_limits(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_max_requests=3, batch_max_bytes=20_000)
    client = fake.client()
    with pytest.raises(anthropic.ContentTooLargeError) as info:
        # Three ~8 KB requests: within the count limit, over the 20 KB byte limit.
        client.messages.batches.create(requests=batch_requests([(1, 1, 1)] * 3, system="x" * 8000))
    assert info.value.type == "request_too_large"
    with pytest.raises(anthropic.BadRequestError, match="at most 3"):
        client.messages.batches.create(requests=batch_requests([(i, 1, 1) for i in range(4)]))
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        client.messages.batches.create(requests=[{"custom_id": "has space", "params": params()}])
    with pytest.raises(anthropic.BadRequestError, match="Duplicate"):
        client.messages.batches.create(requests=[{"custom_id": "a", "params": params()}] * 2)
    assert fake.stats.batches_created == 0


def test_batch_async_round_trip(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_processing_s=0.1)
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]

    async def run() -> dict[str, Any]:
        async with fake.async_client() as client:
            batch = await client.messages.batches.create(requests=batch_requests(colors))
            while (await client.messages.batches.retrieve(batch.id)).processing_status != "ended":
                await asyncio.sleep(0.05)
            listed = [b.id async for b in client.messages.batches.list()]
            assert listed == [batch.id]
            return {r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)}

    results = asyncio.run(run())
    for i, color in enumerate(colors):
        assert json.loads(results[f"img-{i}"].message.content[0].text)["dominant_color"] == hexkey(color)


# ---------------------------------------------------------------------------------------------
# /v1/messages with stream: true (server-sent events)
# ---------------------------------------------------------------------------------------------


def _same_message(streamed: Any, plain: Any) -> dict[str, Any]:
    a, b = streamed.model_dump(exclude={"id"}), plain.model_dump(exclude={"id"})
    for block_a, block_b in zip(a["content"], b["content"], strict=True):
        block_a.pop("signature", None), block_b.pop("signature", None)  # random per answer
        block_a.pop("id", None), block_b.pop("id", None)
    return {"streamed": a, "plain": b}


@pytest.mark.parametrize("mode", ["json", "truncated", "refusal", "thinking", "thinking_only"])
def test_a_streamed_answer_is_the_plain_answer(make_fake: Callable[..., FakeAnthropicServer], mode: str) -> None:
    fake = make_fake(output_mode=mode)
    client = fake.client()
    plain = client.messages.create(**params())
    with client.messages.stream(**params()) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    pair = _same_message(streamed, plain)
    assert pair["streamed"] == pair["plain"]  # content, stop reason and details, every usage figure
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert fake.stats.request_log[-1]["stream"] is True and fake.stats.request_log[0]["stream"] is False


def test_a_streamed_tool_answer_is_the_plain_answer(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake()
    tool = {"name": "describe", "description": "Describe.", "input_schema": SCHEMA}
    extra = {"tools": [tool], "tool_choice": {"type": "auto"}}
    client = fake.client()
    plain = client.messages.create(**params(**extra, output_config=anthropic.omit))
    with client.messages.stream(**params(**extra, output_config=anthropic.omit)) as stream:
        streamed = stream.get_final_message()
    pair = _same_message(streamed, plain)
    assert pair["streamed"] == pair["plain"] and streamed.content[0].type == "tool_use"


def test_the_cache_entry_is_usable_once_the_answer_begins(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    # api-facts E: "A cache entry becomes usable only after the first response begins."
    fake = make_fake(latency_s=1.5, ttft_s=0.1)
    system = [{"type": "text", "text": "word " * 1000, "cache_control": {"type": "ephemeral"}}]
    client = fake.client()
    with client.messages.stream(**params(system=system)) as stream:
        events = iter(stream)
        assert next(events).type == "message_start"
        begun = time.monotonic()
        # The first answer is still on its way: a second request now reads the prefix the first one wrote.
        second = client.messages.create(**params((1, 2, 3), system=system))
        for _ in events:
            pass
        first = stream.get_final_message()
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    # ... and the first answer took the whole latency: it ended after the second one began.
    assert time.monotonic() - begun > 1.0
    # A plain request sent together with the first one (before its answer began) pays the write again.
    fake.reset()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda c=c: results.append(client.messages.create(**params(c, system=system))))
               for c in ((5, 5, 5), (6, 6, 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.usage.cache_read_input_tokens for r in results] == [0, 0]


@pytest.mark.parametrize(("fault", "status"), [("midstream_error:overloaded_error", 529),
                                                ("midstream_error:api_error", 500)])
def test_an_error_after_the_answer_began(make_fake: Callable[..., FakeAnthropicServer], fault: str,
                                         status: int) -> None:
    fake = make_fake(output_mode=fault)
    client = fake.client()
    kinds: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught, client.messages.stream(**params()) as stream:
        kinds.extend(event.type for event in stream)
    assert kinds == ["message_start"]
    # The HTTP status was 200 when the stream began; the error event's body names what happened.
    assert caught.value.status_code == 200
    assert caught.value.body["error"]["type"] == fault.split(":")[1]
    # Without streaming, the same fault is the plain error status.
    with pytest.raises(anthropic.APIStatusError) as plain:
        client.messages.create(**params())
    assert plain.value.status_code == status


def test_a_stream_cut_off_after_it_began(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(output_mode="midstream_drop")
    kinds: list[str] = []
    with pytest.raises(Exception) as caught, fake.client().messages.stream(**params()) as stream:
        kinds.extend(event.type for event in stream)
    assert kinds == ["message_start"]
    assert not isinstance(caught.value, anthropic.APIStatusError)  # a transport error, no HTTP status
    assert fake.stats.dropped == 1


def test_a_batch_rejects_streaming_items(make_fake: Callable[..., FakeAnthropicServer]) -> None:
    fake = make_fake(batch_processing_s=0.0)
    client = fake.client()
    requests = [*batch_requests([(1, 1, 1)], stream=True), {"custom_id": "ok", "params": params((2, 2, 2))}]
    batch = client.messages.batches.create(requests=requests)
    wait_ended(client, batch.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["ok"].type == "succeeded"
    assert results["img-0"].type == "errored" and "stream" in results["img-0"].error.error.message


@pytest.mark.parametrize("how", [["tests/fakes/openai_server.py"], ["-m", "tests.fakes.openai_server"]])
def test_the_openai_fake_runs_standalone_like_the_anthropic_one(how: list[str]) -> None:
    """`python tests/fakes/openai_server.py --help` failed on its relative import, and `-m ... --help` tried to
    read "--help" as JSON: the fake now takes --port and --config as the Anthropic fake does."""
    help_text = subprocess.run([sys.executable, *how, "--help"], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert help_text.returncode == 0 and "--config" in help_text.stdout, help_text.stderr
    config = json.dumps({"variant": "openai", "api_key": "sk-test", "models": ["gpt-4o-mini"]})
    proc = subprocess.Popen([sys.executable, *how, "--port", "0", "--config", config], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        request = urllib.request.Request(base_url + "/models", headers={"Authorization": "Bearer sk-test"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert [m["id"] for m in json.load(response)["data"]] == ["gpt-4o-mini"]
    finally:
        proc.terminate()
        proc.wait(10)
