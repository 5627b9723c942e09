"""Shared mechanics of every dedup step: the record order that picks representatives, and connected
components over duplicate edges, computed in Spark with the large-star / small-star rounds of Kiveris et
al., "Connected Components in MapReduce and Beyond" (SoCC 2014), as text-dedup's minhash_spark does.

Order: a record's `_order` key is "<crawl date>\\0<id>", a single string whose byte order is the order
(date, id); undated records get "~" as date, which sorts after every ISO-8601 date. The representative of
a duplicate group is its smallest `_order`: the earliest crawl, then the smallest id. Using the order key
itself as the node label makes the component minimum the representative, with no second pass.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from dataflow.core import fs
from dataflow.core.text import Shingled

ORDER = "_order"
SEP = "\x00"
UNDATED = "~"   # '~' (0x7E) sorts after the digits that start every ISO-8601 date


@dataclass(frozen=True)
class Context:
    """What every step gets besides its own section: how texts become fingerprints and the shuffle width.

    zh_fold: OpenCC configs applied to every text holding a Han character before hashing (dataflow.core.text);
    char_share: the spaceless-script share above which a text is shingled by characters;
    partitions: partitions for the steps that repartition (url);
    shingle_hash: how shingles become hashes (dataflow.core.hashing.SHINGLE_HASHES, text.Shingled);
    scratch: where the steps' intermediate results are checkpointed (`checkpoint`): a directory on the
    output's filesystem inside the stage's attempt, removed by the stage once its outputs are written; None
    for direct calls (see `checkpoint`);
    one_task_edges: a step's verified graph up to this many edges is clustered in one executor task (`clusters`);
    0 = always by Spark rounds."""
    zh_fold: tuple[str, ...] = ()
    char_share: float = 0.3
    partitions: int = 0
    scratch: str | None = None
    shingle_hash: str = "fast64"
    one_task_edges: int = 0

    @classmethod
    def from_conf(cls, cfg: dict, partitions: int = 0, scratch: str | None = None) -> "Context":
        """cfg = the `dedup` section (DE builds the same context from it, so both measure alike)."""
        return cls(tuple(cfg.get("zh_fold") or ()), float(cfg["char_script_share"]), partitions, scratch,
                   cfg.get("shingle_hash", "fast64"), int(cfg.get("one_task_edges") or 0))

    def shingled(self, text: str | None) -> Shingled:
        """The text prepared for fingerprints with this context's folding, script share and shingle hash."""
        return Shingled(text, self.zh_fold, self.char_share, self.shingle_hash)


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


def checkpoint(df, scratch: str | None = None):
    """Materialize once so every later use reads the same decisions, and cut the lineage (iterative joins
    otherwise grow the plan every round, doubling it in connected components). The frame is written as
    Parquet to a new directory under `scratch` and read back: the result lives on the output's filesystem,
    so losing an executor loses no result (DESIGN §9; a local checkpoint would keep it on executor-local
    disks only). Without `scratch` (a direct call: tests, DE's sample, tools, all with a local master) it goes
    to a temporary directory of this process instead (`local_scratch`)."""
    return df.sparkSession.read.parquet(fs.spark_uri(_write(df, scratch)))


def checkpoint_rows(df, scratch: str | None = None):
    """(`checkpoint(df, scratch)`, its number of rows): the rows are the written files' Parquet footers, read on
    the driver (a few bytes per file), so knowing them costs no Spark job."""
    from dataflow.core.stage import parquet_rows

    path = _write(df, scratch)
    return df.sparkSession.read.parquet(fs.spark_uri(path)), parquet_rows([path])


def _write(df, scratch: str | None) -> str:
    if scratch is None and not df.sparkSession.sparkContext.master.startswith("local"):
        raise ValueError("a checkpoint on a cluster needs a scratch directory on the output's filesystem (the "
                         "stage passes its attempt's): this process's temporary directory is not the executors'")
    path = fs.join(scratch or local_scratch(), uuid.uuid4().hex)
    df.write.mode("error").parquet(fs.spark_uri(path))
    return path


@lru_cache(maxsize=1)
def local_scratch() -> str:
    """A temporary directory on this machine for checkpoints of direct calls, removed when the process exits.
    Only a local master can use it (its executors share the driver's disk); the stage always passes the
    scratch directory of its attempt."""
    d = tempfile.mkdtemp(prefix="dedup-scratch-")
    atexit.register(shutil.rmtree, d, True)
    return d


LABELS = "node string, rep string"
PARENTS = "node string, parent string, depth int, chain array<string>"
SOLVED = "node string, rep string, parent string, depth int, chain array<string>"   # `solve_graph`'s rows


def clusters(edges, max_iterations: int, scratch: str | None = None, one_task_edges: int = 0):
    """The clusters of a step's verified edges (DataFrame(a, b) of `_order` keys): (labels, parents, stats),
    labels as `connected_components` returns them, parents as `verified_parents` does.

    A graph of at most `one_task_edges` distinct edges is solved in one executor task (`solve_graph`: union-find
    and one breadth-first search per component over arrays, one Spark job); a larger one by the Spark rounds
    (large-star / small-star, then a breadth-first round per link). Both give the same labels and parents (a
    test compares them). The edges never pass through the driver either way."""
    e, n = _undirected(edges, scratch)
    if n == 0:
        spark = e.sparkSession
        return (spark.createDataFrame([], LABELS), spark.createDataFrame([], PARENTS),
                {"edges": 0, "cc_rounds": 0, "cc": "none"})
    if n <= one_task_edges:
        solved = checkpoint(e.coalesce(1).mapInArrow(lambda batches: solve_graph(batches, max_iterations), SOLVED),
                            scratch)
        return (solved.select("node", "rep"), solved.where("depth > 0").select("node", "parent", "depth", "chain"),
                {"edges": n, "cc_rounds": 1, "cc": "one task"})
    labels, cc = _star_rounds(e, n, max_iterations, scratch)
    parents = verified_parents(e.select(e["lo"].alias("a"), e["hi"].alias("b")), labels, max_iterations, scratch)
    return labels, parents, {**cc, "cc": "star rounds"}


def _undirected(edges, scratch):
    """(DataFrame(lo, hi): the distinct edges without self-loops, lo < hi, checkpointed; their number)."""
    from pyspark.sql import functions as F

    e = (edges.select(F.least("a", "b").alias("lo"), F.greatest("a", "b").alias("hi"))
         .where(F.col("lo") != F.col("hi")).distinct())
    return checkpoint_rows(e, scratch)


def solve_graph(batches, max_iterations: int, out_rows: int = 65536):
    """mapInArrow body for `clusters` on one task: Arrow batches of (lo, hi) edges in, one row per node out:
    (node, rep, parent, depth, chain) with rep the smallest node of its component, and for every other node
    its parent: its smallest neighbour one link closer to rep (breadth-first from rep), depth its number of
    links and chain the ids along the parents to rep (CHAIN_IDS at most); a rep has depth 0 and no parent.
    Raises as the rounds do when a chain reaches max_iterations links."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    table = pa.Table.from_batches(list(batches))
    if table.num_rows == 0:
        return
    ends = pa.chunked_array(table.column("lo").chunks + table.column("hi").chunks).combine_chunks()
    enc = ends.dictionary_encode()
    by_order = pc.sort_indices(enc.dictionary).to_numpy()   # byte order = Spark's string order = `_order`
    names = enc.dictionary.take(pa.array(by_order))
    rank = np.empty(len(by_order), dtype=np.int64)
    rank[by_order] = np.arange(len(by_order))
    ends_rank = rank[enc.indices.to_numpy()]               # a node is its rank: the smallest rank is the rep
    m, n = table.num_rows, len(names)
    u, v = ends_rank[:m], ends_rank[m:]
    _, comp = scipy_components(coo_matrix((np.ones(m, dtype=np.int8), (u, v)), shape=(n, n)), directed=False)
    rep = np.full(comp.max() + 1, n, dtype=np.int64)
    np.minimum.at(rep, comp, np.arange(n))
    rep = rep[comp]
    depth = np.where(rep == np.arange(n), 0, -1)
    parent = np.full(n, -1, dtype=np.int64)
    src, dst = np.concatenate([u, v]), np.concatenate([v, u])
    for d in range(1, max_iterations + 1):
        step = (depth[src] == d - 1) & (depth[dst] < 0)
        if not step.any():
            break
        best = np.full(n, n, dtype=np.int64)
        np.minimum.at(best, dst[step], src[step])
        reached = np.flatnonzero(best < n)
        parent[reached], depth[reached] = best[reached], d
    else:
        raise RuntimeError(f"verified chains longer than {max_iterations} links; "
                           f"raise max_iterations in the dedup section")
    node_names = names.to_pylist()
    ids = [s.rpartition(SEP)[2] for s in node_names]
    chains: list = [None] * n
    for i in np.argsort(depth, kind="stable").tolist():
        if depth[i] > 0:
            p = int(parent[i])
            chains[i] = [ids[i], *(chains[p] or [ids[p]])][:CHAIN_IDS]
    rep_names = names.take(pa.array(rep))
    parent_names = names.take(pa.array(np.where(parent < 0, 0, parent)))
    parent_names = pc.if_else(pa.array(parent < 0), pa.nulls(n, pa.string()), parent_names)
    chain_arr = pa.array(chains, pa.list_(pa.string()))
    depth_arr = pa.array(depth.astype(np.int32))
    for i in range(0, n, out_rows):
        sl = slice(i, i + out_rows)
        yield pa.RecordBatch.from_arrays([names[sl], rep_names[sl], parent_names[sl], depth_arr[sl], chain_arr[sl]],
                                         names=["node", "rep", "parent", "depth", "chain"])


def connected_components(edges, max_iterations: int, scratch: str | None = None):
    """edges: DataFrame(a string, b string) of `_order` keys, any orientation. Returns DataFrame(node,
    rep) for every node that has an edge, rep = the smallest node of its component (the node itself for
    the representative), by large-star / small-star rounds in Spark. Raises if the rounds do not converge in
    max_iterations. scratch: see `checkpoint`."""
    e, n = _undirected(edges, scratch)
    if n == 0:
        return e.sparkSession.createDataFrame([], LABELS), {"edges": 0, "cc_rounds": 0}
    return _star_rounds(e, n, max_iterations, scratch)


def _star_rounds(e, edges_in: int, max_iterations: int, scratch: str | None):
    from pyspark.sql import functions as F

    prev_n = edges_in
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
        small, n = checkpoint_rows(small, scratch)
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


CHAIN_IDS = 6   # ids a removal's detail lists of its chain of checks (the number of links is always given)


def verified_parents(edges, labels, max_iterations: int, scratch: str | None = None):
    """For every non-representative node of `labels`, a record it passed the step's check against
    directly: breadth-first from each component's representative over the verified `edges` (a, b), a node
    at distance d gets as parent its earliest neighbour at distance d - 1. So the parent is the kept
    representative itself wherever the node was checked against it, and otherwise the first link of the
    shortest chain of checks leading there. Returns DataFrame(node, parent, depth, chain), chain = the ids
    from the node to the representative (at most CHAIN_IDS of them)."""
    from pyspark.sql import functions as F

    und = edges.select("a", "b").where(F.col("a") != F.col("b"))
    und = und.unionByName(und.select(F.col("b").alias("a"), F.col("a").alias("b"))).distinct()
    front = labels.where(F.col("node") == F.col("rep")).select(
        "node", F.array(order_id("node")).alias("chain"))
    seen = front.select("node")
    found = None
    for depth in range(1, max_iterations + 1):
        nxt = (front.join(und, front["node"] == und["a"]).select(F.col("b").alias("node"), F.col("a").alias("parent"),
                                                              F.col("chain").alias("_pc"))
               .join(seen, "node", "left_anti")
               .groupBy("node").agg(F.min(F.struct("parent", "_pc")).alias("_p"))
               .select("node", F.col("_p.parent").alias("parent"), F.lit(depth).alias("depth"),
                       F.slice(F.concat(F.array(order_id("node")), F.col("_p._pc")), 1, CHAIN_IDS).alias("chain")))
        nxt, reached = checkpoint_rows(nxt, scratch)
        if reached == 0:
            break
        found = nxt if found is None else found.unionByName(nxt)
        seen = checkpoint(seen.unionByName(nxt.select("node")), scratch)
        front = nxt.select("node", "chain")
    else:
        raise RuntimeError(f"verified chains longer than {max_iterations} links; "
                           f"raise max_iterations in the dedup section")
    if found is None:
        return labels.sparkSession.createDataFrame([], PARENTS)
    return found


def mark_from_components(df, labels, step: str, parents=None):
    """Join component labels onto the step's input: a record whose rep is another record becomes a
    duplicate, the rest stay. With `parents` (verified_parents) `_dup_of` is the record the duplicate was
    checked against directly, and `_detail` names the cluster's size and kept representative and, when the
    two differ, the chain of checks from the record to it (so a reviewer can follow every link); without,
    `_dup_of` is the representative (steps whose check is equality with it)."""
    from pyspark.sql import functions as F

    sizes = labels.groupBy("rep").agg(F.count(F.lit(1)).alias("_size"))
    lab = labels.join(sizes, "rep").select(F.col("node").alias(ORDER), "rep", "_size")
    if parents is not None:
        lab = lab.join(parents.select(F.col("node").alias(ORDER), F.col("parent").alias("_parent"),
                                      F.col("depth").alias("_depth"), F.col("chain").alias("_chain")), ORDER, "left")
    else:
        lab = lab.select("*", F.col("rep").alias("_parent"), F.lit(1).alias("_depth"),
                         F.lit(None).cast("array<string>").alias("_chain"))
    out = df.join(lab, ORDER, "left")
    dup = F.col("rep").isNotNull() & (F.col("rep") != F.col(ORDER))
    chained = F.col("_depth") > 1
    chain = F.concat(F.lit("; checked along "), F.array_join("_chain", " ~ "),
                     F.when(F.col("_depth") + 1 > F.size("_chain"), F.lit(" ~ ...")).otherwise(F.lit("")),
                     F.lit(" ("), F.col("_depth").cast("string"), F.lit(" links)"))
    return (out.withColumn("_dup_of", F.when(dup, order_id("_parent")))
               .withColumn("_detail", F.when(dup, F.concat(F.lit(f"{step}: cluster of "),
                                                           F.col("_size").cast("string"),
                                                           F.lit(", representative "), order_id("rep"),
                                                           F.when(chained, chain).otherwise(F.lit("")))))
               .drop("rep", "_size", "_parent", "_depth", "_chain"))
