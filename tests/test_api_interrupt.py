"""A cancelled `atag`/`adescribe` task and a KeyboardInterrupt (a notebook's interrupt, a script's Ctrl-C) stop
the run they wait for, instead of leaving it running (and paying) in its thread until it is done.

Cancel is an abort: nothing new is sent, what is in flight is dropped (pending), the CancelledError reaches the
caller once the run's thread has ended (the store closed: the same folder can be tagged again at once). The first
KeyboardInterrupt is the CLI's first Ctrl-C (a graceful stop: the answers on their way are waited for, bounded,
and stored), the second aborts; the caller then gets KeyboardInterrupt.

The fake's answers begin at once (billed) and take seconds, so requests are surely in flight at the cancel or
interrupt on a loaded machine. The signals go to a subprocess, so the test runner is not disturbed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import imgtag
from imagegen import make_images
from proctree import _stat, descendants, needs_proc, reap, wait_gone
from test_interrupt_drain import job_counts
from test_lifecycle import run_states

pytestmark = needs_proc

IMAGES = 12


@pytest.fixture
def fake(fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    server = fake_anthropic_factory(latency_s=4.0, ttft_s=0.1)
    for name in ("IMGTAG_PRESET", "IMGTAG_MODEL", "IMGTAG_PROVIDER", "IMGTAG_LANG", "IMGTAG_CATEGORIES", "IMGTAG_OUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "in", IMAGES)
    return server


def begun(fake: Any) -> int:
    with fake.stats.lock:
        return sum(fake.stats.answered_by_key.values())


def asked(fake: Any) -> int:
    with fake.stats.lock:
        return int(fake.stats.messages_requests)


def imgtag_threads() -> list[str]:
    """Threads named by imgtag, or running its code (asyncio.to_thread's are named asyncio_N)."""
    package = str(Path(imgtag.__file__).parent)
    frames = sys._current_frames()
    running = set()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or 0)
        while frame is not None and thread is not threading.current_thread():
            if frame.f_code.co_filename.startswith(package):
                running.add(thread.name)
            frame = frame.f_back
    return sorted(running | {t.name for t in threading.enumerate() if "imgtag" in t.name})


def decode_workers() -> set[int]:
    """The decode pool's processes (children of the forkserver, which stays for the next call as after any)."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    return descendants(pid) if pid else set()


def rerun_asks_exactly_the_rest(tmp_path: Path, fake: Any) -> None:
    """The same call again (no StoreInUseError: the lock is gone) asks each image not answered, once."""
    counts = job_counts(tmp_path / "out")
    before = asked(fake)
    fake.config.latency_s = 0.0
    again = imgtag.tag("in", out="out")
    assert again.exit_code == 0 and again.ok == IMAGES, again
    assert asked(fake) - before == IMAGES - counts.get("ok", 0), counts


def test_cancelling_atag_aborts_the_run_and_ends_its_thread(tmp_path: Path, fake: Any) -> None:
    async def main() -> float:
        task = asyncio.create_task(imgtag.atag("in", out="out", concurrency=4))
        while begun(fake) < 2:
            assert not task.done()
            await asyncio.sleep(0.02)
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled

    took = asyncio.run(main())
    assert took < 3.0, took  # an answer takes 4 s: the run did not wait for them
    sent = asked(fake)
    assert imgtag_threads() == [] and decode_workers() == set()
    time.sleep(1.0)
    assert asked(fake) == sent  # nothing more was sent
    assert job_counts(tmp_path / "out").get("ok", 0) == 0  # in flight: dropped, pending
    assert run_states(tmp_path / "out") == [("interrupted", 130)]
    rerun_asks_exactly_the_rest(tmp_path, fake)


def test_a_timeout_around_adescribe_stops_it(tmp_path: Path, fake: Any) -> None:
    async def main() -> tuple[float, list[str]]:
        task = asyncio.create_task(imgtag.adescribe("in/img_0000.jpg"))
        while begun(fake) < 1:
            await asyncio.sleep(0.02)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task, 0.2)
        return time.monotonic(), imgtag_threads()  # before asyncio.run waits for the threads it knows

    timed_out, threads = asyncio.run(main())
    assert threads == [], threads  # the request (4 s) was not left running
    assert time.monotonic() - timed_out < 2.0  # nor waited for at the loop's end
    assert decode_workers() == set()


# -- KeyboardInterrupt, in a subprocess ---------------------------------------------------------------

SCRIPT = """
import asyncio, json, sys, threading, time
import imgtag

def call():
    return imgtag.tag("in", out="out", concurrency=4)

async def cell():  # a notebook cell: the blocking call inside a running event loop
    return call()

ended = None
try:
    if sys.argv[1] == "loop":
        asyncio.new_event_loop().run_until_complete(cell())  # as Jupyter runs it: no SIGINT handler of asyncio's
    elif sys.argv[1] == "asyncio.run":
        asyncio.run(cell())  # whose SIGINT handler would only cancel the cell, blocked in the call
    else:
        call()
    outcome = "returned"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
except BaseException as error:
    outcome = type(error).__name__
ended = time.time()
threads = [t.name for t in threading.enumerate() if "imgtag" in t.name and t.name != "imgtag-parent-watch"]
print(json.dumps({"outcome": outcome, "ended": ended, "threads": threads}), flush=True)
sys.stdin.readline()  # the test makes the answers quick
again = imgtag.tag("in", out="out")
print(json.dumps({"ok": again.ok, "requests": again.requests, "exit_code": again.exit_code}), flush=True)
"""


def _parent(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat is not None else None


def interrupted_call(tmp_path: Path, fake: Any, how: str, signals: int) -> tuple[dict[str, Any], float]:
    """Run the call in a subprocess, send it `signals` SIGINTs once answers are on their way; what the call did,
    and seconds from the first signal to its end. The rerun's answer is checked here too."""
    (tmp_path / "cell.py").write_text(SCRIPT, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "cell.py", how], cwd=tmp_path, env={**os.environ, **fake.env()},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while begun(fake) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = time.time()
        for i in range(signals):
            if i:
                time.sleep(0.3)
            os.kill(proc.pid, signal.SIGINT)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line, proc.communicate()
        ended = json.loads(line)
        helpers = descendants(proc.pid)  # the forkserver and resource tracker stay for the next call; no worker
        assert all(_parent(pid) in (proc.pid, None) for pid in helpers), helpers
        sent = asked(fake)
        time.sleep(0.5)
        assert asked(fake) == sent, "a request was sent after the call ended"
        counts, paid = job_counts(tmp_path / "out"), begun(fake)
        assert run_states(tmp_path / "out") == [("interrupted", 130)]
        fake.config.latency_s = 0.0
        proc.stdin.write("\n")
        proc.stdin.flush()
        rerun = json.loads(proc.stdout.readline() or "{}")
        assert rerun == {"ok": IMAGES, "requests": IMAGES - counts.get("ok", 0), "exit_code": 0}, (rerun, counts)
        assert proc.wait(60) == 0
        assert wait_gone(helpers, 10) == set()  # and the exit ends them
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        reap(descendants(proc.pid) | {proc.pid})
    ended["stderr"], ended["ok"], ended["paid"] = stderr, counts.get("ok", 0), paid
    return ended, ended["ended"] - first


@pytest.mark.parametrize("how", ["loop", "plain", "asyncio.run"])
def test_the_first_interrupt_stops_gracefully_then_raises(tmp_path: Path, fake: Any, how: str) -> None:
    ended, took = interrupted_call(tmp_path, fake, how, 1)
    assert ended["outcome"] == "KeyboardInterrupt", ended
    assert ended["threads"] == [], ended
    assert took < 4.0 + 3.0, took  # the answers on their way (4 s each), not the whole run (12 images)
    assert ended["ok"] == ended["paid"] >= 2, ended  # every answer begun (billed) is stored
    assert "Stopping: waiting up to 30 s" in ended["stderr"], ended["stderr"]


@pytest.mark.parametrize("how", ["loop", "plain"])
def test_a_second_interrupt_aborts(tmp_path: Path, fake: Any, how: str) -> None:
    ended, took = interrupted_call(tmp_path, fake, how, 2)
    assert ended["outcome"] == "KeyboardInterrupt", ended
    assert ended["threads"] == [], ended
    assert took < 3.0, took  # well before the answers in flight (4 s) would end
    assert ended["ok"] == 0, ended


def test_the_run_thread_leaves_signals_alone_and_its_errors_plain() -> None:
    """Beside a caller's loop run by asyncio.run (whose SIGINT handler is set), the run's own thread neither touches
    SIGINT nor hands its errors a 'signal only works in main thread' ValueError as their context."""
    from imgtag.app.stopping import graceful_first_interrupt

    caught: list[BaseException] = []

    def work() -> None:
        async def run() -> None:
            with graceful_first_interrupt(lambda: True):
                raise RuntimeError("the run's own error")

        try:
            asyncio.run(run())
        except RuntimeError as error:
            caught.append(error)

    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)  # as asyncio.run's handler is
    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(caught) == 1 and caught[0].__context__ is None, caught
