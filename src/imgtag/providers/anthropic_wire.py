"""The Anthropic Messages wire, shared by the per-request provider (anthropic_provider.py) and Message Batches
(anthropic_batches.py): the request body, the answer's content and usage, rate-limit headers and which HTTP
errors are which of our kinds. Nothing here holds a client or sends anything."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from imgtag.pricing.costs import Usage
from imgtag.pricing.prefix import plan_prefix
from imgtag.providers.base import (
    Fatal,
    ImageInput,
    ModelAnswer,
    Permanent,
    ProviderError,
    RateLimitSnapshot,
    RequestOptions,
    Transient,
    redact,
)
from imgtag.providers.http_errors import key_refused, one_line, rate_limited, request_refused
from imgtag.validate.schema import to_anthropic_schema

if TYPE_CHECKING:  # only named in annotations: building a request needs no SDK
    import anthropic

# The error types the API may send as an SSE `error` event once a stream has begun (the HTTP status is
# 200 by then), mapped to the status the same error has as a plain response, so both are judged alike.
STREAM_ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}

KEY_VARIABLE = "ANTHROPIC_API_KEY"


def build_params(image: ImageInput, options: RequestOptions) -> dict[str, Any]:
    """The Messages request for one image: system blocks (the shared prefix, cached when the plan says so),
    the image before the instruction, and the preset's schema as structured output."""
    preset, model = options.preset, options.model
    plan = plan_prefix(preset, model, batch=options.batch)
    system: list[dict[str, Any]] = [{"type": "text", "text": text} for text in plan.system_blocks]
    if plan.cache:
        # Identical in every request of a run (batch requests too: identical blocks are what the batch docs
        # ask for), and long enough for the model's minimum, or the plan would not cache it.
        mark: dict[str, Any] = {"type": "ephemeral"}
        if plan.ttl == "1h":
            mark["ttl"] = "1h"
        system[-1]["cache_control"] = mark
    params: dict[str, Any] = {
        "model": model.id,
        # The preset's limit is in Haiku 4.5 tokens; a model whose tokenizer counts more gets as much room.
        "max_tokens": max(1, round(options.max_tokens * model.tokenizer_factor)),
        "system": system,
        "messages": [
            {
                "role": "user",
                # Images before text: the documented best order for vision prompts.
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": image.media_type,
                            "data": base64.b64encode(image.data).decode("ascii"),
                        },
                    },
                    {"type": "text", "text": preset.instruction},
                ],
            }
        ],
        "output_config": {"format": {"type": "json_schema", "schema": to_anthropic_schema(preset.schema)}},
    }
    if model.thinking_default:
        # Thinking tokens count toward max_tokens and cost money; tagging does not need them.
        params["thinking"] = {"type": "disabled"}
    # Never sent: temperature/top_p/top_k (rejected by newer models) and forced tool_choice.
    return params


def classify_status(exc: anthropic.APIStatusError, api_key: str | None) -> ProviderError:
    """An HTTP error (or a stream's `error` event) as one of our error kinds; the key never in its message."""
    status = exc.status_code
    if status == 200:  # an `error` event inside a stream: judge it by its type, as the plain response
        status = STREAM_ERROR_STATUS.get(_error_type(exc) or "", 500)
    request_id = getattr(exc, "request_id", None) or exc.response.headers.get("request-id")
    detail = redact(_error_message(exc), api_key)
    limits = parse_rate_limits(exc.response.headers)
    kw: dict[str, Any] = {"http_status": status, "request_id": request_id, "limits": limits}
    if status in (401, 403):
        return key_refused(status, "the Anthropic API", detail, KEY_VARIABLE, **kw)
    if status == 429:
        if getattr(exc, "error_code", None) == "enforced_spend_limit_reached":
            return Fatal(f"spend limit reached (429): {detail}", error_type="spend_limit", **kw)
        return rate_limited(detail, exc.response.headers, **kw)
    if status == 402:
        return Fatal(f"payment required (402): {detail}", error_type="billing_error", **kw)
    if status == 404:
        return Fatal(f"not found (404): {detail}", error_type="not_found_error", **kw)
    if (refused := request_refused(status, detail, **kw)) is not None:
        return refused
    if status == 529:
        return Transient(f"overloaded (529): {detail}", error_type="overloaded_error", **kw)
    if status in (408, 409) or status >= 500:
        return Transient(f"server error ({status}): {detail}", error_type="api_error", **kw)
    return Permanent(f"unexpected HTTP {status}: {detail}", error_type="http_error", **kw)


def cacheable_prefix_tokens(options: RequestOptions) -> int:
    """Tokens in the prefix shared by every request (schema + system prompt, + the guide where it is sent)."""
    return plan_prefix(options.preset, options.model, batch=options.batch).tokens


def answer_from_message(message: Any) -> ModelAnswer:
    """Pick content blocks by type: thinking blocks may come first, text or tool_use carry the answer."""
    texts: list[str] = []
    obj: dict[str, Any] | None = None
    for block in message.content:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use" and obj is None and isinstance(block.input, dict):
            obj = dict(block.input)
    u = message.usage
    creation = getattr(u, "cache_creation", None)
    usage = Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_creation_input_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
        cache_read_input_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
        cache_creation_1h_input_tokens=getattr(creation, "ephemeral_1h_input_tokens", None) or 0,
    )
    refusal = None
    if message.stop_reason == "refusal":
        details = getattr(message, "stop_details", None)
        category = getattr(details, "category", None) if details is not None else None
        explanation = getattr(details, "explanation", None) if details is not None else None
        refusal = "; ".join(str(x) for x in (category, explanation) if x) or None
    return ModelAnswer(stop_reason=message.stop_reason or "unknown", usage=usage,
                       text="".join(texts) if texts else None, obj=obj, refusal=refusal)


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    err = body.get("error") if isinstance(body, dict) else None
    return str(err["type"]) if isinstance(err, dict) and err.get("type") else None


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return one_line(err["message"])
    return one_line(exc.message)


def _reset_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def parse_rate_limits(headers: Mapping[str, str]) -> RateLimitSnapshot:
    def h(kind: str, part: str) -> str | None:
        return headers.get(f"anthropic-ratelimit-{kind}-{part}")

    return RateLimitSnapshot(
        requests_limit=_int(h("requests", "limit")),
        requests_remaining=_int(h("requests", "remaining")),
        requests_reset_s=_reset_seconds(h("requests", "reset")),
        input_limit=_int(h("input-tokens", "limit")),
        input_remaining=_int(h("input-tokens", "remaining")),
        input_reset_s=_reset_seconds(h("input-tokens", "reset")),
        output_limit=_int(h("output-tokens", "limit")),
        output_remaining=_int(h("output-tokens", "remaining")),
        output_reset_s=_reset_seconds(h("output-tokens", "reset")),
    )
