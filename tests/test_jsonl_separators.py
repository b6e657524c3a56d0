"""U+2028/U+2029 (line and paragraph separators) in model text or file names never split a JSON line.

Python's str.splitlines, JavaScript before ES2019 and some JSONL readers treat them as line ends, so every JSON-lines
output escapes them (\\u2028, \\u2029): each line is one record for any reader, and the text round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import duckdb
from typer.testing import CliRunner

from exportrows import HOSTILE
from imagegen import make_images, run_cli
from imgtag.cli.commands import app

LS, PS = "\u2028", "\u2029"
ANSWER = {**HOSTILE, "description": f"one{LS}two{PS}three", "tags": [f"a{LS}b", "c"]}


def records(path: Path) -> list[dict]:
    """Read JSONL the way a strict-but-naive reader does: one record per str.splitlines() line."""
    text = path.read_text(encoding="utf-8")
    assert LS not in text and PS not in text, f"raw separator in {path.name}"
    return [json.loads(line) for line in text.splitlines()]


def test_every_jsonl_output_escapes_line_and_paragraph_separators(tmp_path: Path, fake_anthropic_factory,
                                                                    monkeypatch) -> None:
    images = tmp_path / "in"
    make_images(images, 2)
    (images / "img_0001.jpg").rename(images / f"odd{LS}name.jpg")  # a file name may hold one too
    fake = fake_anthropic_factory(respond=lambda ctx: {"text": json.dumps(ANSWER, ensure_ascii=False)})
    out = tmp_path / "out"
    code, output = run_cli(["run", str(images), "--out", str(out), "-q", "--format",
                            "jsonl,metadata-jsonl,json-sidecar"], fake.env(), monkeypatch)
    assert code == 0, output

    rows = records(out / "results.jsonl")
    assert len(rows) == 2
    assert {r["path"] for r in rows} == {"img_0000.jpg", f"odd{LS}name.jpg"}
    assert all(r["fields"]["description"] == ANSWER["description"] for r in rows)
    meta = records(images / "metadata.jsonl")
    assert len(meta) == 2 and meta[0]["tags"] == ANSWER["tags"]
    sidecar = images / "img_0000.jpg.imgtag.json"
    assert LS not in sidecar.read_text(encoding="utf-8")
    assert json.loads(sidecar.read_text(encoding="utf-8"))["fields"]["description"] == ANSWER["description"]

    # The readers users load these with see two records with the text intact.
    con = duckdb.connect()
    got = con.execute(f"SELECT path, fields.description FROM read_json_auto('{out / 'results.jsonl'}') "
                      "ORDER BY path").fetchall()
    assert got == [("img_0000.jpg", ANSWER["description"]), (f"odd{LS}name.jpg", ANSWER["description"])]
    ds = datasets.load_dataset("json", data_files=str(out / "results.jsonl"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 2 and ds[0]["fields"]["description"] == ANSWER["description"]

    # scan --json prints JSON lines too.
    result = CliRunner().invoke(app, ["scan", str(images), "--json", "--out", str(tmp_path / "scan")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert LS not in result.stdout
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert f"odd{LS}name.jpg" in {e.get("path") for e in lines}
