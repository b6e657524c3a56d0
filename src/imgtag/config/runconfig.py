"""The run's configuration and target: what every stage below the CLI is told about this invocation.

`RunConfig` is the resolved settings (flags > environment > imgtag.toml); `Target` is what a
result is keyed by (preset version, provider, model). Nothing here imports a stage that does work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the stages import this module, never the other way round
    from imgtag.ingest.discover import Discovered
    from imgtag.presets import Preset
    from imgtag.pricing.catalogue import ModelInfo
    from imgtag.store import WorkKey


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
    budget_source: str = "--budget"  # where the budget was set, as a person fixes it (flag, variable or imgtag.toml)
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
