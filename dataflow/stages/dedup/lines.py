"""Line-level dedup (CCNet, Wenzek et al. 2020, cc_net/dedup.py): a normalized line (lower case, digits
-> 0, punctuation and whitespace removed) that already appeared in `max_docs` earlier documents, in
(date, id) order, is removed from every later document. Lines shorter than `min_line_chars` after
normalization are never removed (blank separators, braces). A document left with fewer than
`min_doc_chars` non-space characters is rejected as `dedup:lines` with `dup_of` = the earliest document
that held one of its removed lines; kept documents record how many lines they lost in `lines_removed`.
"""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

from dataflow.core.hashing import xxh3_64
from dataflow.core.text import line_form
from dataflow.stages.dedup.components import ORDER, Context, order_id
from dataflow.core.confschema import Count, optional_section
from dataflow.stages.dedup.step import Step


def line_hashes(text: str | None, min_line_chars: int, zh_fold=()) -> list:
    """Per line (split on '\\n'): signed xxh3-64 of its normalized form, or None when it is too short."""
    out = []
    for line in (text or "").split("\n"):
        f = line_form(line, zh_fold)
        out.append(None if len(f) < min_line_chars else xxh3_64(f))
    return out


def drop_lines(text: str, positions) -> str:
    drop = set(() if positions is None else (int(p) for p in positions))
    return "\n".join(l for i, l in enumerate(text.split("\n")) if i not in drop)


def mark(df, dcfg: dict, ctx: Context):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cfg, zh = dcfg["lines"], ctx.zh_fold
    max_docs, min_line = int(cfg["max_docs"]), int(cfg["min_line_chars"])
    min_doc = int(cfg["min_doc_chars"])

    @F.pandas_udf("array<long>")
    def hashes(text: pd.Series) -> pd.Series:
        return pd.Series([line_hashes(t, min_line, zh) for t in text])

    @F.pandas_udf("string")
    def rebuild(text: pd.Series, pos: pd.Series) -> pd.Series:
        return pd.Series([drop_lines(t, p) if p is not None and len(p) else t for t, p in zip(text, pos)],
                         dtype=object)

    occ = (df.select(ORDER, F.posexplode(hashes("text")).alias("pos", "h"))
           .where(F.col("h").isNotNull()))
    # the documents holding each line, earliest first; a line repeated inside one document counts once
    docs_of_line = occ.select("h", ORDER).distinct()
    w = Window.partitionBy("h").orderBy(ORDER)
    ranked = (docs_of_line.withColumn("_rank", F.dense_rank().over(w))
              .withColumn("_first", F.min(ORDER).over(Window.partitionBy("h"))))
    late = ranked.where(F.col("_rank") > max_docs).select("h", ORDER, "_first")
    removed = (occ.join(late, ["h", ORDER])
               .groupBy(ORDER).agg(F.sort_array(F.collect_list("pos")).alias("_pos"),
                                   F.min("_first").alias("_first")))
    out = df.join(removed, ORDER, "left")
    out = (out.withColumn("_new", F.when(F.col("_pos").isNotNull(), rebuild("text", "_pos")).otherwise(F.col("text")))
              .withColumn("lines_removed", F.when(F.col("_pos").isNotNull(), F.size("_pos")).otherwise(0).cast("int")))
    emptied = F.col("_pos").isNotNull() & (F.length(F.regexp_replace("_new", r"\s+", "")) < F.lit(min_doc))
    # a rejected document keeps its original text, so the decision can be audited
    out = (out.withColumn("_dup_of", F.when(emptied, order_id("_first")))
              .withColumn("_detail", F.when(emptied, F.concat(F.lit("lines: "), F.col("lines_removed").cast("string"),
                                                               F.lit(" lines seen in earlier documents removed, too little left"))))
              .withColumn("text", F.when(emptied, F.col("text")).otherwise(F.col("_new")))
              .drop("_pos", "_first", "_new"))

    def stats(annotated) -> dict:
        agg = annotated.agg(F.sum("lines_removed").alias("lines"),
                            F.sum((F.col("lines_removed") > 0).cast("long")).alias("docs")).collect()[0]
        return {"lines_removed": int(agg["lines"] or 0), "documents_changed": int(agg["docs"] or 0)}

    return out, stats


STEP = Step("lines", mark, summary="CCNet line dedup; documents emptied are rejected", reads_text=True,
            adds=("lines_removed",),
            spec=optional_section({"max_docs": Count(1), "min_line_chars": Count(0), "min_doc_chars": Count(0)}))
