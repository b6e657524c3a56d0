"""Nothing left behind, no noise: kill -9, Ctrl-C and SIGTERM of a real `imgtag run` in a subprocess.

A kill -9 must take the forkserver and its decode workers with it (within 2 s); a Ctrl-C at a terminal
(SIGINT to the whole process group, stderr a pty) leaves exactly one line on the screen; the store's
`runs` table says how each run ended.
"""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from imagegen import make_images
from imgtag.store import Store
from proctree import alive, descendants, needs_proc, reap, wait_gone

pytestmark = needs_proc


def _as_from_a_terminal(nice: int) -> None:
    """In the child before exec: Ctrl-C answered as a shell's foreground command has it, even when the suite itself
    was started with SIGINT ignored (`nohup`, a background job of a non-interactive shell): an ignored SIGINT is
    inherited, and imgtag rightly keeps ignoring it then."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if nice:
        os.nice(nice)


class Cli:
    """`python -m imgtag ...` in its own session (so a signal to its group reaches only it), stderr on a
    pty when asked (so progress is the live terminal line a person sees)."""

    def __init__(self, args: list[str], env: dict[str, str], *, tty: bool = False, nice: int = 0) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_"))}
        full_env |= env | {"COLUMNS": "80", "LINES": "24", "TERM": "xterm"}
        self._chunks: list[bytes] = []
        master = slave = None
        if tty:
            master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "imgtag", *args], env=full_env,
                                     stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     stderr=slave if tty else subprocess.PIPE, start_new_session=True,
                                     preexec_fn=lambda: _as_from_a_terminal(nice))
        if tty:
            assert slave is not None and master is not None
            os.close(slave)
            self._reader = threading.Thread(target=self._drain, args=(master,), daemon=True)
        else:
            assert self.proc.stderr is not None
            self._reader = threading.Thread(target=self._drain, args=(self.proc.stderr.fileno(),), daemon=True)
        self._reader.start()

    def _drain(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every writer of the pty is gone
                break
            if not data:
                break
            self._chunks.append(data)
        if self.proc.stderr is None:
            os.close(fd)

    def output(self, timeout: float = 10.0) -> str:
        self._reader.join(timeout)
        return b"".join(self._chunks).decode("utf-8", "replace")


def one_sentence(lines: list[str], width: int = 80) -> str:
    """The one sentence imgtag leaves, wrapped to the terminal's 80 columns between words: its first line starts
    with "imgtag:", the others are its indented continuation."""
    assert lines and lines[0].startswith("imgtag: "), lines
    assert all(line.startswith("  ") for line in lines[1:]), lines
    assert all(len(line) <= width for line in lines), lines
    return " ".join(" ".join(lines).split())


def after_stopping(lines: list[str]) -> list[str]:
    """The lines after the sentence a graceful stop says at once (the first Ctrl-C with answers on their way: it
    fits the terminal's 80 columns on one line), which must come first; the lines as they are without it."""
    if lines and lines[0].startswith("Stopping: "):
        assert len(lines[0]) <= 80 and not any(line.startswith("  ") for line in lines[1:2]), lines
        return lines[1:]
    return lines


def screen(text: str) -> list[str]:
    """What a terminal shows for this output: \\r returns to column 0, ESC[2K clears the line."""
    lines: list[list[str]] = [[]]
    col = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("\x1b[", i):
            end = i + 2
            while end < len(text) and not text[end].isalpha():
                end += 1
            if text[end:end + 1] == "K":
                lines[-1] = []
            i = end + 1
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append([])
            col = 0
        else:
            row = lines[-1]
            if col < len(row):
                row[col] = ch
            else:
                row.append(ch)
            col += 1
        i += 1
    return ["".join(r).rstrip() for r in lines if "".join(r).strip()]


def wait_for(predicate: Any, cli: Cli, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert cli.proc.poll() is None, f"imgtag ended early: {cli.output()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def helpers_running(cli: Cli) -> set[int]:
    """Wait until the forkserver and both decode workers exist; returns every process below imgtag."""
    found: set[int] = set()

    def enough() -> bool:
        found.clear()
        found.update(descendants(cli.proc.pid))
        return len(found) >= 3  # forkserver + 2 workers (+ multiprocessing's resource tracker)

    wait_for(enough, cli)
    return found


def live_batch_count(out: Path) -> int:
    if not (out / "imgtag.db").exists():
        return 0
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return db.execute("SELECT COUNT(*) FROM batches WHERE collected_at IS NULL").fetchone()[0]
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    finally:
        db.close()


def run_states(out: Path) -> list[tuple[str | None, int | None]]:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return db.execute("SELECT end_state, exit_code FROM runs ORDER BY id").fetchall()
    finally:
        db.close()


def test_kill_nine_mid_decode_leaves_no_process_and_is_marked_killed(tmp_path: Path,
                                                                   fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(latency_s=1.0)
    out = tmp_path / "out"
    cli = Cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--workers", "2"], fake.env())
    pids: set[int] = set()
    try:
        pids = helpers_running(cli)
        wait_for(lambda: fake.stats.messages_requests > 0, cli)
        os.kill(cli.proc.pid, signal.SIGKILL)
        cli.proc.wait(10)
        left = wait_gone(pids, 2.0)
        assert not left, f"still running 2 s after kill -9 of imgtag: {sorted(left)}"
    finally:
        reap(pids | {cli.proc.pid})
    assert cli.output(5) == ""  # not even multiprocessing's leaked-semaphore warning
    assert run_states(out) == [(None, None)]
    with Store(out):  # the next writer finds the run unfinished, its process gone
        pass
    assert run_states(out) == [("killed", None)]


def test_ctrl_c_at_a_terminal_prints_one_line_and_leaves_nothing(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(latency_s=1.0)
    out = tmp_path / "out"
    cli = Cli(["run", str(tmp_path / "in"), "--out", str(out), "--workers", "2"], fake.env(), tty=True)
    pids: set[int] = set()
    try:
        pids = helpers_running(cli)
        wait_for(lambda: sum(fake.stats.answered_by_key.values()) >= 2, cli)
        time.sleep(0.5)  # let the live progress line be drawn
        os.killpg(cli.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert cli.proc.wait(30) == 130
        left = wait_gone(pids, 2.0)
        assert not left, f"still running after Ctrl-C: {sorted(left)}"
    finally:
        reap(pids | {cli.proc.pid})
    text = cli.output()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    said = one_sentence(after_stopping(screen(text)))
    assert said.startswith("imgtag: interrupted;") and "run the same command to continue" in said, said
    assert run_states(out) == [("interrupted", 130)]


def _spin_cpus(count: int) -> list[subprocess.Popen[bytes]]:
    """Busy loops, one per core: the loaded machine on which helpers used to outlive imgtag's exit."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def test_ctrl_c_under_load_leaves_nothing_once_imgtag_has_exited(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    # imgtag exits only after its helpers (forkserver, decode workers, resource tracker) have: the moment its
    # exit status is known, nothing of it is left, with both cores busy, not "gone within a few seconds".
    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(latency_s=5.0)  # still asking when the Ctrl-C comes
    # imgtag at a low priority, the busy loops started just before the Ctrl-C: its shutdown competes for the CPU
    # as on a machine loaded by others.
    cli = Cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "2"], fake.env(), tty=True,
              nice=10)
    pids: set[int] = set()
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        helpers_running(cli)
        wait_for(lambda: fake.stats.messages_requests >= 2, cli)
        pids = descendants(cli.proc.pid)
        spinners = _spin_cpus(2 * (os.cpu_count() or 2))
        os.killpg(cli.proc.pid, signal.SIGINT)
        assert cli.proc.wait(60) == 130
        left = {pid for pid in pids if alive(pid)}
        assert not left, f"still running when imgtag exited: {sorted(left)}"
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        reap(pids | {cli.proc.pid})
    assert one_sentence(after_stopping(screen(cli.output()))).startswith("imgtag: interrupted;")


def test_ctrl_c_in_batch_mode_says_batches_keep_running(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 20)
    fake = fake_anthropic_factory(batch_processing_s=60.0)
    out = tmp_path / "out"
    cli = Cli(["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--batch-max-requests", "10",
               "--poll-interval", "0.2", "-q"], fake.env())
    try:
        # the second batch is created on the server, then committed to the store: wait for the store
        wait_for(lambda: fake.stats.batches_created >= 2 and live_batch_count(out) >= 2, cli)
        os.killpg(cli.proc.pid, signal.SIGINT)
        assert cli.proc.wait(30) == 130
    finally:
        reap(descendants(cli.proc.pid) | {cli.proc.pid})
    said = one_sentence(cli.output().splitlines())
    assert "2 submitted batches keep running on the server" in said
    assert "run the same command again" in said and f"imgtag cancel --out {out}" in said
    assert run_states(out) == [("interrupted", 130)]


def test_sigterm_stops_cleanly_and_is_marked_interrupted(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(latency_s=1.0)
    out = tmp_path / "out"
    cli = Cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--workers", "2"], fake.env())
    pids: set[int] = set()
    try:
        pids = helpers_running(cli)
        wait_for(lambda: fake.stats.messages_requests > 0, cli)
        os.kill(cli.proc.pid, signal.SIGTERM)  # the main process only, as a service manager would
        assert cli.proc.wait(30) == 143
        assert not wait_gone(pids, 2.0)
    finally:
        reap(pids | {cli.proc.pid})
    assert one_sentence(after_stopping(cli.output().splitlines())).startswith("imgtag: interrupted;")
    assert run_states(out) == [("interrupted", 143)]


def test_one_live_batch_is_said_in_the_singular():
    """At 80 columns after Ctrl-C: '1 submitted batch keeps running on the server: ... to stop them'."""
    from imgtag.app.messages import interrupted_message

    one = interrupted_message(1, "obat")
    assert "1 submitted batch keeps running" in one and one.endswith("`imgtag cancel --out obat` to stop it"), one
    assert interrupted_message(2, "o").endswith("to stop them")


# A decode pool that an interruption left open (Ctrl-C while it was starting), then the command's last step.
POOL_LEFT_OPEN = """
import sys
from imgtag.ingest.lifeline import stop_helpers
from imgtag.ingest.preprocess import new_pool
pool = new_pool(1)
assert pool.submit(len, [1, 2]).result() == 2
stop_helpers()
sys.exit(130)
"""


def test_stopping_the_helpers_with_a_pool_left_open_prints_nothing() -> None:
    """Stopping the resource tracker unlinks every semaphore still registered; multiprocessing's own exit-time
    finalizers then each met a FileNotFoundError traceback (1 Ctrl-C in 16 early in a run, seen at a terminal)."""
    proc = subprocess.run([sys.executable, "-c", POOL_LEFT_OPEN], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 130
    assert proc.stderr == ""


# The hook a decode worker's failed start goes through (the forkserver's children call sys.excepthook).
LATE_WORKER_START = """
import sys
import imgtag.ingest.forkserver_init  # noqa: F401  (what the forkserver imports first)
from multiprocessing.synchronize import SemLock
try:  # a worker rebuilding a semaphore its parent has already removed
    SemLock.__new__(SemLock).__setstate__((0, 1, 1, "/imgtag-test-removed-semaphore"))
except FileNotFoundError:
    sys.excepthook(*sys.exc_info())
try:
    open("/nonexistent/imgtag-test")
except FileNotFoundError:
    sys.excepthook(*sys.exc_info())
"""


def test_a_decode_worker_started_as_imgtag_exits_fails_quietly() -> None:
    """A Ctrl-C while the decode pool was starting: a worker forked after its parent removed the pool's semaphores
    printed a FileNotFoundError traceback from multiprocessing on the terminal (1 run in 20). It is silent now;
    any other failure still prints."""
    proc = subprocess.run([sys.executable, "-c", LATE_WORKER_START], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "/nonexistent/imgtag-test" in proc.stderr and "__setstate__" not in proc.stderr


FORKSERVER_SIGNALS = """
from multiprocessing import forkserver
from imgtag.ingest.preprocess import new_pool
import signal
pool = new_pool(1)
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process answers Ctrl-C as before
assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
pid = forkserver._forkserver._forkserver_pid
with open(f"/proc/{pid}/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("SigBlk:")))
pool.shutdown()
"""


def test_the_forkserver_starts_with_ctrl_c_held_back() -> None:
    """The forkserver ignores SIGINT only after importing its preload list: a Ctrl-C at the terminal (it reaches
    the whole process group) in that second printed a KeyboardInterrupt traceback (2 runs in 30 interrupted
    early). It starts with SIGINT blocked, inherited from the thread that starts it; the main process still
    answers Ctrl-C."""
    proc = subprocess.run([sys.executable, "-c", FORKSERVER_SIGNALS], capture_output=True, text=True, timeout=60,
                          check=False, preexec_fn=lambda: _as_from_a_terminal(0))
    assert proc.returncode == 0, proc.stderr
    blocked = int(proc.stdout.strip(), 16)
    assert blocked & (1 << (signal.SIGINT - 1))


def test_a_ctrl_c_no_command_answered_exits_130_without_a_traceback() -> None:
    """A Ctrl-C that arrives while the helpers are being stopped, after the command's last line, reaches the entry
    point as KeyboardInterrupt: the status a shell expects, and nothing printed."""
    script = ("import imgtag.cli.commands as c\n"
              "def interrupted():\n    raise KeyboardInterrupt\n"
              "c.main = interrupted\nc.entry()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stderr) == (130, "")


def test_a_ctrl_c_while_the_command_line_loads_exits_130_without_a_traceback() -> None:
    """The first tenth of a second of `imgtag ...` is importing typer and the commands: a Ctrl-C then printed a
    KeyboardInterrupt traceback from deep inside an import (7 of 25 runs interrupted in their first 0.3 s)."""
    script = ("import sys\n"
              "class Interrupted:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'imgtag.cli.commands':\n"
              "            raise KeyboardInterrupt\n"
              "sys.meta_path.insert(0, Interrupted())\n"
              "from imgtag.cli import entry\nentry()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stderr) == (130, "")
