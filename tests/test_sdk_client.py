"""The SDK's client is made in the thread that imports the SDK, and what it needs that does not need the SDK (the
TLS context) beside that import, so the first request finds the client ready (providers/sdk.py, issue 16 item 5)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from types import ModuleType
from typing import Any

from imgtag.providers.anthropic_provider import AnthropicProvider
from imgtag.providers.sdk import SdkClient


def test_the_client_is_made_where_the_sdk_is_imported_with_its_extra_made_beside() -> None:
    threads: dict[str, str] = {}

    def alongside() -> str:
        threads["alongside"] = threading.current_thread().name
        return "tls"

    def make(module: ModuleType, extra: Any) -> tuple[str, Any]:
        threads["make"] = threading.current_thread().name
        return module.__name__, extra

    sdk = SdkClient("json", make, alongside=alongside)
    assert not sdk.made
    sdk.preload()
    assert asyncio.run(sdk.ready()) == ("json", "tls")
    assert threads == {"make": "import json", "alongside": "prepare json"}  # neither on the event loop's thread
    assert sdk.made and sdk.client == ("json", "tls")


def test_a_failed_import_reaches_whoever_waits_for_the_client() -> None:
    sdk = SdkClient("imgtag_no_such_sdk", lambda module, extra: module, alongside=lambda: None)
    sdk.preload()
    try:
        asyncio.run(sdk.ready())
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("the import error was lost")
    assert not sdk.made


def test_the_anthropic_client_verifies_as_the_sdk_would() -> None:
    provider = AnthropicProvider(api_key="sk-ant-test-key-not-real", base_url="https://api.example.test")

    async def made() -> Any:
        client = await provider.sdk.ready()
        try:
            return client._client._transport.ssl_context  # the SDK's aiohttp transport
        finally:
            await provider.aclose()

    context = asyncio.run(made())
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    import httpx2

    # The certificates the SDK's own default (verify=True) loads: the system's.
    assert context.cert_store_stats() == httpx2.create_ssl_context().cert_store_stats()


def test_a_run_cancelled_while_the_sdk_loads_closes_without_a_traceback() -> None:
    """Ctrl-C during start-up cancels the task awaiting ready(): that must not cancel the import's own future, whose
    `made` then raised CancelledError from aclose() (a traceback instead of the one sentence), and whose thread then
    failed to set its result (a second traceback from the thread)."""
    release = threading.Event()
    thread_errors: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)

    def make(module: ModuleType, extra: Any) -> str:
        release.wait(5)
        return "client"

    sdk = SdkClient("json", make)

    async def cancelled_while_loading() -> None:
        waiting = asyncio.ensure_future(sdk.ready())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert not sdk.made  # no exception: the client is simply not made yet

    try:
        asyncio.run(cancelled_while_loading())
        release.set()
        for thread in threading.enumerate():
            if thread.name == "import json":
                thread.join(5)
    finally:
        threading.excepthook = previous
    assert thread_errors == []
    assert sdk.made and sdk.client == "client"
