"""`--provider imagedescriber`: the hosted tag API (POST /api/v1/generate_tags, bearer key, JSON envelope).

There is no official SDK, so this speaks HTTP through httpx2, the client both official SDKs already
install. As with the SDK providers, there are no retries here: the engine sees every answer, paces the
run (the API sends no rate-limit headers; its documented limit is 30 requests a minute per key, declared
to the pacer up front) and records every attempt with the credits it cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx2

from imgtag.config.options import option
from imgtag.pricing.costs import Usage
from imgtag.providers.base import (
    Capabilities,
    ConfigError,
    Fatal,
    ImageInput,
    ModelAnswer,
    Permanent,
    Provider,
    RateLimitSnapshot,
    Reachability,
    RequestOptions,
    Transient,
    public_url,
    redact,
)
from imgtag.providers.imagedescriber.encode import EncodeError, data_url, fits, reencode
from imgtag.providers.imagedescriber.errors import INVALID_IMAGE, KEY_VARIABLE, classify, classify_http
from imgtag.providers.imagedescriber.fields import api_lang, check_preset, map_answer
from imgtag.providers.messages import Credits

if TYPE_CHECKING:
    from imgtag.config.runconfig import RunConfig, Target

DEFAULT_BASE_URL = "https://api.imagedescriber.app"
ENDPOINT = "/api/v1/generate_tags"
BASE_URL_VARIABLE = "IMAGEDESCRIBER_BASE_URL"
RATE_VARIABLE = "IMAGEDESCRIBER_REQUESTS_PER_MINUTE"
DEFAULT_REQUESTS_PER_MINUTE = 30.0  # per key, from the API's documentation; a 1004 answer above it
MODEL_ID = "imagedescriber-v1"      # the API has no model parameter; this names its answers in the store


class ImageDescriberProvider(Provider):
    name = "imagedescriber"
    # No schema, no prompt, no batch API; sizes are limited in bytes (4 MB), not pixels, so the catalogue's
    # standard tier (long edge 1568 px) decides the size as for any unknown model.
    capabilities = Capabilities(native_schema=False, batch=False,
                                image_formats=("image/jpeg", "image/png", "image/webp"))
    default_model = MODEL_ID
    # The API is asked nothing but the image and cannot be given a schema: how many tags it returns and how long
    # its title is are its choice (3 tags where keywords asks for 10 to 30 is a good answer, stored as ok). Only
    # its fields and their types are checked; an answer that fails even that is recorded with its text, never
    # bought a second time, and `imgtag retry` asks again only with --all.
    reask_invalid = False
    follows_schema = False
    counts_on_the_wire = True
    billed_in_credits = True

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, timeout: float = 120.0,
                 requests_per_minute: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # for the wait after a 1004 (tests pass a virtual one)
        self.api_key = api_key or os.environ.get(KEY_VARIABLE)
        if not self.api_key:
            raise ConfigError(f"no imagedescriber API key: set the {KEY_VARIABLE} environment variable")
        self.base_url = (base_url or os.environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL).rstrip("/")
        self.requests_per_minute = _rate(requests_per_minute)
        self.client = httpx2.AsyncClient(
            base_url=self.base_url, timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"authorization": f"Bearer {self.api_key}", "content-type": "application/json"},
        )
        # Images answered "invalid image format" once: the next ask sends a re-encoded copy, the one after
        # that is not made (a second 2004 is a recorded failure). Keyed by content, dropped when settled.
        self._reencode_next: set[str] = set()
        self._last_success = self.clock()
        self.reach = Reachability(public_url(self.base_url) or DEFAULT_BASE_URL)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- before anything is spent --------------------------------------------------------------

    @classmethod
    def check_run(cls, cfg: RunConfig, target: Target) -> None:
        if target.model.id != MODEL_ID:
            raise ConfigError(f"the imagedescriber API has no model choice; drop {option('model', target.model.id)} "
                              f"(its answers are stored as {MODEL_ID})")
        check_preset(target.preset)
        api_lang(target.preset.lang)
        if cfg.budget is not None:
            raise ConfigError(f"the imagedescriber API bills in credits, not dollars, so {option('budget')} cannot be "
                              "enforced; limit the credits on the account instead")
        if cfg.mode != "sync":
            raise ConfigError(f"the imagedescriber API has no batch mode; use {option('mode', 'sync')}")

    def declared_limits(self) -> RateLimitSnapshot:
        return RateLimitSnapshot(requests_limit=max(1, round(self.requests_per_minute)))

    # -- the call ------------------------------------------------------------------------------

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        limits = self.declared_limits()
        content_key = hashlib.sha256(image.data).hexdigest()
        second_format_try = content_key in self._reencode_next
        if second_format_try or not fits(image):
            try:
                image = await asyncio.to_thread(reencode, image)
            except EncodeError as exc:
                self._reencode_next.discard(content_key)
                raise Permanent(str(exc), error_type="invalid_image") from None
        try:
            lang = api_lang(options.preset.lang)
        except ConfigError as exc:  # check_run refuses this before the run; never guess a language
            raise Fatal(str(exc), error_type="config_error") from None
        body = json.dumps({"image": data_url(image), "lang": lang})
        try:
            with self.on_the_wire():
                response = await self.client.post(ENDPOINT, content=body)
        except httpx2.TimeoutException:
            raise Transient("timeout: no response in time", error_type="timeout") from None
        except httpx2.HTTPError as exc:
            if (absent := self.reach.check(exc)) is not None:
                raise absent from None
            raise Transient(f"connection error: {self._clean(str(exc) or type(exc).__name__)}",
                            error_type="connection_error") from None
        self.reach.ok()
        retry_after = self._rate_limit_wait()
        envelope = _envelope(response)
        if envelope is None:
            raise classify_http(response.status_code, self._clean(response.text), retry_after=retry_after,
                                limits=limits)
        request_id = _str(envelope.get("request_id"))
        code = _code(envelope.get("code"))
        if code != 0:
            error = classify(code if code is not None else -1, self._clean(_str(envelope.get("message")) or ""),
                             http_status=response.status_code, request_id=request_id, retry_after=retry_after,
                             limits=limits)
            if code == INVALID_IMAGE:
                if not second_format_try:
                    self._reencode_next.add(content_key)
                    raise Transient(f"{error.message}; asking once more with a re-encoded image",
                                    error_type="invalid_image", http_status=response.status_code,
                                    request_id=request_id)
                self._reencode_next.discard(content_key)
                raise Permanent(f"{error.message}, also after re-encoding", error_type="invalid_image",
                                http_status=response.status_code, request_id=request_id)
            raise error
        self._reencode_next.discard(content_key)
        self._last_success = self.clock()
        data = _dict(envelope.get("data"))
        tags, credits = _dict(data.get("tags")), _dict(data.get("credits"))
        fields = map_answer(options.preset, tags.get("tags"), tags.get("title"), tags.get("description"))
        return ModelAnswer(stop_reason="end_turn", usage=Usage(), obj=fields, request_id=request_id, limits=limits,
                           credits=Credits(_number(credits.get("amount")), _number(credits.get("remaining"))),
                           raw=json.dumps(data.get("tags"), ensure_ascii=False))

    def _rate_limit_wait(self) -> float:
        """How long to wait after a 1004 (the API sends no retry-after): one request interval while answers
        keep coming, growing with the time since the last success up to one whole minute (the documented
        window), so a key shared with another busy client backs off instead of burning its retries. With
        the engine's cap of 50 rate-limit answers per image, an image fails only after most of an hour
        with no answer at all."""
        interval = 60.0 / self.requests_per_minute
        return min(max(60.0, interval), max(interval, self.clock() - self._last_success))

    def _clean(self, text: str) -> str:
        """One line, short, and never the key."""
        return redact(" ".join(text.split())[:300], self.api_key)


def _rate(setting: float | None) -> float:
    raw: Any = setting if setting is not None else os.environ.get(RATE_VARIABLE) or DEFAULT_REQUESTS_PER_MINUTE
    try:
        rate = float(raw)
    except (TypeError, ValueError):
        rate = -1.0
    if not rate > 0:
        raise ConfigError(f"{RATE_VARIABLE} must be a positive number of requests per minute, not {raw!r}")
    return rate


def _envelope(response: httpx2.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and "code" in body else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _code(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    """Credits are documented as numbers but shown as strings in the example answer: accept both."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
