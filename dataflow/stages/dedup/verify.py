"""Verification of fuzzy candidate pairs: the exact Jaccard similarity of the two records' shingle sets,
and which pairs are checked at all.

SimHash distance and MinHash band collisions are estimates; a pair becomes a duplicate edge only when the
shingles of the two texts (the step's own n-grams over the fingerprint form) overlap by at least the
threshold. A record's shingles are hashed once, in the fingerprint pass, into a set of distinct 32-bit
SHA-1 hashes (the values MinHash permutes); a pair's Jaccard is then counted in the JVM as
|A & B| / (|A| + |B| - |A & B|) with `array_intersect`, with no text and no Python per pair. Two distinct
shingles of a pair share a hash with probability about n^2 / 2^33 for n shingles (5e-4 at 3,000
shingles), which moves that pair's Jaccard by 1/n at most. Only the candidates' sets are joined (a
shuffled semi-join of the candidate keys, then one join per side): nothing the size of the data is collected
to the driver or broadcast, so the driver stays bounded whatever the number of candidates.

Which pairs: a cluster of k near-copies of one document holds k(k-1)/2 candidate pairs, and recombined or
templated web text makes such clusters grow with the corpus, so checking every pair grows with the square of
the data. The steps check stars instead, linear in the records: `star_edges` links each LSH bucket's
members to the bucket's earliest member (MinHash), `first_match_edges` links each record to its earliest
candidate that passes (SimHash). A record linked to the earliest copy needs no other link for connected
components to put it in that cluster. What the stars can miss is a record similar to a later member but not
to the earliest one; such members are checked among themselves in further rounds (`verify_rounds`), and
what the last round leaves unchecked is counted in the step's statistics (`unresolved`).
"""
from __future__ import annotations

from dataflow.stages.dedup.components import ORDER, Context, checkpoint, checkpoint_rows

SET = "_set"   # a record's shingle set: array<int> of its distinct shingle hashes (text.Shingled.hash_set)
# the fingerprint frame's sets (fingerprints.py): MinHash's (only when `verify: jaccard`) and SimHash's (only
# with `verify_jaccard`); SH_SET is null where it equals MH_SET (same effective n-gram size)
MH_SET = "_mh_set"
SH_SET = "_sh_set"


def ngrams(scfg: dict) -> tuple[int, int]:
    """(char_ngram, word_ngram) of a fuzzy step's section: the shingles it fingerprints and verifies with."""
    return int(scfg["char_ngram"]), int(scfg["word_ngram"])


def with_shingle_sets(df, key: str, char_n: int, word_n: int, ctx: Context):
    """DataFrame(key, SET) from (key, text): each record's shingle set, computed in one Python pass. CD's
    steps get the sets from the fingerprint pass instead (fingerprints.py); this serves the steps and DE's
    estimate that start from text."""
    from pyspark.sql.types import StructField, StructType

    kf = df.schema[key]
    schema = StructType([StructField(key, kf.dataType), StructField(SET, set_type())])

    def compute(batches):
        import pyarrow as pa

        for b in batches:
            sets = [None if t is None else ctx.shingled(t).hash_set(char_n, word_n)
                    for t in b.column("text").to_pylist()]
            yield pa.RecordBatch.from_arrays([b.column(key), arrow_sets(sets)], names=[key, SET])

    return df.select(key, "text").mapInArrow(compute, schema)


def step_sets(fp, step: str):
    """DataFrame(ORDER, verify.SET): the shingle sets `step` verifies with, from the fingerprint frame."""
    from pyspark.sql import functions as F

    col = F.col(MH_SET) if step == "minhash" else F.coalesce(F.col(SH_SET), F.col(MH_SET))
    return fp.select(ORDER, col.alias(SET))


def set_type():
    from pyspark.sql.types import ArrayType, IntegerType

    return ArrayType(IntegerType(), containsNull=False)


def arrow_sets(sets):
    """Arrow list<int32> of uint32 hash arrays (None: a null list), built from one flat buffer."""
    import numpy as np
    import pyarrow as pa

    lengths = np.array([0 if s is None else len(s) for s in sets], dtype=np.int64)
    offsets = np.zeros(len(sets) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [s for s in sets if s is not None and len(s)]
    flat = np.concatenate(present).astype(np.uint32).view(np.int32) if present else np.zeros(0, np.int32)
    mask = pa.array([s is None for s in sets], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat), mask=mask)


def set_jaccard(a: str, b: str):
    """Spark column: the Jaccard similarity of two shingle-set columns (arrays of distinct values),
    computed in the JVM (0 when both are empty or missing)."""
    from pyspark.sql import functions as F

    ea, eb = F.coalesce(F.col(a), F.array().cast(set_type())), F.coalesce(F.col(b), F.array().cast(set_type()))
    inter = F.size(F.array_intersect(ea, eb))
    union = F.size(ea) + F.size(eb) - inter   # the sets hold distinct values: one hash set per pair, not two
    return F.when(union > 0, inter / union).otherwise(F.lit(0.0))


def verify_pairs(pairs, sets, threshold: float, key: str = ORDER):
    """pairs: DataFrame(a, b) of `key` values; sets: DataFrame(key, SET). Returns the pairs whose shingle
    Jaccard is at least `threshold`."""
    return check_pairs(pairs, sets, threshold, key).where("ok").select("a", "b")


def check_pairs(pairs, sets, threshold: float, key: str = ORDER):
    """DataFrame(a, b, ok): every pair of `pairs`, ok = the Jaccard of the two records' shingle sets
    (`sets`: DataFrame(key, SET)) is at least `threshold`. No text and no Python: the sets were hashed once
    per record, and the pair's intersection and union are counted by Spark."""
    from pyspark.sql import functions as F

    # only the candidates' sets travel: a semi-join picks them before the pair joins. It is a shuffle join,
    # never a broadcast: the candidate keys grow with the data and would pass through the driver
    need = pairs.select(F.col("a").alias(key)).union(pairs.select(F.col("b").alias(key))).distinct()
    got = sets.select(key, SET).join(need, key, "left_semi")
    return (pairs.join(got.select(F.col(key).alias("a"), F.col(SET).alias("_sa")), "a")
            .join(got.select(F.col(key).alias("b"), F.col(SET).alias("_sb")), "b")
            .select("a", "b", (set_jaccard("_sa", "_sb") >= F.lit(float(threshold))).alias("ok")))


def first_pairs_only(check_with, src, scratch: str | None = None, key: str = ORDER):
    """A pair check for `star_edges` whose per-record source (`src`: DataFrame(key, ...), the shingle sets or
    signatures of every record) is cut, once, to the records of the first pairs it is asked about:
    check_with(pairs, source) -> DataFrame(a, b, ok). Every later round of `star_edges` checks members of the
    first round's buckets only, so the later rounds join against the candidates' rows instead of shuffling
    every record's set again (at a million records, about a gigabyte per round). The cut is a shuffled semi-join
    and a checkpoint (components.checkpoint), nothing through the driver."""
    held = []

    def check(pairs):
        if not held:
            held.append(pair_sources(src, pairs, scratch, key))
        return check_with(pairs, held[0])
    return check


def pair_sources(src, pairs, scratch: str | None = None, key: str = ORDER):
    """The rows of `src` (DataFrame(key, ...)) of the records that appear in `pairs` (DataFrame(a, b)),
    materialized once: a shuffled semi-join, then components.checkpoint."""
    from pyspark.sql import functions as F

    need = pairs.select(F.col("a").alias(key)).union(pairs.select(F.col("b").alias(key))).distinct()
    return checkpoint(src.join(need, key, "left_semi"), scratch)


NODE = "_node"   # a record's numeric key inside the LSH rounds: xxhash64 of its `_order` (see `star_edges`)


def star_edges(records, buckets, check, rounds: int, scratch: str | None = None):
    """Duplicate edges from LSH buckets, linear in the bucket sizes: each round links every member of a
    bucket to one centre, a star of k - 1 pairs where all pairs would be k(k-1)/2.
    records: DataFrame(ORDER), one row per record; buckets: DataFrame(ORDER, band, key), one row per record and
    band; check: DataFrame(a, b) of ORDER keys -> DataFrame(a, b, ok).

    The rounds work on numbers only: a record is its NODE, Spark's xxhash64 of its ORDER key (a pure function,
    recomputed wherever needed, never joined), and a bucket is (band index, 64-bit band key), so what the
    rounds shuffle and group is three numbers per bucket row, no string. A bucket's centre is its member with
    the smallest node, a deterministic member that does not depend on the order of the data. Only the pairs a
    round checks are turned back into ORDER keys (a join with `records` on the node), so two records whose
    keys share an xxhash64 (about n^2 / 2^65 for n records) are each checked on their own: a collision can
    only cost a check, never link a record unchecked.

    The pairs a round checks are distinct across bands (a pair sharing 5 bands is checked once). The
    members that pass are linked to the centre and leave the bucket; the centre leaves too; those that fail
    stay, and the next round links them to the smallest of themselves, up to `rounds` rounds. A dense cluster
    of copies is resolved in one round (every copy passes against any member); a bucket of k unrelated
    members would need k - 1 rounds, so members still sharing a bucket after the last round are counted
    (`unresolved`), never silently treated as checked. scratch: components.checkpoint. Returns (edges, stats)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = records.select(F.xxhash64(ORDER).alias(NODE), ORDER)
    w = Window.partitionBy("band", "key")
    edges, checked, done = None, 0, 0
    live = buckets.select(F.xxhash64(ORDER).alias(NODE), "band", "key")
    for r in range(rounds + 1):
        # one window per round over numeric keys: the bucket's size and its smallest node, buckets of one dropped
        cur, shared = checkpoint_rows(live.select(NODE, "band", "key", F.count(F.lit(1)).over(w).alias("_k"),
                                                  F.min(NODE).over(w).alias("_m")).where("_k > 1"), scratch)
        if r == rounds or shared == 0:
            break
        done = r + 1
        pairs = (cur.where(F.col(NODE) != F.col("_m")).select(F.col("_m").alias("_a"), F.col(NODE).alias("_b"))
                 .distinct()
                 .join(names.select(F.col(NODE).alias("_a"), F.col(ORDER).alias("a")), "_a")
                 .join(names.select(F.col(NODE).alias("_b"), F.col(ORDER).alias("b")), "_b")
                 .select("a", "b"))
        res, n = checkpoint_rows(check(pairs), scratch)
        checked += n
        ok = res.where("ok").select("a", "b")
        edges = ok if edges is None else edges.unionByName(ok)
        failed = res.where(~F.col("ok")).select(F.xxhash64("a").alias("_m"), F.xxhash64("b").alias(NODE))
        live = cur.join(failed, ["_m", NODE], "left_semi").select(NODE, "band", "key")
    unresolved = cur.select(NODE).distinct().count() if done == rounds else 0
    return _edges(edges, buckets), {"pairs_checked": checked, "verify_rounds": done, "unresolved": unresolved}


def _edges(edges, df):
    """The union of a round's edges, or an empty DataFrame(a, b) when no round found a candidate."""
    if edges is not None:
        return edges
    key = df.schema[ORDER].dataType.simpleString()
    return df.sparkSession.createDataFrame([], f"a {key}, b {key}")


def first_match_edges(pairs, check, rounds: int, scratch: str | None = None):
    """Duplicate edges from candidate pairs (a < b) that are not buckets (SimHash's pairs within the Hamming
    distance), linear in the records: each record b is checked against its smallest candidate a first; once
    one check passes, b is linked and its other candidates are not checked; a failure moves b on to its next
    smallest candidate, up to `rounds` rounds. A cluster of k near-copies costs k - 1 checks instead of
    k(k-1)/2. Records with candidates still unchecked after the last round are counted (`unresolved`).
    check: DataFrame(a, b) -> DataFrame(a, b, ok); scratch: components.checkpoint. Returns (edges, stats)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranked = checkpoint(pairs.select("a", "b").distinct()
                        .withColumn("_r", F.row_number().over(Window.partitionBy("b").orderBy("a"))), scratch)
    linked, edges, checked, done, left = None, None, 0, 0, None
    for done in range(1, rounds + 1):
        todo = ranked.where(F.col("_r") == done).select("a", "b")
        if linked is not None:
            todo = todo.join(linked, "b", "left_anti")
        res, n = checkpoint_rows(check(todo), scratch)
        checked += n
        ok = res.where("ok").select("a", "b")
        edges = ok if edges is None else edges.unionByName(ok)
        now = ok.select("b")
        linked = now if linked is None else checkpoint(linked.unionByName(now), scratch)
        left = ranked.where(F.col("_r") > done).select("b").join(linked, "b", "left_anti")
        if left.limit(1).count() == 0:
            break
    unresolved = left.select("b").distinct().count() if done == rounds else 0
    return edges, {"pairs_checked": checked, "verify_rounds": done, "unresolved": unresolved}
