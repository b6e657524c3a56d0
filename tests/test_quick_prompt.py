"""`imgtag run --prompt TEXT [--field NAME:TYPE ...]` (issue 19.4): a one-line task with the same engine, store,
estimate and exports as a preset, in sync and batch mode, against the fake servers."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow.parquet as pq
import pytest

from imagegen import make_images, one_sentence, read_jsonl, run_cli

PROMPT = "Is there a person in the photo? Answer yes or no and say where."
FIELDS = ["--field", "person:bool", "--field", "where:str", "--field", "count:int", "--field", "score:float",
          "--field", "objects:list"]


def asked_text(fake: Any) -> str:
    return json.dumps([s["request"] for s in fake.seen])


def test_sync_prompt_answer_field_rerun_asks_nothing_and_a_new_prompt_is_a_new_target(
        tmp_path: Path, recording_anthropic: Any, monkeypatch: Any) -> None:
    make_images(tmp_path / "in", 4)
    fake = recording_anthropic()
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "-q"]
    code, output = run_cli([*args, "--prompt", PROMPT], fake.env(), monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 4 and all(set(r["fields"]) == {"answer"} and isinstance(r["fields"]["answer"], str)
                                  for r in rows)
    assert PROMPT in asked_text(fake)
    assert fake.stats.messages_requests == 4
    preset = rows[0]["preset"]
    assert preset.startswith("prompt-")

    code, output = run_cli([*args, "--prompt", PROMPT], fake.env(), monkeypatch)  # the same task: nothing asked
    assert code == 0, output
    assert fake.stats.messages_requests == 4
    assert "4 of 4 files already done by earlier runs" in output

    code, output = run_cli([*args, "--prompt", PROMPT + " Count them too."], fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.messages_requests == 8  # another prompt is another target: asked again
    new_rows = read_jsonl(out / "results.jsonl")
    assert new_rows[0]["preset"] != preset and new_rows[0]["preset"].startswith("prompt-")
    assert list((out / "targets").iterdir())  # the first prompt's results kept beside, as for any target
    code, output = run_cli(["status", "--out", str(out), "--json"], fake.env(), monkeypatch)
    assert code == 0 and len(json.loads(output)["targets"]) == 2


def test_typed_fields_reach_every_export(tmp_path: Path, recording_anthropic: Any, monkeypatch: Any) -> None:
    make_images(tmp_path / "in", 3)
    fake = recording_anthropic()
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--prompt", PROMPT, *FIELDS,
                            "--format", "csv,jsonl,xlsx,parquet"], fake.env(), monkeypatch)
    assert code == 0, output
    schema = fake.seen[0]["request"]["output_config"]["format"]["schema"]
    assert {k: v["type"] for k, v in schema["properties"].items()} == {
        "person": "boolean", "where": "string", "count": "integer", "score": "number", "objects": "array"}
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert {"person", "where", "count", "score", "objects"} <= set(header)
    table = pq.read_table(out / "results.parquet")
    types = {name: str(table.schema.field(name).type) for name in ("person", "count", "score", "objects")}
    assert types == {"person": "bool", "count": "int64", "score": "double", "objects": "list<element: string>"}
    sheet = openpyxl.load_workbook(out / "results.xlsx").active
    titles = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert len({"person", "where", "count", "score", "objects"} & {str(t).lower() for t in titles}) == 5, titles
    # `imgtag export` rebuilds the task from the store alone.
    (out / "results.parquet").unlink()
    code, output = run_cli(["export", "--out", str(out), "--format", "parquet"], {}, monkeypatch)
    assert code == 0, output
    assert pq.read_table(out / "results.parquet").num_rows == 3


def test_batch_round_trip_and_rerun(tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: Any) -> None:
    make_images(tmp_path / "in", 5)
    fake = fake_anthropic_factory(batch_processing_s=0.2)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "-q", "--mode", "batch", "--poll-interval", "0.2",
            "--prompt", PROMPT, *FIELDS]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert [r["status"] for r in rows] == ["ok"] * 5
    assert all(isinstance(r["fields"]["person"], bool) and isinstance(r["fields"]["objects"], list) for r in rows)
    answered = sum(fake.stats.batch_answered_by_key.values())
    assert answered == 5
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert sum(fake.stats.batch_answered_by_key.values()) == answered  # nothing submitted again


def test_dry_run_estimates_the_prompt(tmp_path: Path, monkeypatch: Any) -> None:
    make_images(tmp_path / "in", 2)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--dry-run", "--prompt",
                            PROMPT], {}, monkeypatch)
    assert code == 0, output
    assert "$" in output and "Traceback" not in output


@pytest.mark.parametrize(("extra", "words"), [
    (["--prompt", PROMPT, "--field", "1st:str"], "letters, digits and _"),
    (["--prompt", PROMPT, "--field", "person:dict"], "str, int, float, bool, list[str]"),
    (["--prompt", PROMPT, "--field", "a:int", "--field", "a:str"], "twice"),
    (["--field", "person:bool"], "give --prompt too"),
    (["--prompt", PROMPT, "--preset", "keywords"], "not both"),
    (["--prompt", "  "], "--prompt is empty"),
])
def test_a_bad_prompt_or_field_is_one_sentence_and_exit_2(tmp_path: Path, monkeypatch: Any, extra: list[str],
                                                           words: str) -> None:
    make_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *extra], {"ANTHROPIC_API_KEY": "x"},
                           monkeypatch)
    assert code == 2, output
    assert words in one_sentence(output)
    assert not out.exists()


def test_the_version_is_the_prompt_and_fields() -> None:
    from imgtag.presets import load_preset
    from imgtag.presets.quick import quick_spec

    def version(prompt: str, *fields: str) -> str:
        return load_preset(quick_spec(prompt, list(fields))).version

    assert version(PROMPT) == version(f"  {PROMPT} ")  # the text asked, not the spaces around it
    assert version(PROMPT, "objects:list") == version(PROMPT, "objects:list[str]")
    assert version(PROMPT) == version(PROMPT, "answer:str") == version(PROMPT, "answer")
    assert len({version(PROMPT), version(PROMPT + "?"), version(PROMPT, "answer:int"),
                version(PROMPT, "a:str", "b:str"), version(PROMPT, "b:str", "a:str")}) == 5


def test_retry_asks_the_same_prompt_again(tmp_path: Path, recording_anthropic: Any, monkeypatch: Any) -> None:
    from imagegen import server_error_for

    made = make_images(tmp_path / "in", 3)
    failing = [made["img_0001.jpg"]]
    fake = recording_anthropic(respond=server_error_for(failing))
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--max-attempts", "1",
                            "--prompt", PROMPT, "--field", "person:bool"], fake.env(), monkeypatch)
    assert code == 1, output
    failing.clear()
    fake.seen.clear()
    code, output = run_cli(["retry", "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert len(fake.seen) == 1 and PROMPT in asked_text(fake)
    assert [r["status"] for r in read_jsonl(out / "results.jsonl")] == ["ok"] * 3
