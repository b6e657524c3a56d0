"""The tag API's error codes, mapped onto the engine's outcomes (see ProviderError in providers/base.py).

The API answers with an envelope {"code", "message", "request_id", "data"}; code 0 is success. Whether an
error also carries a non-200 HTTP status is not documented, so the code decides when there is one and the
HTTP status only when the body is not an envelope (a proxy's HTML page, a dropped gateway).
"""

from __future__ import annotations

from typing import Any

from imgtag.providers.base import (
    Exhausted,
    Fatal,
    Permanent,
    ProviderError,
    RateLimited,
    RateLimitSnapshot,
    Transient,
)

KEY_VARIABLE = "IMAGEDESCRIBER_API_KEY"

UNAUTHORIZED = 1002
INVALID_KEY = 1003
RATE_LIMITED = 1004
INVALID_PARAMS = 1005
OUT_OF_CREDITS = 2002
CONTENT_FILTERED = 2003
INVALID_IMAGE = 2004
UPLOAD_FAILED = 2005
SERVER_ERROR = 5050


def classify(code: int, message: str, *, http_status: int | None, request_id: str | None,
             retry_after: float, limits: RateLimitSnapshot) -> ProviderError:
    """One error code -> the exception the engine acts on. `message` is already one line and secret-free.

    INVALID_IMAGE is returned as Permanent here; the provider turns the first one for an image into a
    re-encode and one more ask."""
    kw: dict[str, Any] = {"http_status": http_status, "request_id": request_id, "limits": limits}
    said = f": {message}" if message else ""
    if code == UNAUTHORIZED:
        return Fatal(f"the imagedescriber API refused the authorization header ({code}{said}); "
                     f"check {KEY_VARIABLE}", error_type="authentication_error", **kw)
    if code == INVALID_KEY:
        return Fatal(f"the imagedescriber API rejected the API key ({code}{said}); check {KEY_VARIABLE}",
                     error_type="authentication_error", **kw)
    if code == RATE_LIMITED:
        return RateLimited(f"rate limited ({code}{said})", retry_after=retry_after, error_type="rate_limited", **kw)
    if code == INVALID_PARAMS:
        return Permanent(f"the imagedescriber API called the request invalid ({code}{said})",
                         error_type="invalid_request", **kw)
    if code == OUT_OF_CREDITS:
        return Exhausted(f"the imagedescriber account is out of credits ({code})", error_type="out_of_credits", **kw)
    if code == CONTENT_FILTERED:
        return Permanent("blocked by the provider's content filter", error_type="content_filter", **kw)
    if code == INVALID_IMAGE:
        return Permanent(f"the imagedescriber API rejected the image format ({code}{said})",
                         error_type="invalid_image", **kw)
    if code == UPLOAD_FAILED:
        return Transient(f"image upload failed ({code}{said})", error_type="upload_failed", **kw)
    if code == SERVER_ERROR:
        # The documented remedy is to quote the request_id to their support, so it goes into the message
        # that ends up in the store, `status` and the results.
        return Transient(f"imagedescriber server error ({code}), request_id {request_id or 'not given'}{said}",
                         error_type="server_error", **kw)
    if http_status is not None and (http_status >= 500 or http_status in (408, 409)):
        return Transient(f"error code {code} (HTTP {http_status}){said}", error_type="server_error", **kw)
    return Permanent(f"error code {code}{said}", error_type=f"error_{code}", **kw)


def classify_http(http_status: int, text: str, *, retry_after: float, limits: RateLimitSnapshot) -> ProviderError:
    """A response whose body is not the API's envelope: only the HTTP status says anything."""
    kw: dict[str, Any] = {"http_status": http_status, "limits": limits}
    said = f": {text}" if text else ""
    if http_status in (401, 403):
        return Fatal(f"the imagedescriber API refused the request (HTTP {http_status}); check {KEY_VARIABLE}",
                     error_type="authentication_error", **kw)
    if http_status == 429:
        return RateLimited(f"rate limited (HTTP 429){said}", retry_after=retry_after, error_type="rate_limited",
                           **kw)
    if http_status >= 500 or http_status in (408, 409):
        return Transient(f"server error (HTTP {http_status}){said}", error_type="server_error", **kw)
    if http_status == 200:
        return Transient(f"unreadable answer (HTTP 200){said}", error_type="bad_response", **kw)
    return Permanent(f"unexpected HTTP {http_status}{said}", error_type="http_error", **kw)
