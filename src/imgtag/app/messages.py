"""The line a sync run prints when some of its images wait in batches an earlier `--mode batch --detach` left."""

from __future__ import annotations

from pathlib import Path

from imgtag.util.words import plural


def in_batches_note(count: int, out: Path) -> str:
    """Sync mode never asks these again (that would pay twice): say where they are and what collects them."""
    verb = "is" if count == 1 else "are"
    return (f"{plural(count, 'image')} {verb} in batches still on the server: collect them with "
            f"`imgtag run ... --mode batch` (same paths and --out), or cancel them with `imgtag cancel --out {out}`")


def interrupted_message(live_batches: int, out: str) -> str:
    """The one line printed after an interruption."""
    if live_batches:
        noun, them = ("batch keeps", "it") if live_batches == 1 else ("batches keep", "them")
        return (f"interrupted; {live_batches} submitted {noun} running on the server: run the same command "
                f"again to collect the results, or `imgtag cancel --out {out}` to stop {them}")
    return "interrupted; everything answered so far is saved — run the same command to continue"


def command_interrupted(command: str | None) -> str:
    """The one line after Ctrl-C (or SIGTERM) that the command did not answer itself: any command but run and
    retry, and those two before their run starts (checking the model, counting the files) or after it ends."""
    if command in ("run", "retry"):
        return interrupted_message(0, "")
    if command == "export":
        return "interrupted; each file is either complete or as it was (none half-written): run the same command " \
               "to write them all"
    return "interrupted"
