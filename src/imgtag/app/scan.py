"""`scan` as a function: discover, prefilter and size files exactly as `run` would, and estimate the cost, offline.

A scan writes only into a store it made for itself (an --out only scans have used); otherwise it works in a
temporary folder that `close()` removes. Each file's entry goes to `emit` as it is examined; the summary (counts
and the per-model estimates) is the return value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtag.app.run import Say, _quiet
from imgtag.app.settings import Settings
from imgtag.config.errors import UsageError

if TYPE_CHECKING:
    import tempfile

    from imgtag.app.scanner import ScanResult
    from imgtag.config.runconfig import RunConfig, Target


class ScanSession:
    """A checked scan (flags, target, inputs), ready to run; nothing created outside a temporary folder."""

    def __init__(self, paths: Sequence[str], settings: Settings, *, out: str | os.PathLike[str] | None = None,
                 model: str | None = None, provider: str | None = None, preset: str | None = None,
                 lang: str | None = None, detail: str | None = None, max_edge: int | None = None,
                 min_side: int = 200, max_megapixels: float = 100.0, workers: int | None = None,
                 images_per_request: int = 1, base_url: str | None = None) -> None:
        from imgtag.app.flagcheck import number_problem
        from imgtag.app.run import build_config, preflight, resolve
        from imgtag.request.pack_limits import check_images_per_request

        if problem := number_problem({"min_side": min_side, "max_megapixels": max_megapixels, "workers": workers}):
            raise UsageError(problem)
        if (problem := check_images_per_request(images_per_request)) is not None:
            raise UsageError(problem)
        from imgtag.app.scanner import scans_own

        asked = settings.pick(out, "out")
        # scan is read-only for a project: it writes only into a store it made for itself (where asked: --out,
        # IMGTAG_OUT, imgtag.toml), never into one a run made; otherwise it works in a temporary folder.
        self.temp: tempfile.TemporaryDirectory[str] | None = None
        if asked is None or not scans_own(Path(asked)):
            import tempfile

            self.temp = tempfile.TemporaryDirectory(prefix="imgtag-scan-")
            store_dir = Path(self.temp.name)
        else:
            store_dir = Path(asked)
        try:
            self.cfg: RunConfig = build_config(
                paths, store_dir, settings, preset=preset, model=model, provider=provider, lang=lang,
                categories=None, min_side=min_side, max_megapixels=max_megapixels, workers=workers, detail=detail,
                max_edge=max_edge, images_per_request=images_per_request,
                provider_settings=settings.base_url(base_url, provider))
            self.target: Target = resolve(self.cfg)
            preflight(self.cfg)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.temp is not None:
            self.temp.cleanup()
            self.temp = None

    def __enter__(self) -> ScanSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def run(self, emit: Callable[[dict[str, Any]], None], say: Say = _quiet) -> tuple[ScanResult, dict[str, Any]]:
        """Scan every file (its entry to `emit`), then the summary object `scan --json` prints last."""
        from imgtag.app.modelcheck import check_without_sending
        from imgtag.app.run import open_store
        from imgtag.app.scanner import scan, summary_object

        cfg, target = self.cfg, self.target
        note = await check_without_sending(cfg.provider, dict(cfg.provider_settings), target.model)
        if note:
            say(f"warning: {note}")
        with open_store(cfg.out) as store:
            result = await scan(cfg, store, target, emit)
        return result, summary_object(result, target)
