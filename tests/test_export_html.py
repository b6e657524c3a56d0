"""contact-sheet.html, checked in a real browser (headless Chromium): hostile model text stays text, no
injected element exists, the filter works, thumbnails come from --out and the originals are untouched."""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from exportrows import HOSTILE, context, failed, image, ok, skipped
from imgtag.export.contact_sheet import SHEET_NAME, safe_json, write_contact_sheet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/system-deps installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000"]


def chromium(url: str, tmp_path: Path, *extra: str) -> str:
    profile = tmp_path / "chromium-profile"
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def sheet(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path / "in"
    rows = []
    for i, colour in enumerate([(220, 60, 60), (60, 160, 90), (60, 90, 200)]):
        src = image(root / f"p{i}.jpg", colour)
        fields = HOSTILE if i == 0 else {"tags": ["shoe", f"only{i}"], "category": "鞋", "description": f"item {i}",
                                         "color": "red", "style": "x"}
        rows.append(ok(src, root, fields, sha256=hashlib.sha256(src.read_bytes()).hexdigest()))
    bad = image(root / "bad.jpg", (0, 0, 0))
    rows.append(failed(bad, root, "<img src=x onerror=alert(2)> refused"))
    (root / "junk.jpg").write_bytes(b"junk")
    rows.append(skipped(root / "junk.jpg", root))
    originals = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}
    [path] = write_contact_sheet(iter(rows), context(tmp_path / "out"))
    return path, root, originals


def test_embedded_json_cannot_close_its_script_element() -> None:
    text = safe_json({"a": "</script><!-- <script>&amp; \u2028\u2029 ]]>"})
    assert not set("<>&\u2028\u2029") & set(text)
    assert text == '{"a":"\\u003c/script\\u003e\\u003c!-- \\u003cscript\\u003e\\u0026amp; \\u2028\\u2029 ]]\\u003e"}'


def test_sheet_thumbnails_in_out_originals_untouched_and_byte_identical(tmp_path: Path) -> None:
    path, root, originals = sheet(tmp_path)
    assert path == tmp_path / "out" / SHEET_NAME
    thumbs = sorted((tmp_path / "out" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == 4  # three ok images and the failed one (it has pixels); not the unreadable file
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()} == originals
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page  # nothing from outside
    first = path.read_bytes(), [t.read_bytes() for t in thumbs]
    for t in thumbs:
        t.unlink()
    again = sheet(tmp_path / "again")[0]
    assert again.read_bytes() == first[0]
    assert [t.read_bytes() for t in sorted((tmp_path / "again" / "out" / "thumbs").rglob("*.jpg"))] == first[1]


@needs_chromium
def test_hostile_model_text_is_shown_as_text_in_a_real_browser(tmp_path: Path) -> None:
    path, _, _ = sheet(tmp_path)
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom")
    assert dom.count("<article") == 5
    # Injected markup would be elements; as text it is escaped in the serialised DOM.
    assert "<b>" not in dom and 'src="x"' not in dom and "alert(1)</script>" not in dom
    assert len(re.findall(r"<script\b", dom)) == 3  # our two JSON blocks and our script, nothing else
    assert html.escape("<script>alert(1)</script>", quote=False) in dom
    assert html.escape("</script><img src=x onerror=alert(1)>", quote=False) in dom
    assert html.escape("<img src=x onerror=alert(2)> refused", quote=False) in dom  # the failure's reason
    assert "]]&gt;" in dom and "=1+2" in dom and "中文标签" in dom


@needs_chromium
@pytest.mark.parametrize(("fragment", "expected"), [
    ("#status=failed", ["bad.jpg"]), ("#tag=only2", ["p2.jpg"]), ("#q=ITEM%201", ["p1.jpg"]),
    ("#status=ok&tag=shoe", ["p1.jpg", "p2.jpg"]),
])
def test_filter_by_status_tag_and_text(tmp_path: Path, fragment: str, expected: list[str]) -> None:
    path, _, _ = sheet(tmp_path)
    dom = chromium(path.as_uri() + fragment, tmp_path, "--dump-dom")
    assert re.findall(r'<div class="path">([^<]*)</div>', dom) == expected


@needs_chromium
def test_screenshot_renders(tmp_path: Path) -> None:
    path, _, _ = sheet(tmp_path)
    shot = tmp_path / "shot.png"
    chromium(path.as_uri(), tmp_path, "--window-size=1200,800", "--hide-scrollbars", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
