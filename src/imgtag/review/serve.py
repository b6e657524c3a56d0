"""Run the review server for one target: print the address with its token first, serve until Ctrl-C, then say
so in one line. The server opens its own connection to the store and never takes the folder lock, so it runs
beside `imgtag run` on the same --out."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtag.config.errors import UsageError

if TYPE_CHECKING:
    from imgtag.review.service import Review

DEFAULT_PORT = 8420
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ServeError(UsageError):
    """The server cannot start (port in use, address not available): one sentence, exit 2."""


def _bind(host: str, port: int | None) -> socket.socket:
    """A listening socket: --port exactly, or the default port, else any free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port] if port is not None else [DEFAULT_PORT, 0]
    last: OSError | None = None
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.listen(128)
        return sock
    where = f"{host}:{port}" if port is not None else host
    raise ServeError(f"cannot listen on {where}: {getattr(last, 'strerror', None) or last}")


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def serve(out: Path, review: Review, *, host: str, port: int | None, open_browser: bool,
          say: Callable[[str], None], warn: Callable[[str], None]) -> None:
    """Serve `review` (the service of a target opened by the Python API's `open_review`) until Ctrl-C; the caller
    closes its connection."""
    import uvicorn

    from imgtag.review.server import allowed_hosts, create_app

    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    url = f"http://{url_host(host)}:{actual}/?token={token}"
    app = create_app(review, out, token, allowed_hosts(host, actual))
    say(url)
    if not is_loopback(host):
        warn(f"imgtag review: listening on {host}, not only this computer: anyone who can reach it and has the "
             "address above can change your results")
    if open_browser:
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=2))
    # Ctrl-C (or SIGTERM) asks the server to finish; until uvicorn installs its own handlers (and after it
    # restores them and replays the signal) this one does the same, so no moment shows a traceback.
    def finish(signum: int, frame: Any) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, finish) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    say("imgtag review stopped")
