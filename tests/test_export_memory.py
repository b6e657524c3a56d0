"""Exports stream in constant memory (issue 20 item 3): `imgtag export` of one format over a store of N synthetic
images (tests/synthstore.py) peaks at the same traced memory as over a store of N/8 or N/10 (tracemalloc: Python's
own allocations). Each exporter iterates the store's rows; what it must remember per image (a caption path
claimed, a thumbnail still to make) is kept on disk (export/spill.py).

Per-image formats (captions, JSON sidecars, the contact sheet with its thumbnails) write a file per image, so they
are measured at smaller sizes. Not covered: xmp and xmp-embed, which still return every written path, and
--xlsx-thumbnails, whose pictures xlsxwriter holds until the workbook closes (docs/store.md).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from imagegen import run_cli
from synthstore import fill

TABLES = (1_000, 8_000)  # files in --out: their rows
PER_IMAGE = (300, 3_000)  # a file beside (or a thumbnail of) each image
SLACK = 256 * 1024  # bytes: allocator and interpreter noise between two runs


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    made = {}
    for n in {*TABLES, *PER_IMAGE}:
        folder = tmp_path_factory.mktemp(f"store{n}")
        fill(folder / "out", n, root=str(folder / "catalogue"))
        (folder / "catalogue" / "shard000").mkdir(parents=True)  # where per-image files go (images < 10,000)
        made[n] = folder / "out"
    return made


def peak_of_export(out: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> int:
    tracemalloc.start()
    try:
        code, output = run_cli(["export", "--out", str(out), "--format", fmt], {}, monkeypatch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0, output
    return peak


@pytest.mark.parametrize(("fmt", "sizes"), [("csv", TABLES), ("jsonl", TABLES), ("xlsx", TABLES),
                                            ("parquet", TABLES), ("metadata-jsonl", TABLES), ("txt", PER_IMAGE),
                                            ("json-sidecar", PER_IMAGE), ("html", PER_IMAGE)])
def test_export_memory_does_not_grow_with_the_rows(fmt: str, sizes: tuple[int, int], stores: dict[int, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    small, large = sizes
    # Parquet holds one row group (BATCH_ROWS rows) at a time by design: smaller groups here, so both sizes hold
    # several and the bound shows at test sizes.
    monkeypatch.setattr("imgtag.export.parquet.BATCH_ROWS", 500)
    # Each measured export is a second one (the first pays for imports and writes the per-image files, so both
    # measured exports find their files written before).
    peak_of_export(stores[small], fmt, monkeypatch)
    small_peak = peak_of_export(stores[small], fmt, monkeypatch)
    peak_of_export(stores[large], fmt, monkeypatch)
    large_peak = peak_of_export(stores[large], fmt, monkeypatch)
    # Ten times the rows (eight for tables), the same peak: anything kept per row would show up as 10x of it.
    assert large_peak <= small_peak * 1.2 + SLACK, (
        f"{fmt}: {large_peak / 1e6:.2f} MB for {large:,} rows against {small_peak / 1e6:.2f} MB for {small:,}")
