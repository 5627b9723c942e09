"""SimHash fuzzy dedup (Ziya2 step 3; Charikar 2002, Manku et al. 2007).

Fingerprint: 64-bit SimHash (dataflow.core.hashing.simhash64) over shingles of the fingerprint form:
character 4-grams for text written mostly in spaceless scripts (zh/ja, as in MNBVC), word 3-grams
otherwise (text-dedup). DE's near-duplicate estimate calls `record_simhash` and `close_pairs` with CD's own
settings, so both measure the same thing.
Candidates: with `blocks` = max_distance + 1 blocks, two fingerprints within Hamming distance k agree on at
least one whole block (pigeonhole), so records are joined on (block index, block value) and each pair is
checked by its exact Hamming distance. With `verify_jaccard` set, a pair must also share that share of its
shingles (verify.py), which keeps templated short texts whose fingerprints happen to be close apart; the
step checks each record against its earliest close record first and stops at the first that passes
(verify.first_match_edges, up to `verify_rounds` candidates), so a cluster of k copies costs k - 1 checks.
DE's estimate (`similar_pairs`) checks every close pair of its small sample.
Connected components (components.py) pick the earliest (date, id) of each cluster; a removed record's `_dup_of`
is a record it passed the check against directly (components.verified_parents). SimHash similarity is
not transitive, so a chain a~b~c puts a and c in one cluster, as in text-dedup's union-find.
"""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

from dataflow.core.hashing import block_bounds, simhash64, simhash_of, to_signed64
from dataflow.core.text import Shingled
from dataflow.stages.dedup.components import ORDER, Context, checkpoint, checkpoint_rows, clusters, mark_from_components
from dataflow.stages.dedup.verify import (check_pairs, first_match_edges, ngrams, pair_sources, step_sets,
                                          verify_pairs, with_shingle_sets)
from dataflow.core.confschema import Count, Float, Int, optional_section
from dataflow.stages.dedup.step import Step


def record_simhash(text: str | None, scfg: dict, ctx: Context) -> int | None:
    """Signed 64-bit SimHash of a record (scfg = `dedup.simhash`), or None when it has fewer than
    `min_features` shingles."""
    return shingled_simhash(ctx.shingled(text), scfg)


def shingled_simhash(sh: Shingled, scfg: dict) -> int | None:
    """`record_simhash` of an already prepared text (dataflow.core.text.Shingled)."""
    if int(scfg["bits"]) != 64:
        raise ValueError("dedup.simhash.bits: only 64-bit SimHash is implemented")
    char_n, word_n = int(scfg["char_ngram"]), int(scfg["word_ngram"])
    if sh.count(char_n, word_n) < int(scfg["min_features"]):
        return None
    if sh.shingle_hash == "fast64":
        return to_signed64(simhash_of(sh.gram_hashes(char_n, word_n)))
    return to_signed64(simhash64(sh.shingles(char_n, word_n)))


def with_simhash(df, scfg: dict, ctx: Context, column: str = "simhash"):
    """Append the signed SimHash column (null for texts too short to fingerprint)."""
    from pyspark.sql import functions as F

    @F.pandas_udf("long")
    def fingerprint(text: pd.Series) -> pd.Series:
        return pd.Series([record_simhash(t, scfg, ctx) for t in text], dtype="Int64")

    return df.withColumn(column, fingerprint("text"))


def close_pairs(fp, key: str, column: str, scfg: dict):
    """Pairs (a < b) of `key` values whose fingerprints in `column` differ in at most `max_distance` bits,
    found by the pigeonhole block join; DataFrame(a, b)."""
    from pyspark.sql import functions as F

    k, blocks = int(scfg["max_distance"]), int(scfg["blocks"])
    if blocks <= k:
        raise ValueError(f"dedup.simhash.blocks ({blocks}) must exceed max_distance ({k}) for the pigeonhole split")
    bounds = block_bounds(int(scfg["bits"]), blocks)
    keyed = fp.where(F.col(column).isNotNull()).select(
        key, column,
        F.explode(F.array(*[F.struct(F.lit(i).alias("blk"),
                                     F.shiftrightunsigned(column, s).bitwiseAND(F.lit((1 << w) - 1).cast("long")).alias("val"))
                            for i, (s, w) in enumerate(bounds)])).alias("_b"))
    keyed = keyed.select(key, column, "_b.blk", "_b.val")
    a = keyed.select(F.col(key).alias("a"), F.col(column).alias("_ha"), "blk", "val")
    b = keyed.select(F.col(key).alias("b"), F.col(column).alias("_hb"), "blk", "val")
    return (a.join(b, ["blk", "val"]).where(F.col("a") < F.col("b"))
            .where(F.bit_count(F.col("_ha").bitwiseXOR(F.col("_hb"))) <= k)
            .select("a", "b").distinct())


def similar_pairs(fp, key: str, scfg: dict, ctx: Context):
    """(candidates, pairs): the pairs within `max_distance` and, when `verify_jaccard` is set, those of
    them whose shingles overlap enough (every close pair is checked). `fp` holds `key`, `text` and the
    `simhash` column. DE's near-duplicate estimate calls this on its sample."""
    candidates = checkpoint(close_pairs(fp, key, "simhash", scfg), ctx.scratch)
    if scfg.get("verify_jaccard") is None:
        return candidates, candidates
    sets = with_shingle_sets(fp, key, *ngrams(scfg), ctx)
    return candidates, verify_pairs(candidates, sets, float(scfg["verify_jaccard"]), key)


def mark(df, cfg: dict, ctx: Context, sets=None):
    """sets: the fingerprint frame (fingerprints.py) with the records' shingle sets, for verification when
    `df` carries the precomputed `_simhash` instead of text."""
    from pyspark.sql import functions as F

    scfg = cfg["simhash"]
    if "_simhash" in df.columns:    # computed once with the other fingerprints (fingerprints.py)
        fp = df.withColumn("simhash", F.col("_simhash"))
    else:
        fp = checkpoint(with_simhash(df, scfg, ctx), ctx.scratch)
    candidates, n_candidates = checkpoint_rows(close_pairs(fp, ORDER, "simhash", scfg), ctx.scratch)
    star: dict = {}
    pairs = candidates
    if scfg.get("verify_jaccard") is not None:   # checked as stars (verify.first_match_edges), not all pairs
        src = (step_sets(sets, "simhash") if sets is not None else
               checkpoint(with_shingle_sets(fp, ORDER, *ngrams(scfg), ctx), ctx.scratch))
        src = pair_sources(src, candidates, ctx.scratch)     # every round checks some of these pairs
        pairs, star = first_match_edges(candidates, lambda p: check_pairs(p, src, float(scfg["verify_jaccard"])),
                                        int(scfg["verify_rounds"]), ctx.scratch)
    labels, parents, cc = clusters(pairs, int(scfg["max_iterations"]), ctx.scratch, ctx.one_task_edges)
    out = mark_from_components(fp, labels, "simhash", parents)

    def stats(annotated) -> dict:
        return {"fingerprinted": annotated.where(F.col("simhash").isNotNull()).count(),
                "too_short": annotated.where(F.col("simhash").isNull()).count(),
                "candidate_pairs": n_candidates, **star, "verified_pairs": cc["edges"], "cc_rounds": cc["cc_rounds"],
                "components": cc["cc"]}

    return out, stats


STEP = Step("simhash", mark, summary="64-bit SimHash, Hamming <= max_distance, connected components",
            verifies=True, adds=("simhash",),
            spec=optional_section({"bits": Int(8, 64), "max_distance": Count(0), "blocks": Count(1),
                                   "char_ngram": Count(1), "word_ngram": Count(1), "min_features": Count(0),
                                   "verify_jaccard": Float(0, 1, nullable=True), "verify_rounds": Count(1),
                                   "max_iterations": Count(1)}))
