"""Pure pieces of the OpenAI-compatible provider and the adaptive concurrency limiter."""

from __future__ import annotations

import asyncio
import random

import pytest

from imgtag.providers.adaptive import AdaptiveLimiter
from imgtag.providers.base import Fatal, Permanent, RateLimited, Transient
from imgtag.providers.openai_provider import is_openai
from imgtag.providers.openai_wire import classify, duration_seconds, next_mode, parse_rate_limits, strip_thinking


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
    ("json_schema", 400, "The provided JSON schema contains features not supported by xgrammar.",
     "json_object_schema"),
    ("json_schema", 400, 'response_format type must be one of "text" or "json_object"', "json_object_schema"),
    ("json_object_schema", 400, "Unknown parameter: 'response_format.schema'.", "json_object"),
    ("json_object_schema", 400, "'response_format.type' must be 'json_schema' or 'text'", "prompt"),
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


def _drive(limiter: AdaptiveLimiter, slots: int, service_s: float, rounds: int) -> list[int]:
    """A deterministic server model on a virtual clock: with `limit` requests in flight and `slots` slots, each
    request takes service x max(1, limit / slots) (the excess waits in the queue). Returns the limit per round."""
    now = [0.0]
    limiter.clock = lambda: now[0]
    rng = random.Random(1)
    history = []

    async def go() -> None:
        for _ in range(rounds):
            limit = limiter.limit
            history.append(limit)
            starts = [await limiter.acquire() for _ in range(limit)]
            latency = service_s * max(1.0, limit / slots)
            for started in starts:
                now[0] = started + latency * rng.uniform(0.95, 1.05)
                await limiter.release(started, "ok")
            now[0] += 0.001

    asyncio.run(go())
    return history


@pytest.mark.parametrize("slots", [2, 8, 16, 48])
def test_adaptive_limit_finds_the_server_capacity(slots: int) -> None:
    history = _drive(AdaptiveLimiter(initial=4, maximum=256), slots, 1.0, 60)
    used = [min(limit, slots) / slots for limit in history[-40:]]
    assert sum(used) / len(used) >= 0.9, history  # slots busy in steady state
    assert max(history[-40:]) <= 2 * slots + 2, history  # and the server's queue is not piled up


def test_adaptive_limit_halves_on_congestion() -> None:
    async def go() -> int:
        limiter = AdaptiveLimiter(initial=8)
        started = await limiter.acquire()
        await limiter.release(started, "congested")
        return limiter.limit

    assert asyncio.run(go()) == 4


def test_openai_image_token_rules_match_the_documented_examples() -> None:
    from imgtag.pricing.image_rules import patch_tokens, tile_tokens

    assert tile_tokens(1024, 1024, 85, 170) == 765
    assert tile_tokens(2048, 4096, 85, 170) == 1105
    assert patch_tokens(1024, 1024, 1.0) == 1024
    assert patch_tokens(1800, 2400, 1.0) == 1452


def test_estimates_say_unknown_instead_of_inventing(tmp_path, monkeypatch) -> None:
    from imgtag.presets import load_preset
    from imgtag.pricing.catalogue import catalogue
    from imgtag.pricing.estimate import Estimator, image_tokens
    from imgtag.pricing.user_prices import with_prices

    monkeypatch.chdir(tmp_path)
    preset = load_preset("caption")
    assert image_tokens(1024, 1024, preset, catalogue().get("some-gateway-model")) is None
    assert image_tokens(1024, 1024, preset, catalogue().get("gpt-4.1-mini")) > 0
    est = Estimator(preset, models=["some-gateway-model", "gpt-4.1-mini", "glm-4v-9b"])
    est.add(1600, 1200)
    unknown, openai_model, local = (est.totals[m] for m in ("some-gateway-model", "gpt-4.1-mini", "glm-4v-9b"))
    assert not unknown.tokens_known and unknown.standard_usd is None
    assert openai_model.tokens_known and openai_model.standard_usd > 0
    assert not local.tokens_known and local.standard_usd is None  # no prices: unknown, wherever it runs
    free = Estimator(preset, models=["glm-4v-9b"], infos={"glm-4v-9b": with_prices(catalogue().get("glm-4v-9b"), 0, 0)})
    free.add(1600, 1200)
    assert free.totals["glm-4v-9b"].standard_usd == 0  # declared free: $0 whatever the token count
