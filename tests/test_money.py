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


def test_the_did_you_mean_names_a_model_the_providers_list_has(tmp_path, fake_anthropic, monkeypatch):
    """With the provider's list read, the suggestion comes from it: `gpt-9` against Anthropic was told "did you
    mean 'gpt-4o'?", a model of another provider that this key cannot use."""
    make_images(tmp_path / "in", 1)
    _code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q", "--dry-run",
                             "--model", "gpt-9"], fake_anthropic.env(), monkeypatch)
    warning = one_line("\n".join(line for line in output.splitlines() if "'gpt-9'" in line))
    assert "not in the anthropic model list" in warning
    assert "gpt-4o" not in warning, warning


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


def test_the_end_of_a_run_promises_a_retry_only_for_failures_a_retry_can_fix(tmp_path, fake_anthropic, monkeypatch):
    """A corrupt file fails the same way on every ask: the run's last line said "`imgtag retry` retries the
    failures", and `imgtag retry` then said there was nothing to retry."""
    make_images(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake_anthropic.env(),
                           monkeypatch)
    assert code == 1, output
    assert "retries the failures" not in output, output
    assert "`imgtag retry --all`" in output.splitlines()[-1], output
    _code, output = run_cli(["retry", "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
    assert "nothing to retry" in output, output


# -- issue 17 item 14: one money format -----------------------------------------------------------------------

def test_every_amount_has_one_format_and_one_rounding_rule():
    from imgtag.util.money import usd

    cases = {0.0863: "$0.0863", 0.08634: "$0.0863", 0.0102: "$0.0102", 0.025: "$0.025", 0.0007: "$0.0007",
             0.00123456: "$0.00123", 0.5: "$0.50", 0.1: "$0.10", 0.12345: "$0.123", 0.0125: "$0.0125",
             0.00625: "$0.00625", 0.999996: "$1.00", 12.345: "$12.35", 1234.5: "$1,234.50", 0: "$0.00",
             None: "unknown", 0.0002345: "$0.000235"}
    assert {amount: usd(amount) for amount in cases} == cases


def test_scan_dry_run_status_and_progress_show_an_amount_alike(tmp_path, fake_anthropic, monkeypatch):
    import re

    from typer.testing import CliRunner

    from imgtag.app.progress import Progress, Snapshot
    from imgtag.cli.commands import app
    from imgtag.util.money import usd

    make_images(tmp_path / "in", 7)
    model = "claude-sonnet-4-6"
    scan = CliRunner().invoke(app, ["scan", str(tmp_path / "in"), "--out", str(tmp_path / "s"), "--model", model],
                              env={"COLUMNS": "200"}, catch_exceptions=False)
    row = next(line for line in scan.stdout.splitlines() if line.strip().startswith(model))
    scan_amounts = re.findall(r"\$[\d,.]+", row)
    code, dry = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", model, "--dry-run",
                         "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, dry
    dry_amounts = re.findall(r"estimated (\$[\d,.]+) standard, (\$[\d,.]+) batch", dry)
    assert len(scan_amounts) == 2 and [tuple(scan_amounts)] == dry_amounts, (row, dry)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", model, "-q"],
                           fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    status = CliRunner().invoke(app, ["status", "--out", str(tmp_path / "o")], catch_exceptions=False).stdout
    assert f"estimate {scan_amounts[0]} for 7 images" in status, (status, scan_amounts)
    line = Progress(lambda: snap, enabled=False).line(
        snap := Snapshot(discovered=7, finished=7, ok=7, failed=0, skipped=0, in_flight=0, spent_usd=0.0863,
                         pace="", discovery_done=True, spent_to_date_usd=0.12345))
    assert "$0.0863 this run" in line and "$0.123 to date" in line and usd(0.0863) == "$0.0863"


def test_a_small_budget_is_spent_not_merely_reserved(tmp_path, fake_anthropic_factory, monkeypatch):
    """Reservations are priced uncached; a request's real cost is lower once the prefix is cached. With several
    requests in flight the run once stopped at a third of a small budget: it must wait for them and stop only
    when the next request would cross the budget with nothing in flight."""
    import re

    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(latency_s=0.2)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q",
                            "--model", "my-gateway-model", "--price-in", "1", "--price-out", "5",
                            "--budget", "0.006", "--concurrency", "4"], fake.env(), monkeypatch)
    assert code == 1, output
    stop = next(line for line in output.splitlines() if "budget of $0.006 reached" in line)
    assert re.search(r"\(\$[\d.]+ spent, nothing in flight\)", stop), stop
    # --budget caps each invocation (earlier runs do not count): running again continues, with any budget
    assert stop.endswith("not sent (run again to send them: --budget caps each run)"), stop
    costs = [r["cost_usd"] for r in read_jsonl(out / "results.jsonl") if r["status"] == "ok"]
    spent = sum(costs)
    assert 0 < len(costs) < 30 and spent <= 0.006
    # what is left is less than the next request's uncached reservation (at most twice a cached answer here)
    assert 0.006 - spent < 2.5 * max(costs), (spent, costs)


def test_retry_all_leaves_files_that_cannot_be_decoded_out_of_its_estimate(tmp_path, fake_anthropic, monkeypatch):
    """`retry --all` priced an unchanged truncated file like an image to ask, though it fails again in decoding,
    before any request: the estimate leaves it out now and says how many it left out and why."""
    def retry_all_line(folder, with_truncated: bool) -> str:
        make_images(folder, 2)
        if with_truncated:
            (folder / "trunc.jpg").write_bytes((folder / "img_0000.jpg").read_bytes()[:400])
        out = folder.parent / f"o-{folder.name}"
        run_cli(["run", str(folder), "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
        db = sqlite3.connect(out / "imgtag.db")
        sha = db.execute("SELECT sha256 FROM files WHERE display = 'img_0001.jpg'").fetchone()[0]
        db.execute("UPDATE jobs SET status='failed', error_type='refused', error_message='x' WHERE sha256=?", (sha,))
        db.commit()
        db.close()
        code, output = run_cli(["retry", "--out", str(out), "--all", "-q"], fake_anthropic.env(), monkeypatch)
        assert code == (1 if with_truncated else 0), output  # the truncated file fails again
        return output.splitlines()[0] if not with_truncated else " ".join(output.split("\n")[:2])

    alone = retry_all_line(tmp_path / "alone", with_truncated=False)
    assert alone.startswith("retrying 1 image (refused 1), estimated $") and ";" not in alone, alone
    cost = alone.rsplit(" ", 1)[1]
    mixed = retry_all_line(tmp_path / "mixed", with_truncated=True)
    assert mixed.startswith(f"retrying 2 images (refused 1, truncated 1), estimated {cost}; the estimate leaves "
                            "out 1 unchanged file that could not be decoded (truncated 1): it fails again without "
                            "a request"), mixed
