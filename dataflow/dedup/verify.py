"""Verification of fuzzy candidate pairs: the exact Jaccard similarity of the two records' shingle sets,
and which pairs are checked at all.

SimHash distance and MinHash band collisions are estimates; a pair becomes a duplicate edge only when the
shingles of the two texts (the step's own n-grams over the fingerprint form) overlap by at least the
threshold. Only the candidates' texts are joined back (a broadcast semi-join of the candidate keys, then one
join per side).

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

import pandas as pd  # pandas_udf type hints are resolved against module globals

from ..text import jaccard, shingles
from .components import ORDER, Context, checkpoint


def pair_jaccard(text_a: str | None, text_b: str | None, char_n: int, word_n: int, ctx: Context) -> float:
    return jaccard(shingles(text_a, char_n, word_n, ctx.zh_fold, ctx.char_share),
                   shingles(text_b, char_n, word_n, ctx.zh_fold, ctx.char_share))


def verify_pairs(pairs, df, char_n: int, word_n: int, ctx: Context, threshold: float, key: str = ORDER):
    """pairs: DataFrame(a, b) of `key` values; df: the records (key, text). Returns the pairs whose
    shingle Jaccard is at least `threshold`."""
    return check_pairs(pairs, df, char_n, word_n, ctx, threshold, key).where("ok").select("a", "b")


def check_pairs(pairs, df, char_n: int, word_n: int, ctx: Context, threshold: float, key: str = ORDER):
    """DataFrame(a, b, ok): every pair of `pairs`, ok = its shingle Jaccard is at least `threshold`."""
    from pyspark.sql import functions as F

    @F.pandas_udf("double")
    def jac(ta: pd.Series, tb: pd.Series) -> pd.Series:
        # a representative meets many copies: each distinct text of the batch is shingled once
        sets: dict = {}

        def shingle_set(t):
            if t is None:
                return frozenset()
            got = sets.get(t)
            if got is None:
                got = sets[t] = frozenset(shingles(t, char_n, word_n, ctx.zh_fold, ctx.char_share))
            return got

        return pd.Series([jaccard(shingle_set(x), shingle_set(y)) for x, y in zip(ta, tb)], dtype="float64")

    # only the candidates' texts travel: a broadcast semi-join picks them before the pair joins
    need = pairs.select(F.col("a").alias(key)).union(pairs.select(F.col("b").alias(key))).distinct()
    texts = df.select(key, "text").join(F.broadcast(need), key, "left_semi")
    return (pairs.join(texts.select(F.col(key).alias("a"), F.col("text").alias("_ta")), "a")
            .join(texts.select(F.col(key).alias("b"), F.col("text").alias("_tb")), "b")
            .select("a", "b", (jac("_ta", "_tb") >= F.lit(float(threshold))).alias("ok")))


def star_edges(buckets, check, rounds: int):
    """Duplicate edges from LSH buckets, linear in the bucket sizes: each round links every member of a
    bucket to the bucket's smallest member, a star of k - 1 pairs where all pairs would be k(k-1)/2.
    buckets: DataFrame(ORDER, band, key); check: DataFrame(a, b) -> DataFrame(a, b, ok).

    The pairs a round checks are distinct across bands (a pair sharing 5 bands is checked once). The
    members that pass are linked to the centre and leave the bucket; the centre leaves too; those that fail
    stay, and the next round links them to the smallest of themselves, up to `rounds` rounds. A dense cluster
    of copies is resolved in one round (every copy passes against its earliest member); a bucket of k
    unrelated members would need k - 1 rounds, so members still sharing a bucket after the last round are
    counted (`unresolved`), never silently treated as checked. Returns (edges, stats)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("band", "key")
    cur = checkpoint(buckets.withColumn("_k", F.count(F.lit(1)).over(w)).where("_k > 1").drop("_k"))
    edges, checked, done = None, 0, 0
    for done in range(1, rounds + 1):
        cur = cur.withColumn("_m", F.min(ORDER).over(w))
        pairs = cur.where(F.col(ORDER) != F.col("_m")).select(F.col("_m").alias("a"), F.col(ORDER).alias("b")).distinct()
        res = checkpoint(check(pairs))
        checked += res.count()
        ok = res.where("ok").select("a", "b")
        edges = ok if edges is None else edges.unionByName(ok)
        failed = res.where(~F.col("ok")).select(F.col("a").alias("_m"), F.col("b").alias(ORDER))
        cur = cur.join(failed, ["_m", ORDER], "left_semi").drop("_m")
        cur = checkpoint(cur.withColumn("_k", F.count(F.lit(1)).over(w)).where("_k > 1").drop("_k"))
        if cur.limit(1).count() == 0:
            break
    unresolved = cur.select(ORDER).distinct().count() if done == rounds else 0
    return edges, {"pairs_checked": checked, "verify_rounds": done, "unresolved": unresolved}


def first_match_edges(pairs, check, rounds: int):
    """Duplicate edges from candidate pairs (a < b) that are not buckets (SimHash's pairs within the Hamming
    distance), linear in the records: each record b is checked against its smallest candidate a first; once
    one check passes, b is linked and its other candidates are not checked; a failure moves b on to its next
    smallest candidate, up to `rounds` rounds. A cluster of k near-copies costs k - 1 checks instead of
    k(k-1)/2. Records with candidates still unchecked after the last round are counted (`unresolved`).
    check: DataFrame(a, b) -> DataFrame(a, b, ok). Returns (edges, stats)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranked = checkpoint(pairs.select("a", "b").distinct()
                        .withColumn("_r", F.row_number().over(Window.partitionBy("b").orderBy("a"))))
    linked, edges, checked, done, left = None, None, 0, 0, None
    for done in range(1, rounds + 1):
        todo = ranked.where(F.col("_r") == done).select("a", "b")
        if linked is not None:
            todo = todo.join(linked, "b", "left_anti")
        res = checkpoint(check(todo))
        checked += res.count()
        ok = res.where("ok").select("a", "b")
        edges = ok if edges is None else edges.unionByName(ok)
        now = ok.select("b")
        linked = now if linked is None else checkpoint(linked.unionByName(now))
        left = ranked.where(F.col("_r") > done).select("b").join(linked, "b", "left_anti")
        if left.limit(1).count() == 0:
            break
    unresolved = left.select("b").distinct().count() if done == rounds else 0
    return edges, {"pairs_checked": checked, "verify_rounds": done, "unresolved": unresolved}
