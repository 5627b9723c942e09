"""Exact dedup (Ziya2 step 2): xxh3-128 of the text after removing punctuation, symbols, emoji and
whitespace and lower-casing (zh also converted Traditional -> Simplified when `t2s` is on). The earliest
(date, id) of each hash is kept; one shuffle (a window partitioned by the hash) decides globally."""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

import xxhash

from .components import ORDER, order_id
from .normalize import exact_form


def exact_key(text: str | None, lang: str | None = None, t2s_langs=()) -> str | None:
    """Hex xxh3-128 of the punctuation-free text; None when nothing is left (pure punctuation/emoji or
    empty), because such records carry no content to compare and pass through."""
    s = exact_form(text or "", lang, t2s_langs)
    if not s:
        return None
    return xxhash.xxh3_128_hexdigest(s.encode("utf-8"))


def mark(df, cfg: dict, t2s_langs: frozenset):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if cfg.get("hash", "xxh3_128") != "xxh3_128":
        raise ValueError(f"dedup.exact.hash: only xxh3_128 is implemented, got {cfg.get('hash')!r}")

    @F.pandas_udf("string")
    def key(text: pd.Series, lang: pd.Series) -> pd.Series:
        return pd.Series([exact_key(t, l, t2s_langs) for t, l in zip(text, lang)], dtype=object)

    w = Window.partitionBy("_exact")
    out = (df.withColumn("_exact", key("text", "lang"))
           .withColumn("_first", F.when(F.col("_exact").isNotNull(), F.min(ORDER).over(w))))
    dup = F.col("_first") != F.col(ORDER)
    out = (out.withColumn("_dup_of", F.when(dup, order_id("_first")))
              .withColumn("_detail", F.when(dup, F.concat(F.lit("exact: xxh3-128 "), F.col("_exact"),
                                                          F.lit(" of the punctuation-free text"))))
              .drop("_first"))

    def stats(annotated) -> dict:
        return {"empty_after_normalization": annotated.where(F.col("_exact").isNull()).count()}

    return out, stats
