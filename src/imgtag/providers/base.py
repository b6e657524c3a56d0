"""What every provider gives the engine: one call per image, typed outcomes, rate-limit hints.

A provider turns (image, preset, model) into a ModelAnswer or raises one of the ProviderError kinds
below. The engine owns retries, pacing, validation and the store; providers own the wire.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.costs import Usage

if TYPE_CHECKING:
    from imgtag.providers.batch_api import BatchAPI


@dataclass(frozen=True)
class ImageInput:
    data: bytes
    media_type: str


@dataclass(frozen=True)
class RateLimitSnapshot:
    """Limits a provider advertised in its response headers (None = not advertised).

    `*_reset_s` is seconds from now until that bucket is full again."""

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    input_limit: int | None = None
    input_remaining: int | None = None
    input_reset_s: float | None = None
    output_limit: int | None = None
    output_remaining: int | None = None
    output_reset_s: float | None = None

    @property
    def empty(self) -> bool:
        return self.requests_limit is None and self.input_limit is None and self.output_limit is None


@dataclass
class ModelAnswer:
    stop_reason: str
    usage: Usage
    text: str | None = None               # text blocks, joined
    obj: dict[str, Any] | None = None      # a tool_use input, when the provider answered through a tool
    request_id: str | None = None
    refusal: str | None = None             # the provider's explanation/category, when it refused
    limits: RateLimitSnapshot = field(default_factory=RateLimitSnapshot)


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


class Permanent(ProviderError):
    """This image's request can never succeed as sent (bad image, too large): record it, do not retry."""

    kind = "permanent"


class Fatal(ProviderError):
    """Nothing will succeed (bad key, no permission, spend limit, unknown model): stop the run."""

    kind = "fatal"


@dataclass(frozen=True)
class RequestOptions:
    preset: Preset
    model: ModelInfo
    max_tokens: int


class Provider(ABC):
    name: str = "provider"
    supports_batch: bool = False

    @abstractmethod
    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        """One paid request. Raises ProviderError subclasses only."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def batch_api(self) -> BatchAPI | None:
        """The provider's batch API for `--mode batch` (providers/batch_api.py), or None when it has none."""
        return None


class ConfigError(Exception):
    """A usage/configuration problem (exit 2), e.g. a missing API key. One sentence."""


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets from text that might reach a user, a log or the store."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
