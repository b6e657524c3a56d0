"""The stored near-duplicate index answers from an in-memory mirror of its bands while it is small (store/near.py):
the same answers as its SQL probe, for additions, replaced hashes and forgotten files, before and after the mirror
is dropped for size; and no SQL probe while the mirror answers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from imgtag.store import Store
from imgtag.store import near as near_module
from imgtag.store.near import StoredNearIndex


def _files(store: Store, n: int) -> list[int]:
    return [int(store.db.execute("INSERT INTO files(path, display, status) VALUES (?, ?, 'ok') RETURNING id",
                                 (f"/in/{i}.jpg".encode(), f"{i}.jpg")).fetchone()[0]) for i in range(n)]


def _script(n_files: int, steps: int, seed: int) -> list[tuple[str, int, str]]:
    """Adds of fresh hashes and of near copies (a few bits flipped), replacements, and forgets."""
    rng = random.Random(seed)
    seen: list[int] = []
    out: list[tuple[str, int, str]] = []
    for _ in range(steps):
        file_index = rng.randrange(n_files)
        if seen and rng.random() < 0.1:
            out.append(("forget", file_index, ""))
            continue
        if seen and rng.random() < 0.5:
            value = rng.choice(seen)
            for bit in rng.sample(range(64), rng.randrange(0, 9)):
                value ^= 1 << bit
        else:
            value = rng.getrandbits(64)
        seen.append(value)
        out.append(("add", file_index, f"{value:016x}"))
    return out


def _play(tmp: Path, script: list[tuple[str, int, str]], n_files: int) -> list[int | None]:
    with Store(tmp) as store:
        ids = _files(store, n_files)
        index = StoredNearIndex(store.db, 6)
        answers: list[int | None] = []
        for op, file_index, phash in script:
            if op == "add":
                answers.append(index.add(ids[file_index], phash))
            else:
                index.forget(ids[file_index])
        return answers


@pytest.mark.parametrize("seed", [1, 2])
def test_the_mirror_answers_as_the_sql_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    script = _script(120, 400, seed)
    mirrored = _play(tmp_path / "mirror", script, 120)
    monkeypatch.setattr(near_module, "MIRROR_MAX", 50)  # dropped part way through: SQL from then on
    part_way = _play(tmp_path / "part", script, 120)
    monkeypatch.setattr(near_module, "MIRROR_MAX", 0)   # SQL alone
    sql = _play(tmp_path / "sql", script, 120)
    assert mirrored == sql == part_way
    assert sum(a is not None for a in sql) > 50  # the near copies were found


def test_no_sql_probe_while_the_mirror_answers(tmp_path: Path) -> None:
    with Store(tmp_path / "out") as store:
        ids = _files(store, 30)
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        index = StoredNearIndex(store.db, 6)
        rng = random.Random(3)
        for file_id in ids:
            index.add(file_id, f"{rng.getrandbits(64):016x}")
        store.db.set_trace_callback(None)
    assert not [s for s in statements if s.startswith("SELECT file_id, phash FROM near_index WHERE file_id !=")]
