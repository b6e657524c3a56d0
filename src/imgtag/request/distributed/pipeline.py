"""The Ray side of `--engine ray`: the Ray Data pipeline (decode -> ask) over the manifest shards, what the
workers may read from the driver's environment, and the calls on actors the driver makes. The run around it
(plan, drain, finish) is app/ray_runner.py."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgtag.ingest.preprocess import PrepareRequest
    from imgtag.request.distributed.worker import AskSpec
    from imgtag.request.distributed.workfolder import WorkFolder

ENV_PREFIXES = ("ANTHROPIC_", "OPENAI_", "IMAGEDESCRIBER_")
# Never sent through Ray (actor arguments live in the cluster's control store): workers read them from their
# own environment, which on the local cluster this driver starts is the driver's (docs/scale.md).
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MAX_BLOCKS = 4096
DECODE_BATCH = 8


def shareable_env(environ: Mapping[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    """The provider's settings from the driver's environment (base URLs...), without any secret."""
    return {k: v for k, v in environ.items()
            if k.startswith(prefixes) and not any(word in k.upper() for word in SECRET_WORDS)}


def build_pipeline(folder: WorkFolder, paths: list[str], planned: int, request: PrepareRequest, spec: AskSpec, *,
                   ray_batch_size: int, ray_actors: int) -> Any:
    """The dataset of answered rows: read the manifest shards, decode on any CPU, ask in a pool of actors."""
    import ray
    from ray.data import ActorPoolStrategy

    from imgtag.request.distributed.worker import Asker, decode_batch

    # Ray Data lists the manifest with a pool of threads that each import this module on first use; two
    # imports racing have raised "cannot import name 'HTTPFileSystem'" here. Import it once, first.
    with contextlib.suppress(ImportError):
        import fsspec.implementations.http  # noqa: F401
    # Small blocks (capped in number), so decoding and asking spread over every worker and actor.
    blocks = min(MAX_BLOCKS, max(len(paths), -(-planned // DECODE_BATCH)))
    ds = ray.data.read_parquet([folder.dataset_path(p) for p in paths]).repartition(blocks)
    ds = ds.map_batches(decode_batch, fn_kwargs={"request": request}, batch_format="pyarrow",
                        batch_size=DECODE_BATCH, num_cpus=1)
    return ds.map_batches(Asker, fn_constructor_args=(spec,), batch_format="pyarrow",
                          batch_size=ray_batch_size, compute=ActorPoolStrategy(size=ray_actors), num_cpus=0)


def pacer_view(pacer: Any) -> dict[str, Any] | None:
    """The cluster pacer's state for the progress line, or None when the actor does not answer within 1 s."""
    import ray

    try:
        return ray.get(pacer.view.remote(), timeout=1.0)
    except Exception:  # a slow or gone actor
        return None


def ray_kill(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor)
    except Exception:  # already gone with its job
        return
