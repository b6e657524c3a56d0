"""Anthropic Messages API through the official SDK's async client."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from imgtag.providers.anthropic_stream import MessageAccumulator, StreamError, sse_events
from imgtag.providers.anthropic_wire import (
    KEY_VARIABLE,
    build_params,
    classify_status,
    parse_rate_limits,
)
from imgtag.providers.base import (
    Capabilities,
    ConfigError,
    Fatal,
    ImageInput,
    ModelAnswer,
    Provider,
    RateLimitSnapshot,
    Reachability,
    RequestOptions,
    Transient,
    check_key,
    is_local_error,
    local_reason,
    public_url,
    redact,
)
from imgtag.providers.lazy import LazyModule
from imgtag.providers.sdk import SdkBacked, SdkClient, traces_wanted

if TYPE_CHECKING:
    from imgtag.providers.anthropic_batches import AnthropicBatches

# Imported on first use (the client is made after the key check), so a missing key is reported in a blink.
anthropic: Any = LazyModule("anthropic")
httpx2: Any = LazyModule("httpx2")  # the SDK's transport: a stream cut off mid-answer raises its errors unwrapped


def default_tls() -> Any:
    """The TLS context the SDK's HTTP client makes when given none (`verify=True`): loading the system's
    certificates takes 0.05-0.2 s, mostly in C without the interpreter lock, so it is made beside the import."""
    import httpx2

    return httpx2.create_ssl_context()


class AnthropicProvider(SdkBacked, Provider):
    name = "anthropic"
    capabilities = Capabilities(native_schema=True, batch=True,
                                image_formats=("image/jpeg", "image/png", "image/gif", "image/webp"),
                                max_images_per_request=100)
    counts_on_the_wire = True

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, timeout: float = 120.0) -> None:
        self.api_key = api_key or os.environ.get(KEY_VARIABLE)
        if not self.api_key:
            raise ConfigError(f"no Anthropic API key: set the {KEY_VARIABLE} environment variable")
        check_key(self.api_key, KEY_VARIABLE)
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        self.reach = Reachability(public_url(self.base_url) or "the Anthropic API")
        # max_retries=0: the engine owns every retry. It must see each 429 to pace the whole run, apply one
        # global pause instead of N independent SDK backoffs, count attempts per image, and log them all.
        # Made on first use: a run with nothing to ask never imports the SDK (providers/sdk.py).
        # The SDK's aiohttp transport (its `aiohttp` extra): its C HTTP parser takes about 0.8 ms of CPU per
        # request less than the default httpx transport, and the request stage is CPU-bound on one core
        # (docs/benchmarks.md "First run").
        # Its OpenTelemetry spans stay on only where something could receive them (sdk.traces_wanted).
        # Its TLS context is the one the SDK would make (httpx2's default, with the same environment), made beside
        # the SDK's import instead of after it (providers/sdk.py).
        self.sdk: SdkClient[Any] = SdkClient("anthropic", lambda sdk, tls: sdk.AsyncAnthropic(
            api_key=self.api_key, base_url=self.base_url, max_retries=0, timeout=timeout,
            http_client=sdk.DefaultAioHttpClient(timeout=timeout, verify=tls),
            open_telemetry=None if traces_wanted("ANTHROPIC") else False), alongside=default_tls)

    def batch_api(self) -> AnthropicBatches:
        from imgtag.providers.anthropic_batches import AnthropicBatches

        return AnthropicBatches(self.client, self.api_key)

    # -- request building (shared with batch mode) ---------------------------------------------

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]:
        return build_params(image, options)

    # -- the call ------------------------------------------------------------------------------

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        return await self.send_params(self.build_params(image, options), began=options.began)

    async def send_params(self, params: dict[str, Any], *,
                          began: Callable[[RateLimitSnapshot], None] | None = None) -> ModelAnswer:
        """One paid request from prepared params (request/packing.py edits them for several images).

        Every request streams: the response headers, and so the server's rate limits, come with the answer's
        first byte, not seconds later with its last (a plain response sends its headers only when the whole
        answer is ready). `began(limits)` is called then (`message_start`): the pacer adopts the limits at once,
        and from then on the prompt cache entry the request wrote is usable by other requests
        (request/warmup.py)."""
        client = await self.sdk.ready()
        try:
            with self.on_the_wire():
                answer, headers = await self._stream(client, params, began)
        except anthropic.APIStatusError as exc:
            self.reach.ok()  # it answered, if only to refuse
            raise classify_status(exc, self.api_key) from None
        except (anthropic.APITimeoutError, httpx2.TimeoutException):
            raise Transient("timeout: no response in time", error_type="timeout") from None
        except httpx2.TransportError as exc:  # only a stream raises these unwrapped: cut off mid-answer
            raise Transient(f"connection error: the answer was cut off ({type(exc).__name__})",
                            error_type="connection_error") from None
        except anthropic.APIConnectionError as exc:
            if is_local_error(exc):
                # The request could not even be built or written (an illegal header, say): every
                # request would fail the same way, so retrying 114 times as "connection error" is wrong.
                raise Fatal(f"could not build the request: {redact(local_reason(exc), self.api_key)}",
                            error_type="request_error") from None
            if (absent := self.reach.check(exc)) is not None:
                raise absent from None
            raise Transient(
                f"connection error: {redact(str(exc), self.api_key)}", error_type="connection_error"
            ) from None
        self.reach.ok()
        answer.request_id = headers.get("request-id")
        answer.limits = parse_rate_limits(headers)
        return answer

    async def _stream(self, client: Any, params: dict[str, Any],
                      began: Callable[[RateLimitSnapshot], None] | None) -> tuple[ModelAnswer, Mapping[str, str]]:
        """The SDK sends the request; its events are read raw (providers/anthropic_stream.py), not as the SDK's
        typed objects, which cost more CPU than everything else imgtag does per image.

        `messages.create(stream=True)`, not the `messages.stream()` helper: the helper's stream object makes its
        event generators in its constructor, and they refer back to it, a reference cycle that holds the response
        and so the request with its body (the image three times: bytes, base64 and JSON, ~450 KB for a 100 KB
        JPEG). Only the cyclic garbage collector freed those, whenever a full collection happened to run, so
        answered requests' bodies piled up beyond the requests in flight (tests/test_memory.py). The plain stream
        makes its generator on first use, which we never do: the body goes when the request ends."""
        async with await client.messages.create(**params, stream=True) as stream:
            response = stream.response
            headers = response.headers
            chunks: list[bytes] = []
            waiting = began is not None
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                if waiting and b"message_start" in chunk:
                    waiting = False
                    began(parse_rate_limits(headers))  # type: ignore[misc]
        events = MessageAccumulator()
        try:
            for name, data in sse_events(b"".join(chunks)):
                events.feed(name, data)
        except StreamError as exc:
            raise anthropic.APIStatusError(str(exc), response=response, body=exc.body) from None
        except ValueError:
            raise Transient("connection error: the answer was not valid JSON events",
                            error_type="connection_error") from None
        answer = events.answer()
        if answer is None:
            raise Transient("connection error: the answer was cut off (the stream ended early)",
                            error_type="connection_error")
        return answer, headers
