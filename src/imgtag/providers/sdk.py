"""A provider's SDK client, made on first use, its import started early in a thread.

`import anthropic` takes 1.5-2.5 s on a 2-core machine (`import openai` about 1 s). A rerun whose answers are
all in the store must not pay that at all, and a run that will ask should not pay it before anything else
happens: the runner calls `preload()` when the first file turns out to need an answer, the import runs in a
thread while discovery and the first decodes go on (they wait on the disk and the decode pool, so the import
gets the interpreter most of the time), and the first request awaits `ready()` without blocking the event loop.
That is inside the event loop on purpose: by then a Ctrl-C cancels the run's task (asyncio.run's handler) instead
of raising KeyboardInterrupt wherever the main thread is, and a KeyboardInterrupt raised in the main thread while
another thread imports can leave the import system's module locks inconsistent, and the run hung (seen when the
import started before the event loop, 1 early Ctrl-C in 20).

The client is made in that thread too, as soon as the SDK is in, so the first request finds it ready. What it
needs that does not hold the interpreter lock (`alongside`: the TLS context, whose certificate loading is C code
that releases it) is made in a second thread meanwhile, on the other core, instead of after the import.
"""

from __future__ import annotations

import gc
import importlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import ModuleType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


def import_quietly(module: str) -> ModuleType:
    """Import an SDK without the cyclic garbage collector running meanwhile, then freeze what exists.

    Importing `anthropic` creates tens of thousands of objects (pydantic models for every API type); the collector
    would walk them again and again as they are made (about 12% of the import's CPU), and every full collection
    of the run would walk them once more although they live as long as the process. `gc.freeze()` moves them out
    of its reach."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(module)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def traces_wanted(prefix: str) -> bool:
    """Whether the SDK's OpenTelemetry spans could reach anyone: its variables (`ANTHROPIC_OPEN_TELEMETRY...`, for
    prefix "ANTHROPIC") or OpenTelemetry's (`OTEL_PYTHON_TRACER_PROVIDER`) are set, or the program has installed a
    tracer provider. Without any of these, every span the SDK starts goes nowhere, and starting them (attributes,
    a span object, trace headers looked for) was 7% of the function calls of a streamed request, about 0.05-0.1 ms
    of the main process's CPU each (docs/benchmarks.md "First run"); the client is then made with its spans off."""
    if "OTEL_PYTHON_TRACER_PROVIDER" in os.environ or any(v.startswith(f"{prefix}_OPEN_TELEMETRY") for v in os.environ):
        return True
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    # The API's own placeholder until a program installs a provider: spans from it record nothing.
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _in_thread(name: str, work: Callable[[], U]) -> Future[U]:
    """`work()` in a daemon thread; its result (or exception) in the future returned at once."""
    done: Future[U] = Future()

    def run() -> None:
        try:
            done.set_result(work())
        except BaseException as exc:  # handed to whoever waits for it
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


class SdkClient(Generic[T]):
    """`make(module, extra)` makes the client from the imported SDK and what `alongside()` returned (None without
    it); `alongside` must not need the SDK, and runs beside its import."""

    def __init__(self, module: str, make: Callable[[ModuleType, Any], T],
                 alongside: Callable[[], Any] | None = None) -> None:
        self.module = module
        self._make = make
        self._alongside = alongside
        self._client: T | None = None
        self._made: Future[T] | None = None

    @property
    def made(self) -> bool:
        return self._client is not None or (self._made is not None and self._made.done()
                                             and self._made.exception() is None)

    def preload(self) -> None:
        """Start importing the SDK and making the client in a daemon thread (once); returns at once."""
        if self._made is not None:
            return
        extra = _in_thread(f"prepare {self.module}", self._alongside) if self._alongside is not None else None

        def make() -> T:
            module = import_quietly(self.module)
            return self._make(module, extra.result() if extra is not None else None)

        self._made = _in_thread(f"import {self.module}", make)

    async def ready(self) -> T:
        """The client, once the SDK is imported and the client made; the event loop keeps running meanwhile."""
        if self._client is None:
            import asyncio

            self.preload()
            assert self._made is not None
            # shielded: a Ctrl-C that cancels this wait must not cancel the import's own future (its thread would
            # then fail to set the result, and `made` would raise CancelledError while the run closes)
            client = await asyncio.shield(asyncio.wrap_future(self._made))
            if self._client is None:
                self._client = client
        return self._client

    @property
    def client(self) -> T:
        """The client now (importing the SDK in this thread if it is not imported yet)."""
        if self._client is None:
            if self._made is not None:
                self._client = self._made.result()
            else:
                module = import_quietly(self.module)
                self._client = self._make(module, self._alongside() if self._alongside is not None else None)
        return self._client

    @client.setter
    def client(self, value: T) -> None:  # a client made elsewhere (with other options) replaces this one
        self._client = value


class SdkBacked:
    """A provider's side of its lazily made SDK client (`self.sdk`): the `client` (a test or a caller may put one
    made with other options in its place), `preload()` and `aclose()`, which closes only a client that was made.
    Listed before `Provider` among the bases, so these replace Provider's empty hooks."""

    sdk: SdkClient[Any]

    @property
    def client(self) -> Any:
        return self.sdk.client

    @client.setter
    def client(self, value: Any) -> None:
        self.sdk.client = value

    def preload(self) -> None:
        self.sdk.preload()

    async def ready(self) -> None:
        await self.sdk.ready()

    async def aclose(self) -> None:
        if self.sdk.made:
            await self.sdk.client.close()
