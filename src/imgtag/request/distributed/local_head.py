"""The local Ray cluster `--engine ray` starts when no cluster is named, run by a helper process in a session of
its own, so that a signal to imgtag's process group never reaches Ray.

Started by `ray.init()` inside imgtag, Ray's GCS, raylet and agents shared imgtag's process group: a SIGTERM to the
group (`timeout`, `kill -- -PGID`, a service manager) or a Ctrl-C at the terminal reached them too, mid-start or
mid-run. They died in odd states, imgtag hung or aborted, and some were left running. Here a helper (this module
run as a program, in a new session) calls `ray.init()`, the same local cluster as before (no dashboard, Ray's own
defaults otherwise: token authentication, no usage stats), writes the cluster's address on a pipe, and waits for
end-of-file on stdin; imgtag joins that address as a driver joins any cluster. End-of-file comes when imgtag stops
the cluster, and when imgtag dies any way (kill -9 included: the kernel closes the pipe); the helper then shuts
the cluster down. `LocalHead.stop` waits for that, bounded, then ends whatever is left in the helper's session
(Ray gives each worker a process group of its own, but workers stay in the session), so nothing of Ray outlives
imgtag's exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STOP_WAIT_S = 15.0   # the helper's ray.shutdown(): about 1-2 s here, longer on a loaded machine
KILL_WAIT_S = 5.0
_ADDRESS = "address "
_ERROR = "error "


class HeadFailed(RuntimeError):
    """The helper could not start the cluster; the message is Ray's first line."""


@dataclass
class LocalHead:
    proc: subprocess.Popen[bytes]
    address: str = ""
    stopped: bool = False

    def stop(self, *, graceful: bool = True) -> None:
        """End the cluster and every process of it before returning. Idempotent.

        graceful: close the pipe and let the helper's ray.shutdown() stop Ray's processes (the end of a run);
        otherwise SIGTERM the helper at once (a start that was interrupted: nothing runs on the cluster yet)."""
        if self.stopped:
            return
        self.stopped = True
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if not graceful:
            _signal(proc.pid, signal.SIGTERM)
        if not _exited(proc, STOP_WAIT_S if graceful else KILL_WAIT_S):
            _signal(proc.pid, signal.SIGKILL)
            _exited(proc, KILL_WAIT_S)
        # The helper is a zombie until it is reaped below, so its session id cannot be taken by a new process
        # meanwhile: whatever is still in that session is this cluster's.
        _end_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(KILL_WAIT_S)


def start(num_cpus: int | None) -> LocalHead:
    """Start the helper and wait for the cluster's address. Raises HeadFailed (Ray's reason) or whatever interrupts
    the wait (KeyboardInterrupt), with every process of the helper ended first."""
    # stderr: fd 2 as it is now, which is where Ray's lines go while imgtag uses Ray (ray_logs.StderrRoute).
    proc = subprocess.Popen([sys.executable, "-m", __name__, json.dumps({"num_cpus": num_cpus})],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    head = LocalHead(proc)
    try:
        assert proc.stdout is not None
        with proc.stdout as reply:  # the helper's one reply, then end-of-file
            said = reply.read().decode("utf-8", "replace").strip()
    except BaseException:
        head.stop(graceful=False)
        raise
    if said.startswith(_ADDRESS):
        head.address = said[len(_ADDRESS):]
        return head
    head.stop(graceful=False)
    raise HeadFailed(said[len(_ERROR):] if said.startswith(_ERROR) else
                     f"the process starting Ray exited (status {proc.returncode}) before the cluster was up")


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the helper exited within `timeout`, leaving it unreaped where the platform allows (os.waitid with
    WNOWAIT), so its session id stays reserved for _end_session."""
    deadline = time.monotonic() + timeout
    waitid = getattr(os, "waitid", None)
    while True:
        if waitid is not None:
            try:
                if waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:  # reaped already
                return True
        elif proc.poll() is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _session_members(sid: int) -> set[int]:
    """Living processes of session `sid` other than its leader (Linux: /proc)."""
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == sid:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # state, ppid, pgrp, session: a zombie waits for its parent to reap it and runs nothing
        if len(fields) > 3 and fields[3] == str(sid) and fields[0] not in ("Z", "X"):
            found.add(int(entry))
    return found


def _end_session(sid: int) -> None:
    """SIGKILL what is left of the helper's session, and wait (bounded) until it is gone."""
    if not Path("/proc/self/stat").exists():  # no /proc: the process group is what can be reached
        if hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(sid, signal.SIGKILL)
        return
    deadline = time.monotonic() + KILL_WAIT_S
    while (left := _session_members(sid)) and time.monotonic() < deadline:
        for pid in left:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.05)


# -- the helper ----------------------------------------------------------------------------------------------


def _serve(options: dict[str, object]) -> int:
    """In the helper: start the cluster, say its address (or why not) on stdout, then keep it until stdin ends."""
    # Ray's processes inherit fds 0-2. The pipes to imgtag are kept here only, on private descriptors (os.dup's are
    # not inherited): imgtag reads the reply to its end-of-file, and stdin's end means imgtag's.
    reply_fd, lifeline = os.dup(1), os.dup(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # anything printed goes with Ray's other lines, never into a pipe nobody reads
    with os.fdopen(reply_fd, "w", encoding="utf-8") as reply:
        try:
            import ray

            num_cpus = options.get("num_cpus")
            ray.init(num_cpus=num_cpus if isinstance(num_cpus, int) else None, include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)
            address = ray.get_runtime_context().gcs_address
        except Exception as exc:
            text = (str(exc).strip().splitlines() or [""])[0]
            reply.write(f"{_ERROR}{type(exc).__name__}: {text}"[:300])
            return 1
        reply.write(f"{_ADDRESS}{address}")
    try:
        # Until imgtag closes the pipe or dies. A SIGTERM meanwhile is ray.init's sys.exit: ray.shutdown() runs too.
        while os.read(lifeline, 4096):
            pass
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(json.loads(sys.argv[1])))
