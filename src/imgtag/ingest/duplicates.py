"""Duplicate indexes over hashes the decode workers computed: pure Python, so the main process (which keeps
them) never imports numpy, scipy or Pillow for them (ingest/prefilter.py computes the hashes)."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex-encoded hashes."""
    return bin(int(a_hex, 16) ^ int(b_hex, 16)).count("1")


_BANDS = 4
_BAND_BITS = 64 // _BANDS
_BAND_MASK = (1 << _BAND_BITS) - 1


class NearDuplicateIndex:
    """Streaming near-duplicate finder over 64-bit perceptual hashes, sub-quadratic.

    Multi-index hashing: the hash is split into 4 bands of 16 bits. If two hashes differ in at
    most d bits, then by pigeonhole some band differs in at most d // 4 bits, so probing every
    band value within that radius (17 probes per band for d = 6) finds every candidate: no false
    negatives, and each probe touches only the few hashes sharing a 16-bit band value.
    """

    def __init__(self, max_distance: int = 6) -> None:
        if not 0 <= max_distance <= 64:
            raise ValueError("max_distance must be between 0 and 64")
        self.max_distance = max_distance
        radius = max_distance // _BANDS
        # XOR masks of every 16-bit pattern with at most `radius` bits set.
        self._flips = [0]
        for r in range(1, radius + 1):
            for bits in combinations(range(_BAND_BITS), r):
                mask = 0
                for b in bits:
                    mask |= 1 << b
                self._flips.append(mask)
        self._buckets: list[defaultdict[int, list[int]]] = [defaultdict(list) for _ in range(_BANDS)]
        self._hashes: list[int] = []
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, phash_hex: str) -> str | None:
        """Key of the closest earlier hash within max_distance (earliest on ties), or None.

        The new hash is remembered either way, so chains of similar images all point back.
        """
        value = int(phash_hex, 16)
        best: tuple[int, int] | None = None  # (distance, index)
        seen: set[int] = set()
        for band in range(_BANDS):
            part = (value >> (band * _BAND_BITS)) & _BAND_MASK
            bucket = self._buckets[band]
            for flip in self._flips:
                for idx in bucket.get(part ^ flip, ()):
                    if idx in seen:
                        continue
                    seen.add(idx)
                    dist = bin(value ^ self._hashes[idx]).count("1")
                    if dist <= self.max_distance and (best is None or (dist, idx) < best):
                        best = (dist, idx)
        idx = len(self._hashes)
        self._hashes.append(value)
        self._keys.append(key)
        for band in range(_BANDS):
            self._buckets[band][(value >> (band * _BAND_BITS)) & _BAND_MASK].append(idx)
        return self._keys[best[1]] if best else None


class ExactDuplicateIndex:
    """First key seen for each content hash: byte-identical files are tagged once."""

    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._first)

    def add(self, key: str, sha256_hex: str) -> str | None:
        """Key of the earlier file with the same sha256, or None (and remember this one)."""
        digest = bytes.fromhex(sha256_hex)  # half the memory of the hex string
        first = self._first.get(digest)
        if first is None:
            self._first[digest] = key
        return first
