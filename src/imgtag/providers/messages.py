"""What goes to a provider and what comes back: the image, the request's options, the answer with its usage and
the rate limits its headers advertised. Plain data, shared by the per-request interface (base.py) and the
batch one (batch_api.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imgtag.presets import Preset
from imgtag.pricing.catalogue import ModelInfo
from imgtag.pricing.costs import Usage


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


@dataclass(frozen=True)
class Credits:
    """What a credit-billed provider (not priced in dollars) charged for one call, and the balance after it."""

    amount: float | None = None
    remaining: float | None = None


@dataclass
class ModelAnswer:
    stop_reason: str
    usage: Usage
    text: str | None = None               # text blocks, joined
    obj: dict[str, Any] | None = None      # a tool_use input, when the provider answered through a tool
    request_id: str | None = None
    refusal: str | None = None             # the provider's explanation/category, when it refused
    limits: RateLimitSnapshot = field(default_factory=RateLimitSnapshot)
    credits: Credits | None = None         # credit-billed providers only: recorded on the attempt
    raw: str | None = None                 # the answer as the API sent it, when `obj` is a mapping of it
    # An image's share of a pack: the whole request's prompt (input + cache reads + cache writes), which decides
    # whether the request is billed at long-context rates (pricing/costs.py); None: `usage` is the whole request's.
    request_prompt_tokens: int | None = None


@dataclass(frozen=True)
class RequestOptions:
    preset: Preset
    model: ModelInfo
    max_tokens: int
    batch: bool = False  # a Message Batches request: the cached prefix gets the 1-hour TTL
    # Called when the answer begins, if the provider can tell (a streamed response's first event); the
    # cache warm-up lets the waiting requests go then, since a cache entry is usable from that moment.
    # It gets the rate limits that came with the answer's headers.
    began: Callable[[RateLimitSnapshot], None] | None = field(default=None, compare=False, repr=False)
