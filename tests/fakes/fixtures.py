"""pytest fixtures for the fake Anthropic server.

Register once in tests/conftest.py with ``pytest_plugins = ["tests.fakes.fixtures"]`` (needs the repo
root importable, e.g. ``pythonpath = ["."]`` in the pytest config), or import the fixtures into a
test module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .anthropic_server import FakeAnthropicServer, FakeConfig
from .openai_server import FakeOpenAIServer

FakeFactory = Callable[..., FakeAnthropicServer]


@pytest.fixture
def fake_anthropic_factory() -> Iterator[FakeFactory]:
    """``make(config=None, port=0, **fields)`` -> a started server; every server is stopped after the test.
    `port`: the port of a server stopped earlier, to stand for the same endpoint later (a fresh bucket)."""
    servers: list[FakeAnthropicServer] = []

    def make(config: FakeConfig | None = None, port: int = 0, **fields: Any) -> FakeAnthropicServer:
        # dataclasses.replace (not FakeConfig.update) so a `respond=` hook can be passed too.
        cfg = dataclasses.replace(config or FakeConfig(), **fields)
        server = FakeAnthropicServer(cfg, port=port).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def recording_anthropic(fake_anthropic_factory: FakeFactory) -> FakeFactory:
    """As fake_anthropic_factory, and the server's `seen` lists every answered request (/v1/messages and batch
    items): {"image_keys", "custom_id", "request"}. A `respond=` hook still decides the answer."""

    def make(**fields: Any) -> FakeAnthropicServer:
        seen: list[dict[str, Any]] = []
        hook = fields.pop("respond", None)

        def respond(ctx: dict[str, Any]) -> dict[str, Any] | None:
            seen.append({"image_keys": ctx["image_keys"], "custom_id": ctx["custom_id"], "request": ctx["request"]})
            return hook(ctx) if hook else None

        fake = fake_anthropic_factory(respond=respond, **fields)
        fake.seen = seen  # type: ignore[attr-defined]
        return fake

    return make


@pytest.fixture
def fake_anthropic(fake_anthropic_factory: FakeFactory) -> FakeAnthropicServer:
    """A started fake with the default config (answers every request with schema-valid JSON)."""
    return fake_anthropic_factory()


@pytest.fixture
def fake_openai_factory() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """``make(**OpenAIFakeConfig fields)`` -> a started OpenAI-compatible fake; all are stopped after the test."""
    servers: list[FakeOpenAIServer] = []

    def make(**fields: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**fields).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
