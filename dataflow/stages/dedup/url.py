"""URL dedup (Ziya2 step 1): normalized URL, one Bloom filter per partition, first occurrence kept.

Records are repartitioned by the normalized URL, so every copy of a URL meets in one partition and the
per-partition filters together decide globally with bounded memory. Each partition is walked in
(crawl date, id) order through a pybloom-live ScalableBloomFilter. A hit is then verified: among the
records that share the hit's URL the earliest (date, id) is the original and becomes `dup_of`; a hit on an
original is a Bloom false positive and is kept (and counted). So the result is exact whatever the
partition count, and the filter only bounds the memory of the first pass.
"""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

import math
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dataflow.stages.dedup.components import ORDER, Context, checkpoint
from dataflow.core.confschema import Bool, Count, Float, List, Str, optional_section
from dataflow.stages.dedup.step import Step

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def normalize_url(url: str | None, tracking_params=(), sort_query: bool = True) -> str | None:
    """Canonical form: lower-case scheme and host, no default port, no fragment, no tracking
    parameters (utm_* and the configured names), no trailing slash (an empty path becomes '/')."""
    if url is None:
        return None
    url = url.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:        # unparsable (e.g. a bad port): compare the stripped string as is
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if parts.username or parts.password:
        auth = parts.username or ""
        if parts.password:
            auth += ":" + parts.password
        host = auth + "@" + host
    if port is not None and DEFAULT_PORTS.get(scheme) != port:
        host += f":{port}"
    drop = set(tracking_params)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in drop and not k.lower().startswith("utm_")]
    if sort_query:
        query.sort()
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return urlunsplit((scheme, host, path, urlencode(query, doseq=True), ""))


def _fp_probability(bloom) -> float:
    """Chance that a new key tests positive now: 1 - prod(1 - (fill_i)^k_i) over the sub-filters, with
    fill_i = 1 - exp(-k_i n_i / m_i) (the standard Bloom estimate)."""
    miss = 1.0
    for f in bloom.filters:
        fill = 1.0 - math.exp(-f.num_slices * f.count / max(1, f.num_bits))
        miss *= 1.0 - fill ** f.num_slices
    return 1.0 - miss


def bloom_pass(batches, initial_capacity: int, error_rate: float):
    """mapInArrow body over one URL-hash partition, already sorted by (date, id): append `_hit` (the
    filter had seen the URL; never for records without one) and `_fp_p` (the filter's false-positive
    probability at that moment, summed into the stats as the expected number of false positives)."""
    import pyarrow as pa
    from pybloom_live import ScalableBloomFilter

    bloom = ScalableBloomFilter(initial_capacity=initial_capacity, error_rate=error_rate,
                                mode=ScalableBloomFilter.LARGE_SET_GROWTH)
    for batch in batches:
        hits, fps = [], []
        for u in batch.column("_url_norm").to_pylist():
            if u is None:
                hits.append(False)
                fps.append(0.0)
                continue
            fps.append(_fp_probability(bloom) if bloom.filters else 0.0)
            hits.append(bloom.add(u))
        yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(hits, pa.bool_()), pa.array(fps, pa.float64())],
                                         names=[*batch.schema.names, "_hit", "_fp_p"])


def mark(df, dcfg: dict, ctx: Context):
    """Annotate `df` (with `_order`) with `_dup_of`/`_detail`; return (frame, stats thunk inputs)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, DoubleType, StructField, StructType

    cfg, partitions = dcfg["url"], ctx.partitions

    tracking = tuple(cfg.get("tracking_params") or ())
    sort_query = bool(cfg.get("sort_query", True))

    @F.pandas_udf("string")
    def norm(urls: pd.Series) -> pd.Series:
        return pd.Series([normalize_url(u, tracking, sort_query) for u in urls], dtype=object)

    df = df.withColumn("_url_norm", norm(F.col("url")))
    cap, err = int(cfg["initial_capacity"]), float(cfg["error_rate"])
    schema = StructType(df.schema.fields + [StructField("_hit", BooleanType()), StructField("_fp_p", DoubleType())])
    # records without a URL are spread by their order key instead of all landing in one partition
    marked = (df.repartition(partitions, F.coalesce(F.col("_url_norm"), F.col(ORDER)))
              .sortWithinPartitions(ORDER)
              .mapInArrow(lambda it: bloom_pass(it, cap, err), schema))
    marked = checkpoint(marked, ctx.scratch)
    agg = marked.agg(F.count("_url_norm").alias("with_url"), F.count(F.lit(1)).alias("n"),
                     F.sum(F.col("_hit").cast("long")).alias("hits"), F.sum("_fp_p").alias("fp_est")).collect()[0]
    n_hits = int(agg["hits"] or 0)
    if n_hits == 0:   # nothing to verify: skip the lookups (the common case on already-deduplicated input)
        out = marked.withColumn("_dup_of", F.lit(None).cast("string")).withColumn("_detail", F.lit(None).cast("string"))
    else:
        hits = marked.where("_hit")
        # verification: the original of a URL is its smallest _order; only URLs that had a hit are looked up
        firsts = (marked.join(hits.select("_url_norm").distinct(), "_url_norm", "left_semi")
                  .groupBy("_url_norm").agg(F.min(ORDER).alias("_first")))
        verdict = (hits.select(ORDER, "_url_norm").join(firsts, "_url_norm")
                   .select(ORDER, F.when(F.col("_first") != F.col(ORDER), F.col("_first")).alias("_first")))
        out = (marked.join(verdict, ORDER, "left")
               .withColumn("_dup_of", F.when(F.col("_first").isNotNull(), F.substring_index("_first", "\x00", -1)))
               .withColumn("_detail", F.when(F.col("_first").isNotNull(),
                                             F.concat(F.lit("url: same normalized URL "), F.col("_url_norm"))))
               .drop("_first"))

    def stats(annotated) -> dict:
        fp = n_hits - annotated.where(F.col("_dup_of").isNotNull()).count() if n_hits else 0
        return {"without_url": int(agg["n"]) - int(agg["with_url"]), "with_url": int(agg["with_url"]),
                "bloom_hits": int(agg["hits"] or 0),
                "bloom_false_positives_measured": int(fp),
                "bloom_false_positives_estimated": round(float(agg["fp_est"] or 0.0), 6)}

    return out, stats


STEP = Step("url", mark, summary="normalized URL, Bloom filter per URL-hash partition, first crawl kept",
            spec=optional_section({"initial_capacity": Count(1), "error_rate": Float(0, 1, min_exclusive=True),
                                   "tracking_params": List(Str(non_empty=True)), "sort_query": Bool()}))
