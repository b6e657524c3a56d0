"""Run imgtag in this process, as `imgtag run` would, for benches that need the provider object afterwards
(bench/throughput.py, bench/throughput_openai.py)."""

from __future__ import annotations

import asyncio
from typing import Any


def run_in_process(cfg: Any, target: Any, provider: Any) -> Any:
    """`Run(...).execute()` on a store at cfg.out that records the target, as the CLI does; the RunOutcome.
    The provider is closed afterwards, whatever happens."""
    from imgtag.app.runner import Run
    from imgtag.export.targets import target_meta
    from imgtag.store import Store

    async def go() -> Any:
        try:
            with Store(cfg.out) as store:
                store.set_meta("target", target_meta(cfg, target))
                return await Run(cfg, store, target, provider).execute()
        finally:
            await provider.aclose()

    return asyncio.run(go())
