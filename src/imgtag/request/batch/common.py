"""What the batch submitter, collector and runner share: context, counters, error classification."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anthropic

from imgtag.providers.base import Fatal, ProviderError, Transient, redact
from imgtag.store import Store

if TYPE_CHECKING:
    from imgtag.config import RunConfig, Target

MAX_POLL_INTERVAL_S = 60.0
POLL_BACKOFF = 1.5


class BatchStop(Exception):
    """End the batch run: a Fatal error (exit 2) or a reason to stop early (exit 1, work stays pending)."""

    def __init__(self, message: str, fatal: Fatal | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal


@dataclass
class BatchStats:
    ok: int = 0
    failed: int = 0
    requeued: int = 0              # items sent back to pending (errored/expired/canceled/missing)
    submitted: int = 0             # items in batches created by this run
    created: int = 0               # batches created by this run
    adopted: int = 0               # batches found remotely after a crash between create and commit
    spent_usd: float = 0.0
    reserved_usd: float = 0.0      # estimated batch cost of items submitted by this run
    budget_skipped: int = 0
    # batch id -> (processing_status, request_counts): what the progress line shows.
    live: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def in_batches(self) -> int:
        return sum(counts.get("processing", 0) for _, counts in self.live.values())

    def describe(self) -> str:
        if not self.live:
            return "no live batches"
        states = Counter(status for status, _ in self.live.values())
        totals: Counter[str] = Counter()
        for _, counts in self.live.values():
            totals.update(counts)
        by_state = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        counts_text = ", ".join(f"{k} {v}" for k, v in totals.items() if v)
        return f"batches {by_state}" + (f" ({counts_text})" if counts_text else "")


@dataclass
class BatchContext:
    store: Store
    provider: Any                  # AnthropicProvider: build_params, client, _classify
    target: Target
    cfg: RunConfig
    run_id: int | None
    stats: BatchStats = field(default_factory=BatchStats)

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        return self.provider.client

    def classify(self, exc: BaseException) -> ProviderError:
        """SDK exception -> our error kinds (Fatal stops the run; Transient is retried later)."""
        if isinstance(exc, anthropic.APIStatusError):
            return self.provider._classify(exc)
        if isinstance(exc, anthropic.APITimeoutError):
            return Transient("timeout: no response in time", error_type="timeout")
        key = getattr(self.provider, "api_key", None)
        if isinstance(exc, anthropic.APIConnectionError):
            return Transient(f"connection error: {redact(str(exc), key)}", error_type="connection_error")
        return Transient(redact(" ".join(str(exc).split())[:300], key), error_type="api_error")


def stop_if_fatal(err: ProviderError) -> None:
    if isinstance(err, Fatal):
        raise BatchStop(err.message, err)
