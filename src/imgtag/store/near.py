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


class StoredNearIndex:
    """Near-duplicate lookups against every indexed file of the store, earlier runs' included."""

    def __init__(self, db: sqlite3.Connection, max_distance: int = 6) -> None:
        if not 0 <= max_distance <= 64:
            raise ValueError("max_distance must be between 0 and 64")
        self.db = db
        self.max_distance = max_distance
        self._flips = _flips(max_distance // BANDS)
        per_band = ",".join("?" * len(self._flips))
        self._probe = ("SELECT file_id, phash FROM near_index WHERE file_id != ? AND ("
                       + " OR ".join(f"b{band} IN ({per_band})" for band in range(BANDS)) + ")")

    def add(self, file_id: int, phash_hex: str) -> int | None:
        """The closest indexed file within max_distance (the earliest file on ties), or None; then this file is
        indexed too (replacing its old hash if its content changed), so chains of similar images point back."""
        row = index_row(file_id, phash_hex)
        value = row[1]
        probes: list[int] = []
        for part in row[2:]:
            probes.extend(part ^ flip for flip in self._flips)
        best: tuple[int, int] | None = None
        for other, other_hash in self.db.execute(self._probe, (file_id, *probes)):
            dist = bin((value ^ other_hash) & ((1 << 64) - 1)).count("1")
            if dist <= self.max_distance and (best is None or (dist, other) < best):
                best = (dist, other)
        self.db.execute("INSERT OR REPLACE INTO near_index(file_id, phash, b0, b1, b2, b3) VALUES (?,?,?,?,?,?)",
                        row)
        return best[1] if best is not None else None

    def forget(self, file_id: int) -> None:
        """A file that can no longer be an original (changed into a copy, or unreadable now)."""
        self.db.execute("DELETE FROM near_index WHERE file_id = ?", (file_id,))
