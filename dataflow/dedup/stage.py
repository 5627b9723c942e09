"""The CD stage: run the configured dedup steps in their fixed order and account for every record.

Each step gets the records the earlier steps kept, returns them annotated with `_dup_of` (the
representative's id) and `_detail`, and is materialized once (localCheckpoint) so the next step, the
rejected output and the statistics all read the same decisions. Rejected rows carry
`reason = dedup:<step>`, `detail` and `dup_of`. Kept rows gain `simhash` when that step ran and
`lines_removed` when the line step ran.
"""
from __future__ import annotations

import time

from ..schema import DOC_COLUMNS, require_columns
from ..stage import StageResult
from . import book, exact, lines, minhash, simhash, url
from .components import ORDER, checkpoint, with_order

STEP_ORDER = ["url", "exact", "simhash", "minhash", "book", "lines"]


def _steps(cfg: dict) -> list[str]:
    steps = list(cfg.get("steps") or [])
    unknown = [s for s in steps if s not in STEP_ORDER]
    if unknown:
        raise ValueError(f"dedup.steps: unknown step(s) {unknown}; known: {STEP_ORDER}")
    # the order is part of the method (cheap exact steps shrink the input of the fuzzy ones)
    return [s for s in STEP_ORDER if s in steps]


def _malformed(df):
    """Records without id or text cannot be compared or represented: quarantined, not dropped."""
    from pyspark.sql import functions as F

    return (F.when(F.col("id").isNull(), F.lit("malformed:id"))
            .when(F.col("text").isNull(), F.lit("malformed:text")))


def _partitions(spark, cfg: dict) -> int:
    n = cfg.get("shuffle_partitions")
    return int(n) if n else int(spark.conf.get("spark.sql.shuffle.partitions"))


def run(df, cfg: dict) -> StageResult:
    """cfg = the `dedup` section of conf/pipeline.yaml."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    require_columns(df, DOC_COLUMNS, "dedup")
    spark = df.sparkSession
    steps = _steps(cfg)
    t2s_langs = frozenset(cfg.get("t2s_langs") or ()) if cfg.get("t2s", True) else frozenset()
    parts = _partitions(spark, cfg)

    base = with_order(df, cfg.get("date_keys"))
    base = base.withColumn("_bad", _malformed(base))
    rejected = [base.where(F.col("_bad").isNotNull())
                .select(*df.columns, F.col("_bad").alias("reason"),
                        F.concat(F.lit("dedup input without "), F.substring_index("_bad", ":", -1)).alias("detail"),
                        F.lit(None).cast("string").alias("dup_of"))]
    live = base.where(F.col("_bad").isNull()).drop("_bad")
    # ids are meant to be unique (DESIGN §3); a record ingested twice is not. Every step joins on
    # _order, so repeats of one (date, id) are settled first: the first by content is kept.
    w = Window.partitionBy(ORDER).orderBy("text", "url", "source", "lang")
    live = live.withColumn("_n", F.row_number().over(w))
    rejected.append(live.where(F.col("_n") > 1)
                    .select(*df.columns, F.lit("dedup:id").alias("reason"),
                            F.lit("id: another record has the same id and crawl date").alias("detail"),
                            F.col("id").alias("dup_of")))
    live = live.where(F.col("_n") == 1).drop("_n")
    step_stats: dict = {}
    added: list[str] = []     # columns the steps add to kept rows

    for step in steps:
        t0 = time.time()
        if step == "url":
            out, stats = url.mark(live, cfg["url"], parts)
        elif step == "exact":
            out, stats = exact.mark(live, cfg["exact"], t2s_langs)
        elif step == "simhash":
            out, stats = simhash.mark(live, cfg["simhash"], t2s_langs)
        elif step == "minhash":
            out, stats = minhash.mark(live, cfg["minhash"], t2s_langs, "minhash")
        elif step == "book":
            out, stats = book.mark(live, cfg["book"], t2s_langs)
        else:
            out, stats = lines.mark(live, cfg["lines"], t2s_langs)
        for c in ("simhash", "lines_removed"):
            if c in out.columns and c not in added:
                added.append(c)
        out = checkpoint(out)
        keep_cols = [*df.columns, *added, ORDER]
        rejected.append(out.where(F.col("_dup_of").isNotNull())
                        .select(*df.columns, *added, F.lit(f"dedup:{step}").alias("reason"),
                                F.col("_detail").alias("detail"), F.col("_dup_of").alias("dup_of")))
        live = out.where(F.col("_dup_of").isNull()).select(*keep_cols)
        step_stats[step] = {**stats(out), "seconds": round(time.time() - t0, 2)}

    kept = live.drop(ORDER)
    cols = [*df.columns, *added]
    rej = None
    for r in rejected:
        r = r.select(*[c if c in r.columns else F.lit(None).alias(c) for c in cols], "reason", "detail", "dup_of")
        rej = r if rej is None else rej.unionByName(r)
    # column types of the placeholders follow the kept schema
    for f in kept.schema.fields:
        if f.name in added:
            rej = rej.withColumn(f.name, F.col(f.name).cast(f.dataType))
    return StageResult(kept=kept, rejected=rej, stats={"steps": steps, **step_stats})
