"""Connecting to a Ray cluster: `--ray-address`, else RAY_ADDRESS, else a local cluster started for this run
(no dashboard). A cluster that is already connected in this process (tests, notebooks) is reused."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass


class RayMissing(Exception):
    pass


@dataclass
class Connection:
    started_here: bool
    address: str | None

    def close(self) -> None:
        import ray

        if self.started_here and ray.is_initialized():
            ray.shutdown()


def connect(address: str | None, num_cpus: int | None) -> Connection:
    try:
        import ray
        from ray.data import DataContext
    except ImportError:
        raise RayMissing("--engine ray needs Ray: pip install 'imgtag[ray]'") from None
    # Ray's own warnings (token auth notice, deprecations, execution summaries) are not the operator's
    # business here: imgtag's progress line and summary are. Errors still show.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\.")
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False      # imgtag's own progress line is the operator view
    ctx.print_on_execution_start = False
    if ray.is_initialized():
        return Connection(started_here=False, address=None)
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, object] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
    ray.init(address=address, **kwargs)
    return Connection(started_here=True, address=address)


def usage_problem(engine: str, mode: str, budget: float | None, actors: int, batch_size: int) -> str | None:
    """What `--engine` cannot do, as one sentence (exit 2), before anything is created or paid for."""
    import importlib.util

    if engine not in ("local", "ray"):
        return f"--engine must be local or ray, not {engine!r}"
    if engine != "ray":
        return None
    if mode != "sync":
        return "--engine ray runs synchronous requests only; use --mode sync (or the local engine for batch)"
    if budget is not None:
        return "--budget is not supported with --engine ray yet (the spend cap is enforced by the local engine)"
    if actors < 1 or batch_size < 1:
        return "--ray-actors and --ray-batch-size must be at least 1"
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        return "--engine ray needs Ray: pip install 'imgtag[ray]'"
    return None
