"""The SDK's OpenTelemetry spans are started only where something listens: a tracer provider the program installed,
or the SDK's or OpenTelemetry's variables. With OpenTelemetry's placeholder provider every span went nowhere and
cost CPU on every request (docs/benchmarks.md "First run"). Driven through the real SDK against the fake server."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from opentelemetry import trace
from PIL import Image

from imgtag.presets import load_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.providers.anthropic_provider import AnthropicProvider
from imgtag.providers.base import ImageInput, RequestOptions
from imgtag.providers.sdk import traces_wanted


class _Recording(trace.NoOpTracer):
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self.names.append(name)
        return super().start_span(name, *args, **kwargs)


class RecordingProvider(trace.NoOpTracerProvider):
    """A provider a program installed: it hands out tracers that note each span started."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _Recording(self.names)


class RecordingPlaceholder(trace.ProxyTracerProvider):
    """OpenTelemetry's placeholder (nothing installed), noting any span someone starts through it anyway."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _Recording(self.names)


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_OPEN_TELEMETRY", "OTEL_")):
            monkeypatch.delenv(name)


def _ask(fake: Any) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(buf, "JPEG")

    async def go() -> None:
        provider = AnthropicProvider(api_key=fake.config.api_key, base_url=fake.base_url)
        try:
            options = RequestOptions(load_preset("ecommerce"), catalogue().get("claude-haiku-4-5"), 600)
            await provider.describe(ImageInput(buf.getvalue(), "image/jpeg"), options)
        finally:
            await provider.aclose()

    asyncio.run(go())


def test_no_spans_when_no_tracer_provider_is_installed(quiet_env: None, fake_anthropic: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    placeholder = RecordingPlaceholder()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: placeholder)
    assert not traces_wanted("ANTHROPIC")
    _ask(fake_anthropic)
    assert placeholder.names == []


def test_spans_when_a_program_installed_a_tracer_provider(quiet_env: None, fake_anthropic: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert traces_wanted("ANTHROPIC")
    _ask(fake_anthropic)
    assert len(provider.names) == 1  # the SDK's span of the one call


@pytest.mark.parametrize("variable", ["ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE", "OTEL_PYTHON_TRACER_PROVIDER"])
def test_the_variables_leave_spans_to_the_sdk(quiet_env: None, monkeypatch: pytest.MonkeyPatch,
                                              variable: str) -> None:
    monkeypatch.setenv(variable, "content" if variable.startswith("ANTHROPIC") else "sdk")
    assert traces_wanted("ANTHROPIC")
