"""Ctrl-C and SIGTERM in the commands other than `run`: one sentence, the exit status a shell expects (130, 143),
nothing half-written and no temporary file left (tests/test_lifecycle.py does the same for `run`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, run_cli

# `imgtag export --format xmp-embed` with the signal sent to the whole process group (as a terminal's Ctrl-C, or
# systemd's stop, does) just as an image's embedded copy is about to replace it.
EMBED_INTERRUPTED = """
import os, signal, sys, time
import imgtag.export.xmp_embed as embed

real = embed._finish
def finish_after_a_signal(*args, **kwargs):
    os.killpg(0, signal.{sig})
    time.sleep(10)  # the signal's handler runs here
    real(*args, **kwargs)
embed._finish = finish_after_a_signal
sys.argv = ["imgtag", "export", "--out", sys.argv[1], "--format", "xmp-embed"]
from imgtag.cli import entry
entry()
"""


@pytest.mark.parametrize("sig, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_embed_leaves_no_temporary_copy_and_says_so(tmp_path: Path, fake_anthropic_factory: Any,
                                                                    monkeypatch: pytest.MonkeyPatch, sig: str,
                                                                    status: int) -> None:
    make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "-q"], fake_anthropic_factory().env(),
                           monkeypatch)
    assert code == 0, output
    before = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    proc = subprocess.run([sys.executable, "-c", EMBED_INTERRUPTED.replace("{sig}", sig), str(out)],
                          capture_output=True, text=True, timeout=60, check=False, start_new_session=True)
    assert proc.returncode == status, proc.stderr  # SIGTERM killed it at once (-15) before
    lines = [line for line in proc.stderr.splitlines() if line.strip()]  # one sentence, wrapped at 80 columns
    assert lines and lines[0].startswith("imgtag: ") and all(line.startswith("  ") for line in lines[1:]), lines
    said = " ".join(proc.stderr.split())
    assert said.startswith("imgtag: interrupted; each file is either complete or as it was"), said
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before  # no copy beside them


# A Ctrl-C while `imgtag run` checks its settings and the model, before its run starts (the first 2 s of a batch
# run on a loaded machine): the run's own handler is not installed yet.
RUN_INTERRUPTED_EARLY = """
import sys
import imgtag.app.run as run

def checking(cfg):
    raise KeyboardInterrupt
run.prepare = checking
sys.argv = ["imgtag", "run", sys.argv[1], "--out", sys.argv[2], "--mode", "batch"]
from imgtag.cli import entry
entry()
"""


def test_a_ctrl_c_before_the_run_starts_says_what_a_later_one_says(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    proc = subprocess.run([sys.executable, "-c", RUN_INTERRUPTED_EARLY, str(tmp_path / "in"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 130, proc.stderr
    said = " ".join(proc.stderr.split())  # exited 130 in silence before
    assert said == "imgtag: interrupted; everything answered so far is saved — run the same command to continue", said


RAY_KEEPS_OUR_SIGTERM = """
import signal
from imgtag.request.distributed.cluster import connect

def ours(signum, frame):
    pass
signal.signal(signal.SIGTERM, ours)
connect(None, 1)
print(signal.getsignal(signal.SIGTERM) is ours)
import ray
ray.shutdown()
"""


def test_starting_ray_leaves_the_answer_to_sigterm_as_it_was(tmp_path: Path) -> None:
    """ray.init makes SIGTERM `sys.exit(15)`: `imgtag run --engine ray` stopped by a service manager exited 15
    without a word (1 run in 2 at 3 s) instead of 143 and the run's sentence."""
    pytest.importorskip("ray")
    proc = subprocess.run([sys.executable, "-c", RAY_KEEPS_OUR_SIGTERM], capture_output=True, text=True,
                          timeout=180, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "True", proc.stdout


# A Ctrl-C just after a command's last line, while the entry point leaves (it imported its exit helper then).
CTRL_C_WHILE_LEAVING = """
import sys
import imgtag.cli.commands as c

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name in ("imgtag.cli.fastexit", "imgtag.cli.interrupt"):
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())

def done():
    raise SystemExit(0)
c.main = done
c.entry()
"""


def test_a_ctrl_c_while_the_command_leaves_prints_no_traceback() -> None:
    """`imgtag export --format html` interrupted as it finished: a KeyboardInterrupt traceback (through typer's
    Exit and SystemExit) from the import in the entry point's exit path (1 run in 8)."""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_LEAVING], capture_output=True, text=True, timeout=60,
                          check=False)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


def test_an_error_inside_sigterm_handling_off_the_main_thread_has_no_signal_error_as_its_context() -> None:
    """Outside the main thread signals are left alone; the ValueError of trying used to become the context of every
    error raised inside the block (printed as 'During handling of the above exception ...')."""
    import threading

    from imgtag.cli.interrupt import sigterm_as_interrupt

    caught: list[BaseException] = []

    def work() -> None:
        try:
            with sigterm_as_interrupt():
                raise RuntimeError("the run's own error")
        except RuntimeError as exc:
            caught.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert len(caught) == 1 and caught[0].__context__ is None, repr(caught[0].__context__)
