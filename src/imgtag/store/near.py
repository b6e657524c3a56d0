"""The near-duplicate index, kept in the store (table `near_index`, `_v16_rerun_state`) and only added to.

The same multi-index hashing as ingest/duplicates.NearDuplicateIndex: a 64-bit perceptual hash is split into 4
bands of 16 bits; two hashes at most d bits apart agree, by pigeonhole, in some band up to d // 4 bits, so probing
every band value within that radius finds every candidate. Here the bands are indexed columns, so a rerun never
rebuilds the index from every file's hash, and memory stays flat at any folder size.
"""

from __future__ import annotations

import sqlite3
from itertools import combinations

BANDS = 4
BAND_BITS = 64 // BANDS
BAND_MASK = (1 << BAND_BITS) - 1


def _signed(value: int) -> int:
    """A 64-bit hash as SQLite's signed 64-bit integer."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _bands(value: int) -> list[int]:
    return [(value >> (band * BAND_BITS)) & BAND_MASK for band in range(BANDS)]


def index_row(file_id: int, phash_hex: str) -> tuple[int, int, int, int, int, int]:
    """The near_index row of a file: (file_id, signed hash, band 0..3)."""
    value = int(phash_hex, 16)
    b0, b1, b2, b3 = _bands(value)
    return file_id, _signed(value), b0, b1, b2, b3


def _flips(radius: int) -> list[int]:
    """XOR masks of every 16-bit pattern with at most `radius` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(BAND_BITS), r):
            masks.append(sum(1 << b for b in bits))
    return masks


# While the index holds at most this many files, its bands are also kept in memory and probed there: the SQL probe is
# 68 index seeks per file (about 0.12 ms of the main process's CPU on a first run of small photos), a dict probe a
# few microseconds. Past it the mirror is dropped and SQL answers alone, so memory stays flat (about 5 MB at most).
MIRROR_MAX = 10_000


class _Mirror:
    """The index's rows in memory: band value -> file ids, per band, and each file's hash (signed, as stored)."""

    def __init__(self, rows: list[tuple[int, int]]) -> None:
        self.bands: list[dict[int, list[int]]] = [{} for _ in range(BANDS)]
        self.hashes: dict[int, int] = {}
        for file_id, value in rows:
            self.put(file_id, value)

    def put(self, file_id: int, value: int) -> None:
        self.drop(file_id)
        self.hashes[file_id] = value
        for band, part in enumerate(_bands(value & ((1 << 64) - 1))):
            self.bands[band].setdefault(part, []).append(file_id)

    def drop(self, file_id: int) -> None:
        old = self.hashes.pop(file_id, None)
        if old is not None:
            for band, part in enumerate(_bands(old & ((1 << 64) - 1))):
                ids = self.bands[band][part]
                ids.remove(file_id)
                if not ids:
                    del self.bands[band][part]

    def candidates(self, file_id: int, probes: list[list[int]]) -> list[tuple[int, int]]:
        """What the SQL probe returns: every other file sharing a probed value in some band, with its hash."""
        found: dict[int, int] = {}
        for band, values in enumerate(probes):
            bucket = self.bands[band]
            for probe in values:
                for other in bucket.get(probe, ()):
                    if other != file_id:
                        found[other] = self.hashes[other]
        return list(found.items())


class StoredNearIndex:
    """Near-duplicate lookups against every indexed file of the store, earlier runs' included. Only this object
    changes near_index while it is in use (the run holds the store's lock), so its in-memory mirror stays true."""

    def __init__(self, db: sqlite3.Connection, max_distance: int = 6) -> None:
        if not 0 <= max_distance <= 64:
            raise ValueError("max_distance must be between 0 and 64")
        self.db = db
        self.max_distance = max_distance
        self._flips = _flips(max_distance // BANDS)
        per_band = ",".join("?" * len(self._flips))
        self._probe = ("SELECT file_id, phash FROM near_index WHERE file_id != ? AND ("
                       + " OR ".join(f"b{band} IN ({per_band})" for band in range(BANDS)) + ")")
        self._mirror: _Mirror | None = None
        self._mirror_checked = False  # read lazily: a rerun that adds nothing never loads it

    def _loaded(self) -> _Mirror | None:
        if not self._mirror_checked:
            self._mirror_checked = True
            (count,) = self.db.execute("SELECT COUNT(*) FROM near_index").fetchone()
            if count < MIRROR_MAX:
                self._mirror = _Mirror(self.db.execute("SELECT file_id, phash FROM near_index").fetchall())
        return self._mirror

    def add(self, file_id: int, phash_hex: str) -> int | None:
        """The closest indexed file within max_distance (the earliest file on ties), or None; then this file is
        indexed too (replacing its old hash if its content changed), so chains of similar images point back."""
        row = index_row(file_id, phash_hex)
        value = row[1]
        probes = [[part ^ flip for flip in self._flips] for part in row[2:]]
        mirror = self._loaded()
        found = (mirror.candidates(file_id, probes) if mirror is not None
                 else self.db.execute(self._probe, (file_id, *(p for values in probes for p in values))))
        best: tuple[int, int] | None = None
        for other, other_hash in found:
            dist = bin((value ^ other_hash) & ((1 << 64) - 1)).count("1")
            if dist <= self.max_distance and (best is None or (dist, other) < best):
                best = (dist, other)
        self.db.execute("INSERT OR REPLACE INTO near_index(file_id, phash, b0, b1, b2, b3) VALUES (?,?,?,?,?,?)",
                        row)
        if mirror is not None:
            mirror.put(file_id, value)
            if len(mirror.hashes) > MIRROR_MAX:
                self._mirror = None  # SQL alone from here: memory stays flat at any folder size
        return best[1] if best is not None else None

    def forget(self, file_id: int) -> None:
        """A file that can no longer be an original (changed into a copy, or unreadable now)."""
        self.db.execute("DELETE FROM near_index WHERE file_id = ?", (file_id,))
        if self._mirror is not None:
            self._mirror.drop(file_id)
