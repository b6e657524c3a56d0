"""How an HTTP refusal reads, for every provider's wire module (anthropic_wire.py, openai_wire.py): the parts of
classifying an error that do not depend on whose API answered. Each wire keeps its own order and its own
special cases (a spend limit, an exhausted quota, a model without vision); these build the common answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imgtag.providers.base import Fatal, Permanent, RateLimited, retry_after_seconds

MESSAGE_CHARS = 300  # a server's message is kept to one line of this length


def one_line(text: object) -> str:
    """A server's message as one line, whitespace runs folded, at most MESSAGE_CHARS characters."""
    return " ".join(str(text).split())[:MESSAGE_CHARS]


def key_refused(status: int, who: str, said: str, key_variable: str, **kw: Any) -> Fatal:
    """401/403: every request would be refused the same way, so the run stops and names the key's variable."""
    what = "rejected the API key" if status == 401 else "denied permission"
    return Fatal(f"{who} {what} ({status}): {said}; check {key_variable}",
                 error_type="authentication_error" if status == 401 else "permission_error", **kw)


def rate_limited(detail: str, headers: Mapping[str, str], **kw: Any) -> RateLimited:
    """A plain 429: paced, with the server's retry-after when it gave one."""
    return RateLimited(f"rate limited (429): {detail}", retry_after=retry_after_seconds(headers),
                       error_type="rate_limit_error", **kw)


def request_refused(status: int, detail: str, **kw: Any) -> Permanent | None:
    """413 and 400/422: this request can never succeed as it is (None: another status)."""
    if status == 413:
        return Permanent(f"request too large (413): {detail}", error_type="request_too_large", **kw)
    if status in (400, 422):
        return Permanent(f"invalid request ({status}): {detail}", error_type="invalid_request_error", **kw)
    return None
