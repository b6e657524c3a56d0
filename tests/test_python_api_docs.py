"""docs/python-api.md's examples run as written (issue 19 item 1): every ```python block, in order, in one
namespace, in a folder holding photos/, against the fake Anthropic server."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_page_has_an_example_for_each_function():
    code = "\n".join(python_blocks(DOC.read_text(encoding="utf-8")))
    for name in ("tag(", "results(", "estimate(", "describe(", "atag(", "adescribe(", "on_event", "ImgtagError",
                 "ConfigurationError", "open_review(", "ReviewRefused"):
        assert f"imgtag.{name}" in code or name in code, name


def test_every_python_example_runs(tmp_path: Path, fake_anthropic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IMGTAG_PRESET", "IMGTAG_MODEL", "IMGTAG_PROVIDER", "IMGTAG_LANG", "IMGTAG_CATEGORIES", "IMGTAG_OUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in fake_anthropic.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    photos = make_images(tmp_path / "photos", 3)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    printed = io.StringIO()
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 9
    with contextlib.redirect_stdout(printed):
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"docs/python-api.md, example {number}", "exec"), namespace)
    # What the examples leave behind is what the page says they do.
    assert namespace["result"].ok == 3 and namespace["again"] is None  # retry_failed: nothing failed
    assert namespace["edited"].reviewed and namespace["edited"].edited_fields == ("description",)
    assert namespace["plan"].dry_run and namespace["plan"].changed == namespace["change"].changed
    assert namespace["estimate"].distinct_images == 3
    assert (tmp_path / "shop-out" / "results.csv").is_file() and (tmp_path / "async-out" / "results.csv").is_file()
    assert sorted(namespace["done"]) == sorted(photos)  # on_event saw each image done
    assert (tmp_path / "shop-out" / "results.xlsx").is_file() and namespace["report"]["by_status"] == {"ok": 3}
    assert all((tmp_path / "photos" / name).with_suffix(".txt").is_file() for name in photos)
    lines = printed.getvalue().splitlines()
    assert any(line.startswith("unknown preset") or "unknown preset" in line for line in lines)
    assert any("longer than" in line for line in lines) and "1 approved" in lines  # the review example
    assert sum(1 for line in lines if line.split(" ")[0] in photos) == 3  # one line per ok row of results()
