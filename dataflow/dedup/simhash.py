"""SimHash fuzzy dedup (Ziya2 step 3; Charikar 2002, Manku et al. 2007).

Fingerprint: 64-bit SimHash over shingles (character 4-grams for zh/ja/ko as in MNBVC, word 3-grams
otherwise as in text-dedup), each shingle hashed with xxh3-64 and counted once per occurrence.
Candidates: with `blocks` = max_distance + 1 blocks, two fingerprints within Hamming distance k agree on at
least one whole block (pigeonhole), so records are joined on (block index, block value). Each candidate
pair is verified by its exact Hamming distance, and connected components (components.py) pick the
earliest (date, id) of each cluster. SimHash similarity is not transitive, so a chain a~b~c puts a and c
in one cluster, as in text-dedup's union-find.
"""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

import numpy as np
import xxhash

from .components import ORDER, connected_components, mark_from_components
from .normalize import shingles


def simhash_of(features: list[str], bits: int = 64) -> int:
    """Unsigned SimHash of the features (each occurrence votes once)."""
    if bits != 64:
        raise ValueError("only 64-bit SimHash is implemented")
    counts = np.zeros(64, dtype=np.int64)
    n = len(features)
    step = 1 << 20   # bounded memory for book-length texts: 1M features x 64 bits at a time
    for i in range(0, n, step):
        h = np.fromiter((xxhash.xxh3_64_intdigest(f.encode("utf-8")) for f in features[i:i + step]),
                        dtype=np.uint64)
        counts += np.unpackbits(h.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
    # bit j of byte b in little-endian order is bit 8b+j of the integer: the column order is the bit order
    out = 0
    for j in range(64):
        if 2 * counts[j] > n:
            out |= 1 << j
    return out


def to_signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def record_simhash(text: str | None, lang: str | None, cfg: dict, t2s_langs=()) -> int | None:
    """Signed 64-bit SimHash of a record, or None when it has fewer than `min_features` shingles."""
    char_langs = set(cfg["char_langs"])
    n = int(cfg["char_ngram"] if lang in char_langs else cfg["word_ngram"])
    feats = shingles(text or "", lang, n, char_langs, t2s_langs)
    if len(feats) < int(cfg["min_features"]):
        return None
    return to_signed(simhash_of(feats, int(cfg["bits"])))


def hamming(a: int, b: int) -> int:
    return bin((a ^ b) & ((1 << 64) - 1)).count("1")


def block_bounds(bits: int, blocks: int) -> list[tuple[int, int]]:
    """(shift, width) of each block; widths differ by at most one."""
    base, extra = divmod(bits, blocks)
    out, start = [], 0
    for i in range(blocks):
        w = base + (1 if i < extra else 0)
        out.append((start, w))
        start += w
    return out


def mark(df, cfg: dict, t2s_langs: frozenset):
    from pyspark.sql import functions as F

    k, blocks = int(cfg["max_distance"]), int(cfg["blocks"])
    if blocks <= k:
        raise ValueError(f"dedup.simhash.blocks ({blocks}) must exceed max_distance ({k}) for the pigeonhole split")
    bounds = block_bounds(int(cfg["bits"]), blocks)

    @F.pandas_udf("long")
    def fingerprint(text: pd.Series, lang: pd.Series) -> pd.Series:
        return pd.Series([record_simhash(t, l, cfg, t2s_langs) for t, l in zip(text, lang)], dtype="Int64")

    fp = df.withColumn("simhash", fingerprint("text", "lang")).localCheckpoint(eager=True)
    keyed = fp.where(F.col("simhash").isNotNull()).select(
        ORDER, "simhash",
        F.explode(F.array(*[F.struct(F.lit(i).alias("blk"),
                                     F.shiftrightunsigned("simhash", s).bitwiseAND(F.lit((1 << w) - 1).cast("long")).alias("val"))
                            for i, (s, w) in enumerate(bounds)])).alias("b"))
    keyed = keyed.select(ORDER, "simhash", "b.blk", "b.val")
    a = keyed.select(F.col(ORDER).alias("a"), F.col("simhash").alias("ha"), "blk", "val")
    b = keyed.select(F.col(ORDER).alias("b"), F.col("simhash").alias("hb"), "blk", "val")
    pairs = (a.join(b, ["blk", "val"]).where(F.col("a") < F.col("b"))
             .where(F.bit_count(F.col("ha").bitwiseXOR(F.col("hb"))) <= k)
             .select("a", "b").distinct())
    labels, cc = connected_components(pairs, int(cfg["max_iterations"]))
    out = mark_from_components(fp, labels, "simhash")

    def stats(annotated) -> dict:
        return {"fingerprinted": annotated.where(F.col("simhash").isNotNull()).count(),
                "too_short": annotated.where(F.col("simhash").isNull()).count(),
                "verified_pairs": cc["edges"], "cc_rounds": cc["cc_rounds"]}

    return out, stats
