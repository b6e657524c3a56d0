"""The progress line's words for what bounds requests and what they cost, from the provider actually in use.

Two limits can hold requests back: the engine's pacer (advertised rate limits, or a probing window while none are
known) and a provider's own concurrency limit (the OpenAI provider's adaptive limit for a local server, which
advertises no limits). The line names the one that binds. A provider billed in credits shows credits, not $.
"""

from __future__ import annotations

from imgtag.providers.base import Provider
from imgtag.request.pacer import Pacer
from imgtag.util.words import plural


def pace_words(pacer: Pacer, provider: Provider | None) -> str:
    own = provider.concurrency_limit() if provider is not None else None
    if own is None or pacer.limits_known:
        return pacer.describe()
    # While no limits are known the pacer only lets its window through, so the smaller of the two binds.
    return f"up to {plural(min(own, pacer.window), 'request')} at a time (adapting to the server's speed)"


def credits_used(provider: Provider | None, credits_spent: float) -> float | None:
    """This run's credits for a credit-billed provider (the live line shows them instead of $), else None."""
    return credits_spent if provider is not None and provider.billed_in_credits else None
