"""Checks made before anything is created or paid for: a usable --out folder and inputs that name files.

Both answer with one sentence (a UsageError, exit 2) so a typo never leaves an empty store or empty
results files behind (issue 9 items 7-8).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from imgtag.config.errors import UsageError
from imgtag.config.options import option


def check_out(out: Path) -> None:
    """--out must be a folder, or creatable as one: not a file, not under a file, not read-only."""
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{option('out')} {out} is a file, not a folder; choose a folder for imgtag.db and the "
                             "exports")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"{option('out')} {out} is not writable (read-only folder or file system)")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option('out')} {out} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option('out')} {out} cannot be created: {parent} is not writable")
    _probe(out, parent)


def _probe(out: Path, parent: Path) -> None:
    """Some folders refuse new entries whatever their permissions say (/proc, /sys, root on a read-only mount):
    make and remove the first missing folder, so the store's own mkdir never fails with a raw "[Errno 2]"."""
    first = out.absolute()
    while first.parent != parent:
        first = first.parent
    try:
        first.mkdir()
    except FileExistsError:  # made meanwhile by someone else: usable
        return
    except OSError as exc:
        raise UsageError(f"{option('out')} {out} cannot be created: {parent} does not accept new folders "
                         f"({exc.strerror or exc})") from None
    first.rmdir()


def _reusable(arg: str) -> bool:
    """Arguments discovery can read twice: not stdin, and not an @list that is a pipe (`@<(find ...)`)."""
    if arg == "-":
        return False
    if arg.startswith("@") and len(arg) > 1 and os.path.exists(arg[1:]):
        return os.path.isfile(arg[1:])
    return True


_NAMED = 3  # inputs named in the sentence; an @list may hold thousands


def check_inputs(inputs: Sequence[str], exclude: Sequence[str] = ()) -> None:
    """Every input must match something, and at least one must name a file. An argument or pattern that matches
    nothing is almost always a typo, so it stops the run before anything is sent or written, even when the others
    match (a run that tagged `photos` and then said "nothing matched 'phtos2'" has spent the money on half the
    job). Each input is walked only until its first file (a big tree costs one folder listing); inputs that cannot
    be read twice (stdin, pipes) are trusted, and an @list is one input, matched when any of its entries is (a stale
    line in a list made by `find` is reported by the run, not a reason to refuse the rest)."""
    from imgtag.ingest.discover import DiscoveryStats, discover, printable

    for arg in inputs:
        if any(_same_folder(arg, folder) for folder in exclude):
            # The output folder is never walked (its store and exports are not images to tag), so this input
            # would give nothing: say why rather than "no files to tag" of a folder full of images.
            inside = os.path.join(arg.rstrip("/\\") or arg, "imgtag-out")
            raise UsageError(f"{option('out')} {arg} is the folder to tag; imgtag never tags its own output folder, "
                             f"so give another one, e.g. {option('out', inside)}")
    missing: list[str] = []
    empty: list[str] = []
    found = False
    for arg in (a for a in inputs if _reusable(a)):
        stats = DiscoveryStats()
        if next(iter(discover([arg], stats=stats, exclude=exclude)), None) is not None:
            found = True
        elif stats.missing_args:
            missing.extend(stats.missing_args)
        else:
            empty.append(printable(arg))
    if missing:
        names = ", ".join(repr(m) for m in missing[:_NAMED]) + (
            f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else "")
        raise UsageError(f"nothing matched {names}: no such file or folder")
    if inputs and not found and all(_reusable(a) for a in inputs):
        raise UsageError(f"no files to tag in {', '.join(repr(e) for e in empty)}")


def _same_folder(arg: str, folder: str) -> bool:
    try:
        return os.path.isdir(arg) and os.path.samefile(arg, folder)
    except OSError:
        return False  # the output folder does not exist yet: it cannot be an input
