"""results.xlsx for shops: headers in the output language from the preset's field titles (machine names in a
hidden "fields" sheet), and with --xlsx-thumbnails a small thumbnail per row. Read back with openpyxl and
LibreOffice, as the people who upload these workbooks to marketplaces open them."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest

from exportrows import context, failed, image, ok, skipped
from imgtag.export.contact_sheet import write_contact_sheet
from imgtag.export.xlsx import write_xlsx
from imgtag.presets import load_preset

SHOP = {"tags": ["连衣裙", "碎花", "0012"], "category": "女装", "description": "夏季碎花连衣裙", "color": "红色",
        "style": "=波西米亚"}
ZH_HEADER = ["文件", "状态", "标签", "类目", "描述", "颜色", "风格", "错误类型", "错误信息"]
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


def _rows(root: Path) -> list:
    a = image(root / "a.jpg", (200, 30, 30), (400, 300))
    b = image(root / "b.jpg", (30, 30, 200), (240, 400))
    c = root / "c.jpg"
    c.write_bytes(b"not an image")
    return [ok(a, root, SHOP, sha256="a1" * 32), ok(b, root, SHOP, sha256="b2" * 32),
            failed(image(root / "d.jpg"), root), skipped(c, root)]


def _zh(out: Path, **kw):
    return context(out, lang="zh", field_titles=load_preset("ecommerce").titles, **kw)


def test_zh_headers_come_from_the_presets_titles_and_machine_names_stay_in_a_hidden_sheet(tmp_path: Path) -> None:
    [path] = write_xlsx(iter(_rows(tmp_path / "in")), _zh(tmp_path / "out"))
    wb = openpyxl.load_workbook(path)
    ws = wb["results"]
    header = [c.value for c in ws[1]]
    assert header[:9] == ZH_HEADER
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:")  # one header row: filters work
    first = [c.value for c in ws[2]]
    assert first[:7] == ["a.jpg", "ok", "连衣裙|碎花|0012", "女装", "夏季碎花连衣裙", "红色", "=波西米亚"]
    assert ws["G2"].data_type == "s"  # "=波西米亚" stays text under a localized header too
    assert ws.max_row == 5  # a header row and four images: nothing else in the rows an upload tool reads
    fields = wb["fields"]
    assert fields.sheet_state == "hidden" and wb.sheetnames[0] == "results"
    mapping = {r[1]: r[2] for r in fields.iter_rows(min_row=2, values_only=True)}
    assert mapping["标签"] == "tags" and mapping["类目"] == "category" and mapping["文件"] == "path"
    assert [r[0] for r in fields.iter_rows(min_row=2, values_only=True)][:3] == ["A", "B", "C"]
    assert list(mapping) == header


@pytest.mark.parametrize("lang", [None, "en", "pl"])
def test_english_and_languages_without_titles_keep_the_machine_names(tmp_path: Path, lang: str | None) -> None:
    ctx = context(tmp_path / "out", lang=lang, field_titles=load_preset("ecommerce").titles)
    [path] = write_xlsx(iter(_rows(tmp_path / "in")), ctx)
    wb = openpyxl.load_workbook(path)
    assert [c.value for c in wb["results"][1]][:4] == ["path", "status", "tags", "category"]
    assert wb.sheetnames == ["results"]


def test_titles_follow_the_language_tag_and_every_builtin_has_them() -> None:
    from imgtag.export.titles import header_titles

    titles = load_preset("ecommerce").titles
    assert header_titles(titles, "zh-cn")["tags"] == "标签"
    assert header_titles(titles, "zh-Hant")["tags"] == "標籤" == header_titles(titles, "zh-tw")["tags"]
    assert header_titles(titles, "ja")["color"] == "色"
    assert header_titles(titles, "pt-br")["category"] == "Categoria"
    assert header_titles(titles, "Cantonese") == {}
    for name in ("ecommerce", "keywords", "alt-text", "caption", "ocr"):
        preset = load_preset(name)
        for lang in ("zh", "zh-hant", "ja", "ko", "de", "fr", "es", "pt", "it", "ru", "vi", "th", "id"):
            assert set(header_titles(preset.titles, lang)) >= set(preset.fields), (name, lang)


def test_every_column_of_the_workbook_has_a_title_in_every_language_the_presets_have() -> None:
    from imgtag.export.titles import own_titles
    from imgtag.export.xlsx import _LEADING, _TRAILING, THUMB_COLUMN

    for lang in load_preset("ecommerce").titles:
        assert set(own_titles(lang)) >= {THUMB_COLUMN, *_LEADING, *_TRAILING}, lang


def test_titles_are_not_part_of_the_preset_version(tmp_path: Path) -> None:
    """Titles change headers, never the answer: a preset with other titles keeps its version (its paid results)."""
    mine = tmp_path / "shop.toml"
    mine.write_text('extends = "ecommerce"\n[titles.zh]\ncolor = "主色"\n[titles.pl]\ntags = "Tagi"\n',
                    encoding="utf-8")
    preset = load_preset(str(mine))
    assert preset.version == load_preset("ecommerce").version
    assert preset.titles["zh"]["color"] == "主色" and preset.titles["zh"]["tags"] == "标签"  # merged per field
    assert preset.titles["pl"] == {"tags": "Tagi"}
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "ecommerce"\n[titles.zh]\ncolour = "颜色"\n', encoding="utf-8")
    from imgtag.presets import PresetError

    with pytest.raises(PresetError, match=r"colour.*did you mean 'color'"):
        load_preset(str(bad))


def test_thumbnails_one_per_decodable_row_reusing_the_contact_sheets(tmp_path: Path) -> None:
    rows = _rows(tmp_path / "in")
    out = tmp_path / "out"
    write_contact_sheet(iter(rows), context(out))
    (tmp_path / "in" / "b.jpg").unlink()  # moved away since: its contact-sheet thumbnail is still there
    ctx = _zh(out, xlsx_thumbnails=True)
    [path] = write_xlsx(iter(rows), ctx)
    wb = openpyxl.load_workbook(path)
    ws = wb["results"]
    assert [c.value for c in ws[1]][:3] == ["缩略图", "文件", "状态"]
    anchors = sorted((img.anchor._from.row, img.anchor._from.col) for img in ws._images)
    # a and b (b from the contact sheet's thumbnail), d failed but is an image; c is not an image: none
    assert anchors == [(1, 0), (2, 0), (3, 0)]
    assert all(max(img.width, img.height) <= 128 for img in ws._images)
    assert ws.row_dimensions[2].height and ws.row_dimensions[2].height >= 48
    assert sorted(p.name for p in (out / "thumbs").rglob("*-128.jpg")) == sorted(
        [f"{'a1' * 32}-128.jpg", f"{'b2' * 32}-128.jpg", f"{'ab' * 32}-128.jpg"])
    assert any("xlsx: 3 thumbnails" in n for n in ctx.notes), ctx.notes
    again = path.read_bytes()
    write_xlsx(iter(rows), _zh(out, xlsx_thumbnails=True))
    assert path.read_bytes() == again  # re-export: same bytes, thumbnails reused


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice is not installed (.ci/system-deps installs it)")
def test_libreoffice_reads_the_localized_headers_and_shows_the_thumbnails(tmp_path: Path) -> None:
    [path] = write_xlsx(iter(_rows(tmp_path / "in")), _zh(tmp_path / "out", xlsx_thumbnails=True))
    subprocess.run([SOFFICE, f"-env:UserInstallation={(tmp_path / 'lo-profile').as_uri()}", "--headless",
                    "--convert-to", "ods", "--outdir", str(tmp_path / "ods"), str(path)],
                   capture_output=True, timeout=180, check=True)
    with zipfile.ZipFile(tmp_path / "ods" / "results.ods") as z:
        content = z.read("content.xml").decode("utf-8")
        pictures = [n for n in z.namelist() if n.startswith("Pictures/")]
    results = content.split('table:name="results"', 1)[1].split("</table:table>", 1)[0]
    first_row = re.search(r"<table:table-row[^>]*>(.*?)</table:table-row>", results, re.S).group(1)
    cells = re.findall(r"<text:p>(.*?)</text:p>", first_row)
    assert cells[:10] == ["缩略图", *ZH_HEADER]
    assert results.count("<draw:frame") == 3 and len(pictures) >= 2  # identical thumbnails are stored once
    assert 'table:name="fields"' in content and 'table:display="false"' in content  # hidden, still there


def test_cli_zh_workbook_with_thumbnails_remembered_by_export(tmp_path: Path, fake_anthropic_factory,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen import make_images, run_cli

    make_images(tmp_path / "in", 2)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--lang", "zh", "--format",
                            "xlsx,html", "--xlsx-thumbnails"], fake_anthropic_factory().env(), monkeypatch)
    assert code == 0, output
    # the contact sheet's thumbnails are made first, and the workbook's small ones from them
    assert output.index("html: 2 new thumbnails") < output.index("xlsx: 2 thumbnails"), output

    def read():
        wb = openpyxl.load_workbook(out / "results.xlsx")
        return [c.value for c in wb["results"][1]][:4], len(wb["results"]._images)
    assert read() == (["缩略图", "文件", "状态", "标签"], 2)
    code, output = run_cli(["export", "--out", str(out)], {}, monkeypatch)  # remembered
    assert code == 0 and read() == (["缩略图", "文件", "状态", "标签"], 2), output
    code, output = run_cli(["export", "--out", str(out), "--no-xlsx-thumbnails"], {}, monkeypatch)
    assert code == 0 and read() == (["文件", "状态", "标签", "类目"], 0), output
    # asked for thumbnails in a workbook that is not written: a usage error, before anything is paid for
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--format", "csv",
                            "--xlsx-thumbnails"], fake_anthropic_factory().env(), monkeypatch)
    assert code == 2 and "--xlsx-thumbnails" in output and "xlsx" in output, output
    assert not (tmp_path / "o2").exists()
