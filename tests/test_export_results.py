"""results.jsonl / results.csv writers, atomic writing and the exporter registry."""

from __future__ import annotations

import csv
import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtag.export import EXPORTERS, ExportContext, ResultRow, parse_formats
from imgtag.export.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from imgtag.export.results import (
    EXCEL_CELL_LIMIT,
    JSONL_KEYS,
    TRUNCATION_MARKER,
    neutralise,
    write_csv,
    write_jsonl,
)

FIELDS = ["tags", "category", "description", "color", "style"]
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 80,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 900,
}


def ctx(tmp_path: Path, fields: list[str] | None = None) -> ExportContext:
    return ExportContext(out_dir=tmp_path, field_names=fields or FIELDS, list_fields={"tags"})


def ok_row(path: str = "shoes/红色跑鞋.jpg", **fields: object) -> ResultRow:
    base = {
        "tags": ["跑鞋", "红色", "运动"],
        "category": "鞋靴",
        "description": "一双红色的轻便跑鞋，适合日常运动",
        "color": "红色",
        "style": "运动",
    }
    base.update(fields)
    return ResultRow(
        path=path,
        sha256="ab" * 32,
        status="ok",
        fields=base,
        error=None,
        model="claude-haiku-4-5",
        preset="ecommerce",
        preset_version="1",
        provider="anthropic",
        usage=dict(USAGE),
        cost_usd=0.1 + 0.2,  # float noise on purpose
        mode="sync",
    )


def failed_row(path: str = "broken.jpg", message: str = "cannot identify image file") -> ResultRow:
    return ResultRow(
        path=path,
        sha256=None,
        status="failed",
        fields=None,
        error={"type": "decode_error", "message": message},
        model=None,
        preset="ecommerce",
        preset_version="1",
        provider=None,
        usage=None,
        cost_usd=None,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


# --- results.jsonl ------------------------------------------------------------------------------


def test_jsonl_round_trip_key_order_and_chinese(tmp_path: Path) -> None:
    dup = replace(ok_row("shoes/copy.jpg"), duplicate_of="shoes/红色跑鞋.jpg")
    skipped = replace(
        failed_row("tiny.png"), status="skipped", error={"type": "too_small", "message": "120x90 < 200 px"}
    )
    rows = [ok_row(), failed_row(), dup, skipped]
    assert write_jsonl(iter(rows), ctx(tmp_path)) == [tmp_path / "results.jsonl"]

    raw = (tmp_path / "results.jsonl").read_bytes()
    assert b"\r\n" not in raw and raw.endswith(b"\n")
    text = raw.decode("utf-8")
    assert "红色跑鞋" in text and "\\u" not in text  # readable, not escaped
    lines = text.splitlines()
    assert len(lines) == len(rows)

    for line, row in zip(lines, rows, strict=True):
        obj = json.loads(line)
        assert tuple(obj) == JSONL_KEYS
        assert list(obj)[:9] == [
            "path", "sha256", "status", "fields", "error", "model", "preset", "usage", "cost_usd",
        ]  # fmt: skip
        assert obj["path"] == row.path
        assert obj["status"] == row.status
        assert obj["fields"] == row.fields
        assert obj["error"] == row.error
        assert obj["usage"] == row.usage
        assert obj["duplicate_of"] == row.duplicate_of
        assert obj["preset_version"] == row.preset_version

    first = json.loads(lines[0])
    assert first["cost_usd"] == 0.3
    assert '"cost_usd": 0.3,' in lines[0]  # no 0.30000000000000004
    assert json.loads(lines[1])["cost_usd"] is None


def test_jsonl_non_utf8_name_and_nan_stay_valid(tmp_path: Path) -> None:
    # A non-UTF-8 file name arrives as a surrogate-escaped str; the line must still be valid
    # UTF-8 JSON and give the original name back.
    odd = os.fsdecode(b"caf\xe9.jpg")
    row = replace(ok_row(odd), cost_usd=float("nan"), fields={"score": float("inf"), "tags": []})
    write_jsonl([row], ctx(tmp_path))
    line = (tmp_path / "results.jsonl").read_bytes().decode("utf-8")
    obj = json.loads(line)
    assert obj["path"] == odd
    assert os.fsencode(obj["path"]) == b"caf\xe9.jpg"
    assert obj["cost_usd"] is None
    assert obj["fields"]["score"] is None


# --- results.csv --------------------------------------------------------------------------------


def test_csv_bom_columns_chinese_and_lists(tmp_path: Path) -> None:
    assert write_csv([ok_row(), failed_row()], ctx(tmp_path)) == [tmp_path / "results.csv"]
    raw = (tmp_path / "results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\xef\xbb\xbf") == 1
    assert b"\r\n" in raw

    with (tmp_path / "results.csv").open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f))
    assert header == [
        "path", "status", *FIELDS, "error_type", "error_message", "model", "preset",
        "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
        "cost_usd", "sha256", "duplicate_of", "reviewed", "edited_fields", "error_raw_answer",
    ]  # fmt: skip

    ok, failed = read_csv(tmp_path / "results.csv")
    assert ok["path"] == "shoes/红色跑鞋.jpg"
    assert ok["tags"] == "跑鞋|红色|运动"
    assert ok["description"] == "一双红色的轻便跑鞋，适合日常运动"
    assert ok["input_tokens"] == "1200" and ok["cache_read_input_tokens"] == "900"
    assert ok["cost_usd"] == "0.3"
    assert ok["error_type"] == "" and ok["duplicate_of"] == ""
    assert failed["status"] == "failed"
    assert failed["error_type"] == "decode_error"
    assert failed["error_message"] == "cannot identify image file"
    assert failed["tags"] == "" and failed["cost_usd"] == "" and failed["sha256"] == ""


def test_csv_value_formatting(tmp_path: Path) -> None:
    row = ok_row(
        tags=["  padded  ", "a|b", "", "x"],
        category={"main": "鞋", "sub": ["跑鞋"]},
        description=True,
        color=False,
        style=None,
    )
    row = replace(row, cost_usd=0.00001234)
    write_csv([row], ctx(tmp_path))
    (got,) = read_csv(tmp_path / "results.csv")
    assert got["tags"] == "padded|a|b|x"  # stripped, empties dropped, inner "|" kept
    assert json.loads(got["category"]) == {"main": "鞋", "sub": ["跑鞋"]}
    assert got["category"] == '{"main":"鞋","sub":["跑鞋"]}'  # compact
    assert got["description"] == "true" and got["color"] == "false" and got["style"] == ""
    assert got["cost_usd"] == "0.00001234"  # plain decimal, not 1.234e-05


HOSTILE = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "  =1+1"]


@pytest.mark.parametrize("evil", HOSTILE)
def test_csv_formula_injection_neutralised_everywhere(tmp_path: Path, evil: str) -> None:
    row = replace(
        ok_row(evil, description=evil, tags=[evil, "ok"]),
        error={"type": evil, "message": evil},
        duplicate_of=evil,
    )
    write_csv([row], ctx(tmp_path))
    (got,) = read_csv(tmp_path / "results.csv")
    for col in ("path", "description", "error_type", "error_message", "duplicate_of"):
        assert got[col].startswith("'"), (col, got[col])
    # List items are stripped first, so "\tcmd" becomes the harmless "cmd"; whatever is left
    # must be neutralised or start with a safe character.
    assert got["tags"].startswith("'") or got["tags"] == evil.strip() + "|ok"
    assert got["tags"].lstrip("'") == evil.strip() + "|ok"
    assert got["path"] == "'" + evil
    assert got["description"] == "'" + evil
    assert got["error_message"] == "'" + evil


def test_csv_plain_text_and_numbers_untouched(tmp_path: Path) -> None:
    row = ok_row("hello-world.jpg", description="hello-world", color="a=b", style=-3)
    write_csv([row], ctx(tmp_path))
    (got,) = read_csv(tmp_path / "results.csv")
    assert got["path"] == "hello-world.jpg"
    assert got["description"] == "hello-world"
    assert got["color"] == "a=b"
    assert got["style"] == "-3"  # a real number is never a formula; quoting would make it text


def test_neutralise_rules() -> None:
    assert neutralise("") == ""
    assert neutralise("   ") == "   "
    assert neutralise(" \t x") == "' \t x"  # tab inside the leading whitespace
    assert neutralise("\n=1") == "'\n=1"
    assert neutralise("＝SUM(1)") == "'＝SUM(1)"  # full-width equals sign
    assert neutralise("it's-fine") == "it's-fine"


def test_csv_newlines_quotes_round_trip(tmp_path: Path) -> None:
    text = 'line one\nline "two", with comma\r\nline three'
    write_csv([ok_row('we"ird,name.jpg', description=text)], ctx(tmp_path))
    (got,) = read_csv(tmp_path / "results.csv")
    assert got["description"] == text
    assert got["path"] == 'we"ird,name.jpg'


def test_csv_truncates_cells_over_excel_limit(tmp_path: Path) -> None:
    long_text = "字" * 40_000
    emoji = "🙂" * 20_000  # 2 UTF-16 units each: 40,000 units
    write_csv([ok_row(description=long_text, color=emoji, style="short")], ctx(tmp_path))
    (got,) = read_csv(tmp_path / "results.csv")
    for col in ("description", "color"):
        assert got[col].endswith(TRUNCATION_MARKER)
        assert len(got[col].encode("utf-16-le")) // 2 <= EXCEL_CELL_LIMIT
    assert got["description"].startswith("字" * 1000)
    assert set(got["color"].removesuffix(TRUNCATION_MARKER)) == {"🙂"}
    assert got["style"] == "short"


def test_csv_field_name_colliding_with_fixed_column(tmp_path: Path) -> None:
    row = replace(ok_row(), fields={"model": "Air Max 90", "tags": ["a"]})
    write_csv([row], ctx(tmp_path, ["model", "tags"]))
    (got,) = read_csv(tmp_path / "results.csv")
    assert got["fields.model"] == "Air Max 90"
    assert got["model"] == "claude-haiku-4-5"


def test_csv_non_utf8_name_and_nul(tmp_path: Path) -> None:
    write_csv([ok_row(os.fsdecode(b"caf\xe9.jpg"), description="a\x00b")], ctx(tmp_path))
    (got,) = read_csv(tmp_path / "results.csv")
    assert got["path"] == "caf\ufffd.jpg"
    assert got["description"] == "ab"


# --- atomicity ----------------------------------------------------------------------------------


def _rows_then_boom(n: int = 3) -> Iterator[ResultRow]:
    for i in range(n):
        yield ok_row(f"img{i}.jpg")
    raise RuntimeError("store went away")


@pytest.mark.parametrize("writer", [write_csv, write_jsonl])
def test_failed_export_keeps_previous_file_and_leaves_no_temp(tmp_path: Path, writer) -> None:
    (path,) = writer([ok_row("previous.jpg")], ctx(tmp_path))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="store went away"):
        writer(_rows_then_boom(), ctx(tmp_path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_failed_first_export_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        write_csv(_rows_then_boom(), ctx(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_binary_text_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    os.chmod(target, 0o640)
    atomic_write_text(target, "新内容")
    assert target.read_text(encoding="utf-8") == "新内容"
    assert (target.stat().st_mode & 0o777) == 0o640  # replacing keeps the user's permissions
    with pytest.raises(ValueError):
        atomic_write(target, "a")  # type: ignore[call-overload]
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write("half")
        raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "新内容"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


@settings(max_examples=60, deadline=None)
@given(text=st.text())
def test_atomic_text_round_trips(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    target = tmp_path_factory.mktemp("atomic") / "t.txt"
    with atomic_write(target, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    with target.open(encoding="utf-8", newline="") as f:
        assert f.read() == text


# --- registry -----------------------------------------------------------------------------------


def test_registry_and_parse_formats() -> None:
    assert EXPORTERS["csv"] is write_csv and EXPORTERS["jsonl"] is write_jsonl
    assert parse_formats("csv,jsonl") == ["csv", "jsonl"]
    assert parse_formats(" JSONL , csv,jsonl,") == ["jsonl", "csv"]
    with pytest.raises(ValueError) as exc:
        parse_formats("csv,pdf")
    msg = str(exc.value)
    assert "\n" not in msg and "'pdf'" in msg and "csv" in msg and "jsonl" in msg
    with pytest.raises(ValueError, match="valid formats"):
        parse_formats(" , ")


# --- streaming ----------------------------------------------------------------------------------

N_LARGE = 200_000


def _many_rows(n: int) -> Iterator[ResultRow]:
    template = ok_row()
    for i in range(n):
        yield replace(template, path=f"batch/{i:07d}.jpg", sha256=f"{i:064x}")


@pytest.mark.parametrize("writer", [write_csv, write_jsonl])
def test_large_stream_memory_stays_flat(tmp_path: Path, writer) -> None:
    # tracemalloc slows Python a lot, so the timed, traced run uses fewer rows; the untraced
    # run below checks the full 200k rows finish quickly.
    tracemalloc.start()
    try:
        writer(_many_rows(20_000), ctx(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Holding 20k rows (or their output text) would take about 10 MB; streaming stays near
    # one row plus file buffers (~0.2 MB measured).
    assert peak < 2 * 1024 * 1024, peak

    start = time.process_time()
    (path,) = writer(_many_rows(N_LARGE), ctx(tmp_path))
    # ~4 s of CPU here; the bound only catches pathological slowness. CPU time, not wall: a loaded machine
    # (36 s of wall at load 11) says nothing about the writer.
    assert time.process_time() - start < 30
    with path.open("rb") as f:
        assert sum(1 for _ in f) >= N_LARGE  # CSV adds a header line


def test_jsonl_line_count_matches_csv_rows(tmp_path: Path) -> None:
    rows = [ok_row(f"{i}.jpg", description=f"第{i}行\n第二行") for i in range(50)]
    write_jsonl(rows, ctx(tmp_path))
    write_csv(rows, ctx(tmp_path))
    assert len((tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 50
    assert len(read_csv(tmp_path / "results.csv")) == 50
