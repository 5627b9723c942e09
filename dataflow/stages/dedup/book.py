"""Book-level near-duplicate removal (LLaMA §2.1: "we remove books with more than 90% content overlap").

A record is a book when its `source_type` is `book`, or (records of other types whose recipe lists this step,
and inputs without source types) its source is listed in `book.sources` or its text has at least
`book.min_chars` characters. Books are compared with MinHash (minhash.py) under `verify: signature` at `book.jaccard`
(0.9), so only whole-document overlap above 90% links two books; the earliest (date, id) is kept. Other
records pass through this step untouched.
"""
from __future__ import annotations

from dataflow.stages.dedup import minhash
from dataflow.stages.dedup.components import Context
from dataflow.core.confschema import Count, List, Str, optional_section
from dataflow.stages.dedup.step import Step


def is_book_expr(cfg: dict, typed: bool = False):
    """typed: the frame has `source_type` (a `book` record is a book whatever its length)."""
    from pyspark.sql import functions as F

    cond = F.length("text") >= F.lit(int(cfg["min_chars"]))
    sources = list(cfg.get("sources") or [])
    if sources:
        cond = cond | F.col("source").isin(sources)
    if typed:
        cond = cond | (F.col("source_type") == F.lit("book"))
    return F.coalesce(cond, F.lit(False))    # a null source is simply not a listed one


def mark(df, dcfg: dict, ctx: Context):
    from pyspark.sql import functions as F

    cfg = dcfg["book"]
    is_book = is_book_expr(cfg, "source_type" in df.columns)
    mcfg = {**cfg, "verify": "signature"}    # a 0.9 threshold needs verified pairs, not raw collisions
    books = df.where(is_book)
    out, stats = minhash.mark_section(books, mcfg, ctx, "book")
    rest = (df.where(~is_book)
            .withColumn("_dup_of", F.lit(None).cast("string"))
            .withColumn("_detail", F.lit(None).cast("string")))
    out = out.unionByName(rest, allowMissingColumns=True)

    def book_stats(annotated) -> dict:
        return {"books": annotated.where(is_book).count(), **stats(annotated.where(is_book))}

    return out, book_stats


STEP = Step("book", mark, summary="MinHash at Jaccard >= 0.9 over book-length documents", reads_text=True,
            spec=optional_section({**minhash.SPEC_FIELDS, "sources": List(Str(non_empty=True)), "min_chars": Count(0)},
                                  extra=minhash.bands_rows))
