"""Hash helpers shared by every stage: 64-bit values as Spark `long`s, the xxh3 digests, and SimHash.

Spark has no unsigned 64-bit type, so every 64-bit hash stored in a column is the same bits read as a
signed int64 (`to_signed64`); `to_unsigned64` undoes it. SimHash (Charikar 2002) lives here once: CD's
fuzzy step (`dataflow.stages.dedup.simhash`) and DE's near-duplicate estimate both call `simhash64`, so they
measure the same thing.
"""
from __future__ import annotations

from hashlib import sha1
from typing import Iterable, Sequence

import numpy as np
import xxhash
from xxhash import xxh3_64_digest as _xxh3_64_digest

MASK64 = (1 << 64) - 1
_SIGN64 = 1 << 63
_SIMHASH_CHUNK = 1 << 16   # features hashed per numpy block: 65,536 x 8 bytes, bounded memory for books


def to_signed64(v: int) -> int:
    """The unsigned 64-bit value `v` as the signed int64 with the same bits (Spark `long`)."""
    v &= MASK64
    return v - (1 << 64) if v >= _SIGN64 else v


def to_unsigned64(v: int) -> int:
    return v & MASK64


def _bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def xxh3_64(data: str | bytes) -> int:
    """Signed xxh3-64 of the UTF-8 bytes (a Spark `long`)."""
    return to_signed64(xxhash.xxh3_64_intdigest(_bytes(data)))


def xxh3_128_hex(data: str | bytes) -> str:
    return xxhash.xxh3_128_hexdigest(_bytes(data))


def sha1_32(features: Iterable[str]) -> np.ndarray:
    """uint32 array: per feature, the first 4 bytes of the SHA-1 of its UTF-8 bytes read little-endian
    (datasketch's `sha1_hash32`, the input hash of MinHash)."""
    return np.frombuffer(b"".join([sha1(f.encode("utf-8")).digest()[:4] for f in features]), dtype="<u4").astype(np.uint32)


def simhash64(features: Sequence[str]) -> int:
    """Unsigned 64-bit SimHash of the features: each occurrence hashed with xxh3-64 votes once per bit;
    bit j is set when more than half of the votes have it set."""
    counts = np.zeros(64, dtype=np.int64)
    n = len(features)
    for i in range(0, n, _SIMHASH_CHUNK):
        # digest() is the canonical big-endian form of the 64-bit value: one buffer for the whole chunk
        h = np.frombuffer(b"".join([_xxh3_64_digest(f.encode("utf-8")) for f in features[i:i + _SIMHASH_CHUNK]]),
                          dtype=">u8").astype(np.uint64)
        # bit j of byte b in little-endian order is bit 8b+j of the integer: the column order is the bit order
        counts += np.unpackbits(h.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
    out = 0
    for j in range(64):
        if 2 * counts[j] > n:
            out |= 1 << j
    return out


def hamming64(a: int, b: int) -> int:
    """Bits that differ between two 64-bit values, signed or unsigned."""
    return bin((a ^ b) & MASK64).count("1")


def block_bounds(bits: int, blocks: int) -> list[tuple[int, int]]:
    """(shift, width) of each block of the pigeonhole split (Manku et al. 2007); widths differ by at most one."""
    base, extra = divmod(bits, blocks)
    out, start = [], 0
    for i in range(blocks):
        w = base + (1 if i < extra else 0)
        out.append((start, w))
        start += w
    return out
