"""Shared mechanics of every dedup step: the record order that picks representatives, and connected
components over duplicate edges, computed in Spark with the large-star / small-star rounds of Kiveris et
al., "Connected Components in MapReduce and Beyond" (SoCC 2014), as text-dedup's minhash_spark does.

Order: a record's `_order` key is "<crawl date>\\0<id>", a single string whose byte order is the order
(date, id); undated records get "~" as date, which sorts after every ISO-8601 date. The representative of
a duplicate group is its smallest `_order`: the earliest crawl, then the smallest id. Using the order key
itself as the node label makes the component minimum the representative, with no second pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

ORDER = "_order"
SEP = "\x00"
UNDATED = "~"   # '~' (0x7E) sorts after the digits that start every ISO-8601 date


@dataclass(frozen=True)
class Context:
    """What every step gets besides its own section: how texts become fingerprints and the shuffle width.

    zh_fold: OpenCC configs applied to every text holding a Han character before hashing (dataflow.core.text);
    char_share: the spaceless-script share above which a text is shingled by characters;
    partitions: partitions for the steps that repartition (url)."""
    zh_fold: tuple[str, ...] = ()
    char_share: float = 0.3
    partitions: int = 0

    @classmethod
    def from_conf(cls, cfg: dict, partitions: int = 0) -> "Context":
        """cfg = the `dedup` section (DE builds the same context from it, so both measure alike)."""
        return cls(tuple(cfg.get("zh_fold") or ()), float(cfg["char_script_share"]), partitions)


def with_order(df, date_keys: Iterable[str]):
    """Add `_order` from the first present meta date key, then id."""
    from pyspark.sql import functions as F

    keys = list(date_keys or [])
    date = F.coalesce(*[F.col("meta")[k] for k in keys], F.lit(UNDATED)) if keys else F.lit(UNDATED)
    return df.withColumn(ORDER, F.concat(date, F.lit(SEP), F.col("id")))


def order_id(col):
    """The id inside an `_order` key (everything after the separator)."""
    from pyspark.sql import functions as F

    return F.substring_index(F.col(col) if isinstance(col, str) else col, SEP, -1)


def checkpoint(df):
    """Materialize once and cut the lineage (iterative joins otherwise grow the plan every round)."""
    return df.localCheckpoint(eager=True)


def connected_components(edges, max_iterations: int):
    """edges: DataFrame(a string, b string) of `_order` keys, any orientation. Returns DataFrame(node,
    rep) for every node that has an edge, rep = the smallest node of its component (the node itself for
    the representative). Raises if the rounds do not converge in max_iterations."""
    from pyspark.sql import functions as F

    e = (edges.select(F.least("a", "b").alias("lo"), F.greatest("a", "b").alias("hi"))
         .where(F.col("lo") != F.col("hi")).distinct())
    e = checkpoint(e)
    prev_n = edges_in = e.count()
    if edges_in == 0:
        return e.sparkSession.createDataFrame([], "node string, rep string"), {"edges": 0, "cc_rounds": 0}
    for it in range(1, max_iterations + 1):
        # large-star: each node x links its larger neighbours to m(x) = min(x, N(x))
        both = e.select(F.col("lo").alias("x"), F.col("hi").alias("y")).unionByName(
            e.select(F.col("hi").alias("x"), F.col("lo").alias("y")))
        mins = both.groupBy("x").agg(F.min("y").alias("my")).select("x", F.least("x", "my").alias("m"))
        large = (both.where(F.col("y") > F.col("x")).join(mins, "x")
                 .select(F.col("y").alias("hi"), F.col("m").alias("lo")).distinct())
        # small-star: each node x links itself and its smaller neighbours to m = min(those)
        smins = large.groupBy("hi").agg(F.min("lo").alias("m"))
        small = (large.join(smins, "hi").where(F.col("lo") != F.col("m"))
                 .select(F.col("lo").alias("hi"), F.col("m").alias("lo"))
                 .unionByName(smins.where(F.col("hi") != F.col("m"))
                              .select("hi", F.col("m").alias("lo")))
                 .select(F.least("lo", "hi").alias("lo"), F.greatest("lo", "hi").alias("hi")).distinct())
        small = checkpoint(small)
        n = small.count()
        # converged when a round changes nothing: same size and no edge that was not there before
        if n == prev_n and small.join(e, ["lo", "hi"], "left_anti").limit(1).count() == 0:
            e = small
            break
        e, prev_n = small, n
    else:
        raise RuntimeError(f"connected components did not converge in {max_iterations} rounds; "
                           f"raise max_iterations in the dedup section")
    # at the fixed point every component is a star around its minimum; min() again guards any leftover
    labels = e.groupBy(F.col("hi").alias("node")).agg(F.min("lo").alias("rep"))
    roots = labels.select(F.col("rep").alias("node")).distinct().join(labels, "node", "left_anti") \
        .withColumn("rep", F.col("node"))
    return labels.unionByName(roots), {"edges": edges_in, "cc_rounds": it}


def mark_from_components(df, labels, step: str):
    """Join component labels onto the step's input: a record whose rep is another record becomes a
    duplicate (`_dup_of` = the rep's id, `_detail` names the rule and the cluster size); the rest stay."""
    from pyspark.sql import functions as F

    sizes = labels.groupBy("rep").agg(F.count(F.lit(1)).alias("_size"))
    lab = labels.join(sizes, "rep").select(F.col("node").alias(ORDER), "rep", "_size")
    out = df.join(lab, ORDER, "left")
    dup = F.col("rep").isNotNull() & (F.col("rep") != F.col(ORDER))
    return (out.withColumn("_dup_of", F.when(dup, order_id("rep")))
               .withColumn("_detail", F.when(dup, F.concat(F.lit(f"{step}: cluster of "),
                                                           F.col("_size").cast("string"),
                                                           F.lit(", representative "), order_id("rep"))))
               .drop("rep", "_size"))
