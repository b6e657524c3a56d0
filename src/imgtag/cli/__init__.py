"""The command line: the commands and their arguments (commands.py, params.py), the wording a person reads and
the terminal it fits (costview.py, status.py, screen.py), Ctrl-C and SIGTERM (interrupt.py) and the fast exit
(fastexit.py).

Every command calls the use cases in app/, the same functions the Python API (api.py) calls. `imgtag.cli:entry`
is the console script (pyproject.toml).
"""

from __future__ import annotations

import os
from typing import Any


def entry() -> None:
    """The `imgtag` command (and `python -m imgtag`). A Ctrl-C while the command line itself loads (its first
    tenth of a second: typer and the commands) ends it with the status a shell expects after Ctrl-C and no
    traceback, as one at any later moment does; nothing has been started or written by then."""
    try:
        from imgtag.cli.commands import entry as run_command
    except KeyboardInterrupt:
        from imgtag.cli.interrupt import EXIT_SIGINT  # a few standard modules: loads in a blink

        os._exit(EXIT_SIGINT)
    run_command()


def __getattr__(name: str) -> Any:  # `app` and `main` load the commands only when asked for
    if name in ("app", "main"):
        from imgtag.cli import commands

        return getattr(commands, name)
    raise AttributeError(f"module 'imgtag.cli' has no attribute {name!r}")


__all__ = ["app", "entry", "main"]
