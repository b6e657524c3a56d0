"""A tagged folder for the review tests: images run through the real CLI against the fake Anthropic server, then
the target's Review (the service the API routes call) over the store without the folder lock."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen import make_images, run_cli
from imgtag.review.service import Review
from imgtag.store import Store


def answer(n: int) -> dict[str, Any]:
    """The fake model's n-th answer (ecommerce preset): every image has 't-shirt'; odd ones 'cotton' too."""
    tags = ["t-shirt", f"tag{n}"] + (["cotton"] if n % 2 else [])
    return {"tags": tags, "category": "上衣", "description": f"shirt number {n}", "color": "red", "style": "casual"}


def by_seq(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"text": json.dumps(answer(ctx["seq"]), ensure_ascii=False)}


def tagged_folder(tmp_path: Path, fake_factory: Any, monkeypatch: Any, n: int = 6,
                  respond: Callable[[dict[str, Any]], Any] = by_seq) -> tuple[Path, Path, list[str]]:
    images = tmp_path / "in"
    make_images(images, n)
    fake = fake_factory(respond=respond)
    out = tmp_path / "out"
    args = ["run", str(images), "--out", str(out), "-q", "--preset", "ecommerce"]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    return images, out, args


def open_review(out: Path) -> tuple[Store, Review]:
    store = Store(out, lock=False, create=False)
    return store, Review(store.db, store.get_meta("target"))
