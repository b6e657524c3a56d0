"""How big a batch may be, and what a refused create says about it.

The API documents its caps, but a gateway or compatible server in front of it may allow less (10,000 requests
or 32 MB per batch, as older docs said) and refuse a create as a whole: 413, or a 400 about the number of
requests. Such a refusal halves the chunk and lowers the run's limit to the larger half, so the rest of
the run is chunked to fit; any other refusal of the whole batch is not about its size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from imgtag.config.options import option
from imgtag.providers.base import ProviderError

REQUESTS, BYTES = "requests", "bytes"
# The byte limit is checked against the measured JSON body; 5% headroom covers what we cannot see
# (a gateway's re-encoding, multipart framing, future envelope fields).
HEADROOM = 0.95

# A limit being stated ("at most", "maximum", "exceeds", "too many", "limit"...), about a count or a size.
_LIMIT = re.compile(r"\b(at most|maximum|max|exceed(s|ed|ing)?|too (many|large|big|long)|limit(s|ed)?|"
                    r"more than|up to|no more than)\b", re.IGNORECASE)
_COUNT = re.compile(r"\b(requests?|items?|entries|lines|list)\b", re.IGNORECASE)
_PREFIX = re.compile(r"^[^:]*\(\d{3}\):\s*")
_SIZE = re.compile(r"(\b(bytes?|size|payload|entity|body)\b|\d\s*[KMG]i?B\b|\b[KMG]i?B\b|too large)", re.IGNORECASE)


@dataclass
class BatchLimits:
    """The run's current limits (mutable: lowered when a create is refused for its size)."""

    max_requests: int
    max_bytes: int                          # already with headroom
    envelope_bytes: int

    def lower(self, kind: str, requests: int, nbytes: int) -> bool:
        """Remember a smaller limit (never raise one). True when it changed."""
        if kind == REQUESTS and requests < self.max_requests:
            self.max_requests = max(1, requests)
            return True
        if kind == BYTES and nbytes < self.max_bytes:
            self.max_bytes = max(self.envelope_bytes + 1, nbytes)
            return True
        return False


def oversize(err: ProviderError) -> str | None:
    """REQUESTS or BYTES when the API refused a whole batch for its size, else None."""
    status = err.http_status
    # The server's own words only: our "invalid request (400): " prefix would make every 400 about requests.
    text = _PREFIX.sub("", err.message or "", count=1)
    about_count = bool(_COUNT.search(text)) and not _SIZE.search(text)
    if status == 413:
        # Request Entity Too Large: the body, unless the words say it was the number of requests.
        return REQUESTS if about_count and _LIMIT.search(text) else BYTES
    if status in (400, 422) and _LIMIT.search(text):
        if _SIZE.search(text):
            return BYTES
        if about_count:
            return REQUESTS
    return None


def byte_budget(max_bytes: int) -> int:
    return int(max_bytes * HEADROOM)


def _floor3(x: float) -> float:
    """Down to 3 significant digits: a flag value that never exceeds what worked."""
    step = 10.0 ** (math.floor(math.log10(x)) - 2)
    return round(math.floor(x / step) * step, 12)


def lowered_note(lowered: set[str], limits: BatchLimits) -> str | None:
    """Tell the user the sizes that worked, so the next run can start there instead of being refused again."""
    flags = []
    if REQUESTS in lowered:
        flags.append(option("batch_max_requests", limits.max_requests))
    if BYTES in lowered:
        flags.append(option("batch_max_mb", _floor3(limits.max_bytes / HEADROOM / 1024 / 1024)))
    if not flags:
        return None
    return (f"the batch API refused batches as too large, so this run sent smaller ones; pass {' '.join(flags)} "
            "to start there next time")
