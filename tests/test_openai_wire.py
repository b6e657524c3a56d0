"""Pure pieces of the OpenAI-compatible provider and the adaptive concurrency limiter."""

from __future__ import annotations

import asyncio
import random

import pytest

from imgtag.providers.base import Fatal, Permanent, RateLimited, Transient
from imgtag.providers.openai_provider import is_local, is_openai
from imgtag.providers.openai_wire import classify, duration_seconds, next_mode, parse_rate_limits, strip_thinking
from imgtag.request.adaptive import AdaptiveLimiter


@pytest.mark.parametrize(("content", "answer", "thought"), [
    ('{"a": 1}', '{"a": 1}', False),
    ('<think>colour is red</think>\n{"a": 1}', '{"a": 1}', True),
    ('<THINK>x</THINK><think>y</think> {"a": 1}', '{"a": 1}', True),
    ('the template opened it</think>{"a": 1}', '{"a": 1}', True),
    ("<think>still thinking when the budget ran out", "", True),
])
def test_strip_thinking(content: str, answer: str, thought: bool) -> None:
    assert strip_thinking(content) == (answer, thought)


@pytest.mark.parametrize(("sent", "status", "message", "expected"), [
    ("json_schema", 400, "The provided JSON schema contains features not supported by xgrammar.", "json_object"),
    ("json_schema", 400, 'response_format type must be one of "text" or "json_object"', "json_object"),
    ("json_object", 400, "'response_format.type' must be 'json_schema' or 'text'", "prompt"),
    ("json_schema", 400, "Invalid image: could not decode", None),
    ("prompt", 400, "response_format something", None),
    ("json_schema", 503, "json_schema busy", None),
])
def test_next_mode(sent: str, status: int, message: str, expected: str | None) -> None:
    assert next_mode(sent, status, message) == expected


@pytest.mark.parametrize(("status", "message", "kind"), [
    (401, "Incorrect API key provided", Fatal),
    (404, "The model `x` does not exist.", Fatal),
    (400, "The model `x` does not exist.", Fatal),
    (400, "Model does not support images. Please use a model that does.", Fatal),
    (500, "image input is not supported - hint: you may need to provide the mmproj", Fatal),
    (400, "Invalid image", Permanent),
    (429, "Rate limit reached", RateLimited),
    (503, "server busy, please try again.  maximum pending requests exceeded", Transient),
    (502, "Bad Gateway", Transient),
    (504, "Gateway Timeout", Transient),
])
def test_classify(status: int, message: str, kind: type) -> None:
    err = classify(status, message, {"retry-after": "2"}, {}, "req_1", "OPENAI_API_KEY")
    assert type(err) is kind
    if isinstance(err, RateLimited):
        assert err.retry_after == 2.0


def test_quota_exhausted_is_fatal_not_a_rate_limit() -> None:
    body = {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}
    assert isinstance(classify(429, "You exceeded your current quota", {}, body, None, "K"), Fatal)


def test_rate_limit_headers() -> None:
    snap = parse_rate_limits({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
                              "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "200000",
                              "x-ratelimit-remaining-tokens": "199000", "x-ratelimit-reset-tokens": "6m0s"})
    assert (snap.requests_limit, snap.requests_remaining, snap.input_limit) == (500, 499, 200000)
    assert snap.requests_reset_s == pytest.approx(0.12) and snap.input_reset_s == pytest.approx(360)
    assert duration_seconds("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_rate_limits({}).empty


def test_server_kinds() -> None:
    assert is_openai(None) and is_openai("https://api.openai.com/v1") and not is_openai("http://127.0.0.1:8000/v1")
    assert is_local("http://localhost:11434/v1") and is_local("http://192.168.1.20:8000/v1")
    assert not is_local("https://openrouter.ai/api/v1") and not is_local(None)


async def _simulate(limiter: AdaptiveLimiter, slots: int, service_s: float, requests: int) -> float:
    """A server with `slots` slots and a queue: returns throughput / capacity."""
    server = asyncio.Semaphore(slots)
    rng = random.Random(1)
    loop = asyncio.get_running_loop()

    async def one() -> None:
        started = await limiter.acquire()
        async with server:
            await asyncio.sleep(service_s * rng.uniform(0.9, 1.1))
        await limiter.release(started, "ok")

    t0 = loop.time()
    await asyncio.gather(*(one() for _ in range(requests)))
    return requests / (loop.time() - t0) / (slots / service_s)


@pytest.mark.parametrize("slots", [2, 8, 16])
def test_adaptive_limit_finds_the_server_capacity(slots: int) -> None:
    limiter = AdaptiveLimiter(initial=4, maximum=64)
    share = asyncio.run(_simulate(limiter, slots, 0.03, 40 * slots))
    assert share >= 0.85, share
    assert slots <= limiter.limit <= 2 * slots + 2, limiter.limit  # it does not pile up the server's queue


def test_adaptive_limit_halves_on_congestion() -> None:
    async def go() -> int:
        limiter = AdaptiveLimiter(initial=8)
        started = await limiter.acquire()
        await limiter.release(started, "congested")
        return limiter.limit

    assert asyncio.run(go()) == 4
