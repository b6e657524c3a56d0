"""Connecting to a Ray cluster: `--ray-address`, else RAY_ADDRESS, else a local cluster started for this run
(no dashboard) by a helper in a session of its own (local_head.py), so a signal to imgtag's process group never
reaches Ray's processes; imgtag stops that cluster, and only that one, when it closes the connection. A cluster
someone else started is left running: imgtag only disconnects, which ends its job and actors. A cluster that is
already connected in this process (tests, notebooks) is reused.

The CLI connects before it opens the store, so a cluster that cannot be used (nothing listening, token
authentication without the token mode set) costs one sentence and exit 2 with nothing created. A cluster
someone else started is probed first (a TCP connect, then one GCS call, milliseconds): without that, Ray
retries for 20 to 40 s, printing a raw C++ line per second. While imgtag uses Ray, Ray's own log lines go to
`--out/ray.log` (ray_logs.py), never between imgtag's progress lines.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from imgtag.config.errors import ConfigurationError
from imgtag.config.options import option
from imgtag.request.distributed import local_head
from imgtag.request.distributed.ray_logs import StderrRoute

AUTH_MODE = "RAY_AUTH_MODE"
PROBE_TIMEOUT_S = 3.0
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[\w.-]+):(?P<port>\d+)$")


class RayMissing(ConfigurationError):
    pass


class ClusterProblem(ConfigurationError):
    """The cluster cannot be used; the message is the one sentence to show (exit 2)."""


@dataclass
class Connection:
    started_here: bool
    address: str | None
    nodes: int = 1
    route: StderrRoute = field(default_factory=StderrRoute)
    head: local_head.LocalHead | None = None  # the local cluster this run started, stopped with the connection
    closed: bool = False

    def close(self) -> None:
        """Leave the cluster (and stop it, every process of it, if this run started it) and give fd 2 back.
        Idempotent."""
        global _current
        if self.closed:
            return
        self.closed = True
        if _current is self:
            _current = None
        try:
            import ray

            if self.started_here and ray.is_initialized():
                _quiet_ray_data()
                ray.shutdown()  # a driver's disconnect: its job and actors end, the cluster itself stays
        finally:
            try:
                if self.head is not None:
                    self.head.stop()
                    atexit.unregister(self.head.stop)
            finally:
                self.route.restore()


_current: Connection | None = None


def _quiet_ray_data() -> None:
    """Ray Data's usage poller, a daemon thread that samples cluster metrics every 10 s and is never stopped, calls
    Ray after ray.shutdown(), and Ray's core then exits the whole process with status 1: an interrupted run ended
    without its sentence and without stopping its cluster (2 runs in 8 interrupted at 12-18 s), and a finished one
    could end so while it wrote its exports. Its metrics are emptied before leaving, so its later polls call
    nothing. (Ray 2.60's module; another Ray is left as it is.)"""
    try:
        from ray.data._internal.usage import poller
    except ImportError:
        return
    running = getattr(poller, "_poller", None)
    if running is not None and isinstance(getattr(running, "_metrics", None), dict):
        running._metrics = {}


def connect(address: str | None, num_cpus: int | None, log_dir: Path | None = None) -> Connection:
    """The run's connection (made once: the CLI connects before the store opens, the engine then reuses it).
    Raises ClusterProblem (one sentence) when the cluster cannot be used; Ray's log lines go to
    log_dir/ray.log once it is reached."""
    global _current
    if _current is not None and not _current.closed:
        return _current
    try:
        import ray
        from ray.data import DataContext
    except ImportError:
        raise RayMissing(f"{option('engine', 'ray')} needs Ray: pip install 'imgtag[ray]'") from None
    # Ray's Python warnings (token auth notice, deprecations, execution summaries) are not the operator's
    # business here: imgtag's progress line and summary are. Errors still reach ray.log.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\.")
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False      # imgtag's own progress line is the operator view
    ctx.print_on_execution_start = False
    route = StderrRoute()
    try:
        if ray.is_initialized():
            # The host process's own Ray (a notebook, tests): its stderr is not ours to take.
            conn = Connection(started_here=False, address=None, route=route)
        else:
            route.start()
            _no_auto_init()
            address = address or os.environ.get("RAY_ADDRESS") or None
            head = None
            if address is None:
                _auth_as_a_local_start()
                head = _start_head(num_cpus)
            else:
                _probe(address)
            try:
                _join(head.address if head is not None else address, route)
            except BaseException:
                if head is not None:
                    head.stop(graceful=False)
                raise
            conn = Connection(started_here=True, address=address, route=route, head=head)
        conn.nodes = _alive_nodes()
        if log_dir is not None and route.started:
            route.keep_in(log_dir)
    except BaseException:
        route.restore()
        raise
    _current = conn
    return conn


def _no_auto_init() -> None:
    """Ray calls ray.init() (a new local cluster) when any of its calls finds this process not connected. A run
    interrupted mid-run leaves the cluster while Ray Data's executor, in imgtag's pump thread, is still waiting
    for its first batch; as that executor shut down it made such a call, which started a second cluster inside
    imgtag's own process group, and two of its agents outlived imgtag (3 runs in 20). imgtag connects and leaves
    explicitly, so in this process that start is switched off (the flag Ray reads RAY_ENABLE_AUTO_CONNECT into
    at import): the late call fails in the pump thread, which ends with the process."""
    try:
        from ray._private import auto_init_hook
    except ImportError:
        return
    auto_init_hook.enable_auto_connect = False


def _auth_as_a_local_start() -> None:
    """Ray 2.60's ray.init() turns token authentication on for a local cluster it starts (unless RAY_AUTH_MODE says
    otherwise) by setting RAY_AUTH_MODE in its own process, and makes a token in ~/.ray when there is none; a driver
    joining an address never does. The head's ray.init() runs in another process now, so the mode is set here, as
    ray.init() sets it: the head inherits it (and makes the token), and this driver joins with it."""
    try:
        from ray._private.authentication.authentication_token_setup import enable_token_auth_by_default
    except ImportError:  # another Ray: its own default applies to both processes alike
        return
    enable_token_auth_by_default()


def _start_head(num_cpus: int | None) -> local_head.LocalHead:
    try:
        head = local_head.start(num_cpus)
    except local_head.HeadFailed as exc:
        raise ClusterProblem(f"cannot start a local Ray cluster: {exc}"[:300]) from None
    # Stopped by Connection.close; also at exit, for a program that never closes it (nothing may outlive it).
    atexit.register(head.stop)
    return head


def _join(address: str | None, route: StderrRoute) -> None:
    import ray

    # ray.init makes SIGTERM `sys.exit(15)` for good: a service manager's stop then exited 15 with no
    # sentence, and the run's own answer to SIGTERM lost its handler once the run ended. The program's
    # handler is put back; a SIGTERM Ray's handler took during the start is handed to it.
    previous = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # wrong address, missing token, cluster down: one sentence
        raise ClusterProblem(_failure(address, exc, route.captured())) from None
    except SystemExit as exc:
        if exc.code == signal.SIGTERM and callable(previous):
            previous(signal.SIGTERM, None)
        raise
    finally:
        if threading.current_thread() is threading.main_thread() and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _probe(address: str) -> None:
    """A cluster someone else started, checked in milliseconds: is anything listening, and does it take this
    process's credentials (token authentication)."""
    m = _HOST_PORT.match(address)
    if m is None:
        return  # "auto", "ray://...": Ray resolves those itself
    host, port = m.group("host").strip("[]"), int(m.group("port"))
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterProblem(f"no Ray cluster answers at {address} ({exc.strerror or type(exc).__name__}): "
                             f"check {option('ray_address')} (or RAY_ADDRESS) and that `ray start --head` runs there; "
                             "nothing was created") from None
    try:
        from ray._raylet import GcsClient  # the client ray.init uses; one call, no retries

        GcsClient(address=address)
    except Exception as exc:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            raise ClusterProblem(_token_sentence(address)) from None
        # Anything else: let ray.init try and say what it finds.


def _token_sentence(address: str) -> str:
    where = ("the file RAY_AUTH_TOKEN_PATH names" if os.environ.get("RAY_AUTH_TOKEN_PATH")
             else "~/.ray/auth_token, or the file RAY_AUTH_TOKEN_PATH names, or RAY_AUTH_TOKEN itself")
    if (os.environ.get(AUTH_MODE) or "").lower() == "token":
        return (f"the Ray cluster at {address} refused this machine's token: put the cluster's token (on the head "
                f"node, `ray get-auth-token` prints it) in {where}; nothing was created")
    return (f"the Ray cluster at {address} uses token authentication: set {AUTH_MODE}=token in this shell, with "
            f"the cluster's token (on the head node, `ray get-auth-token` prints it) in {where}; "
            "nothing was created")


def _failure(address: str | None, exc: BaseException, ray_said: str) -> str:
    if address is not None and ("InvalidAuthToken" in ray_said or type(exc).__name__ == "AuthenticationError"):
        return _token_sentence(address)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"cannot use the Ray cluster: {type(exc).__name__}: {first}"[:300]


def _alive_nodes() -> int:
    import ray

    try:
        return sum(1 for node in ray.nodes() if node.get("Alive"))
    except Exception:
        return 0


def usage_problem(engine: str, mode: str, budget: float | None, actors: int, batch_size: int) -> str | None:
    """What `--engine` cannot do, as one sentence (exit 2), before anything is created or paid for."""
    import importlib.util

    if engine not in ("local", "ray"):
        return f"{option('engine')} must be local or ray, not {engine!r}"
    if engine != "ray":
        return None
    ray = option("engine", "ray")
    if mode != "sync":
        return f"{ray} runs synchronous requests only; use {option('mode', 'sync')} (or the local engine for batch)"
    if budget is not None:
        return f"{option('budget')} is not supported with {ray} yet (the spend cap is enforced by the local engine)"
    if actors < 1 or batch_size < 1:
        return f"{option('ray_actors')} and {option('ray_batch_size')} must be at least 1"
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        return f"{ray} needs Ray: pip install 'imgtag[ray]'"
    return None
