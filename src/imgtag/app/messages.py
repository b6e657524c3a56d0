"""Lines a run prints about what it leaves: images in batches an earlier `--mode batch --detach` left, and how an
interruption (an abort, or a graceful stop: app/stopping.py) ended."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from imgtag.util.words import plural

if TYPE_CHECKING:
    from imgtag.request.engine import StopReport


def in_batches_note(count: int, out: Path) -> str:
    """Sync mode never asks these again (that would pay twice): say where they are and what collects them."""
    verb = "is" if count == 1 else "are"
    return (f"{plural(count, 'image')} {verb} in batches still on the server: collect them with "
            f"`imgtag run ... --mode batch` (same paths and --out), or cancel them with `imgtag cancel --out {out}`")


def interrupted_message(live_batches: int, out: str, stop: StopReport | None = None) -> str:
    """The one line printed after an interruption (`stop`: how a graceful stop went, app/stopping.py)."""
    if live_batches:
        noun, them = ("batch keeps", "it") if live_batches == 1 else ("batches keep", "them")
        return (f"interrupted; {live_batches} submitted {noun} running on the server: run the same command "
                f"again to collect the results, or `imgtag cancel --out {out}` to stop {them}")
    return f"interrupted; {stop_words(stop) if stop else ''}everything answered so far is saved — run the same " \
           "command to continue"


def stop_words(stop: StopReport) -> str:
    """What a graceful stop waited for: the answers that came, and the requests given up on (pending)."""
    came = f"{plural(stop.answered, 'answer') if stop.answered else 'no answer'} arrived while stopping"
    if stop.abandoned:
        came += (f", {plural(stop.abandoned, 'request')} still unanswered after {stop.grace_s:g} s "
                 f"{'was' if stop.abandoned == 1 else 'were'} dropped")
    elif stop.dropped:
        came += f", {plural(stop.dropped, 'request')} in flight dropped by the second stop"
    return came + "; "


def stopping_message(stop: StopReport, again: str = "Ctrl-C") -> str:
    """The sentence said at once when a graceful stop begins (80 columns for up to 99 answers, or 999 after a
    Ctrl-C)."""
    return (f"Stopping: waiting up to {stop.grace_s:g} s for {plural(stop.waiting_for, 'answer')} already paid "
            f"for ({again}: stop now)")


def command_interrupted(command: str | None) -> str:
    """The one line after Ctrl-C (or SIGTERM) that the command did not answer itself: any command but run and
    retry, and those two before their run starts (checking the model, counting the files) or after it ends."""
    if command in ("run", "retry"):
        return interrupted_message(0, "")
    if command == "export":
        return "interrupted; each file is either complete or as it was (none half-written): run the same command " \
               "to write them all"
    return "interrupted"
