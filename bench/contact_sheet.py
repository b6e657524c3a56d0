"""contact-sheet.html at scale, in headless Chromium, and the screenshot in docs/.

    python bench/contact_sheet.py                       # 100 vs 10,000 images: export time, page size, load time
    python bench/contact_sheet.py --screenshot docs/contact-sheet.png

Baseline, in this script: the same page with 100 images. The figure that matters is how the page's load
time grows with the number of images: cards are rendered 120 at a time as the user scrolls and thumbnails
load lazily, so 10,000 images should cost little more than 100 (only the embedded JSON grows).
Rows are synthetic (distinct fields per image) over 40 real product photos from ../shared/corpus, so
thumbnails are shared by content hash and the export time measures the page, not the decoder.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgtag.export import ExportContext, ResultRow  # noqa: E402
from imgtag.export.contact_sheet import write_contact_sheet  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "photos"
FIELDS = ["tags", "category", "description", "color", "style"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
DEMO = [  # what the ecommerce preset answers look like, for the screenshot
    ("clothing_dress_4e788cda.jpg", ["dress", "sleeveless", "summer"], "Dresses", "A sleeveless summer dress.",
     "blue", "casual"),
    ("clothing_shoes_4dc09b5c.jpg", ["sneakers", "running", "mesh"], "Shoes", "Mesh running sneakers.",
     "white", "sporty"),
    ("clothing_hat_75eacbac.jpg", ["hat", "wool", "winter"], "Hats", "A knitted wool winter hat.", "grey",
     "cosy"),
    ("clothing_t-shirt_ae7ec1a1.jpg", ["t-shirt", "cotton", "print"], "T-shirts", "Cotton T-shirt with a print.",
     "black", "streetwear"),
    ("clothing_pants_0ad5bfb5.jpg", ["trousers", "chino"], "Pants", "Slim chino trousers.", "beige", "smart casual"),
    ("clothing_outwear_091f88df.jpg", ["jacket", "outerwear", "zip"], "Outerwear", "A zip-up jacket.", "green",
     "outdoor"),
    ("clothing_shirt_994e3773.jpg", ["shirt", "button-down"], "Shirts", "A button-down shirt.", "white",
     "business casual"),
]


def rows(n: int, photos: list[Path]) -> list[ResultRow]:
    out = []
    for i in range(n):
        src = photos[i % len(photos)]
        sha = hashlib.sha256(src.read_bytes()).hexdigest()
        fields = {"tags": ["clothing", f"tag{i % 50}", f"batch{i // 100}"], "category": f"category {i % 12}",
                  "description": f"Product photo number {i}.", "color": ["red", "blue", "green"][i % 3],
                  "style": "casual"}
        out.append(ResultRow(path=f"shop/{i:05d}_{src.name}", sha256=sha, status="ok", fields=fields, error=None,
                             model="m", preset="ecommerce", preset_version="v", provider="p", usage=None,
                             cost_usd=None, source_path=str(src), root=str(src.parent)))
    return out


def chromium(url: str, *extra: str) -> tuple[float, str]:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        result = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True,
                                text=True, timeout=300, check=True)
        return time.perf_counter() - start, result.stdout


def measure(n: int, photos: list[Path], work: Path) -> dict[str, float]:
    out = work / f"n{n}"
    data = rows(n, photos)
    ctx = ExportContext(out_dir=out, field_names=FIELDS, list_fields={"tags"})
    start = time.perf_counter()
    write_contact_sheet(iter(data), ctx)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    write_contact_sheet(iter(data), ExportContext(out_dir=out, field_names=FIELDS, list_fields={"tags"}))
    reexport_s = time.perf_counter() - start
    page = out / "contact-sheet.html"
    load_s, dom = min((chromium(page.as_uri(), "--dump-dom") for _ in range(3)), key=lambda r: r[0])
    return {"images": n, "export_s": export_s, "reexport_s": reexport_s, "page_mb": page.stat().st_size / 1e6,
            "load_s": load_s, "cards": len(re.findall(r"<article", dom))}


def screenshot(target: Path) -> None:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        data = []
        for name, tags, category, description, color, style in DEMO:
            src = CORPUS / name
            data.append(ResultRow(path=f"catalogue/{name}", sha256=hashlib.sha256(src.read_bytes()).hexdigest(),
                                  status="ok", fields={"tags": tags, "category": category, "description": description,
                                                       "color": color, "style": style},
                                  error=None, model="m", preset="ecommerce", preset_version="v", provider="p",
                                  usage=None, cost_usd=None, source_path=str(src), root=str(CORPUS)))
        hostile = CORPUS / "clothing_shorts_ed22b4d2.jpg"
        data.insert(2, ResultRow(
            path="catalogue/hostile.jpg", sha256=hashlib.sha256(hostile.read_bytes()).hexdigest(), status="ok",
            fields={"tags": ["=1+2", "<script>alert(1)</script>", "短裤"], "category": "<b>not bold</b>",
                    "description": "</script><img src=x onerror=alert(1)>", "color": "\"quoted\"", "style": "]]>"},
            error=None, model="m", preset="ecommerce", preset_version="v", provider="p", usage=None, cost_usd=None,
            source_path=str(hostile), root=str(CORPUS)))
        data.append(ResultRow(
            path="catalogue/refused.jpg", sha256=hashlib.sha256(b"x").hexdigest(), status="failed", fields=None,
            error={"type": "invalid_output", "message": "description is longer than 50 characters"}, model="m",
            preset="ecommerce", preset_version="v", provider="p", usage=None, cost_usd=None,
            source_path=str(CORPUS / "clothing_shorts_ed22b4d2.jpg"), root=str(CORPUS)))
        ctx = ExportContext(out_dir=Path(tmp), field_names=FIELDS, list_fields={"tags"})
        write_contact_sheet(iter(data), ctx)
        shot = Path(tmp) / "shot.png"
        chromium((Path(tmp) / "contact-sheet.html").as_uri(), "--window-size=1280,1000", "--hide-scrollbars",
                 "--virtual-time-budget=5000", f"--screenshot={shot}")
        Image.open(shot).convert("RGB").save(target, optimize=True)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--sizes", default="100,10000")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot)
        return
    photos = sorted(CORPUS.glob("clothing_*.jpg"))[:40] + sorted(CORPUS.glob("coral_*.jpg"))
    photos = photos[:40]
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(int(n), photos, Path(tmp)) for n in args.sizes.split(",")]
    base = results[0]
    print(f"{'images':>7} {'export s':>9} {'re-export s':>12} {'page MB':>8} {'load s':>7} {'cards':>6} "
          f"{'load vs ' + str(base['images']):>12}")
    for r in results:
        print(f"{r['images']:>7} {r['export_s']:>9.2f} {r['reexport_s']:>12.2f} {r['page_mb']:>8.2f} "
              f"{r['load_s']:>7.2f} {r['cards']:>6} {r['load_s'] / base['load_s']:>11.2f}x")


if __name__ == "__main__":
    main()
