"""The progress line: live on a terminal, plain periodic lines otherwise, no escapes under NO_COLOR."""

from __future__ import annotations

import dataclasses
import io

from imgtag.app.progress import Progress, Snapshot


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def snap(finished: int = 50) -> Snapshot:
    return Snapshot(discovered=100, finished=finished, ok=45, failed=3, skipped=2, in_flight=7, spent_usd=0.1234,
                    pace="300 rpm", discovery_done=True)


def test_line_has_done_failed_rate_eta_and_spend():
    line = Progress(snap, stream=io.StringIO()).line(snap())
    for part in ("50/100 files", "ok 45", "failed 3", "in flight 7", "/s", "ETA ", "$0.123", "300 rpm"):
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


# -- fits the terminal, real totals, honest batch wait, resume (issue 9 item 12) ---------------------------

def big_snap(**kw) -> Snapshot:
    base = dict(discovered=123_456, finished=98_765, ok=97_000, failed=1_234, skipped=531, in_flight=64,
                spent_usd=123.4567, pace="4000 rpm, 400000 input tokens/min", discovery_done=True,
                done_before=50_000, spent_to_date_usd=456.789)
    base.update(kw)
    return Snapshot(**base)


def test_live_line_never_wraps_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = FakeTerminal()
    progress = Progress(big_snap, stream=stream, interval=0)
    progress.tick()
    progress.close()
    for frame in stream.getvalue().replace("\x1b[2K", "").replace("\n", "\r").split("\r"):
        assert len(frame.rstrip()) < 80, frame
    line = stream.getvalue().split("\r")[-1]
    assert "98,765/123,456 files" in line and "ETA " in line  # the most useful segments survive


def test_narrow_terminal_drops_segments_not_the_count(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = FakeTerminal()
    progress = Progress(big_snap, stream=stream, interval=0)
    progress.tick()
    line = stream.getvalue().split("\r")[-1].replace("\x1b[2K", "")
    assert len(line) < 40 and line.startswith("98,765/123,456 files")


def test_total_and_eta_come_from_the_up_front_count():
    snap_ = Snapshot(discovered=12, finished=10, ok=10, failed=0, skipped=0, in_flight=2, spent_usd=0.0, pace="",
                     discovery_done=False, counted=390)
    progress = Progress(lambda: snap_, stream=io.StringIO())
    progress._start -= 5  # 10 files in 5 s: 2/s, 380 to go
    line = progress.line(snap_)
    assert "10/390 files" in line and "ETA 03:10" in line


def test_batch_mode_shows_the_wait_on_the_server_not_an_eta():
    from imgtag.app.progress import BatchView

    snap_ = big_snap(batch=BatchView(submitted=390, processing=390, collected=0, batches=4), in_flight=390,
                     done_before=0, spent_to_date_usd=None)
    line = Progress(lambda: snap_, stream=io.StringIO()).line(snap_)
    assert "submitted 390" in line and "on the server 390 (4 batches)" in line and "collected 0" in line
    assert "ETA" not in line and "in flight" not in line


def test_after_a_resume_new_and_already_done_are_told_apart():
    from imgtag.app.progress import resume_note

    snap_ = big_snap(discovered=150, finished=120, ok=20, done_before=100, spent_usd=0.002,
                     spent_to_date_usd=0.0123)
    progress = Progress(lambda: snap_, stream=io.StringIO())
    progress._start -= 10  # 20 new files in 10 s: 2/s (not 12/s), 30 to go
    line = progress.line(snap_)
    assert "ok 20" in line and "done before 100" in line and "2.0/s" in line and "ETA 00:15" in line
    assert "$0.002 this run" in line and "$0.0123 to date" in line
    note = resume_note(150, 100, 0.002, 0.0123)
    assert note == ("100 of 150 files already done by earlier runs; $0.002 this run, $0.0123 to date"
                    " for this preset and model")


def test_an_interrupted_line_is_erased_with_the_terminals_ctrl_c_echo(monkeypatch):
    # A terminal echoes "^C" after the line (one column short of the edge, so "^C" reaches it); erasing only the
    # line's own width left a "C" at the end of the sentence that follows.
    for no_color in (False, True):
        if no_color:
            monkeypatch.setenv("NO_COLOR", "1")
        else:
            monkeypatch.delenv("NO_COLOR", raising=False)
        stream = FakeTerminal()
        progress = Progress(snap, stream=stream, interval=0)
        progress.tick()
        shown = len(stream.getvalue().rsplit("\r", 1)[1])
        progress.close(erase=True)
        erased = stream.getvalue()[len(stream.getvalue().rsplit("\r", 2)[0]):]
        if no_color:
            assert erased == "\r" + " " * (shown + 2) + "\r"
        else:
            assert erased.startswith("\r\x1b[2K")


def test_a_plain_line_waits_for_the_real_total():
    """A run's log began 'imgtag: 0/0+ files | ok 0 | ... | ETA --:--': the first plain line was written before the
    up-front walk had counted the files, though the README promises a real total from the start. Off a terminal
    the first line waits for the count (moments); the last line is written whatever it holds."""
    counted: list[int | None] = [None]

    def read() -> Snapshot:
        return Snapshot(discovered=0, finished=0, ok=0, failed=0, skipped=0, in_flight=0, spent_usd=0.0, pace="",
                        discovery_done=False, counted=counted[0])

    stream = io.StringIO()
    progress = Progress(read, stream=stream)
    progress.tick()
    assert stream.getvalue() == ""
    counted[0] = 40
    progress.tick()
    assert stream.getvalue().startswith("imgtag: 0/40 files"), stream.getvalue()
    counted[0] = None
    stream.seek(0), stream.truncate()
    Progress(read, stream=stream).close()
    assert stream.getvalue().startswith("imgtag: 0/0+ files"), stream.getvalue()


def test_a_graceful_stop_shows_stopping_where_the_eta_was():
    """While a Ctrl-C waits for the answers in flight, no ETA counts down to an end that will not come."""
    stopping = dataclasses.replace(snap(), stopping=True)
    line = Progress(snap, stream=io.StringIO()).line(stopping, 80)
    assert "stopping" in line and "ETA" not in line and "in flight 7" in line
