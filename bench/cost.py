"""Cost per image: the tutorial pipeline imgtag replaces vs imgtag (sync, batch), billed from the fake's usage.

    python bench/cost.py                                  # product photos, three models
    python bench/cost.py --set photos --models claude-sonnet-4-6
    python bench/cost.py --pack 4                         # also imgtag sync and batch, --images-per-request 4

Both pipelines run against the test fake (tests/fakes/anthropic_server.py), which counts usage as the API
documents it: 28-px image patches, prompt and schema text, and prompt caching (per-model minimum, 5-minute
and 1-hour TTLs, writes only once a response exists). Dollars come from that usage at the list prices in
src/imgtag/pricing/models.toml (batch: half of everything; 5-minute writes 1.25x, 1-hour writes 2x, reads
0.1x). The fake answers both pipelines with the same five fields (tags, category, description, color, style),
so output tokens compare like for like.

Baseline, in this script: the Chinese e-commerce tutorial in ../shared/reference (000_*.txt): its system
prompt, images shrunk to 1024 px (LANCZOS, JPEG q85), `messages.create(max_tokens=512)` on 5 threads,
standard API, no caching.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from PIL import Image, ImageStat  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig  # noqa: E402

from imgtag.pricing.catalogue import catalogue  # noqa: E402

CORPUS = Path(os.environ.get("IMGTAG_CORPUS", ROOT.parent / "shared" / "corpus"))
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-haiku-5-5")

# The tutorial's system prompt, verbatim (reference 000_*.txt, section 1.1).
TUTORIAL_SYSTEM = """你是一个电商商品图片标注助手。
分析用户提供的图片,严格按以下 JSON 格式返回,不要输出任何其他内容:
{
"tags": ["标签1", "标签2", "标签3"],
"category": "一级分类",
"description": "不超过50字的商品描述",
"color": "主色调",
"style": "风格关键词"
}
tags 最多 5 个,description 必须是中文。"""
TUTORIAL_USER = "请分析这张商品图片。"
# What a model following that prompt answers (and what imgtag's ecommerce preset asks for): five fields.
ANSWER_SHAPE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
        "category": {"type": "string"},
        "description": {"type": "string"},
        "color": {"type": "string"},
        "style": {"type": "string"},
    },
    "required": ["tags", "category", "description", "color", "style"],
    "additionalProperties": False,
}


# -- photo sets ----------------------------------------------------------------------------------------

def photo_set(name: str) -> list[Path]:
    """`product`: the corpus photos its manifest calls product shots (PRODUCT / product-like / household good);
    `photos`: every file in photos/."""
    folder = CORPUS / "photos"
    if name == "photos":
        return sorted(p for p in folder.iterdir() if p.is_file())
    rows = (CORPUS / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    picked = []
    for row in rows:
        cols = row.split("\t")
        note = cols[8].lower()
        if cols[0].startswith("photos/") and ("product" in note or "household good" in note):
            picked.append(CORPUS / cols[0])
    return sorted(picked)


def stage(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())


def mean_colour(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        r, g, b = (round(c) for c in ImageStat.Stat(rgb).mean[:3])
    return r, g, b


def close(hex_text: str, colour: tuple[int, int, int], tolerance: int = 10) -> bool:
    value = str(hex_text).strip().lstrip("#")[:6]
    try:
        rgb = tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return False
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, colour, strict=True))


# -- billing ---------------------------------------------------------------------------------------------

@dataclass
class Bill:
    label: str
    images: int
    valid: int
    input_tokens: int
    output_tokens: int
    cache_write: int
    cache_write_1h: int
    cache_read: int
    usd: float
    requests: int

    def per_image(self, tokens: int) -> float:
        return tokens / self.images if self.images else 0.0

    @property
    def usd_per_1k(self) -> float:
        return 1000 * self.usd / self.images if self.images else float("nan")


def bill(label: str, fake: FakeAnthropicServer, model: str, *, batch: bool, images: int, valid: int) -> Bill:
    prices = catalogue().get(model).prices
    assert prices is not None
    s = fake.stats
    w1h = s.cache_creation_1h_input_tokens
    w5m = s.cache_creation_input_tokens - w1h
    usd = (s.input_tokens * prices.input + s.output_tokens * prices.output + s.cache_read_input_tokens
           * prices.cache_read + w5m * prices.cache_write_5m + w1h * prices.cache_write_1h) / 1e6
    if batch:
        usd *= 0.5  # every token class at half price in batch mode
    requests = s.messages_requests + sum(s.batch_items_by_custom_id.values())
    return Bill(label, images, valid, s.input_tokens, s.output_tokens, s.cache_creation_input_tokens, w1h,
                s.cache_read_input_tokens, usd, requests)


# -- the tutorial pipeline (its code, condensed) ---------------------------------------------------------

def compress_and_encode(image_path: Path, max_size: int = 1024) -> tuple[str, str]:
    img = Image.open(image_path)
    if img.mode in ("RGBA", "P"):
        img = img.convert("RGB")
    ratio = min(max_size / img.width, max_size / img.height, 1.0)
    if ratio < 1.0:
        img = img.resize((int(img.width * ratio), int(img.height * ratio)), Image.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return base64.standard_b64encode(buffer.getvalue()).decode("utf-8"), "image/jpeg"


def tutorial(files: list[Path], fake: FakeAnthropicServer, model: str) -> tuple[int, int]:
    client = fake.client(max_retries=2)

    def one(path: Path) -> bool:
        try:
            data, media_type = compress_and_encode(path)
            message = client.messages.create(
                model=model, max_tokens=512, system=TUTORIAL_SYSTEM,
                messages=[{"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}},
                    {"type": "text", "text": TUTORIAL_USER}]}])
            answer = json.loads(message.content[0].text)
        except Exception:  # the tutorial records a failure and goes on
            return False
        return set(answer) == set(ANSWER_SHAPE["properties"]) and close(answer["color"], mean_colour(path))

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(one, files))
    return len(files), sum(results)


# -- imgtag ----------------------------------------------------------------------------------------------

def imgtag(folder: Path, files: list[Path], fake: FakeAnthropicServer, model: str, mode: str,
           extra: list[str]) -> tuple[int, int]:
    out = folder.parent / f"out-{model}-{mode}-{'-'.join(extra) or 'default'}"
    cmd = [sys.executable, "-m", "imgtag", "run", str(folder), "--out", str(out), "--model", model, "--mode", mode,
           "--format", "jsonl", "--poll-interval", "0.05", "-q", *extra]
    env = {**os.environ, **fake.env(), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"imgtag failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    colours = {f.name: mean_colour(f) for f in files}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    tagged = valid = 0
    for row in rows:
        if row.get("status") != "ok":
            continue
        tagged += 1
        name = Path(str(row.get("path") or row.get("file") or "")).name
        fields = row.get("fields") if isinstance(row.get("fields"), dict) else row
        if name in colours and close(fields.get("color", ""), colours[name]):
            valid += 1  # the answer names this image's own colour: it landed on its own image
    return tagged, valid


# -- the table -------------------------------------------------------------------------------------------

def run_model(model: str, files: list[Path], folder: Path, pack: int | None) -> list[Bill]:
    bills: list[Bill] = []
    base = dict(prompt_schema=ANSWER_SHAPE)
    with FakeAnthropicServer(FakeConfig(**base)) as fake:
        images, valid = tutorial(files, fake, model)
        bills.append(bill("tutorial pipeline", fake, model, batch=False, images=images, valid=valid))
    runs: list[tuple[str, str, list[str]]] = [("imgtag sync", "sync", []), ("imgtag batch", "batch", [])]
    if pack:
        runs += [(f"imgtag sync, {pack}/request", "sync", ["--images-per-request", str(pack)]),
                 (f"imgtag batch, {pack}/request", "batch", ["--images-per-request", str(pack)])]
    for label, mode, extra in runs:
        with FakeAnthropicServer(FakeConfig(**base, batch_processing_s=0.05)) as fake:
            images, valid = imgtag(folder, files, fake, model, mode, extra)
            bills.append(bill(label, fake, model, batch=mode == "batch", images=images, valid=valid))
    return bills


def print_table(model: str, bills: list[Bill]) -> None:
    base = bills[0]
    print(f"\n{model}")
    print(f"{'':<26} {'images':>6} {'valid':>5} {'req':>4} {'in/img':>7} {'write/img':>9} {'read/img':>8} "
          f"{'out/img':>7} {'$/1k img':>9} {'vs tutorial':>11}")
    for b in bills:
        ratio = b.usd_per_1k / base.usd_per_1k if base.usd_per_1k else math.nan
        print(f"{b.label:<26} {b.images:>6} {b.valid:>5} {b.requests:>4} {b.per_image(b.input_tokens):>7,.0f} "
              f"{b.per_image(b.cache_write):>9,.0f} {b.per_image(b.cache_read):>8,.0f} "
              f"{b.per_image(b.output_tokens):>7,.0f} {b.usd_per_1k:>9.3f} {ratio:>10.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("product", "photos"), default="product", help="which corpus photos")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--pack", type=int, default=None, help="also run imgtag with --images-per-request K")
    args = ap.parse_args()
    files = photo_set(args.set)
    if not files:
        raise SystemExit(f"no photos found under {CORPUS}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imgtag-bench-cost-") as tmp:
        folder = Path(tmp) / "photos"
        stage(files, folder)
        print(f"{len(files)} photos ({args.set} set of {CORPUS}); e-commerce task; fake server with prompt caching")
        for model in args.models.split(","):
            print_table(model, run_model(model, files, folder, args.pack))
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
