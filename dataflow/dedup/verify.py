"""Verification of fuzzy candidate pairs: the exact Jaccard similarity of the two records' shingle sets.

SimHash distance and MinHash band collisions are estimates; a pair becomes a duplicate edge only when the
shingles of the two texts (the step's own n-grams over the fingerprint form) overlap by at least the
threshold. Candidate pairs are few next to the records, so only their texts are joined back (a broadcast
semi-join of the candidate keys, then one join per side).
"""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

from ..text import jaccard, shingles
from .components import ORDER, Context


def pair_jaccard(text_a: str | None, text_b: str | None, char_n: int, word_n: int, ctx: Context) -> float:
    return jaccard(shingles(text_a, char_n, word_n, ctx.zh_fold, ctx.char_share),
                   shingles(text_b, char_n, word_n, ctx.zh_fold, ctx.char_share))


def verify_pairs(pairs, df, char_n: int, word_n: int, ctx: Context, threshold: float, key: str = ORDER):
    """pairs: DataFrame(a, b) of `key` values; df: the records (key, text). Returns the pairs whose
    shingle Jaccard is at least `threshold`."""
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
            .where(jac("_ta", "_tb") >= F.lit(float(threshold)))
            .select("a", "b"))
