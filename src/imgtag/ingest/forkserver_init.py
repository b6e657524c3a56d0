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

from multiprocessing import spawn

from imgtag.ingest.lifeline import die_with_parent, ignore_interrupts


def _keep_main(_: str) -> None:
    """Leave the worker's ``__main__`` as the forkserver's, instead of importing the parent's script."""


ignore_interrupts()
die_with_parent()
spawn._fixup_main_from_path = _keep_main  # type: ignore[attr-defined]
spawn._fixup_main_from_name = _keep_main  # type: ignore[attr-defined]
