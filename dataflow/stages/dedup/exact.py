"""Exact dedup (Ziya2 step 2): xxh3-128 of the fingerprint form of the text (punctuation, symbols, emoji,
whitespace and controls removed, lower case, Chinese folded to one Simplified spelling; dataflow.core.text).
The earliest (date, id) of each hash is kept; one shuffle (a window partitioned by the hash) decides
globally."""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

from dataflow.core.hashing import xxh3_128_hex
from dataflow.core.text import fingerprint_form
from dataflow.stages.dedup.components import ORDER, Context, order_id
from dataflow.core.confschema import Str, optional_section
from dataflow.stages.dedup.step import Step


def exact_key(text: str | None, zh_fold=()) -> str | None:
    """Hex xxh3-128 of the fingerprint form; None when nothing is left (pure punctuation/emoji or empty),
    because such records carry no content to compare and pass through."""
    s = fingerprint_form(text, zh_fold)
    return xxh3_128_hex(s) if s else None


def mark(df, cfg: dict, ctx: Context):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ecfg = cfg["exact"]
    if ecfg.get("hash", "xxh3_128") != "xxh3_128":
        raise ValueError(f"dedup.exact.hash: only xxh3_128 is implemented, got {ecfg.get('hash')!r}")
    zh = ctx.zh_fold

    @F.pandas_udf("string")
    def key(text: pd.Series) -> pd.Series:
        return pd.Series([exact_key(t, zh) for t in text], dtype=object)

    w = Window.partitionBy("_exact")
    # the stage computes `_exact` once with the other fingerprints (fingerprints.py); else from the text
    out = (df if "_exact" in df.columns else df.withColumn("_exact", key("text")))
    out = (out
           .withColumn("_first", F.when(F.col("_exact").isNotNull(), F.min(ORDER).over(w))))
    dup = F.col("_first") != F.col(ORDER)
    out = (out.withColumn("_dup_of", F.when(dup, order_id("_first")))
              .withColumn("_detail", F.when(dup, F.concat(F.lit("exact: xxh3-128 "), F.col("_exact"),
                                                          F.lit(" of the punctuation-free text"))))
              .drop("_first"))

    def stats(annotated) -> dict:
        return {"empty_after_normalization": annotated.where(F.col("_exact").isNull()).count()}

    return out, stats


STEP = Step("exact", mark, summary="xxh3-128 of the text without punctuation/symbols/emoji/whitespace",
            spec=optional_section({"hash": Str(["xxh3_128"])}))
