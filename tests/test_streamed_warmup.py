"""The cache warm-up's first request streams, so the others go when its answer begins (api-facts E: a cache
entry is usable from then), not when it ends. Driven through the real SDK against the fake server's SSE."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.anthropic_server import TEXT_TOLERANCE

from imagegen import make_images, run_cli
from imgtag.presets import load_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.prefix import plan_prefix
from imgtag.providers.anthropic_provider import AnthropicProvider
from imgtag.providers.base import ImageInput, RateLimitSnapshot, RequestOptions, Transient

MODEL = "claude-sonnet-4-6"


def _one_image() -> ImageInput:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(buf, "JPEG")
    return ImageInput(buf.getvalue(), "image/jpeg")


def _send(fake: Any, began: Any) -> Any:
    async def go() -> Any:
        provider = AnthropicProvider(api_key=fake.config.api_key, base_url=fake.base_url)
        try:
            options = RequestOptions(load_preset("ecommerce"), catalogue().get(MODEL), 600, began=began)
            return await provider.describe(_one_image(), options)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def test_a_streamed_request_says_when_its_answer_begins(fake_anthropic_factory: Any) -> None:
    fake = fake_anthropic_factory(rpm=300, burst_s=6.0, latency_s=0.6, ttft_s=0.1)
    plain = _send(fake, None)
    heard: list[RateLimitSnapshot] = []
    streamed = _send(fake, heard.append)
    # Called once, with the limits of the response headers (sent with the first byte).
    assert len(heard) == 1 and heard[0].requests_limit == 300 and heard[0].requests_remaining is not None
    assert streamed.obj is None and streamed.text == plain.text  # the same answer, whichever way it came
    assert streamed.stop_reason == plain.stop_reason and streamed.request_id and streamed.limits.requests_limit
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert [entry["stream"] for entry in fake.stats.request_log] == [True, True]  # every request streams


@pytest.mark.parametrize(("fault", "error_type", "status"), [
    ("midstream_error:overloaded_error", "overloaded_error", 529),
    ("midstream_error:api_error", "api_error", 500),
    ("midstream_drop", "connection_error", None),
])
def test_a_stream_that_fails_after_it_began_is_transient(fake_anthropic_factory: Any, fault: str, error_type: str,
                                                         status: int | None) -> None:
    fake = fake_anthropic_factory(output_mode=fault)
    heard: list[RateLimitSnapshot] = []
    with pytest.raises(Transient) as caught:
        _send(fake, heard.append)
    assert len(heard) == 1  # it did begin
    # Judged as the same fault without streaming would be: retried, never a permanent failure of the image.
    assert caught.value.error_type == error_type and caught.value.http_status == status
    assert fake.config.api_key not in caught.value.message


def _requests(fake: Any) -> list[dict[str, Any]]:
    return sorted((e for e in fake.stats.request_log if e["path"] == "/v1/messages"), key=lambda e: e["t"])


def test_the_others_go_when_the_first_answer_begins(tmp_path: Path, fake_anthropic_factory: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 8)
    fake = fake_anthropic_factory(latency_s=2.0, ttft_s=0.1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", MODEL, "-q"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    log = _requests(fake)
    assert [e["stream"] for e in log] == [True] * 8  # every request streams (its headers come first)
    first = log[0]
    # Every other request reached the server while the first answer was still coming (it takes 2 s).
    assert all(e["t"] < first["done_t"] for e in log[1:])
    prefix = plan_prefix(load_preset("ecommerce"), catalogue().get(MODEL)).tokens
    # Still one write: the fake counts text its own way, so the prefix is as long as imgtag estimates to within
    # TEXT_TOLERANCE, and every other request read exactly what the first one wrote.
    assert fake.stats.cache_creation_input_tokens == pytest.approx(prefix, rel=TEXT_TOLERANCE)
    assert fake.stats.cache_read_input_tokens == 7 * fake.stats.cache_creation_input_tokens


def test_a_warm_up_cut_off_after_it_began(tmp_path: Path, fake_anthropic_factory: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The first answer began (the cache entry exists), then the connection dropped: the others go, the cut-off
    image is asked again on its own and read from the cache like the rest."""
    make_images(tmp_path / "in", 6)

    def first_is_cut(ctx: dict[str, Any]) -> dict[str, Any] | None:
        return {"output_mode": "midstream_drop"} if ctx["seq"] == 1 else None

    fake = fake_anthropic_factory(latency_s=0.5, ttft_s=0.05, respond=first_is_cut)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", MODEL, "-q"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    assert len(fake.stats.answered_by_key) == 6 and fake.stats.dropped == 1
    db = sqlite3.connect(out / "imgtag.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'ok'").fetchone() == (6,)
        retried = db.execute("SELECT error_type, outcome FROM attempts WHERE outcome != 'ok'").fetchall()
    finally:
        db.close()
    assert retried == [("connection_error", "retry")]
    prefix = plan_prefix(load_preset("ecommerce"), catalogue().get(MODEL)).tokens
    assert fake.stats.cache_creation_input_tokens == pytest.approx(prefix, rel=TEXT_TOLERANCE)
    # Read by the five others and by the cut-off image asked again.
    assert fake.stats.cache_read_input_tokens == 6 * fake.stats.cache_creation_input_tokens


def test_a_packed_warm_up_streams_too(tmp_path: Path, fake_anthropic_factory: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # With --images-per-request the first pack is the warm-up request: it streams, and the packs after it go
    # when its answer begins.
    make_images(tmp_path / "in", 12)
    fake = fake_anthropic_factory(latency_s=2.0, ttft_s=0.1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", MODEL,
                            "--images-per-request", "4", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    log = _requests(fake)
    assert [e["stream"] for e in log] == [True, True, True]
    assert all(e["t"] < log[0]["done_t"] for e in log[1:])
    assert len(fake.stats.answered_by_key) == 3  # by the first image of each request
