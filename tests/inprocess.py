"""A run wired in this process as the CLI wires it, for tests that look at a Run while it works (its snapshot,
its counters) rather than at what the command printed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from imgtag.app.runner import Run
from imgtag.config.runconfig import RunConfig
from imgtag.export.targets import target_meta
from imgtag.providers import create_provider, resolve_target
from imgtag.store import Store


@contextlib.asynccontextmanager
async def wired_run(cfg: RunConfig, *, record_target: bool = True) -> AsyncIterator[Run]:
    """The Run for `cfg` on its store (the target recorded there first, as `imgtag run` does, unless a run of the
    CLI already did), its provider (from the environment) closed afterwards."""
    target = resolve_target(cfg)
    provider = create_provider(cfg.provider, timeout=30.0)
    try:
        with Store(cfg.out) as store:
            if record_target:
                store.set_meta("target", target_meta(cfg, target))
            yield Run(cfg, store, target, provider)
    finally:
        await provider.aclose()
