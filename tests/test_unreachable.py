"""A server that is not there (a wrong --base-url, a local server not started) stops the run in one sentence,
exit 2, with every image still to do; it does not spend each image's attempts and mark them all failed."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, read_jsonl, run_cli


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("provider", "key_variable"), [
    ("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY"), ("imagedescriber", "IMAGEDESCRIBER_API_KEY")])
def test_nobody_listening_stops_the_run_with_the_images_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                provider: str, key_variable: str) -> None:
    make_images(tmp_path / "in", 12)
    url = f"http://127.0.0.1:{closed_port()}" + ("/v1" if provider == "openai" else "")
    out = tmp_path / "out"
    preset = ["--preset", "keywords"] if provider == "imagedescriber" else []  # what that API can fill
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--provider", provider, *preset,
                            "--base-url", url, "-q"], {key_variable: "test-key-for-nobody"}, monkeypatch)
    assert code == 2, output
    said = [line for line in output.splitlines() if "could not connect" in line]
    assert len(said) == 1 and url in said[0] and "Traceback" not in output
    rows = read_jsonl(out / "results.jsonl")
    assert rows and {r["status"] for r in rows} == {"pending"}  # nothing marked failed: all still to do


def test_a_server_that_answered_once_is_retried_when_it_refuses(tmp_path: Path, fake_anthropic_factory: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Once it has answered, refused connections are a restart or a blip: retried like any connection error."""
    from imgtag.providers.base import Reachability

    reach = Reachability("http://x")
    refused = ConnectionRefusedError("refused")
    error = type("ConnectError", (Exception,), {})("connect failed")
    error.__cause__ = refused
    assert reach.check(error) is None and reach.check(error) is None
    fatal = reach.check(error)
    assert fatal is not None and "http://x" in fatal.message
    reach = Reachability("http://x")
    reach.ok()
    assert all(reach.check(error) is None for _ in range(10))
    assert reach.check(ValueError("not a connection error")) is None


def test_a_batch_server_that_is_gone_stops_the_reattach_soon_and_keeps_the_batch(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-attaching to a batch whose server refuses every connection polled for about 15 minutes before giving up.
    Now: refused for UNREACHABLE_S (and at least UNREACHABLE_SWEEPS polls in a row), one sentence and exit 2, the
    batch kept in the store; a brief outage is survived; once the server is back, the same command collects it."""
    import threading

    from imgtag.request.batch import collect
    from imgtag.store import Store
    from imgtag.store import batches as sb

    port = closed_port()
    fake = fake_anthropic_factory(port=port, batch_processing_s=1.0)
    make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--poll-interval", "0.05", "-q"]
    env, url = fake.env(), fake.base_url
    code, output = run_cli([*args, "--detach"], env, monkeypatch)
    assert code == 0, output
    fake.stop()
    monkeypatch.setattr(collect, "UNREACHABLE_S", 0.5)
    code, output = run_cli(args, env, monkeypatch)
    assert code == 2, output
    said = [line for line in output.splitlines() if line.startswith("imgtag: ")]
    assert said == [f"imgtag: the server at {url} does not answer; the batch is kept: run the same "
                    "command again to re-attach it"], output
    with Store(out, create=False, lock=False) as store:
        assert len(sb.live_batches(store)) == 1
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"pending"}

    monkeypatch.setattr(collect, "UNREACHABLE_S", 30.0)  # a restart within it is survived
    threading.Timer(1.5, fake.start).start()
    code, output = run_cli(args, env, monkeypatch)
    assert code == 0, output
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"ok"}
