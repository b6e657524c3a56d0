"""`imgtag prune`: which files in the store no longer exist on disk, said before anything is removed.

A dry run by default: the count, a few paths, folders that are gone as a whole (a drive that is not mounted looks
like that), and how many of them hold a person's review. `--yes` removes their rows (store/prune.py says what
goes and what stays). Files on disk are only looked at (stat), never opened, written or removed.
"""

from __future__ import annotations

import errno
import os
import shlex
from collections import Counter
from dataclasses import dataclass, field

from imgtag.store import Store
from imgtag.store.prune import missing_candidates, remove_files, reviewed_among

EXAMPLES = 5  # paths named in the report
BATCH = 5_000  # rows read at a time: memory stays flat however many files the store holds
# stat errors that mean "not there": anything else (permission, I/O) means we cannot tell, so the file stays.
GONE = {errno.ENOENT, errno.ENOTDIR}


@dataclass
class PrunePlan:
    checked: int = 0
    missing: list[int] = field(default_factory=list)  # file ids
    examples: list[str] = field(default_factory=list)  # display paths of the first few
    gone_folders: dict[str, int] = field(default_factory=dict)  # a folder argument that is gone -> its files
    reviewed: int = 0  # of the missing, images a person edited, approved or rejected


def is_gone(path: bytes) -> bool:
    """Whether nothing is at this path any more (a broken symlink counts as gone: its image is)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno in GONE
    return False


def plan(store: Store) -> PrunePlan:
    """Check every file the store holds (its path, as found) against the disk."""
    result = PrunePlan()
    per_root: Counter[str] = Counter()
    missing_per_root: Counter[str] = Counter()
    root_there: dict[str, bool] = {}
    after = 0
    while rows := missing_candidates(store.db, after, BATCH):
        for row in rows:
            result.checked += 1
            root = row["root"]
            if root is not None:
                per_root[root] += 1
                if root not in root_there:
                    root_there[root] = not is_gone(os.fsencode(root))
            if (root is not None and not root_there[root]) or is_gone(row["path"]):
                result.missing.append(int(row["id"]))
                if root is not None:
                    missing_per_root[root] += 1
                if len(result.examples) < EXAMPLES:
                    result.examples.append(row["display"])
        after = int(rows[-1]["id"])
    result.gone_folders = {root: n for root, n in sorted(missing_per_root.items())
                           if not root_there[root] and n == per_root[root]}
    result.reviewed = reviewed_among(store.db, result.missing)
    return result


def apply(store: Store, prune_plan: PrunePlan) -> int:
    """Remove the planned files' rows; returns how many went."""
    return remove_files(store, prune_plan.missing)


def report(found: PrunePlan, out: object) -> list[str]:
    """What a dry run says: what would go, and how to make it go."""
    from imgtag.util.words import plural

    verb = "no longer exists" if len(found.missing) == 1 else "no longer exist"
    lines = [f"{plural(len(found.missing), 'file')} in the store {verb} on disk (of {found.checked:,}):"]
    lines += [f"  {path}" for path in found.examples]
    if len(found.missing) > len(found.examples):
        lines.append(f"  ... and {len(found.missing) - len(found.examples):,} more")
    for folder, count in found.gone_folders.items():
        lines.append(f"the folder {folder} is gone with all {plural(count, 'file')} (a drive that is not mounted?)")
    if found.reviewed:
        lines.append(f"{plural(found.reviewed, 'image')} of them {'holds' if found.reviewed == 1 else 'hold'} review"
                     " edits or approvals, which go with them")
    lines.append(f"nothing removed yet: `imgtag prune --out {shlex.quote(str(out))} --yes` removes them from the store "
                 "(files on disk are never touched)")
    return lines
