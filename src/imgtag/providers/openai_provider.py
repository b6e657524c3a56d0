"""OpenAI Chat Completions through the official SDK's async client: OpenAI itself and any OpenAI-compatible
server (vLLM, Ollama, LM Studio, llama.cpp's llama-server).

Servers differ in what they accept, so the provider learns per (base URL, model) and remembers it in the
store (table server_caps): the structured-output mode (json_schema, then json_object with the schema as
llama-server takes it, then json_object, then instructions only), whether `temperature` is accepted, and the
output-limit parameter. Answers are always validated
locally against the preset's full schema, so a server that ignores the schema costs a retry, not bad data.
A server that advertises no rate limits (every local one) gets adaptive concurrency (providers/adaptive.py);
OpenAI's x-ratelimit-* headers feed the pacer instead.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from imgtag.config.options import option
from imgtag.pricing.model_info import ModelInfo
from imgtag.providers.adaptive import AdaptiveLimiter
from imgtag.providers.base import (
    Capabilities,
    ConfigError,
    ImageInput,
    ModelAnswer,
    Provider,
    Reachability,
    RequestOptions,
    Transient,
    public_url,
    redact,
)
from imgtag.providers.openai_wire import (
    JSON_SCHEMA,
    KEY_VARIABLE,
    MODES,
    answer_from_completion,
    build_params,
    classify,
    error_text,
    next_mode,
    parse_rate_limits,
    sent_mode,
)
from imgtag.providers.sdk import SdkBacked, SdkClient

if TYPE_CHECKING:
    from imgtag.providers.openai_batches import OpenAIBatches

BASE_VARIABLE = "OPENAI_BASE_URL"
OPENAI_URL = "https://api.openai.com/v1"
LOCAL_TEMPERATURE = 0.1  # Ollama's compatibility layer uses 1.0 when temperature is omitted
LOCAL_INITIAL_CONCURRENCY = 4


def is_openai(base_url: str | None) -> bool:
    host = urlsplit(base_url).hostname if base_url else "api.openai.com"
    return bool(host) and (host == "openai.com" or host.endswith(".openai.com"))


class OpenAIProvider(SdkBacked, Provider):
    name = "openai"
    # batch: OpenAI's Batch API (providers/openai_batches.py); a compatible server without one is told so before
    # anything is created (OpenAIBatches.unavailable).
    capabilities = Capabilities(native_schema=True, batch=True, image_formats=("image/jpeg", "image/png"),
                                max_image_edge=None, max_images_per_request=1)
    default_model = "gpt-4.1-mini"
    counts_on_the_wire = True

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = (base_url or os.environ.get(BASE_VARIABLE) or "").rstrip("/") or None
        self.api_key = api_key or os.environ.get(KEY_VARIABLE) or None
        if not self.api_key and not self.base_url:
            raise ConfigError(f"no OpenAI API key: set {KEY_VARIABLE}, or point {option('base_url')} (or "
                              f"{BASE_VARIABLE}) at a local server that needs none")
        self.official = is_openai(self.base_url)
        # max_retries=0: the engine owns every retry (one global pause on 429s, attempts counted per image).
        # A keyless local server still gets a placeholder: the SDK refuses to start without one.
        # Made on first use: a run with nothing to ask never imports the SDK (providers/sdk.py).
        self.sdk: SdkClient[Any] = SdkClient("openai", lambda sdk, _: sdk.AsyncOpenAI(
            api_key=self.api_key or "no-key-needed", base_url=self.base_url, max_retries=0, timeout=timeout))
        self.limiter = None if self.official else AdaptiveLimiter(initial=LOCAL_INITIAL_CONCURRENCY)
        self.reach = Reachability(public_url(self.base_url) or "the OpenAI API")
        self._store: Any = None
        self._caps: dict[str, dict[str, Any]] = {}
        self._saved: dict[str, dict[str, Any]] = {}

    def concurrency_limit(self) -> int | None:
        return self.limiter.limit if self.limiter is not None and self.limiter.enabled else None

    @property
    def server(self) -> str:
        return self.base_url or OPENAI_URL

    def attach_store(self, store: Any) -> None:
        self._store = store

    def batch_api(self) -> OpenAIBatches:
        from imgtag.providers.openai_batches import OpenAIBatches

        return OpenAIBatches(self)

    # -- what this server accepts --------------------------------------------------------------------

    def _caps_for(self, model: ModelInfo) -> dict[str, Any]:
        caps = self._caps.get(model.id)
        if caps is None:
            caps = {"response_format": JSON_SCHEMA, "temperature": True,
                    "token_param": "max_completion_tokens" if self.official else "max_tokens"}
            if self._store is not None:
                from imgtag.store import server_caps

                caps.update(server_caps.load(self._store, self.server, model.id))
                self._saved[model.id] = dict(caps)
            self._caps[model.id] = caps
        return caps

    def _remember(self, model_id: str, caps: dict[str, Any]) -> None:
        if self._store is None or self._saved.get(model_id) == caps:
            return
        from imgtag.store import server_caps

        server_caps.save(self._store, self.server, model_id, caps)
        self._saved[model_id] = dict(caps)

    def _temperature(self, model: ModelInfo, caps: dict[str, Any]) -> float | None:
        if not caps.get("temperature", True) or model.accepts_temperature is False:
            return None
        if model.temperature is not None:
            return model.temperature
        # Unknown OpenAI models may be reasoning models, which reject any temperature but the default.
        return None if self.official else LOCAL_TEMPERATURE

    def build_params(self, image: ImageInput, options: RequestOptions) -> dict[str, Any]:
        caps = self._caps_for(options.model)
        return build_params(image, options, mode=caps["response_format"],
                            temperature=self._temperature(options.model, caps), token_param=caps["token_param"])

    # -- the call --------------------------------------------------------------------------------------

    async def describe(self, image: ImageInput, options: RequestOptions) -> ModelAnswer:
        await self.sdk.ready()  # imported in the background since the run knew it would ask
        import openai

        model_id = options.model.id
        caps = self._caps_for(options.model)
        for _ in range(len(MODES) + 3):  # each pass either answers, raises, or learns one thing the server rejects
            params = self.build_params(image, options)
            started = await self.limiter.acquire() if self.limiter else time.monotonic()
            outcome = "other"
            try:
                with self.on_the_wire():  # sent now: the wait for the limiter is over
                    raw = await self.client.chat.completions.with_raw_response.create(**params)
                self.reach.ok()
                completion = raw.parse()
                outcome = "ok"
            except openai.APIStatusError as exc:
                self.reach.ok()  # it answered, if only to refuse
                outcome = "congested" if exc.status_code in (502, 503, 504) else "other"
                message = redact(error_text(exc.body, str(exc.message)), self.api_key)
                if self._learn(caps, params, exc.status_code, message):
                    self._remember(model_id, caps)
                    continue
                request_id = exc.response.headers.get("x-request-id") or getattr(exc, "request_id", None)
                raise classify(exc.status_code, message, exc.response.headers, exc.body, request_id,
                               KEY_VARIABLE, self.base_url) from None
            except openai.APITimeoutError:
                outcome = "congested"
                raise Transient("timeout: no response in time", error_type="timeout") from None
            except openai.APIConnectionError as exc:
                outcome = "congested"
                if (absent := self.reach.check(exc)) is not None:
                    raise absent from None
                raise Transient(f"connection error: {redact(str(exc), self.api_key)}",
                                error_type="connection_error") from None
            finally:
                if self.limiter:
                    await self.limiter.release(started, outcome)
            answer = answer_from_completion(completion)
            answer.request_id = raw.headers.get("x-request-id") or getattr(completion, "id", None)
            answer.limits = parse_rate_limits(raw.headers)
            if self.limiter and not answer.limits.empty:
                self.limiter.disable()  # the server advertises its limits: the pacer takes over
            self._remember(model_id, caps)  # the mode that just worked: a rerun starts from it
            return answer
        raise Transient("the server kept rejecting every request variant", error_type="api_error")

    def _learn(self, caps: dict[str, Any], params: dict[str, Any], status: int, message: str) -> bool:
        """Adjust `caps` after a rejection of something optional; True if the request is worth sending again."""
        if status not in (400, 422, 500):
            return False
        sent = sent_mode(params)
        nxt = next_mode(sent, status, message)
        if nxt is not None:
            # Concurrent requests may all be rejected at once: never step past what this request learned.
            if MODES.index(caps["response_format"]) < MODES.index(nxt):
                caps["response_format"] = nxt
            return True
        m = message.lower()
        if "temperature" in m and "temperature" in params:
            caps["temperature"] = False
            return True
        if "max_tokens" in m and "max_completion_tokens" in m and "max_tokens" in params:
            caps["token_param"] = "max_completion_tokens"
            return True
        if "max_completion_tokens" in m and "max_completion_tokens" in params:
            caps["token_param"] = "max_tokens"
            return True
        return False
