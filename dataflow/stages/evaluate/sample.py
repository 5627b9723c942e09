"""The seeded, stratified review sample (Ziya2: a random 1% of the processed data).

A document is in the sample when u = xxhash64(seed, id) / 2^53 (uniform in [0, 1), a pure function of
the seed and the id) falls under `sample_share`: the same seed draws the same documents whatever the
partitioning, and every stratum (`evaluate.strata`: source type x lang x quality bucket) gets its share in
expectation. With `min_per_stratum` = k, the k documents of smallest u in each stratum are added too, so a rare
source type or language is never missed; those rows are marked `sampled_by = min_per_stratum`. The strata are
types, not sources (`source` is often the input file's name): their number, and so the number of those rows,
does not grow with the input.
"""
from __future__ import annotations

from typing import Mapping

_U_BITS = 53  # doubles hold 53-bit integers exactly, so u is exact and reproducible


def stratum_columns(df, strata) -> list:
    from pyspark.sql import functions as F

    cols = []
    for name in strata:
        missing = "unscored" if name == "quality" else "unknown"
        if name in df.columns:
            cols.append(F.coalesce(F.col(name).cast("string"), F.lit(missing)).alias(name))
        else:
            cols.append(F.lit(missing).alias(name))
    return cols


def with_draw(df, cfg: Mapping):
    """Add `stratum` (source_type|lang|quality) and `_u`, the seeded uniform draw of each document."""
    from pyspark.sql import functions as F

    keys = stratum_columns(df, cfg["strata"])
    u = F.pmod(F.xxhash64(F.lit(str(cfg["seed"])), F.col("id")), F.lit(2 ** _U_BITS)) / float(2 ** _U_BITS)
    return df.withColumn("stratum", F.concat_ws("|", *keys)).withColumn("_u", u)


def draw_sample(df, cfg: Mapping):
    """The sample rows (all input columns + stratum, _u, sampled_by). No rows reach the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    share = float(cfg["sample_share"])
    k = int(cfg.get("min_per_stratum") or 0)
    drawn = with_draw(df, cfg)
    in_share = F.col("_u") < F.lit(share)
    if k <= 0:
        return drawn.filter(in_share).withColumn("sampled_by", F.lit("share"))
    # the k-th smallest u of each stratum (a top-k per group, which Spark computes before the shuffle)
    w = Window.partitionBy("stratum").orderBy("_u", "id")
    cut = (drawn.select("stratum", "_u", "id").withColumn("_rk", F.row_number().over(w))
           .filter(F.col("_rk") <= k).groupBy("stratum").agg(F.max("_u").alias("_ucut")))
    joined = drawn.join(F.broadcast(cut), "stratum", "left")
    picked = joined.filter(in_share | (F.col("_u") <= F.col("_ucut")))
    return (picked.withColumn("sampled_by", F.when(in_share, F.lit("share")).otherwise(F.lit("min_per_stratum")))
            .drop("_ucut"))
