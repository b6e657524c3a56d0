"""`retry` as functions: which failures a new ask can fix, what asking them again should cost, and the RunConfig
that asks them (run by app/run.py like any run, with the command "retry")."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from imgtag.app.settings import DEFAULT_CONCURRENCY, Settings
from imgtag.config.errors import UsageError
from imgtag.config.options import option

if TYPE_CHECKING:
    from imgtag.app.retry_plan import RetryPlan
    from imgtag.config.runconfig import Target


def plan_retry(out: str | os.PathLike[str] | None, settings: Settings, *, force: bool = False, progress: bool = True,
               base_url: str | None = None, budget: float | None = None, concurrency: int | None = None,
               on_event: Callable[[Mapping[str, object]], None] | None = None) -> RetryPlan:
    """The latest target's failures, split into those retried and those left out (all of them with `force`);
    `plan.cfg` is None when nothing is retried. It works against the server the target used unless `base_url`
    names another."""
    from dataclasses import replace

    from imgtag.app.flagcheck import number_problem
    from imgtag.app.retry_plan import retry_plan

    budget_source = settings.source(budget, "budget", option("budget"))
    budget = settings.pick(budget, "budget")
    concurrency = settings.pick(concurrency, "concurrency", DEFAULT_CONCURRENCY)
    if problem := number_problem({"budget": budget, "concurrency": concurrency}):
        raise UsageError(problem)
    folder = settings.out(out)
    if not (folder / "imgtag.db").is_file():
        raise UsageError(f"no imgtag store in {folder} (run `imgtag run` first)")
    plan = retry_plan(folder, progress=progress, force=force)
    if plan.cfg is not None:
        plan.cfg = replace(plan.cfg, budget=budget, budget_source=budget_source, concurrency=concurrency,
                           on_event=on_event,
                           provider_settings={"base_url": base_url} if base_url else plan.cfg.provider_settings)
    return plan


def estimate_retry(plan: RetryPlan) -> tuple[Target, float | None]:
    """The target the retry asks and its estimated cost (None: prices unknown)."""
    from imgtag.app.retry_plan import estimated_cost
    from imgtag.app.run import resolve

    assert plan.cfg is not None
    target = resolve(plan.cfg)
    return target, estimated_cost(plan, target, batch=plan.cfg.mode == "batch")
