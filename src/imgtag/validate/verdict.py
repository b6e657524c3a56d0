"""Judge one model answer: stop reason first, then parse and validate against the preset's full schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgtag.validate.parse import parse_object, parse_output

if TYPE_CHECKING:  # only the answer's type: the providers import validate/schema.py, never the other way round
    from imgtag.providers.base import ModelAnswer

OK = "ok"
TRUNCATED = "truncated"      # hit max_tokens: retry once with a larger limit
REFUSED = "refused"          # billed, never retried
INVALID = "invalid_output"   # not valid against the schema: retried a limited number of times
INCOMPLETE = "incomplete"    # any other stop reason we cannot use


@dataclass(frozen=True)
class Verdict:
    kind: str
    fields: dict[str, Any] | None = None
    message: str | None = None
    repaired: str | None = None


def judge(answer: ModelAnswer, schema: dict[str, Any]) -> Verdict:
    stop = answer.stop_reason
    if stop == "refusal":
        detail = f" ({answer.refusal})" if answer.refusal else ""
        return Verdict(REFUSED, message=f"refused by the model{detail}")
    if stop == "max_tokens":
        return Verdict(TRUNCATED, message="truncated: the answer hit max_tokens before the JSON was complete")
    if stop not in ("end_turn", "tool_use", "stop_sequence", "stop"):
        return Verdict(INCOMPLETE, message=f"unusable stop reason {stop!r}")
    if answer.obj is not None:
        parsed = parse_object(answer.obj, schema)
    elif answer.text is not None:
        parsed = parse_output(answer.text, schema)
    else:
        return Verdict(INVALID, message="no text or tool output in the answer")
    if parsed.error is not None or parsed.fields is None:
        return Verdict(INVALID, message=parsed.error or "no fields")
    return Verdict(OK, fields=parsed.fields, repaired=parsed.repaired)


def kept_text(answer: ModelAnswer) -> str | None:
    """What to keep of a paid answer that was not accepted, so it is never lost: the API's own text, else the
    object it answered with (as JSON)."""
    if answer.raw is not None:
        return answer.raw
    if answer.text is not None:
        return answer.text
    return json.dumps(answer.obj, ensure_ascii=False) if answer.obj is not None else None
