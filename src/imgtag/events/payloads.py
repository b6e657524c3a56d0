"""The fields of the events a run builds (schema.json has every field's meaning). The counters' own fields are
built beside them: `progress` from a progress snapshot (app/progress.py), `run_finished` from the run's summary
(app/summary.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgtag.config.runconfig import RunConfig, Target


def dollars(amount: float | None) -> float | None:
    """USD as JSON: null when some tokens were paid at prices nobody knows (never a made-up 0)."""
    return None if amount is None else round(amount, 8)


def target_fields(cfg: RunConfig, target: Target) -> dict[str, object]:
    """What run_started says the run is for; never a key, a base URL or the prompt's text."""
    from imgtag.presets.language import normalise_lang

    return {"preset": target.preset.name, "preset_version": target.preset.version,
            "provider": cfg.provider, "model": target.model.id, "lang": normalise_lang(cfg.lang)}
