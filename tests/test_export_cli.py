"""The new formats through the real CLI and fake server: rebuilt from the store, originals untouched,
byte-identical on re-export, hostile model output inert, usage errors in one sentence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq

from exportrows import HOSTILE
from imagegen import make_images, run_cli

NEW_FORMATS = "csv,jsonl,xlsx,parquet,metadata-jsonl,txt,json-sidecar,html"
HOSTILE_ANSWER = {**HOSTILE, "description": "<img src=x onerror=alert(1)>]]>"}  # within the 50-char limit


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def hostile_run(tmp_path: Path, fake_anthropic_factory, monkeypatch, formats: str = NEW_FORMATS,
                extra: list[str] | None = None) -> tuple[int, str, Path, Path, dict[str, str]]:
    images = tmp_path / "in"
    make_images(images / "train", 3)
    make_images(images / "test", 2)
    (images / "train" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    originals = digests(images)
    fake = fake_anthropic_factory(respond=lambda ctx: {"text": json.dumps(HOSTILE_ANSWER, ensure_ascii=False)})
    out = tmp_path / "out"
    code, output = run_cli(["run", str(images), "--out", str(out), "-q", "--format", formats, *(extra or [])],
                           fake.env(), monkeypatch)
    return code, output, images, out, originals


def test_new_formats_from_a_run_and_byte_identical_re_export(tmp_path, fake_anthropic_factory, monkeypatch):
    code, output, images, out, originals = hostile_run(tmp_path, fake_anthropic_factory, monkeypatch,
                                                       extra=["--txt-template", "{tags}"])
    assert code == 0, output
    assert "txt: 5 written" in output and "json-sidecar: 5 written" in output
    after_run = digests(images)
    for name, digest in originals.items():
        assert after_run[name] == digest, f"{name} changed"
    produced = set(after_run) - set(originals)
    assert produced == {*(f"{s}/img_{i:04d}.{ext}" for s, n in (("train", 3), ("test", 2)) for i in range(n)
                          for ext in ("txt", "jpg.imgtag.json")), "train/metadata.jsonl", "test/metadata.jsonl"}
    assert (images / "train" / "img_0000.txt").read_text(encoding="utf-8") == ", ".join(HOSTILE["tags"])
    outputs = digests(out)

    # `export` rebuilds everything from the store without a model (no API key, no server), twice, with the
    # caption template the run was given (remembered: a plain export must not rewrite the captions).
    for _ in range(2):
        code, output = run_cli(["export", "--out", str(out), "--format", NEW_FORMATS], {}, monkeypatch)
        assert code == 0, output
        assert "txt: 5 unchanged" in output
        assert digests(images) == after_run
        now = digests(out)
        for name in ("results.xlsx", "results.parquet", "results.csv", "results.jsonl", "contact-sheet.html"):
            assert now[name] == outputs[name], f"{name} differs on re-export"

    wb = openpyxl.load_workbook(out / "results.xlsx")
    cells = [c for row in wb["results"].iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    assert "=1+2|<script>alert(1)</script>|]]>|0012|中文标签" in {c.value for c in cells}
    not_ok = [r for r in wb["results"].iter_rows(values_only=True) if r[1] not in ("ok", "status")]
    assert len(not_ok) == 1 and not_ok[0][0] == "train/broken.jpg" and not_ok[0][8]  # with its reason
    assert len(list((out / "thumbs").rglob("*.jpg"))) == 3  # five ok images, three distinct contents
    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == 6 and table.column("tags").to_pylist()[0] == HOSTILE["tags"]


def test_export_usage_errors_are_one_sentence(tmp_path, fake_anthropic_factory, monkeypatch):
    code, output, _, out, _ = hostile_run(tmp_path, fake_anthropic_factory, monkeypatch, formats="csv")
    assert code == 0, output
    for args, words in (
        (["--format", "txt", "--txt-template", "{nope}"], "not a field of this preset"),
        (["--format", "txt", "--txt-existing", "merge"], "--txt-existing must be one of"),
        (["--format", "pdf"], "unknown export format"),
    ):
        code, output = run_cli(["export", "--out", str(out), *args], {}, monkeypatch)
        assert code == 2 and words in output and "Traceback" not in output, output
        assert len(output.strip().splitlines()) == 1


def test_a_users_metadata_jsonl_is_refused_with_exit_2(tmp_path, fake_anthropic_factory, monkeypatch):
    code, output, images, out, _ = hostile_run(tmp_path, fake_anthropic_factory, monkeypatch, formats="csv")
    theirs = images / "train" / "metadata.jsonl"
    theirs.write_text('{"file_name": "img_0000.jpg", "label": 1}\n', encoding="utf-8")
    code, output = run_cli(["export", "--out", str(out), "--format", "metadata-jsonl,csv"], {}, monkeypatch)
    assert code == 2 and "was not written by imgtag" in output and "--metadata-overwrite" in output, output
    assert theirs.read_text(encoding="utf-8") == '{"file_name": "img_0000.jpg", "label": 1}\n'
    assert (images / "test" / "metadata.jsonl").exists()  # the other split is still written
    code, output = run_cli(["export", "--out", str(out), "--format", "metadata-jsonl", "--metadata-overwrite"], {},
                           monkeypatch)
    assert code == 0, output
    assert "label" not in theirs.read_text(encoding="utf-8")


def test_a_bad_caption_template_stops_the_run_before_anything_is_paid(tmp_path, fake_anthropic_factory,
                                                                      monkeypatch):
    make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory()
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", "--format", "txt",
                            "--txt-template", "{caption}"], fake.env(), monkeypatch)
    assert code == 2 and "{caption}, which is not a field of this preset" in output, output
    assert fake.stats.to_dict()["answered"] == 0


def test_export_remembers_an_explicit_caption_template(tmp_path, fake_anthropic_factory, monkeypatch):
    code, output, images, out, _ = hostile_run(tmp_path, fake_anthropic_factory, monkeypatch, formats="txt")
    assert code == 0 and (images / "test" / "img_0000.txt").read_text(encoding="utf-8") == ", ".join(HOSTILE["tags"])
    code, output = run_cli(["export", "--out", str(out), "--format", "txt", "--txt-template", "{color} {style}"], {},
                           monkeypatch)
    assert code == 0 and "txt: 5 written" in output, output
    code, output = run_cli(["export", "--out", str(out), "--format", "txt"], {}, monkeypatch)
    assert code == 0 and "txt: 5 unchanged" in output, output
    assert (images / "test" / "img_0000.txt").read_text(encoding="utf-8") == f"{HOSTILE['color']} {HOSTILE['style']}"


def test_a_misspelt_export_format_gets_a_did_you_mean(tmp_path, monkeypatch):
    """`--format csv,jsnl` listed the valid formats but, unlike --preset and --provider, not the one meant."""
    from imagegen import one_sentence

    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--format", "csv,jsnl"],
                           {"ANTHROPIC_API_KEY": "test-key-not-real"}, monkeypatch)
    line = one_sentence(output)
    assert code == 2 and "unknown export format 'jsnl' (did you mean 'jsonl'?); valid formats: csv" in line, line
    assert not (tmp_path / "o").exists()
