"""What every provider gives the engine: one call per image, typed outcomes, rate-limit hints.

A provider turns (image, preset, model) into a ModelAnswer or raises one of the ProviderError kinds
below. The engine owns retries, pacing, validation and the store; providers own the wire.
docs/providers.md walks through writing one; `Capabilities` is what the rest of imgtag may ask of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from imgtag.config.errors import ConfigurationError
from imgtag.pricing.catalogue import ModelInfo
from imgtag.providers.messages import ImageInput, ModelAnswer, RateLimitSnapshot, RequestOptions
from imgtag.providers.sending import check_gate
from imgtag.util.urls import public_url as public_url  # providers import it from here

if TYPE_CHECKING:
    from imgtag.config.runconfig import RunConfig, Target
    from imgtag.providers.batch_api import BatchAPI


class ProviderError(Exception):
    """Base of every failure a provider reports. `message` is one line and never contains secrets."""

    kind = "error"

    def __init__(self, message: str, *, http_status: int | None = None, request_id: str | None = None,
                 error_type: str | None = None, limits: RateLimitSnapshot | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.error_type = error_type or self.kind
        self.limits = limits or RateLimitSnapshot()


class RateLimited(ProviderError):
    """429: slow down and try again after `retry_after` seconds."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Transient(ProviderError):
    """Overloaded, server error, dropped connection, timeout: retry with backoff up to a cap."""

    kind = "transient"


class Unreachable(Transient):
    """The connection itself failed (nothing listening, no route): a server that is gone or restarting. Retried like
    any connection error; batch polling gives up on a server that stays so (request/batch/collect.py)."""


class Permanent(ProviderError):
    """This image's request can never succeed as sent (bad image, too large): record it, do not retry."""

    kind = "permanent"


class Fatal(ProviderError):
    """Nothing will succeed (bad key, no permission, spend limit, unknown model): stop the run."""

    kind = "fatal"
    exit_code = 2


class Exhausted(Fatal):
    """The account can pay for nothing more (out of credits): start no new request, let those in flight
    finish, leave the rest pending for a later run. Exit 1, not 2: nothing is misconfigured."""

    kind = "exhausted"
    exit_code = 1


@dataclass(frozen=True)
class Capabilities:
    """What a provider supports; imgtag adapts to it instead of asking each provider everything.

    native_schema: the API constrains output to the preset's JSON schema (otherwise imgtag relies on the
        prompt plus local validation, which it always does anyway).
    batch: an asynchronous batch API (the provider then also returns a BatchAPI from `batch_api()`).
    image_formats: media types the API accepts; preprocessing sends JPEG, so list at least image/jpeg.
    max_image_edge: longest image edge in px the model sees (None = the catalogue's tier decides).
    max_images_per_request: images one request may carry (imgtag sends one per request today).
    """

    native_schema: bool = True
    batch: bool = False
    image_formats: tuple[str, ...] = ("image/jpeg", "image/png")
    max_image_edge: int | None = None
    max_images_per_request: int = 1


class Provider(ABC):
    """One module per provider; see docs/providers.md. Construct with keyword settings (api_key, base_url,
    timeout...); raise ConfigError from __init__ for a missing key or a bad setting (exit 2, one sentence)."""

    name: str = "provider"
    capabilities: ClassVar[Capabilities] = Capabilities()
    # The model used when --model is not given (None: the catalogue's default).
    default_model: ClassVar[str | None] = None
    # False for an API whose answer a second ask would not change (no prompt, no schema, no sampling
    # settings): an answer that fails the preset's schema is then recorded at once instead of paid twice, and
    # `imgtag retry` leaves it alone unless told --all.
    reask_invalid: ClassVar[bool] = True
    # False for an API that cannot be asked for a schema (the hosted tag API): its answers are held only to what
    # it controls, the preset's fields present with the right types (validate/schema.shape_of). How many tags
    # and how long a title are its own choice, not a failure.
    follows_schema: ClassVar[bool] = True
    # True for an API that bills in its own credits (recorded per answer as `Credits`), not in dollars: progress
    # and summaries then show credits, never a $0 that is not the bill.
    billed_in_credits: ClassVar[bool] = False
    # True for a provider that wraps each HTTP call in `on_the_wire()`: the progress line's "in flight" is then
    # its count of requests sent and not yet answered. Otherwise the engine's count of requests it started is
    # shown, which includes any a provider holds back under its own limit.
    counts_on_the_wire: ClassVar[bool] = False
    on_the_wire_now: int = 0

    @contextmanager
    def on_the_wire(self) -> Iterator[None]:
        """Around the HTTP call itself (after any wait for the provider's own limit or its SDK's import). A run
        that is stopping sends nothing new: the request raises providers.sending.NotSent here instead."""
        check_gate()
        self.on_the_wire_now += 1
        try:
            yield
        finally:
            self.on_the_wire_now -= 1

    def concurrency_limit(self) -> int | None:
        """Requests in flight this provider allows itself right now (adaptive concurrency for a server that
        advertises no limits), or None when only the engine's pacer bounds them. Shown on the progress line."""
        return None

    @property
    def supports_batch(self) -> bool:
        return self.capabilities.batch

    @classmethod
    def resolve_model(cls, info: ModelInfo, settings: dict[str, Any]) -> ModelInfo:
        """Adjust the catalogue's entry for this provider before anything is estimated or sent (e.g. a
        local server's unpriced model costs 0). Runs without credentials, also for --dry-run."""
        return info

    def preload(self) -> None:  # noqa: B027 - optional hook
        """The run will ask: start loading what the first request needs (an SDK import, providers/sdk.py) in
        the background. Never called by a run whose answers are all in the store."""

    async def ready(self) -> None:  # noqa: B027 - optional hook
        """Returns once a request could leave at once (its SDK imported and its client made, providers/sdk.py).
        The engine waits for it before it takes its first pacer permit: the pacer counts a permit as a request
        the server sees, and permits taken while the SDK still loads would reach the server late and all at
        once, with the refill the pacer credited meanwhile on top of the burst (429s)."""

    def attach_store(self, store: Any) -> None:  # noqa: B027 - optional hook
        """Called once per run with the open store, for providers that remember server facts between runs."""

    @classmethod
    def check_run(cls, cfg: RunConfig, target: Target) -> None:
        """Raise ConfigError (exit 2, one sentence) for a run this provider cannot serve: a preset, language,
        model or option it does not support. Runs before anything is spent and without credentials, so
        --dry-run says it too."""
        return  # optional hook: every run is fine by default

    def declared_limits(self) -> RateLimitSnapshot:
        """Limits known before the first response (a documented rate for an API that sends no rate-limit
        headers); the pacer starts from them instead of probing."""
        return RateLimitSnapshot()

    @abstractmethod
    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        """One paid request. Raises ProviderError subclasses only."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def batch_api(self) -> BatchAPI | None:
        """The provider's batch API for `--mode batch` (providers/batch_api.py), or None when it has none."""
        return None


def max_edge_of(provider: Provider | None) -> int | None:
    """The longest image edge this provider accepts (None: no provider, or no limit of its own)."""
    return provider.capabilities.max_image_edge if provider is not None else None


def with_capabilities(base: Capabilities, **changes: Any) -> Capabilities:
    """A copy with some fields changed, for providers whose limits depend on the model."""
    return replace(base, **changes)


class ConfigError(ConfigurationError):
    """A provider that cannot be used as configured (exit 2), e.g. a missing API key. One sentence."""


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets from text that might reach a user, a log or the store."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def check_key(key: str, variable: str) -> None:
    """Refuse a key with whitespace at once (a pasted newline): it can never authenticate, and sending it
    fails locally on every request. The key itself never appears in the message."""
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"{variable} contains whitespace (a space or line break, often pasted by accident); "
                          "set it again without.")


# Exceptions that mean the request failed inside this process (before any byte reached the server).
# ValueError: aiohttp (the Anthropic SDK's transport here) refuses a header with a control character with a plain
# ValueError before anything is sent; a fault on the network is never one.
_LOCAL_ERROR_NAMES = frozenset({"LocalProtocolError", "InvalidURL", "UnsupportedProtocol", "UnicodeEncodeError",
                                "ValueError"})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in seen:
        seen.append(node)
        node = node.__cause__ or node.__context__
    return seen


def is_local_error(exc: BaseException) -> bool:
    """A connection-level error that was really a local request-construction error (httpx/httpcore/h11
    LocalProtocolError, an invalid URL or header): fatal for the run, not a transient network fault."""
    return any(type(e).__name__ in _LOCAL_ERROR_NAMES for e in _chain(exc)[1:])


def connection_refused(exc: BaseException) -> bool:
    """The connection itself failed (nothing listening, no route): not a request that got lost on its way."""
    return any(type(e).__name__ == "ConnectError" for e in _chain(exc))


def local_reason(exc: BaseException) -> str:
    for e in _chain(exc)[1:]:
        if type(e).__name__ in _LOCAL_ERROR_NAMES:
            return " ".join(f"{type(e).__name__}: {e}".split())[:200]
    return type(exc).__name__


class Reachability:
    """A server that has not answered once in this run and refuses every connection is not there (a wrong
    --base-url, a local server not started). After a few refusals in a row the run stops with one sentence and
    its images stay pending, instead of each image spending all its attempts and being marked failed. Once the
    server has answered, a refused connection is a restart or a blip: retried like any connection error."""

    REFUSALS = 3

    def __init__(self, where: str) -> None:
        self.where = where  # the endpoint, as the user can recognise it (never with credentials)
        self.answered = False
        self.refused = 0

    def ok(self) -> None:
        self.answered = True
        self.refused = 0

    def check(self, exc: BaseException) -> Fatal | None:
        """The Fatal to raise instead of a transient connection error, once the server is clearly not there."""
        if self.answered or not connection_refused(exc):
            return None
        self.refused += 1
        if self.refused < self.REFUSALS:
            return None
        return Fatal(f"could not connect to {self.where} ({self.refused} tries, no answer yet): check the base URL "
                     "and that the server is running; the images are still to do", error_type="connection_error")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long a server asked us to wait: `retry-after-ms` (OpenAI, Anthropic) before `retry-after` seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None
