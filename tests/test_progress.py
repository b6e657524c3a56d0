"""The progress line: live on a terminal, plain periodic lines otherwise, no escapes under NO_COLOR."""

from __future__ import annotations

import io

from imgtag.progress import Progress, Snapshot


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def snap(finished: int = 50) -> Snapshot:
    return Snapshot(discovered=100, finished=finished, ok=45, failed=3, skipped=2, in_flight=7, spent_usd=0.1234,
                    pace="300 rpm", discovery_done=True)


def test_line_has_done_failed_rate_eta_and_spend():
    line = Progress(snap, stream=io.StringIO()).line(snap())
    for part in ("50/100 files", "ok 45", "failed 3", "in flight 7", "/s", "ETA ", "$0.1234", "300 rpm"):
        assert part in line


def test_terminal_rewrites_one_line(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = FakeTerminal()
    progress = Progress(snap, stream=stream, interval=0)
    progress.tick()
    progress.tick()
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1


def test_no_color_terminal_has_no_escape_sequences(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    stream = FakeTerminal()
    progress = Progress(snap, stream=stream, interval=0)
    progress.tick()
    progress.close()
    assert "\x1b" not in stream.getvalue()


def test_not_a_terminal_prints_plain_periodic_lines(monkeypatch):
    stream = io.StringIO()
    progress = Progress(snap, stream=stream)  # default interval off a terminal: 10 s
    for _ in range(100):
        progress.tick()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 2 and all(line.startswith("imgtag: ") for line in lines)
    assert "\r" not in stream.getvalue()
