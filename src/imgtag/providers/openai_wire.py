"""Chat Completions wire details shared by every OpenAI-compatible server: request body, answer, headers, errors.

Pure functions, no SDK import: the provider module owns the client and the call.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from imgtag.config.options import option
from imgtag.pricing.costs import Usage
from imgtag.providers.base import (
    Fatal,
    ImageInput,
    ModelAnswer,
    Permanent,
    ProviderError,
    RateLimitSnapshot,
    RequestOptions,
    Transient,
)
from imgtag.providers.http_errors import key_refused, one_line, rate_limited, request_refused
from imgtag.validate.schema import describe_constraints, to_openai_schema

KEY_VARIABLE = "OPENAI_API_KEY"

# Structured-output modes, best first. A server that rejects one is asked with the next. JSON_OBJECT_SCHEMA is
# llama.cpp's llama-server form, {"type": "json_object", "schema": {...}}: it refuses json_schema but enforces
# this schema with a grammar, which a bare json_object (valid JSON of any shape) does not.
JSON_SCHEMA, JSON_OBJECT_SCHEMA, JSON_OBJECT, PROMPT = "json_schema", "json_object_schema", "json_object", "prompt"
MODES = (JSON_SCHEMA, JSON_OBJECT_SCHEMA, JSON_OBJECT, PROMPT)

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def data_url(image: ImageInput) -> str:
    # Preprocessing sends JPEG (PNG where it must be lossless); never WebP, which llama-server and LM Studio reject.
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def schema_name(preset_name: str) -> str:
    return ("imgtag_" + re.sub(r"[^A-Za-z0-9_-]", "_", preset_name))[:64]


def schema_instructions(schema: dict[str, Any]) -> str:
    """What a server without schema enforcement needs to hear (also makes json_object legal: it says JSON)."""
    lines = ["Answer with one JSON object only, no prose and no code fence, valid against this JSON Schema:",
             json.dumps(to_openai_schema(schema), ensure_ascii=False, separators=(",", ":"))]
    limits = describe_constraints(schema)
    if limits:
        lines.append("Limits: " + "; ".join(limits) + ".")
    return "\n".join(lines)


def build_params(image: ImageInput, options: RequestOptions, *, mode: str, temperature: float | None,
                 token_param: str) -> dict[str, Any]:
    preset = options.preset
    system = preset.system
    if mode != JSON_SCHEMA:
        system = f"{system.rstrip()}\n\n{schema_instructions(preset.schema)}"
    params: dict[str, Any] = {
        "model": options.model.id,
        "messages": [
            {"role": "system", "content": system},
            # Image before text, as for every vision model; one image per request.
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                         {"type": "text", "text": preset.instruction}]},
        ],
        token_param: options.max_tokens,
    }
    if mode == JSON_SCHEMA:
        params["response_format"] = {"type": "json_schema", "json_schema": {
            "name": schema_name(preset.name), "schema": to_openai_schema(preset.schema), "strict": True}}
    elif mode == JSON_OBJECT_SCHEMA:
        params["response_format"] = {"type": "json_object", "schema": to_openai_schema(preset.schema)}
    elif mode == JSON_OBJECT:
        params["response_format"] = {"type": "json_object"}
    if temperature is not None:
        params["temperature"] = temperature
    return params


# -- the answer ----------------------------------------------------------------------------------

def strip_thinking(content: str) -> tuple[str, bool]:
    """(answer, had_thoughts): drops <think>...</think>, an unclosed <think> tail, and a leading block whose
    opening tag was in the chat template (only "</think>" appears)."""
    text, n = _THINK_BLOCK.subn("", content)
    thought = n > 0
    lower = text.lower()
    if "</think>" in lower:
        text = text[lower.rindex("</think>") + len("</think>"):]
        thought = True
    lower = text.lower()
    if "<think>" in lower:
        text = text[:lower.index("<think>")]
        thought = True
    return text.strip(), thought


def answer_from_completion(completion: Any) -> ModelAnswer:
    usage = usage_from(getattr(completion, "usage", None))
    choices = getattr(completion, "choices", None) or []
    if not choices:
        return ModelAnswer(stop_reason="no_choices", usage=usage)
    choice = choices[0]
    msg = choice.message
    extra = getattr(msg, "model_extra", None) or {}
    reasoning = getattr(msg, "reasoning_content", None) or extra.get("reasoning_content") or extra.get("reasoning")
    text, thought = strip_thinking(msg.content or "")
    finish = choice.finish_reason
    refusal = getattr(msg, "refusal", None)
    if refusal:
        return ModelAnswer(stop_reason="refusal", usage=usage, refusal=str(refusal)[:300])
    if finish == "content_filter":
        return ModelAnswer(stop_reason="refusal", usage=usage, refusal="content filter")
    if finish == "length" or (not text and (reasoning or thought)):
        # A reasoning model that spent the budget thinking has no answer yet: a truncation, retried larger.
        return ModelAnswer(stop_reason="max_tokens", usage=usage, text=text or None)
    return ModelAnswer(stop_reason="stop", usage=usage, text=text or None)


def usage_from(u: Any) -> Usage:
    if u is None:
        return Usage()
    prompt = getattr(u, "prompt_tokens", 0) or 0
    details = getattr(u, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Usage(input_tokens=max(0, prompt - cached), output_tokens=getattr(u, "completion_tokens", 0) or 0,
                 cache_read_input_tokens=cached)


# -- headers -------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def duration_seconds(value: str | None) -> float | None:
    """OpenAI's reset values: "1s", "6m0s", "20ms", "1h2m3.5s"."""
    if not value:
        return None
    parts = _DURATION.findall(value)
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[unit] for n, unit in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def parse_rate_limits(headers: Mapping[str, str]) -> RateLimitSnapshot:
    """OpenAI's x-ratelimit-* headers. Its token limit counts prompt + max output together; we pace it as input."""
    return RateLimitSnapshot(
        requests_limit=_int(headers.get("x-ratelimit-limit-requests")),
        requests_remaining=_int(headers.get("x-ratelimit-remaining-requests")),
        requests_reset_s=duration_seconds(headers.get("x-ratelimit-reset-requests")),
        input_limit=_int(headers.get("x-ratelimit-limit-tokens")),
        input_remaining=_int(headers.get("x-ratelimit-remaining-tokens")),
        input_reset_s=duration_seconds(headers.get("x-ratelimit-reset-tokens")),
    )


# -- errors --------------------------------------------------------------------------------------

def error_text(body: Any, fallback: str) -> str:
    """The server's own message: OpenAI/vLLM {"error": {"message"}}, Ollama/LM Studio {"error": "..."}, a FastAPI
    route's {"detail": "Not Found"}."""
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str) and "error" not in body:
            return one_line(body["detail"])
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return one_line(err["message"])
        if isinstance(err, str):
            return one_line(err)
        if isinstance(body.get("message"), str):
            return one_line(body["message"])
    return one_line(fallback)


def sent_mode(params: dict[str, Any]) -> str:
    """The structured-output mode a request was built with (build_params)."""
    rf = params.get("response_format") or {}
    if rf.get("type") == JSON_OBJECT and "schema" in rf:
        return JSON_OBJECT_SCHEMA
    return str(rf.get("type", PROMPT))


def next_mode(sent: str, status: int, message: str) -> str | None:
    """The mode to try after a rejection of `sent`, or None when the rejection is not about the output format.

    Documented rejections: vLLM "The provided JSON schema contains features not supported by xgrammar.",
    LM Studio "'response_format.type' must be 'json_schema' or 'text'", llama-server "response_format type
    must be one of "text" or "json_object"", OpenAI strict-schema errors naming response_format."""
    if status not in (400, 422, 500) or sent == PROMPT:
        return None
    m = message.lower()
    if not any(word in m for word in ("response_format", "json_schema", "json_object", "json schema", "xgrammar",
                                      "structured output", "guided_json")):
        return None
    if sent == JSON_OBJECT_SCHEMA and "must be" in m and "json_object" not in m:
        return PROMPT  # the json_object type itself is refused (LM Studio): the bare form would be too
    return MODES[MODES.index(sent) + 1]


_NO_VISION = ("does not support image", "image input is not supported", "not a multimodal model",
              "vision is not supported", "does not support vision", "images are not supported",
              "no vision", "multimodal is not supported", "mmproj")
_UNKNOWN_MODEL = ("does not exist", "not found", "unknown model", "no such model", "model_not_found",
                  "not loaded", "invalid model name")  # the last: LiteLLM's proxy, for an alias it does not have


def classify(status: int, message: str, headers: Mapping[str, str], body: Any, request_id: str | None,
             key_variable: str, base_url: str | None = None) -> ProviderError:
    limits = parse_rate_limits(headers)
    kw: dict[str, Any] = {"http_status": status, "request_id": request_id, "limits": limits}
    m = message.lower()
    said = message.rstrip().rstrip(".;:")  # the server's sentence, continued with "; check ..." (no ".;")
    code = body.get("error", {}).get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    if status in (401, 403):
        return key_refused(status, "the server", said, key_variable, **kw)
    if status == 429:
        if code == "insufficient_quota" or "quota" in m:
            return Fatal(f"quota exhausted (429): {message}", error_type="insufficient_quota", **kw)
        return rate_limited(message, headers, **kw)
    if any(p in m for p in _NO_VISION):
        return Fatal(f"the model does not accept images ({status}): {said}; choose a vision model",
                     error_type="no_vision", **kw)
    if status == 404 and "model" not in m:
        return Fatal(no_endpoint(said, base_url), error_type="not_found_error", **kw)
    if status == 404 or (status in (400, 422) and "model" in m and any(p in m for p in _UNKNOWN_MODEL)):
        return Fatal(f"unknown model ({status}): {said}; check {option('model')} against the server's models",
                     error_type="unknown_model", **kw)
    if (refused := request_refused(status, message, **kw)) is not None:
        return refused
    if status in (408, 409, 425) or status >= 500:
        return Transient(f"server error ({status}): {message}", error_type="server_busy" if status == 503
                         else "api_error", **kw)
    return Permanent(f"unexpected HTTP {status}: {message}", error_type="http_error", **kw)


def no_endpoint(said: str, base_url: str | None) -> str:
    """A 404 that names no model is about the URL, not the model: the usual cause is a base URL without /v1 (the
    SDK appends only /chat/completions)."""
    base = (base_url or "").rstrip("/")
    if base and not base.endswith("/v1"):
        return (f"the server has no chat completions endpoint at {base}/chat/completions (404: {said}): the URL path "
                f"is likely missing /v1; try {option('base_url', base + '/v1')}")
    # Named in full, so a doubled /v1 or a wrong port shows; the base URL may have come from OPENAI_BASE_URL.
    where = f"at {base}/chat/completions" if base else "there"
    return (f"the server has no chat completions endpoint {where} (404: {said}); check the base URL "
            f"({option('base_url')} or OPENAI_BASE_URL)")
