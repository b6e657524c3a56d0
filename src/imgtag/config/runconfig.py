"""The run's configuration and target: what every stage below the CLI is told about this invocation.

`RunConfig` is the resolved settings (flags > environment > imgtag.toml); `Target` is what a
result is keyed by (preset version, provider, model). Nothing here imports a stage that does work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from imgtag.presets import Preset, builtin_names
from imgtag.presets.language import normalise_lang
from imgtag.pricing.catalogue import ModelInfo
from imgtag.store import WorkKey
from imgtag.util.urls import public_url

if TYPE_CHECKING:
    from imgtag.ingest.discover import Discovered
    from imgtag.ingest.preprocess import PrepareRequest

from imgtag.config.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK  # noqa: F401 - re-exported


@dataclass
class RunConfig:
    inputs: Sequence[str]
    out: Path
    preset: str = "ecommerce"
    lang: str | None = None
    categories: Sequence[str] | None = None
    provider: str = "anthropic"
    model: str | None = None
    mode: str = "sync"
    formats: str = "csv,jsonl"
    dry_run: bool = False
    budget: float | None = None
    concurrency: int = 64
    workers: int | None = None
    min_side: int = 200
    detail: str | None = None  # --detail: overrides the preset's detail level
    max_edge: int | None = None  # --max-edge: long-edge cap in px
    images_per_request: int = 1  # --images-per-request: packing (request/packing.py), sync and batch
    max_megapixels: float = 100.0
    skip_near_duplicates: bool = False
    timeout: float = 120.0
    max_attempts: int = 6
    progress: bool = True
    stdin: TextIO | None = None
    detach: bool = False
    batch_max_requests: int = 100_000
    batch_max_bytes: int = 100 * 1024 * 1024
    poll_interval: float = 5.0
    retry_failed: bool = False
    source: Iterable[Discovered] | None = None
    provider_settings: dict[str, Any] = field(default_factory=dict)
    price_in: float | None = None    # USD per million input tokens, for models the catalogue has no prices for
    price_out: float | None = None   # USD per million output tokens
    # ExportContext options from the command line (txt_template, txt_existing, metadata_overwrite, xmp_name).
    export_options: dict[str, Any] = field(default_factory=dict)
    # --engine ray (docs/scale.md): where the cluster is, the shared work folder, ask actors and rows per shard.
    engine: str = "local"
    ray_address: str | None = None
    work_dir: str | None = None
    ray_actors: int = 2
    ray_batch_size: int = 16
    # Each event of the run (docs/events.md) as a mapping with "v" and "type"; the CLI's --events writes JSON lines.
    on_event: Callable[[Mapping[str, object]], None] | None = None


@dataclass
class Target:
    preset: Preset
    model: ModelInfo
    key: WorkKey


def target_meta(cfg: RunConfig, target: Target) -> dict[str, Any]:
    """Enough to rebuild the target later (status/export/retry) — never a secret."""
    from imgtag.presets.quick import is_quick

    keep = cfg.preset in builtin_names() or is_quick(cfg.preset)  # a name, or --prompt's own spec; else a file
    preset = cfg.preset if keep else str(Path(cfg.preset).resolve())
    return {"preset": preset, "preset_name": target.preset.name, "preset_version": target.preset.version,
            "lang": normalise_lang(cfg.lang), "categories": list(cfg.categories) if cfg.categories else None,
            "provider": cfg.provider, "model": target.model.id, "mode": cfg.mode, "formats": cfg.formats,
            "fields": target.preset.fields, "list_fields": target.preset.list_fields,
            "detail": cfg.detail, "max_edge": cfg.max_edge, "images_per_request": cfg.images_per_request,
            "schema": target.preset.schema, "txt_template": target.preset.txt_template,
            "titles": target.preset.titles,
            "base_url": public_url(  # so `imgtag retry` reaches the same server; never a user:password
                cfg.provider_settings.get("base_url")),
            # caption and XMP naming options a later `imgtag export` reuses (see export/writer.py REMEMBERED)
            "export_options": {k: v for k, v in cfg.export_options.items()
                               if k in ("txt_template", "txt_existing", "xmp_name", "xlsx_thumbnails")
                               and v is not None}}


def prepare_template(cfg: RunConfig, target: Target, *, encode: bool,
                     provider_max_edge: int | None = None) -> PrepareRequest:
    from imgtag.ingest.preprocess import PrepareRequest
    from imgtag.pricing.estimate import max_long_edge_for, tier_for

    # The smallest of: the preset's detail level, the model's own limit (e.g. GLM-4v-9b sees 1120 px),
    # and the provider's (its capabilities.max_image_edge); a larger image would only be resized again on the server.
    edges = [max_long_edge_for(target.preset), target.model.max_edge, provider_max_edge]
    edge = min((e for e in edges if e), default=None)
    return PrepareRequest(path="", encode=encode, tier=tier_for(target.preset, target.model),
                          max_long_edge=edge, min_short_side=cfg.min_side,
                          max_pixels=int(cfg.max_megapixels * 1_000_000))
