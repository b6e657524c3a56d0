"""XMP export speed: sidecars and embedded metadata per image, against one exiftool process per image.

    python bench/xmp.py              # 200 JPEGs (1200x800), keywords preset answers with Chinese keywords
    python bench/xmp.py --images 500

Baseline, in this script: what a shell loop does, `exiftool -overwrite_original -XMP-dc:Subject=... FILE`
once per image (a new Perl process each time, no merge, no read-back check). imgtag's `xmp-embed` does more
per image (reads the current XMP and IPTC, merges, writes a copy, reads it back, renames) through one
long-lived exiftool. `xmp` sidecars need no exiftool at all.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from PIL import Image  # noqa: E402

from imgtag.export.rows import ExportContext, ResultRow  # noqa: E402
from imgtag.export.xmp_embed import write_xmp_embed  # noqa: E402
from imgtag.export.xmp_sidecar import write_xmp  # noqa: E402
from imgtag.store import Store  # noqa: E402
from imgtag.store.xmp import XmpLedger  # noqa: E402

FIELDS = {"title": "西湖日落", "description": "游船在西湖上，夕阳西下。",
          "keywords": ["西湖", "sunset", "boat", "杭州", "water", "lake", "evening", "travel", "China", "orange"]}


def make(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True)
    base = folder / "base.jpg"
    Image.effect_noise((1200, 800), 60).convert("RGB").save(base, quality=90)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:05d}.jpg"
        shutil.copyfile(base, p)
        paths.append(p)
    base.unlink()
    return paths


def rows(paths: list[Path]) -> list[ResultRow]:
    return [ResultRow(path=p.name, sha256=None, status="ok", fields=FIELDS, error=None, model="m",
                      preset="keywords", preset_version="v", provider="p", usage=None, cost_usd=None,
                      source_path=str(p)) for p in paths]


def timed(label: str, n: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<44} {seconds:7.2f} s  {seconds / n * 1000:7.1f} ms/image")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    n = parser.parse_args().images
    exe = shutil.which("exiftool")
    assert exe, "exiftool is needed"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        a, b = make(base / "a", n), make(base / "b", n)
        with Store(base / "out") as store:
            ctx = ExportContext(out_dir=store.out_dir, field_names=[], xmp_ledger=XmpLedger(store.db), lang="zh")
            baseline = timed("baseline: exiftool per image (XMP only)", n, lambda: [
                subprocess.run([exe, "-q", "-overwrite_original", *[f"-XMP-dc:Subject={k}" for k in FIELDS["keywords"]],
                                str(p)], check=True) for p in b])
            embed = timed("imgtag xmp-embed (XMP+IPTC, merge, verify)", n, lambda: write_xmp_embed(rows(a), ctx))
            again = timed("imgtag xmp-embed again (already up to date)", n, lambda: write_xmp_embed(rows(a), ctx))
            sidecar = timed("imgtag xmp sidecars (new)", n, lambda: write_xmp(rows(a), ctx))
            residecar = timed("imgtag xmp sidecars (re-export, unchanged)", n, lambda: write_xmp(rows(a), ctx))
    print()
    for label, seconds in (("xmp-embed", embed), ("xmp-embed again", again), ("xmp sidecars", sidecar),
                           ("xmp re-export", residecar)):
        print(f"{label:<20} {baseline / seconds:6.2f}x the baseline's images per second")


if __name__ == "__main__":
    main()
