"""The command line: the commands and their arguments (commands.py, params.py), the wording a person reads and
the terminal it fits (costview.py, status.py, screen.py), Ctrl-C and SIGTERM (interrupt.py) and the fast exit
(fastexit.py).

Every command calls the use cases in app/, the same functions the Python API (api.py) calls. `imgtag.cli:entry`
is the console script (pyproject.toml).
"""

from imgtag.cli.commands import app, entry, main

__all__ = ["app", "entry", "main"]
