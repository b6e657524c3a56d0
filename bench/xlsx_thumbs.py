"""results.xlsx with --xlsx-thumbnails: what the thumbnails cost, and what reusing the contact sheet's saves.

    python bench/xlsx_thumbs.py                 # 200 distinct camera-sized JPEGs from ../shared/corpus/photos
    python bench/xlsx_thumbs.py --images 500

Baseline, in this script: the same workbook without thumbnails. Then, each in a fresh --out: thumbnails
decoded from the originals; thumbnails made from the contact sheet's (html exported first, as `--format
xlsx,html` does; only the workbook is timed); and a re-export, where every thumbnail is already there.
The images are distinct (each its own hash), so nothing is shared between rows.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from PIL import Image  # noqa: E402

from imgtag.export import ExportContext, ResultRow  # noqa: E402
from imgtag.export.contact_sheet import write_contact_sheet  # noqa: E402
from imgtag.export.xlsx import write_xlsx  # noqa: E402
from imgtag.presets import load_preset  # noqa: E402

FIELDS = ["tags", "category", "description", "color", "style"]
CORPUS = ROOT.parent / "shared" / "corpus" / "photos"


def make(folder: Path, n: int) -> list[ResultRow]:
    """n distinct camera-sized JPEGs from the corpus's product photos: upscaled to 3000 px on the long side and
    each cropped a little differently (so thumbnails and hashes differ, as real photos do)."""
    folder.mkdir(parents=True)
    photos = sorted(CORPUS.glob("*.jpg"))
    rows = []
    for i in range(n):
        with Image.open(photos[i % len(photos)]) as im:
            im = im.convert("RGB")
            scale = 3000 / max(im.size)
            big = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
        shift = 8 * (i // len(photos) + 1)
        path = folder / f"p{i:04d}.jpg"
        big.crop((shift, shift, big.width - shift, big.height - shift)).save(path, quality=90)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        fields = {"tags": ["连衣裙", f"标签{i % 50}"], "category": "女装", "description": f"第 {i} 件商品",
                  "color": "红色", "style": "休闲"}
        rows.append(ResultRow(path=path.name, sha256=sha, status="ok", fields=fields, error=None, model="m",
                              preset="ecommerce", preset_version="v", provider="p", usage=None, cost_usd=None,
                              source_path=str(path), root=str(folder)))
    return rows


def context(out: Path, thumbnails: bool) -> ExportContext:
    return ExportContext(out_dir=out, field_names=FIELDS, list_fields={"tags"}, lang="zh",
                         field_titles=load_preset("ecommerce").titles, xlsx_thumbnails=thumbnails)


def timed_xlsx(rows: list[ResultRow], out: Path, thumbnails: bool) -> tuple[float, int]:
    start = time.perf_counter()
    [path] = write_xlsx(iter(rows), context(out, thumbnails))
    return time.perf_counter() - start, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgtag-bench-xlsx-"))
    try:
        rows = make(work / "in", args.images)
        print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; {args.images} distinct JPEGs, 3000 px "
              "long edge (q90), --lang zh")
        timed_xlsx(rows, work / "a", thumbnails=False)  # imports and first-use costs out of the baseline
        base, base_size = timed_xlsx(rows, work / "a", thumbnails=False)
        cold, size = timed_xlsx(rows, work / "b", thumbnails=True)
        write_contact_sheet(iter(rows), context(work / "c", False))
        reuse, _ = timed_xlsx(rows, work / "c", thumbnails=True)
        again, _ = timed_xlsx(rows, work / "c", thumbnails=True)
        n = args.images
        print(f"baseline: xlsx without thumbnails           {base:7.2f} s   {base_size / n / 1024:6.1f} KB/image")
        print(f"thumbnails from the originals               {cold:7.2f} s   {size / n / 1024:6.1f} KB/image")
        print(f"thumbnails from the contact sheet's         {reuse:7.2f} s")
        print(f"re-export (thumbnails already made)         {again:7.2f} s")
        print()
        print(f"from the contact sheet's: {cold / reuse:5.1f}x faster than from the originals")
        print(f"re-export: {again / base:5.1f}x the baseline's time; workbook {size / base_size:5.1f}x its size")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
