"""Helper processes (the forkserver and its decode workers) die with the imgtag process that needs them.

Without this, a kill -9 of `imgtag run` leaves the forkserver and every pool worker running with parent 1:
each worker holds the write end of its own call queue and the forkserver's "alive" pipe, so none of them
ever sees end-of-file. On Linux the kernel's parent-death signal (prctl PR_SET_PDEATHSIG) ends them;
elsewhere a daemon thread watches the parent pid. They also ignore SIGINT: a Ctrl-C at the terminal
reaches the whole process group, and only the main process should answer it (with one line).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

MAIN_PID_ENV = "IMGTAG_MAIN_PID"   # set by the main process before it starts the forkserver
_PR_SET_PDEATHSIG = 1
_WATCH_INTERVAL_S = 0.5


def _set_pdeathsig() -> bool:
    """Ask the kernel to SIGKILL this process when its parent (thread) exits. Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _main_is_gone() -> bool:
    pid = os.environ.get(MAIN_PID_ENV)
    if not pid or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours to signal: alive
        return False
    return False


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="imgtag-parent-watch", daemon=True).start()


def die_with_parent(*, watch_thread: bool = True) -> None:
    """Call first thing in a helper process. Also closes the race where the parent died before we asked."""
    parent = os.getppid()
    armed = _set_pdeathsig()
    if parent == 1 or _main_is_gone():
        os._exit(1)
    if not armed and watch_thread:
        _watch_parent(parent)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT held back (blocked) in this thread meanwhile; a Ctrl-C then reaches this process through another
    thread or when the block ends, never lost. A process started meanwhile inherits the block, so a Ctrl-C at the
    terminal (it reaches the whole process group) cannot interrupt it before it has set up its own handling."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: nothing to hold
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_interrupts() -> None:
    with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def mark_main_process() -> None:
    """Record this process as the one whose death ends the helpers (inherited by the forkserver)."""
    os.environ[MAIN_PID_ENV] = str(os.getpid())


_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


def quiet_resource_tracker() -> None:
    """After a kill -9, multiprocessing's resource tracker cleans up the pool's semaphores (good) and warns
    about them on the user's terminal (noise after the fact). Child interpreters take their -W options from
    sys.warnoptions, so this silences that one warning in the tracker only, before it starts."""
    if _TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_QUIET)


def stop_helpers(timeout_s: float = 10.0) -> None:
    """At exit, stop the forkserver and multiprocessing's resource tracker and wait until they are gone, so
    imgtag's own exit means nothing of it is left (a Ctrl-C on a loaded machine used to end imgtag first and its
    helpers some seconds later). Each is asked the way the standard library asks it (end-of-file on the pipe it
    watches, then waitpid); one that has not exited within `timeout_s` is killed. The forkserver goes first: its
    decode workers die with it (parent-death signal), and the tracker then cleans up what they registered.
    Does nothing when no helper was started (multiprocessing never imported)."""
    if (mp_util := sys.modules.get("multiprocessing.util")) is not None:
        # Stopping the tracker unlinks every semaphore still registered with it: those of a decode pool that an
        # interruption left open, say. Let multiprocessing run its own exit-time finalizers first (they unlink
        # and unregister them); run after the tracker, each met its semaphore gone, a traceback apiece.
        with contextlib.suppress(Exception):
            mp_util._run_finalizers(0)
    helpers: list[tuple[object, str]] = []
    if (forkserver := sys.modules.get("multiprocessing.forkserver")) is not None:
        helpers.append((forkserver._forkserver, "_forkserver_pid"))
    if (tracker := sys.modules.get("multiprocessing.resource_tracker")) is not None:
        helpers.append((tracker._resource_tracker, "_pid"))
    for helper, pid_attribute in helpers:
        pid = getattr(helper, pid_attribute, None)
        stop = getattr(helper, "_stop", None)
        if pid is None or stop is None:
            continue
        deadline = threading.Timer(timeout_s, _kill, (pid,))
        deadline.daemon = True
        deadline.start()
        try:
            # A Ctrl-C now (the command is already ending) must not cut the wait short: a helper would be left
            # and a KeyboardInterrupt traceback printed from waitpid. It is answered once they are gone.
            with interrupts_held():
                stop()
        except OSError:  # already reaped, or its pipe already closed: nothing left to wait for
            pass
        finally:
            deadline.cancel()


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
