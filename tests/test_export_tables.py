"""results.xlsx (re-read with openpyxl) and results.parquet (re-read with pyarrow and datasets)."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exportrows import HOSTILE, context, failed, image, ok, skipped
from imgtag.export import parse_formats
from imgtag.export.parquet import write_parquet
from imgtag.export.xlsx import write_xlsx


def rows(tmp_path: Path) -> list:
    root = tmp_path / "in"
    a, b, c = image(root / "a.jpg"), image(root / "b.jpg"), root / "c.jpg"
    c.write_bytes(b"not an image")
    return [ok(a, root), failed(b, root), skipped(c, root),
            ok(image(root / "0012.jpg"), root, {**HOSTILE, "category": "0012", "tags": []})]


def test_xlsx_cells_are_typed_text_never_formulas(tmp_path: Path) -> None:
    out = tmp_path / "out"
    [path] = write_xlsx(iter(rows(tmp_path)), context(out))
    wb = openpyxl.load_workbook(path)
    ws = wb["results"]
    assert ws.freeze_panes == "A2"
    header = [c.value for c in ws[1]]
    assert header[:7] == ["path", "status", "tags", "category", "description", "color", "style"]
    data = [{h: c for h, c in zip(header, r, strict=True)} for r in ws.iter_rows(min_row=2)]
    assert len(data) == 4
    for row in data:
        for cell in row.values():
            assert cell.data_type != "f", f"{cell.coordinate} became a formula"
    first = data[0]
    assert first["tags"].value == "=1+2|<script>alert(1)</script>|]]>|0012|中文标签"
    assert first["tags"].data_type == "s" and first["tags"].quotePrefix  # stays text even when edited
    assert first["color"].value == "@cmd|' /C calc'!A0"  # as the model wrote it: no apostrophe shown
    assert first["category"].value == HOSTILE["category"] and first["category"].data_type == "s"
    assert first["input_tokens"].value == 1200 and first["input_tokens"].data_type == "n"
    assert first["cost_usd"].value == pytest.approx(0.3) and first["cost_usd"].data_type == "n"
    assert data[1]["status"].value == "failed"
    assert data[1]["error_message"].value == "<b>refused</b> =1+2" and data[1]["error_type"].value == "refusal"
    assert data[2]["status"].value == "skipped" and data[2]["error_type"].value == "corrupt"
    assert data[3]["category"].value == "0012" and data[3]["category"].data_type == "s"  # not the number 12
    widths = {h: ws.column_dimensions[c.column_letter].width for h, c in zip(header, ws[1], strict=True)}
    assert 6 <= widths["status"] < widths["tags"] <= 60


def test_xlsx_and_parquet_are_byte_identical_on_re_export(tmp_path: Path) -> None:
    digests = []
    for _ in range(2):
        out = tmp_path / "out"
        paths = write_xlsx(iter(rows(tmp_path)), context(out)) + write_parquet(iter(rows(tmp_path)), context(out))
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
        os.utime(paths[0], (0, 0))
    assert digests[0] == digests[1]


def test_parquet_has_the_presets_types(tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["text", "has_text"], "properties": {
        "text": {"type": "string"}, "has_text": {"type": "boolean"}, "count": {"type": "integer"},
        "score": {"type": ["number", "null"]}, "words": {"type": "array", "items": {"type": "string"}},
        "box": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "status": {"type": "string", "enum": ["a", "b"]}}}
    fields = list(schema["properties"])
    root = tmp_path / "in"
    answer = {"text": "=1+2 <b>", "has_text": True, "count": 3, "score": 0.5, "words": ["x", "0012"],
              "box": {"x": 1}, "status": "a"}
    data = [ok(image(root / "a.jpg"), root, answer), failed(image(root / "b.jpg"), root),
            ok(image(root / "c.jpg"), root, {"text": "", "has_text": False})]
    from imgtag.export import ExportContext

    ctx = ExportContext(out_dir=tmp_path / "out", field_names=fields, list_fields={"words"}, schema=schema)
    [path] = write_parquet(iter(data), ctx)
    table = pq.read_table(path)
    types = {f.name: f.type for f in table.schema}
    assert types["text"] == pa.string() and types["has_text"] == pa.bool_()
    assert types["count"] == pa.int64() and types["score"] == pa.float64()
    assert pa.types.is_list(types["words"]) and types["words"].value_type == pa.string()
    assert types["box"] == pa.string()  # nested objects as JSON text: one type per column
    assert "fields.status" in types and types["status"] == pa.string()  # the preset's "status" kept apart
    assert types["input_tokens"] == pa.int64() and types["cost_usd"] == pa.float64()
    got = table.to_pylist()
    assert got[0]["words"] == ["x", "0012"] and got[0]["box"] == '{"x":1}' and got[0]["fields.status"] == "a"
    assert got[1]["status"] == "failed" and got[1]["error_message"] == "<b>refused</b> =1+2"
    assert got[1]["text"] is None and got[1]["has_text"] is None
    assert got[2]["count"] is None and got[2]["has_text"] is False


def test_parquet_loads_in_datasets_one_row_per_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    [path] = write_parquet(iter(rows(tmp_path)), context(tmp_path / "out"))
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert ds.num_rows == 4
    assert ds.features["tags"] == datasets.List(datasets.Value("string"))
    assert ds.features["input_tokens"] == datasets.Value("int64")
    assert ds[1]["status"] == "failed" and ds[1]["tags"] is None


def test_parquet_without_pyarrow_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match=r"pip install 'imgtag\[parquet\]'"):
        parse_formats("csv,parquet")
    assert parse_formats("csv,xlsx") == ["csv", "xlsx"]


def test_duckdb_reads_parquet_types_and_counts_errors(tmp_path: Path) -> None:
    import duckdb

    [path] = write_parquet(iter(rows(tmp_path)), context(tmp_path / "out"))
    con = duckdb.connect()
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{path}')").fetchall())
    assert types["tags"] == "VARCHAR[]" and types["input_tokens"] == "BIGINT" and types["cost_usd"] == "DOUBLE"
    # The JSONL pitfall this format exists for: errors are counted, not silently zero.
    assert con.execute(f"SELECT count(*) FROM '{path}' WHERE error_type IS NOT NULL").fetchone()[0] == 2


SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice is not installed (.ci/system-deps installs it)")
def test_libreoffice_opens_the_workbook_with_chinese_intact_and_no_formulas(tmp_path: Path) -> None:
    [path] = write_xlsx(iter(rows(tmp_path)), context(tmp_path / "out"))
    # LibreOffice saves the sheet as UTF-8 CSV (filter options 44,34,76: comma, quote, UTF-8) as a user sees it.
    subprocess.run([SOFFICE, f"-env:UserInstallation={(tmp_path / 'lo-profile').as_uri()}", "--headless",
                    "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76", "--outdir", str(tmp_path / "csv"),
                    str(path)], capture_output=True, timeout=180, check=True)
    with open(tmp_path / "csv" / "results.csv", encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[0]["tags"] == "=1+2|<script>alert(1)</script>|]]>|0012|中文标签"  # text, not a formula's value
    assert table[0]["color"] == "@cmd|' /C calc'!A0" and table[0]["style"] == "+1-1"
    assert table[3]["category"] == "0012"
    assert table[1]["error_message"] == "<b>refused</b> =1+2"
