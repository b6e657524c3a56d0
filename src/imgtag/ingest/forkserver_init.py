"""Imported by the forkserver only (first in its preload list), before anything slow is imported.

Never import this module elsewhere: it changes the importing process's signal dispositions and how its children
start. Children forked by the forkserver inherit all three settings (the forkserver restores, in each child, the
handlers it had after its preloads), so decode workers ignore Ctrl-C from their first instruction, not from their
initializer on.

multiprocessing makes every new worker import the parent's main module (as ``__mp_main__``) so that functions
defined there can be unpickled. Decode workers run only imgtag's own functions, and that import is harmful: a
user's script that calls ``imgtag.tag()`` at top level without an ``if __name__ == "__main__":`` guard would run
again in every worker, and a script read from stdin cannot be found at all. The forkserver's children therefore
skip it. Whoever else uses this process's forkserver shares that (docs/python-api.md says so).
"""

import sys
from multiprocessing import spawn
from types import TracebackType

from imgtag.ingest.lifeline import die_with_parent, ignore_interrupts


def _keep_main(_: str) -> None:
    """Leave the worker's ``__main__`` as the forkserver's, instead of importing the parent's script."""


def _quiet_late_start(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """The forkserver's children report a failed start through this hook. A decode worker forked just as imgtag
    exits (a Ctrl-C while the pool was starting) finds the pool's semaphores already removed by its parent:
    FileNotFoundError while rebuilding them. It had no work to do; its traceback would be noise on the user's
    terminal after their Ctrl-C. Anything else is printed as usual."""
    if issubclass(kind, FileNotFoundError) and tb is not None:
        import traceback

        if any(frame.name == "__setstate__" and frame.filename.endswith("synchronize.py")
               for frame in traceback.extract_tb(tb)):
            return
    sys.__excepthook__(kind, value, tb)


ignore_interrupts()
die_with_parent()
sys.excepthook = _quiet_late_start
spawn._fixup_main_from_path = _keep_main  # type: ignore[attr-defined]
spawn._fixup_main_from_name = _keep_main  # type: ignore[attr-defined]
