"""--images-per-request K: labelled images packed into one request; every answer lands on its own image and a
failing request touches only its own K images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.cli.commands import app
from imgtag.pricing.costs import Usage
from imgtag.providers.base import ModelAnswer
from imgtag.request.packing import split_answer

FIELDS = {"tags", "category", "description", "color", "style"}


def packed_requests(fake: Any) -> list[int]:
    """Images per /v1/messages request the fake answered."""
    return [len(e["image_keys"]) for e in fake.seen]


@pytest.fixture
def recording(recording_anthropic: Any) -> Any:
    return recording_anthropic


def test_each_answer_lands_on_its_own_image(tmp_path: Path, recording: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 11)
    fake = recording(latency_s=0.05)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-sonnet-4-6",
                            "--images-per-request", "4", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 11 and all(r["status"] == "ok" and set(r["fields"]) == FIELDS for r in rows)
    for r in rows:  # identity: the colour the answer names is this file's own colour
        assert close_to(r["fields"]["color"], made[Path(r["path"]).name]), r
    sizes = packed_requests(fake)
    assert sum(sizes) == 11 and max(sizes) == 4 and len(sizes) < 11
    body = fake.seen[-1]["request"]
    texts = [b["text"] for b in body["messages"][0]["content"] if b["type"] == "text"]
    assert texts[0] == "Image 1:"  # labelled, images before the instruction
    # Every pack shares one schema and system prompt, so one cached prefix serves them all.
    assert len({json.dumps([e["request"]["system"], e["request"]["output_config"]]) for e in fake.seen}) == 1
    assert fake.stats.cache_creation_input_tokens > 0 and fake.stats.cache_read_input_tokens > 0
    # The pack's usage is split across its images: the recorded costs add up to what the fake billed.
    assert sum(r["usage"]["input_tokens"] for r in rows) == fake.stats.input_tokens
    assert sum(r["usage"]["output_tokens"] for r in rows) == fake.stats.output_tokens


def test_truncated_pack_is_asked_again_and_lands_right(tmp_path: Path, recording: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 6)
    truncated: set[str] = set()

    def truncate_first(ctx: dict[str, Any]) -> dict[str, Any] | None:
        # Each pack's first answer is cut off (whichever pack is sent first), the next one is whole.
        keys = set(ctx["image_keys"])
        if len(keys) > 1 and not keys & truncated:
            truncated.update(keys)
            return {"output_mode": "truncated"}
        return None

    fake = recording(respond=truncate_first)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-haiku-4-5",
                            "--images-per-request", "3", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert all(r["status"] == "ok" and close_to(r["fields"]["color"], made[Path(r["path"]).name]) for r in rows)
    assert len(truncated) == 6  # every image's first answer was cut off, and asked again


def test_split_answer_keys_by_label_never_by_position() -> None:
    answer = ModelAnswer(stop_reason="end_turn", usage=Usage(10, 7, 0, 5), text=json.dumps({"answers": [
        {"label": "Image 2", "color": "two"}, {"label": "Image 1", "color": "one"},
        {"label": "Image 3", "color": "three"}, {"label": "Image 3", "color": "again"}]}))
    one, two, three = split_answer(answer, 3)
    assert json.loads(one.text)["color"] == "one" and json.loads(two.text)["color"] == "two"
    assert three.text is None  # a label answered twice is ambiguous: that image gets no answer
    assert sum(a.usage.input_tokens for a in (one, two, three)) == 10
    assert sum(a.usage.cache_read_input_tokens for a in (one, two, three)) == 5


@pytest.mark.parametrize("flags, message", [
    (["--images-per-request", "0"], "--images-per-request must be between 1 and 20, not 0"),
    (["--images-per-request", "21", "--mode", "batch"], "--images-per-request must be between 1 and 20, not 21"),
])
def test_bad_packing_flags(tmp_path: Path, flags: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--out", str(tmp_path / "o"), "--dry-run", *flags])
    assert result.exit_code == 2 and message in result.output
