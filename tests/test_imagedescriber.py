"""`--provider imagedescriber` end to end: the real CLI and engine against a fake of the tag API on loopback,
on real photos from the shared corpus. Rates are time-compressed (IMAGEDESCRIBER_REQUESTS_PER_MINUTE and the
fake's window) so each test takes seconds; one test checks the real default of 30 a minute."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagehash
import pytest
from PIL import Image, ImageOps
from tests.fakes.imagedescriber_server import FakeTagConfig, FakeTagServer
from typer.testing import CliRunner

from conftest import PHOTOS, needs_full_corpus
from imagegen import make_images
from imgtag.cli.commands import app
from serversim import SimProvider, SlidingWindow, run_engine

FAST = "6000"  # requests per minute for tests that are not about pacing


@pytest.fixture
def tag_api() -> Iterator[Any]:
    servers: list[FakeTagServer] = []

    def make(**fields: Any) -> FakeTagServer:
        fields.setdefault("rate_limit", 100_000)
        server = FakeTagServer(FakeTagConfig(**fields)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def cli(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name in list(os.environ):
        if name.startswith(("IMAGEDESCRIBER_", "ANTHROPIC_", "IMGTAG_")):
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.output


def photos(names: list[str] | None = None, dest: Path | None = None, count: int | None = None) -> Path:
    """Copy real photos (not the same scene under different EXIF orientations: those send identical bytes,
    which would blur per-image ask counts) into dest."""
    assert dest is not None
    dest.mkdir(parents=True, exist_ok=True)
    chosen = names or sorted(p.name for p in PHOTOS.iterdir() if p.name.startswith(("clothing_", "darknet_",
                                                                                     "intel_", "coral_")))
    for name in chosen[:count]:
        shutil.copy(PHOTOS / name, dest / name)
    return dest


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def sent_sizes(out: Path) -> dict[str, tuple[int, int]]:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return {d: (w, h) for d, w, h in db.execute("SELECT display, out_width, out_height FROM files")}
    finally:
        db.close()


def phash_of_file(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as im:
        return imagehash.phash(ImageOps.exif_transpose(im).convert("RGB"))


def assert_own_image(row: dict[str, Any], source: Path, size: tuple[int, int]) -> None:
    """The fake's answer names what it received: a perceptual hash and the size. Both must be this file's."""
    fp_tags = [t for t in row["fields"]["keywords"] if t.startswith("fp-")]
    assert len(fp_tags) == 1, row
    distance = imagehash.hex_to_hash(fp_tags[0][3:]) - phash_of_file(source)
    assert distance <= 10, (row["path"], distance)
    assert f"{size[0]}x{size[1]}" in row["fields"]["title"], (row["path"], row["fields"]["title"], size)


# -- every result on its own image ------------------------------------------------------------------


@needs_full_corpus
def test_real_photos_every_result_on_its_own_image(tmp_path, tag_api, monkeypatch):
    fake = tag_api(latency_s=0.02, jitter_s=0.03, credits_as_strings=True)
    out = tmp_path / "out"
    code, output = cli(["run", str(PHOTOS), "--out", str(out), "--provider", "imagedescriber", "--preset", "keywords",
                        "-q"],
                       fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST), monkeypatch)
    assert code == 0, output
    results = rows(out)
    sizes = sent_sizes(out)
    ok = [r for r in results if r["status"] == "ok"]
    assert len(ok) >= 75, [r for r in results if r["status"] != "ok"]
    assert {r["status"] for r in results} <= {"ok", "skipped"}  # skipped: under --min-side, with a reason
    for row in ok:
        assert_own_image(row, PHOTOS / row["path"], sizes[row["path"]])
        assert row["provider"] == "imagedescriber" and row["model"] == "imagedescriber-v1"
        assert 10 <= len(row["fields"]["keywords"]) <= 30 and row["fields"]["description"]
    assert set(fake.stats.langs) == {"en"}
    # the key went out as a bearer token, and nowhere else
    assert fake.stats.authorization_headers == {f"Bearer {fake.config.api_key}"}
    for path in out.iterdir():
        assert fake.config.api_key.encode() not in path.read_bytes(), path
    code, status = cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0
    spent = sum(fake.stats.answered_by_key.values())
    assert f"credits: {spent:,} spent, {fake.credits:,.6g} remaining" in status, status
    assert fake.config.api_key not in output + status
    code, status_json = cli(["status", "--out", str(out), "--json"], {}, monkeypatch)
    data = json.loads(status_json)
    assert data["credits_spent"] == spent and data["credits_remaining"] == fake.credits


def test_alt_text_preset_and_language(tmp_path, tag_api, monkeypatch):
    fake = tag_api(long_descriptions=True)
    src = photos(dest=tmp_path / "in", count=4)
    out = tmp_path / "out"
    code, output = cli(["run", str(src), "--out", str(out), "--provider", "imagedescriber", "--preset", "alt-text",
                        "--lang", "zh-CN", "-q"],
                       fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST), monkeypatch)
    assert code == 0, output
    # Its one model is billed in credits: no warning that the model is unknown or unpriced.
    assert "catalogue" not in output and "--price-in" not in output, output
    assert fake.stats.langs == {"zh": 4}
    for row in rows(out):
        f = row["fields"]
        assert len(f["long_description"]) > 125  # the full description
        assert f["alt"] == f["long_description"].split(". ")[0] + "." and len(f["alt"]) <= 125
        assert f["title"].startswith("Picture #")


def test_status_of_a_credit_billed_target_speaks_in_credits(tmp_path, tag_api, monkeypatch):
    """`status` said "spent to date $0.00" and "estimate: unknown (no prices for this model); actual $0.00" for a run
    that spent credits: the run's summary says "billed in credits", and status says the same."""
    fake = tag_api()
    src = photos(dest=tmp_path / "in", count=2)
    out = tmp_path / "out"
    code, output = cli(["run", str(src), "--out", str(out), "--provider", "imagedescriber", "--preset", "keywords",
                        "-q"], fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST), monkeypatch)
    assert code == 0, output
    code, status = cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0, status
    assert "spent to date billed in credits" in status, status
    assert "no prices for this model" not in status and "$0.00" not in status, status
    assert "credits: 2 spent" in status, status


@pytest.mark.parametrize("args, words", [
    (["--lang", "it"], "answers only in en, zh, fr, de, es, ja, ko"),
    (["--lang", "zh-TW"], "answers only in"),
    (["--preset", "ocr"], "cannot fill the 'ocr' preset"),
    (["--preset", "ecommerce"], "cannot fill the 'ecommerce' preset"),
    (["--preset", "caption"], "cannot fill the 'caption' preset"),
    (["--preset", "custom.toml"], "cannot fill the 'keywords' preset"),
    (["--preset", "keywords", "--model", "claude-haiku-5-5"], "no model choice"),
    (["--preset", "keywords", "--budget", "1"], "bills in credits, not dollars"),
    (["--preset", "keywords", "--mode", "batch"], "no batch mode"),
])
def test_what_it_cannot_serve_is_exit_2_before_any_request(tmp_path, tag_api, monkeypatch, args, words):
    fake = tag_api()
    src = photos(dest=tmp_path / "in", count=2)
    # a user file borrowing a built-in's name, with its own schema: its prompt and schema would be ignored
    (tmp_path / "custom.toml").write_text('name = "keywords"\nextends = "keywords"\n'
                                          'instruction = "Only three keywords."\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    if "--preset" not in args:
        args = [*args, "--preset", "keywords"]
    code, output = cli(["run", str(src), "--out", str(tmp_path / "out"), "--provider", "imagedescriber", *args],
                       {k: v for k, v in fake.env().items() if k != "IMGTAG_PROVIDER"}, monkeypatch)
    assert code == 2, output
    assert words in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1
    assert fake.stats.requests == 0
    # a dry run says the same, without a key
    code, output = cli(["run", str(src), "--out", str(tmp_path / "dry"), "--provider", "imagedescriber", "--dry-run",
                        *args], {}, monkeypatch)
    assert code == 2 and words in output, output


def test_missing_key_is_one_sentence(tmp_path, monkeypatch):
    src = photos(dest=tmp_path / "in", count=1)
    code, output = cli(["run", str(src), "--out", str(tmp_path / "out"), "--provider", "imagedescriber",
                        "--preset", "keywords"], {}, monkeypatch)
    assert code == 2
    assert output.strip() == "imgtag: no imagedescriber API key: set the IMAGEDESCRIBER_API_KEY environment variable"


# -- keys, pacing, credits ---------------------------------------------------------------------------


def run_args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(src), "--out", str(out), "--provider", "imagedescriber", "--preset", "keywords", "-q",
            *extra]


@pytest.mark.parametrize("code_from_server", [1003, 1002])
def test_wrong_key_exits_2_at_once(tmp_path, tag_api, monkeypatch, code_from_server):
    fake = tag_api(respond=(lambda ctx: 1002) if code_from_server == 1002 else None)
    src = photos(dest=tmp_path / "in", count=12)
    env = fake.env()
    if code_from_server == 1003:
        env["IMAGEDESCRIBER_API_KEY"] = "idk-wrong-key-0000"
    code, output = cli(run_args(src, tmp_path / "out"), env, monkeypatch)
    assert code == 2, output
    assert f"({code_from_server}" in output and "check IMAGEDESCRIBER_API_KEY" in output
    assert fake.stats.requests == 1  # paced at 30 a minute: the first answer stops the run
    assert "idk-wrong-key-0000" not in output
    db = sqlite3.connect(tmp_path / "out" / "imgtag.db")
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE status='failed'").fetchone()[0] == 0


def test_default_pace_is_30_a_minute(tmp_path, tag_api, monkeypatch):
    """End to end, in real time: the documented default applies. The exact schedule is checked on a virtual
    clock below; here a loaded machine may delay any request, so only what load cannot break is asserted."""
    fake = tag_api()
    src = photos(dest=tmp_path / "in", count=3)
    started = time.monotonic()
    code, output = cli(run_args(src, tmp_path / "out"), fake.env(), monkeypatch)
    elapsed = time.monotonic() - started
    assert code == 0, output
    assert all(r["status"] == "ok" for r in rows(tmp_path / "out"))
    assert len(fake.stats.answered_by_key) == 3 and all(k == 1 for k in fake.stats.answered_by_key.values())
    # three starts at 30 a minute are two intervals of 2 s apart: no run can be quicker (load only slows it)
    assert elapsed >= 4.0, elapsed


def test_default_pace_schedule_on_a_virtual_clock(monkeypatch):
    """The pace the provider declares, through the real pacer and engine: every start exactly one interval
    (60 s / 30, at the pacer's 0.5% safety margin) after the one before, so the documented 30-per-minute
    window never answers 1004."""
    from imgtag.providers.base import RateLimitSnapshot
    from imgtag.providers.imagedescriber.provider import ImageDescriberProvider

    monkeypatch.delenv("IMAGEDESCRIBER_REQUESTS_PER_MINUTE", raising=False)
    declared = ImageDescriberProvider(api_key="idk-test-key", base_url="http://127.0.0.1:9").declared_limits()
    assert declared == RateLimitSnapshot(requests_limit=30)
    sim = SimProvider(SlidingWindow(30, 60.0, retry_after_s=2.0), name="imagedescriber", latency_s=0.5,
                      jitter_s=0.5, declared=declared)
    result = run_engine(sim, 40, model="imagedescriber-v1")
    gaps = [b - a for a, b in zip(result.traffic.sent, result.traffic.sent[1:], strict=False)]
    assert len(gaps) == 39 and all(2.0 <= gap <= 2.0 / 0.995 + 1e-4 for gap in gaps), max(gaps)
    assert result.traffic.rejected == []
    assert set(result.traffic.answered.values()) == {1} and len(result.traffic.answered) == 40
    assert set(result.recorder.settled.values()) == {"ok"} and len(result.recorder.settled) == 40


@pytest.mark.parametrize("client_rpm, expect_1004", [("600", False), ("1500", True)])
def test_pacing_absorbs_rate_limit_answers(tmp_path, tag_api, monkeypatch, client_rpm, expect_1004):
    """The fake allows 10 requests per sliding second (600 a minute, time-compressed from 30 per 60 s), paced
    at that rate or 2.5x faster (a second client on the same key, say). Every 1004 is absorbed: all photos end
    ok, none failed, none asked twice, every 1004 retried. How many 1004s each pace causes is a matter of
    timing: the virtual-clock test below counts them exactly."""
    fake = tag_api(rate_limit=10, rate_window_s=1.0, latency_s=0.05, jitter_s=0.05)
    n = 28  # every distinct photo the vendored corpus has with these prefixes (a fresh clone must pass too)
    src = photos(dest=tmp_path / "in", count=n)
    started = time.monotonic()
    code, output = cli(run_args(src, tmp_path / "out"), fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=client_rpm),
                       monkeypatch)
    elapsed = time.monotonic() - started
    assert code == 0, output
    results = rows(tmp_path / "out")
    assert len(results) == n and all(r["status"] == "ok" for r in results)
    assert all(k == 1 for k in fake.stats.answered_by_key.values()) and len(fake.stats.answered_by_key) == n
    db = sqlite3.connect(tmp_path / "out" / "imgtag.db")
    (retried,) = db.execute("SELECT COUNT(*) FROM attempts WHERE error_type='rate_limited' AND outcome='retry'"
                            ).fetchone()
    db.close()
    assert retried == fake.stats.rate_limited
    if expect_1004:
        # 2.5x the server's rate: the pacer's first second alone starts 24 against a window of 10
        assert fake.stats.rate_limited >= 5
    # never faster than the server allows, on average: n accepted at 10/s, after a first burst of 10
    assert elapsed >= (n - 12) / 10


@pytest.mark.parametrize("client_rpm", [600, 1500])
def test_rate_limit_answers_on_a_virtual_clock(client_rpm):
    """The same race with exact times. At the server's own pace, 1004s come only from the pacer's one-second
    start-up burst (at the real 30 a minute that burst is a single request); 2.5x faster, they keep coming.
    Either way every one is retried and nothing is lost or asked twice."""
    from imgtag.providers.base import RateLimitSnapshot

    sim = SimProvider(SlidingWindow(10, 1.0, retry_after_s=60 / client_rpm), name="imagedescriber", latency_s=0.05,
                      jitter_s=0.05, declared=RateLimitSnapshot(requests_limit=client_rpm))
    result = run_engine(sim, 28, model="imagedescriber-v1")
    rejected = result.traffic.rejected
    assert set(result.traffic.answered.values()) == {1} and len(result.traffic.answered) == 28
    assert set(result.recorder.settled.values()) == {"ok"} and len(result.recorder.settled) == 28
    assert result.recorder.outcomes[("retry", "rate_limited")] == len(rejected)
    first = result.traffic.sent[0]
    if client_rpm == 600:
        assert 1 <= len(rejected) <= 10 and all(t < first + 1.0 for t in rejected), rejected
        assert result.ended - first <= 28 / 10 + 0.5  # and not slower than the server's rate
    else:
        assert len(rejected) >= 20 and max(rejected) > first + 1.5, rejected


def test_out_of_credits_stops_cleanly_and_a_later_run_resumes(tmp_path, tag_api, monkeypatch):
    fake = tag_api(credits=5, latency_s=0.1)
    src = photos(dest=tmp_path / "in", count=14)
    out = tmp_path / "out"
    env = fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE="300")  # 5 at once, then one every 0.2 s
    code, output = cli(run_args(src, out), env, monkeypatch)
    assert code == 1, output
    assert "out of credits (2002): 9 images left pending; add credits and run the same command" in output
    by_status: dict[str, int] = {}
    for row in rows(out):
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert by_status == {"ok": 5, "pending": 9}
    code, status = cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "ok 5, pending 9" in status and "credits: 5 spent, 0 remaining" in status, status
    assert fake.stats.codes[2002] >= 1 and sum(fake.stats.answered_by_key.values()) == 5
    assert fake.stats.requests <= 8  # stopped starting requests at the first 2002
    fake.add_credits(100)
    code, output = cli(run_args(src, out), env, monkeypatch)
    assert code == 0, output
    assert all(r["status"] == "ok" for r in rows(out))
    assert len(fake.stats.answered_by_key) == 14 and all(n == 1 for n in fake.stats.answered_by_key.values())


# -- error codes ----------------------------------------------------------------------------------------


def target_first(code: int, times: int | None = None) -> Any:
    """A hook answering `code` for one image (the first one the fake sees; a re-encoded copy is still that
    image: close perceptual hash), `times` times (None: always)."""
    state: dict[str, Any] = {"fp": None, "count": 0}

    def respond(ctx: dict[str, Any]) -> int | None:
        if state["fp"] is None:
            state["fp"] = ctx["fp"]
        if same_image(ctx["fp"], state["fp"]) and (times is None or state["count"] < times):
            state["count"] += 1
            return code
        return None

    respond.state = state  # type: ignore[attr-defined]
    return respond


def same_image(fp_a: str, fp_b: str) -> bool:
    return imagehash.hex_to_hash(fp_a) - imagehash.hex_to_hash(fp_b) <= 6


DISTINCT = ["coral_owl.jpg", "darknet_dog.jpg", "intel_bus.jpg"]


@pytest.mark.parametrize("http_200", [False, True])
@pytest.mark.parametrize("code, times, status, error_type, words, asks", [
    (1005, None, "failed", "invalid_request", "called the request invalid (1005", 1),
    (2003, None, "failed", "content_filter", "blocked by the provider's content filter", 1),
    (2004, None, "failed", "invalid_image", "rejected the image format (2004: Invalid image format), also after "
                                            "re-encoding", 2),
    (2004, 1, "ok", None, None, 2),
    (2005, 2, "ok", None, None, 3),
    (5050, 1, "ok", None, None, 2),
    (5050, None, "failed", "server_error", "imagedescriber server error (5050), request_id req_", 3),
])
def test_error_codes(tmp_path, tag_api, monkeypatch, http_200, code, times, status, error_type, words, asks):
    hook = target_first(code, times)
    fake = tag_api(respond=hook, errors_http_200=http_200)
    src = photos(DISTINCT, dest=tmp_path / "in")
    out = tmp_path / "out"
    code_, output = cli(run_args(src, out, "--max-attempts", "3"), fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST),
                        monkeypatch)
    assert code_ == (0 if status == "ok" else 1), output
    results = rows(out)
    assert sum(r["status"] == "ok" for r in results) == 2 + (status == "ok")
    target = [r for r in results if r["status"] != "ok" or any(
        t.startswith("fp-") and same_image(t[3:], hook.state["fp"]) for t in r["fields"]["keywords"])]
    assert len(target) == 1 and target[0]["status"] == status, results
    if status == "failed":
        assert target[0]["error"]["type"] == error_type
        assert words in target[0]["error"]["message"], target[0]["error"]
    db = sqlite3.connect(out / "imgtag.db")
    (attempts,) = db.execute("SELECT COUNT(*) FROM attempts a JOIN jobs j ON j.id=a.job_id JOIN files f "
                             "ON f.id=j.file_id WHERE f.display=?", (target[0]["path"],)).fetchone()
    assert attempts == asks
    if code == 2004:  # the second ask sent a re-encoded copy, not the same bytes again
        assert len([k for k, n in fake.stats.asked_by_key.items() if n]) == 4


@pytest.mark.parametrize("preset", ["keywords", "alt-text"])
def test_the_apis_own_tag_count_and_lengths_are_ok(tmp_path, tag_api, monkeypatch, preset):
    """The API takes no prompt and no schema: 3 tags (keywords asks for 10 to 30) and titles longer than either
    preset allows are its choice, not a failure; each image is paid once and stored as answered."""
    fake = tag_api(tag_count=3, long_titles=True)
    make_images(tmp_path / "in", 12)
    out = tmp_path / "out"
    code, output = cli(["run", str(tmp_path / "in"), "--out", str(out), "--provider", "imagedescriber", "--preset",
                        preset, "-q"], fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST), monkeypatch)
    assert code == 0, output
    results = rows(out)
    assert [r["status"] for r in results] == ["ok"] * 12, [r["error"] for r in results]
    assert fake.stats.requests == 12 and sum(fake.stats.answered_by_key.values()) == 12
    assert fake.credits == fake.config.credits - 12
    for row in results:
        f = row["fields"]
        assert len(f["title"]) > 100  # kept whole: the API's title, not cut to the preset's limit
        if preset == "keywords":
            assert len(f["keywords"]) == 3 and f["keywords"][0].startswith("fp-")  # the API's own tags
    code, status = cli(["status", "--out", str(out), "--json"], {}, monkeypatch)
    assert json.loads(status)["credits_spent"] == 12


def test_an_answer_of_the_wrong_shape_is_kept_not_bought_twice(tmp_path, tag_api, monkeypatch):
    """What the API does control (its fields and their types) is still checked. An answer without a description
    fails, keeps its text in the store and the results, and is not asked again: not in the run, and not by a
    plain `imgtag retry` (the same image would get the same answer)."""
    fake = tag_api(reshape={"description": None})
    src = photos(DISTINCT, dest=tmp_path / "in")
    out = tmp_path / "out"
    code, output = cli(run_args(src, out), fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST), monkeypatch)
    assert code == 1, output
    for row in rows(out):
        assert row["status"] == "failed" and row["error"]["type"] == "invalid_output", row
        assert "description" in row["error"]["message"], row["error"]
        kept = json.loads(row["error"]["raw_answer"])  # the API's answer, as it came
        assert kept["tags"][0].startswith("fp-") and kept["title"].startswith("Picture #") and "description" not in kept
    assert fake.stats.requests == 3 and sum(fake.stats.answered_by_key.values()) == 3
    code, output = cli(["retry", "--out", str(out), "-q"], fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=FAST),
                       monkeypatch)
    assert fake.stats.requests == 3, output  # nothing bought twice
    assert "retry --all" in output, output
    code, status = cli(["status", "--out", str(out)], {}, monkeypatch)
    assert status.count('answer kept: {"tags": ["fp-') == 3, status
    code, status = cli(["status", "--out", str(out), "--json"], {}, monkeypatch)
    assert all(json.loads(f["raw_answer"])["title"].startswith("Picture #") for f in json.loads(status)["failures"])


# -- kill -9 ---------------------------------------------------------------------------------------------


def test_kill_nine_then_rerun_asks_nothing_twice(tmp_path, tag_api):
    fake = tag_api(latency_s=0.3, jitter_s=0.2)
    src = photos(dest=tmp_path / "in", count=24)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEDESCRIBER_", "IMGTAG_"))}
    env |= fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE="300")
    args = [sys.executable, "-m", "imgtag", *run_args(src, out)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sum(fake.stats.answered_by_key.values()) < 8:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    fake.wait_idle()  # the requests in flight at the kill finish on the server (answered, never stored)
    db = sqlite3.connect(out / "imgtag.db")
    (stored,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status='ok'").fetchone()
    db.close()
    in_flight = sum(fake.stats.answered_by_key.values()) - stored
    assert 0 <= in_flight <= 10
    proc = subprocess.run(args, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert all(r["status"] == "ok" for r in rows(out)) and len(rows(out)) == 24
    asked_twice = sum(n - 1 for n in fake.stats.answered_by_key.values())
    assert asked_twice <= in_flight, (asked_twice, in_flight)
    assert len(fake.stats.answered_by_key) == 24


# -- the provider on its own -------------------------------------------------------------------------------


def noise_png(side: int) -> bytes:
    import io

    import numpy as np

    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def test_an_image_over_4_mb_is_re_encoded_to_fit(tag_api):
    import asyncio

    from imgtag.presets import load_preset
    from imgtag.pricing.catalogue import catalogue
    from imgtag.providers.base import ImageInput, RequestOptions
    from imgtag.providers.imagedescriber.encode import MAX_DATA_URL_CHARS, data_url, fits, reencode
    from imgtag.providers.imagedescriber.provider import ImageDescriberProvider

    big = ImageInput(noise_png(1600), "image/png")
    assert len(big.data) > 4 * 1024 * 1024 and not fits(big)
    fake = tag_api()
    provider = ImageDescriberProvider(api_key=fake.config.api_key, base_url=fake.base_url)
    options = RequestOptions(load_preset("keywords"), catalogue().get("imagedescriber-v1"), 1024)

    async def ask() -> Any:
        try:
            return await provider.describe(big, options)
        finally:
            await provider.aclose()

    answer = asyncio.run(ask())
    assert answer.obj is not None and answer.obj["keywords"][0].startswith("fp-")
    assert fake.stats.codes == {0: 1} and answer.credits is not None and answer.credits.amount == 1
    # a tighter limit makes it shrink as well as lower the quality
    small = reencode(big, limit=200_000)
    assert small.media_type == "image/jpeg" and len(data_url(small)) <= 200_000 <= MAX_DATA_URL_CHARS


def test_rate_limit_wait_grows_with_time_without_answers(monkeypatch):
    from imgtag.providers.imagedescriber.provider import ImageDescriberProvider

    monkeypatch.delenv("IMAGEDESCRIBER_REQUESTS_PER_MINUTE", raising=False)
    now = [1000.0]
    provider = ImageDescriberProvider(api_key="idk-test-key", base_url="http://127.0.0.1:9", clock=lambda: now[0])
    assert provider._rate_limit_wait() == 2.0  # one interval at 30 a minute
    now[0] += 25
    assert provider._rate_limit_wait() == 25.0
    now[0] += 575
    assert provider._rate_limit_wait() == 60.0
    assert provider.declared_limits().requests_limit == 30
