"""The real CLI, SDK and engine against the fake Anthropic server (in-process, on loopback)."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from imagegen import close_to, make_images, read_jsonl, run_cli
from serversim import SimProvider, TokenBucket, run_engine
from virtualtime import START


def test_every_image_gets_its_own_answer(tmp_path, fake_anthropic_factory, monkeypatch):
    made = make_images(tmp_path / "in", 12)
    # an exact duplicate under another name: asked once, result copied
    (tmp_path / "in" / "copy.jpg").write_bytes((tmp_path / "in" / "img_0003.jpg").read_bytes())
    fake = fake_anthropic_factory(latency_s=0.05)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 13
    by_path = {r["path"]: r for r in rows}
    for name, colour in made.items():
        row = by_path[name]
        assert row["status"] == "ok"
        assert close_to(row["fields"]["color"], colour), (name, row["fields"])
    assert by_path["copy.jpg"]["fields"] == by_path["img_0003.jpg"]["fields"]
    # copy.jpg sorts first, so it is the original and img_0003.jpg the copy that costs nothing
    assert by_path["img_0003.jpg"]["duplicate_of"] == "copy.jpg"
    assert by_path["img_0003.jpg"]["cost_usd"] == 0
    paid = [r for r in rows if r["duplicate_of"] is None]
    assert all(r["usage"]["input_tokens"] > 0 and r["cost_usd"] > 0 for r in paid)
    assert fake.stats.messages_requests == 12  # the duplicate was not asked
    assert all(count == 1 for count in fake.stats.answered_by_key.values())


def test_faults_every_image_ok_and_answered_once(tmp_path, fake_anthropic_factory, monkeypatch):
    made = make_images(tmp_path / "in", 60)
    fake = fake_anthropic_factory(latency_s=0.05, jitter_s=0.05, p_529=0.05, p_500=0.03, p_drop=0.02, seed=7,
                                  send_retry_after_ms=True)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert [r["status"] for r in rows].count("ok") == 60
    for row in rows:
        assert close_to(row["fields"]["color"], made[row["path"]])
    assert len(fake.stats.answered_by_key) == 60
    assert max(fake.stats.answered_by_key.values()) == 1
    faults = sum(v for k, v in fake.stats.status_counts.items() if k >= 500) + fake.stats.dropped
    assert faults > 0, "the fault injection did not fire; the test proves nothing"
    db = sqlite3.connect(out / "imgtag.db")
    retried = db.execute("SELECT COUNT(*) FROM attempts WHERE outcome='retry'").fetchone()[0]
    assert retried >= faults


@pytest.mark.parametrize("mode", ["prose", "fenced", "thinking"])
def test_repairable_outputs_are_ok(tmp_path, fake_anthropic_factory, monkeypatch, mode):
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(output_mode=mode)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    assert {r["status"] for r in read_jsonl(tmp_path / "o" / "results.jsonl")} == {"ok"}


@pytest.mark.parametrize(("mode", "error_type", "requests_per_image"), [
    ("refusal", "refused", 1),
    ("truncated", "truncated", 2),
    ("invalid", "invalid_output", 2),
])
def test_unusable_outputs_are_recorded_failures(tmp_path, fake_anthropic_factory, monkeypatch, mode, error_type,
                                                requests_per_image):
    make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory(output_mode=mode)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 1, output
    rows = read_jsonl(out / "results.jsonl")
    assert {r["status"] for r in rows} == {"failed"}
    assert {r["error"]["type"] for r in rows} == {error_type}
    assert all(r["error"]["message"] for r in rows)
    assert fake.stats.messages_requests == 2 * requests_per_image
    if mode == "refusal":
        assert "refused by the model" in rows[0]["error"]["message"]
    # a failure is billed and recorded: cost accounting includes it
    assert all(r["cost_usd"] > 0 for r in rows)


def test_bad_key_stops_at_once_with_exit_2(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory()
    env = fake.env() | {"ANTHROPIC_API_KEY": "sk-ant-wrong-key-123456"}
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q"], env, monkeypatch)
    assert code == 2
    assert "ANTHROPIC_API_KEY" in output
    assert "sk-ant-wrong-key-123456" not in output
    assert fake.stats.messages_requests <= 8, "a bad key must stop the run, not fail image by image"
    db_bytes = (tmp_path / "o" / "imgtag.db").read_bytes()
    assert b"sk-ant-wrong-key-123456" not in db_bytes


def test_missing_key_is_one_sentence(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o")], {}, monkeypatch)
    assert code == 2
    assert "ANTHROPIC_API_KEY" in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_hostile_model_output_is_neutralised_in_csv(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 1)
    hostile = {"tags": ["=HYPERLINK(\"http://evil\")", "+1+1"], "category": "@SUM(A1)",
               "description": "-2+3 中文描述", "color": "=cmd|' /C calc'!A0", "style": "\tx"}
    fake = fake_anthropic_factory(respond=lambda ctx: {"text": json.dumps(hostile, ensure_ascii=False)})
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    raw = (out / "results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0]["description"] == "'-2+3 中文描述"
    for cell in rows[0].values():
        assert not cell or cell[0] not in "=+-@\t\r"


def test_budget_stops_starting_requests(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 20)
    fake = fake_anthropic_factory()
    out = tmp_path / "o"
    # haiku-4-5 costs ~ $0.0003 per small image here: a budget of $0.002 covers only a few
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--model", "claude-haiku-4-5",
                            "--budget", "0.002"], fake.env(), monkeypatch)
    assert code == 1
    assert "budget" in output
    rows = read_jsonl(out / "results.jsonl")
    spent = sum(r["cost_usd"] or 0 for r in rows)
    assert spent <= 0.002
    assert 0 < fake.stats.messages_requests < 20
    assert {r["status"] for r in rows} == {"ok", "pending"}


def test_rerun_asks_nothing_twice_and_retry_only_failures(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 6)
    fake = fake_anthropic_factory(mode_overrides={})
    out = tmp_path / "o"
    # first run: one image meets a server error and runs out of attempts (a failure a retry can fix)
    first_key = None

    def fail_first(ctx):
        nonlocal first_key
        if first_key is None:
            first_key = ctx["image_key"]
        return {"status": 500} if ctx["image_key"] == first_key else None

    fake.config.respond = fail_first
    args = ["run", str(tmp_path / "in"), "--out", str(out), "-q", "--max-attempts", "1"]
    code, _ = run_cli(args, fake.env(), monkeypatch)
    assert code == 1
    assert fake.stats.messages_requests == 6
    # the same command again: nothing is asked (failures stay recorded until `retry`)
    code, _ = run_cli(args, fake.env(), monkeypatch)
    assert code == 1
    assert fake.stats.messages_requests == 6
    # retry asks only the failure
    fake.config.respond = None
    code, output = run_cli(["retry", "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.messages_requests == 7
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"ok"}


def test_limits_are_learned_from_headers(tmp_path, fake_anthropic_factory, monkeypatch):
    """No rate flag is given: the engine reads anthropic-ratelimit-* headers and paces to them. In real time
    a loaded machine decides how many 429s the race at the start costs; each is retried, nothing is lost.
    (The schedule, without any 429, is the virtual-clock test below.)"""
    made = make_images(tmp_path / "in", 40)
    fake = fake_anthropic_factory(rpm=1200, burst_s=1.0, latency_s=0.3)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert len(fake.stats.answered_by_key) == len(made) and set(fake.stats.answered_by_key.values()) == {1}
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"ok"}
    db = sqlite3.connect(out / "imgtag.db")
    (retried,) = db.execute("SELECT COUNT(*) FROM attempts WHERE error_type='rate_limit_error' AND outcome='retry'"
                            ).fetchone()
    (limits,) = db.execute("SELECT limits FROM learned_limits").fetchone()
    db.close()
    assert retried == fake.stats.rate_limited
    requests = json.loads(limits)["buckets"]["requests"]
    assert requests["per_minute"] == 1200 and requests["depth"] >= 15, requests  # the 20-deep bucket, seen


def test_limits_learned_from_headers_on_a_virtual_clock():
    """The same run on exact times: before the first answer nothing is known, so the pacer probes (1, 2, 4, 8
    requests); the first answer's headers give the limit and what remains, and from then on the pacer
    never overruns the server's bucket: not even the probe requests that were still waiting to be sent."""
    sim = SimProvider(TokenBucket(1200, 1.0, START), name="anthropic", latency_s=0.3)
    result = run_engine(sim, 40)
    t = result.traffic
    assert t.rejected == []
    assert result.pacer.describe() == "1200 rpm"
    # 20 req/s x 0.3 s latency needs 6 in flight; the first answer releases a 20-deep bucket at once
    assert t.peak_in_flight >= 20 and sim.server.lowest < 1.0
    assert set(t.answered.values()) == {1} and len(t.answered) == 40


def test_unlimited_server_concurrency_grows(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 60)
    fake = fake_anthropic_factory(latency_s=0.4)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    assert fake.stats.rate_limited == 0
    assert fake.stats.peak_concurrency > 8, "with no advertised limit the window must grow past its start"


def test_status_export_progress_and_no_secret_anywhere(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 5)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    fake = fake_anthropic_factory()
    out = tmp_path / "o"
    monkeypatch.setenv("NO_COLOR", "1")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out)], fake.env(), monkeypatch)
    assert code == 1  # broken.jpg failed
    # not a terminal: plain progress lines, nothing decorative
    assert "imgtag: " in output and "ok 5" in output and "\x1b[" not in output
    code, status_text = run_cli(["status", "--out", str(out)], fake.env(), monkeypatch)
    assert code == 0
    assert "ok 5" in status_text and "failed 1" in status_text and "spent to date $" in status_text
    assert "broken.jpg" in status_text
    code, status_json = run_cli(["status", "--out", str(out), "--json"], fake.env(), monkeypatch)
    data = json.loads(status_json)
    assert data["by_status"] == {"ok": 5, "failed": 1} and data["cost_usd"] > 0
    (out / "results.csv").unlink()
    code, _ = run_cli(["export", "--out", str(out), "--format", "csv"], fake.env(), monkeypatch)
    assert code == 0 and (out / "results.csv").exists()
    secret = fake.config.api_key.encode()
    for path in out.iterdir():
        assert secret not in path.read_bytes(), path
    assert fake.config.api_key not in output + status_text + status_json


@pytest.mark.parametrize("status", [400, 413])
def test_permanent_errors_are_recorded_at_once(tmp_path, fake_anthropic_factory, monkeypatch, status):
    made = make_images(tmp_path / "in", 3)
    bad = None

    def reject_one(ctx):
        nonlocal bad
        bad = bad or ctx["image_key"]
        return {"status": status} if ctx["image_key"] == bad else None

    fake = fake_anthropic_factory(respond=reject_one)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 1, output
    rows = read_jsonl(out / "results.jsonl")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and len(rows) == len(made)
    assert f"({status})" in failed[0]["error"]["message"]
    assert fake.stats.messages_requests == 3  # not retried


def test_transient_errors_give_up_at_the_cap_with_the_cause(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory(p_529=1.0)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--max-attempts", "2"],
                           fake.env(), monkeypatch)
    assert code == 1, output
    rows = read_jsonl(out / "results.jsonl")
    assert {r["error"]["type"] for r in rows} == {"overloaded_error"}
    assert all("gave up after 2 attempts" in r["error"]["message"] for r in rows)
    assert fake.stats.messages_requests == 4
    db = sqlite3.connect(out / "imgtag.db")
    assert db.execute("SELECT COUNT(*) FROM attempts WHERE http_status=529").fetchone()[0] == 4


def test_bad_preset_file_is_one_line_exit_2(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    bad = tmp_path / "shop.toml"
    bad.write_text('extends = "ecommerce"\n[schema.properties.tags]\nmaxItems = "five"\n', encoding="utf-8")
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--preset", str(bad)],
                           {"ANTHROPIC_API_KEY": "sk-ant-x"}, monkeypatch)
    assert code == 2
    assert "shop.toml" in output and "maxItems" in output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output


def test_categories_and_language_reach_the_request(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 2)
    seen: list[dict] = []

    def capture(ctx):
        seen.append(ctx["request"])
        return None

    fake = fake_anthropic_factory(respond=capture)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--lang", "zh",
                            "--categories", "上衣,裤子,鞋"], fake.env(), monkeypatch)
    assert code == 0, output
    schema = seen[0]["output_config"]["format"]["schema"]
    assert schema["properties"]["category"]["enum"] == ["上衣", "裤子", "鞋"]
    assert "Chinese" in seen[0]["system"][0]["text"]
    assert "temperature" not in seen[0] and "tool_choice" not in seen[0]
    assert {r["fields"]["category"] for r in read_jsonl(out / "results.jsonl")} <= {"上衣", "裤子", "鞋"}


def test_a_paid_answer_that_fails_validation_keeps_its_text(tmp_path, fake_anthropic_factory, monkeypatch):
    """Paid for, parsed, not valid: never discarded. Each ask's text stays in the store, the failed row carries the
    last one (error.raw_answer in results.jsonl, error_raw_answer in the tables), and `status` shows it."""
    import openpyxl
    import pyarrow.parquet as pq

    made = make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory(output_mode="invalid")
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--format",
                            "csv,jsonl,xlsx,parquet"], fake.env(), monkeypatch)
    assert code == 1, output
    db = sqlite3.connect(out / "imgtag.db")
    kept = db.execute("SELECT raw_answer FROM attempts ORDER BY id").fetchall()
    assert len(kept) == 4 and all(k[0] for k in kept)  # both asks of both images
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    for name, colour in made.items():
        answer = json.loads(rows[name]["error"]["raw_answer"])
        assert close_to(answer["unexpected_field"], colour)  # its own image's answer, as the model wrote it
    table = {r["path"]: r for r in csv.DictReader((out / "results.csv").read_text(encoding="utf-8-sig").splitlines())}
    assert all(table[name]["error_raw_answer"] == rows[name]["error"]["raw_answer"] for name in made)
    sheet = openpyxl.load_workbook(out / "results.xlsx").active
    header = [c.value for c in sheet[1]]
    cells = sheet.iter_rows(min_row=2, values_only=True)
    assert {r[header.index("path")]: r[header.index("error_raw_answer")] for r in cells} \
        == {name: rows[name]["error"]["raw_answer"] for name in made}
    parquet = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["path"]: r["error_raw_answer"] for r in parquet} == {n: rows[n]["error"]["raw_answer"] for n in made}
    code, status = run_cli(["status", "--out", str(out)], fake.env(), monkeypatch)
    assert status.count("answer kept: {") == 2, status


NO_DB = {"status": 400, "body": {"error": {"message": "No connected db.", "type": "no_db_connection", "param": None,
                                           "code": "400"}}}  # LiteLLM's proxy, for a key it cannot check


def test_a_server_that_refuses_the_first_requests_alike_stops_the_run(tmp_path, fake_anthropic_factory,
                                                                      monkeypatch):
    """Every provider: the first three requests meet the same permanent refusal and nothing was answered yet, so
    the run stops (exit 2) with the server's sentence; no image is marked failed, so a fixed rerun does them all."""
    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(respond=lambda ctx: NO_DB)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 2, output
    assert "No connected db." in output and "refused the first 3 requests" in output, output
    assert fake.stats.messages_requests <= 10, fake.stats.messages_requests
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 30 and {r["status"] for r in rows} == {"pending"}
    db = sqlite3.connect(out / "imgtag.db")
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'failed'").fetchone()[0] == 0
    fake.config.respond = None  # the gateway fixed: the same command does every image
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output


def test_refusals_of_a_few_images_are_their_own_failures(tmp_path, fake_anthropic_factory, monkeypatch):
    """The same refusal for two images, while the others are answered: those two are ordinary failures."""
    made = make_images(tmp_path / "in", 8)
    bad = list(made.values())[:2]
    fake = fake_anthropic_factory(respond=lambda ctx: NO_DB if any(close_to(ctx["image_key"] or "#000000", c)
                                                                   for c in bad) else None)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 1, output
    statuses = {r["path"]: r["status"] for r in read_jsonl(out / "results.jsonl")}
    assert sorted(statuses.values()) == ["failed"] * 2 + ["ok"] * 6, statuses
