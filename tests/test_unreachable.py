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
