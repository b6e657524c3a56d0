"""Money: unknown models are checked and warned about, --budget needs prices, retry asks only what can succeed
(issue 9 items 10 and 11)."""

from __future__ import annotations

import sqlite3

from imagegen import make_images, read_jsonl, run_cli


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_unknown_model_is_checked_against_the_providers_list_and_warned_once(tmp_path, fake_anthropic,
                                                                            monkeypatch):
    make_images(tmp_path / "in", 3)
    _code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q",
                             "--model", "claude-sonet-4-6"], fake_anthropic.env(), monkeypatch)
    warnings = [line for line in output.splitlines() if "claude-sonet-4-6" in line]
    assert len(warnings) == 1, output
    assert "not in the anthropic model list" in warnings[0] and "'claude-sonnet-4-6'" in warnings[0]
    assert fake_anthropic.stats.models_requests == 1
    assert "$0.00" not in output and "unknown" in output  # no invented price


def test_known_model_costs_no_list_request(tmp_path, fake_anthropic, monkeypatch):
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q",
                            "--model", "claude-haiku-4-5"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert fake_anthropic.stats.models_requests == 0


def test_budget_without_prices_is_refused(tmp_path, fake_anthropic, monkeypatch):
    make_images(tmp_path / "in", 3)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q",
                            "--model", "my-gateway-model", "--budget", "1"], fake_anthropic.env(), monkeypatch)
    assert code == 2
    line = one_line(output)
    assert "--budget" in line and "--price-in" in line and "--price-out" in line
    assert fake_anthropic.stats.messages_requests == 0
    assert not (tmp_path / "o").exists()


def test_budget_with_given_prices_is_enforced(tmp_path, fake_anthropic, monkeypatch):
    make_images(tmp_path / "in", 8)
    # ~ 800 input + 60 output tokens per small image: at $1/$5 per million about $0.0011 each (estimated higher)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q",
                            "--model", "my-gateway-model", "--price-in", "1", "--price-out", "5",
                            "--budget", "0.006"], fake_anthropic.env(), monkeypatch)
    assert code == 1, output
    assert "budget of $0.006 reached" in output
    rows = read_jsonl(tmp_path / "o" / "results.jsonl")
    ok = [r for r in rows if r["status"] == "ok"]
    assert 0 < len(ok) < 8
    assert sum(r["cost_usd"] for r in rows) <= 0.006
    assert all(r["cost_usd"] > 0 for r in ok)


def test_help_says_the_budget_covers_this_invocation(monkeypatch):
    code, output = run_cli(["run", "--help"], {}, monkeypatch)
    assert code == 0
    flat = " ".join(output.split())
    assert "this invocation" in flat and "--price-in" in flat


# -- item 11: retry ------------------------------------------------------------------------------------

def _fail_some(db_path) -> None:
    db = sqlite3.connect(db_path)
    by_name = {name: sha for name, sha in db.execute("SELECT display, sha256 FROM files")}
    for name, error_type in (("img_0000.jpg", "timeout"), ("img_0001.jpg", "refused"),
                             ("img_0002.jpg", "invalid_output")):
        db.execute("UPDATE jobs SET status='failed', error_type=?, error_message='x' WHERE sha256=?",
                   (error_type, by_name[name]))
    # recorded as a bomb (a permanent input failure): retry must not decode it again
    db.execute("UPDATE files SET status='failed', reason_code='bomb', reason='decompression bomb' "
               "WHERE display='img_0003.jpg'")
    db.commit()
    db.close()


def test_retry_asks_only_what_can_succeed_and_says_so_first(tmp_path, fake_anthropic, monkeypatch):
    make_images(tmp_path / "in", 5)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake_anthropic.env(),
                           monkeypatch)
    assert code == 0, output
    _fail_some(out / "imgtag.db")
    before = fake_anthropic.stats.messages_requests
    code, output = run_cli(["retry", "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
    plan = output.splitlines()[0]
    assert plan.startswith("retrying 2 images"), output
    assert "estimated $" in plan
    assert "not retrying 2" in output and "bomb 1" in output and "refused 1" in output and "--all" in output
    assert fake_anthropic.stats.messages_requests - before == 2
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert rows["img_0000.jpg"]["status"] == "ok" and rows["img_0002.jpg"]["status"] == "ok"
    assert rows["img_0001.jpg"]["status"] == "failed" and rows["img_0003.jpg"]["status"] == "failed"
    assert code == 0  # everything it retried is ok; the lines above said what it left alone

    code, output = run_cli(["retry", "--out", str(out), "--all", "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    assert output.splitlines()[0].startswith("retrying 2 images")
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert {r["status"] for r in rows.values()} == {"ok"}
