"""Hash helpers shared by every stage: 64-bit values as Spark `long`s, the xxh3 digests, and SimHash.

Spark has no unsigned 64-bit type, so every 64-bit hash stored in a column is the same bits read as a
signed int64 (`to_signed64`); `to_unsigned64` undoes it. SimHash (Charikar 2002) lives here once: CD's
fuzzy step (`dataflow.stages.dedup.simhash`) and DE's near-duplicate estimate both vote with `simhash_of`, so
they measure the same thing.

Shingle hashes (`SHINGLE_HASHES`, chosen by `dedup.shingle_hash`): `sha1` hashes each shingle string with
SHA-1 (datasketch's input hash: one Python call per shingle); `fast64` hashes each word once (`word_hashes`,
one C loop) or each character (`char_hashes`), then every n-gram of them with n - 1 array operations
(`gram_hashes`), no Python call per shingle and no shingle string built. The collision bound of both is that
of the 32 bits MinHash keeps (`low32`; docs/dedup.md).
"""
from __future__ import annotations

from hashlib import sha1
from typing import Iterable, Sequence

import numpy as np
import xxhash
from xxhash import xxh3_64_digest as _xxh3_64_digest

MASK64 = (1 << 64) - 1
_SIGN64 = 1 << 63
_SIMHASH_CHUNK = 1 << 16   # hashes unpacked per numpy block: 65,536 x 64 bits, bounded memory for books


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


# ---------------------------------------------------------------- shingle hashes without a Python call per shingle
SHINGLE_HASHES = ("fast64", "sha1")
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CHAR_SEED = np.uint64(0x243F6A8885A308D3)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over a uint64 array: a bijection of 64-bit values whose every output bit
    depends on every input bit (so equal inputs, and only those, give equal outputs)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def word_hashes(words: Sequence[str]) -> np.ndarray:
    """uint64 per word: SipHash of its UTF-8 bytes under pandas' fixed key, then SplitMix64
    (`pandas.util.hash_array`), computed by one C loop over the words, no Python call per word."""
    import pandas as pd

    if not words:
        return np.zeros(0, np.uint64)
    return pd.util.hash_array(np.array(words, dtype=object), categorize=False).astype(np.uint64, copy=False)


def char_hashes(text: str) -> np.ndarray:
    """uint64 per code point: mix64 of the code point plus a constant (distinct code points, distinct values)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
    with np.errstate(over="ignore"):
        return mix64(cps + _CHAR_SEED)


def fold_rows(m: np.ndarray) -> np.ndarray:
    """uint64 per row of a 2-D uint64 array: h = m[:, 0], then h = mix64(h * golden + m[:, j]) for each next
    column, as one array operation per column over all rows. Order-sensitive; two distinct rows of random
    values collide with probability about 2^-64."""
    h = m[:, 0].copy()
    with np.errstate(over="ignore"):
        for j in range(1, m.shape[1]):
            h = mix64(h * _GOLDEN + m[:, j])
    return h


def gram_hashes(units: np.ndarray, n: int) -> np.ndarray:
    """uint64 per n-gram of consecutive units (words or characters, as their uint64 hashes), in order, one per
    occurrence: `fold_rows` over the sliding windows of n units. A sequence shorter than n gives one value over
    all its units; none gives none."""
    if len(units) == 0:
        return np.zeros(0, np.uint64)
    if len(units) < n:
        return fold_rows(units[None, :])
    return fold_rows(np.lib.stride_tricks.sliding_window_view(units, n))


def low32(h: np.ndarray) -> np.ndarray:
    """The low 32 bits of 64-bit hashes (uint32): the value MinHash permutes and verification intersects."""
    return (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def simhash_of(h: np.ndarray) -> int:
    """Unsigned 64-bit SimHash of features given as their uint64 hashes (one per occurrence): bit j is set when
    more than half of the hashes have it set (the vote of `simhash64`, without hashing)."""
    n = len(h)
    counts = np.zeros(64, dtype=np.int64)
    for i in range(0, n, _SIMHASH_CHUNK):
        # the little-endian bytes of each value: bit j of byte b is bit 8b + j of the integer
        chunk = np.ascontiguousarray(h[i:i + _SIMHASH_CHUNK], dtype="<u8")
        counts += np.unpackbits(chunk.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
    return sum(1 << j for j in range(64) if 2 * counts[j] > n)


def simhash64(features: Sequence[str]) -> int:
    """Unsigned 64-bit SimHash of the features: each occurrence hashed with xxh3-64 votes once per bit
    (`simhash_of`). The `sha1` shingle hash's SimHash; `fast64` votes with the n-gram hashes (`gram_hashes`)."""
    # digest() is the canonical big-endian form of the 64-bit value: one buffer for all features
    return simhash_of(np.frombuffer(b"".join([_xxh3_64_digest(f.encode("utf-8")) for f in features]),
                                    dtype=">u8").astype(np.uint64))


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
