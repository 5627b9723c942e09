"""Packing tokenized documents into fixed-length training rows (the trainer's shard contract).

Two packers, both pure Python over numpy arrays, applied per group with `mapInArrow`:

- `greedy_rows` (stage 1, pretraining): documents in a seeded random order are concatenated into rows of
  exactly `seq_len` tokens; a document that does not fit is split and continues in the next row. Each row
  records, per segment, the document id and the segment's start offset inside the document (`doc_ids`,
  `seg_starts`), so every document can be rebuilt by concatenating its segments. Only the last row of a
  group is padded; groups hold `pack.group_tokens` tokens each, so that cut is the whole efficiency loss.
- `ffd_bins` (stages 2 and 3, supervised): examples of one `type` are bin-packed whole with first-fit
  decreasing; rows are padded at the end (explicit, counted, loss_mask 0). An example longer than
  `seq_len` is rejected with reason `too_long`.

Spark does the shuffle and grouping: a seeded hash orders documents and assigns groups, so the rows depend
on the seed and the data only, never on the partitioning. `write_shards` writes `shards/part-XXXXX.parquet`
deterministically (a seeded hash of each row's (group, index) picks its shard and its order inside it).
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dataflow.core import fs
from dataflow.core.confschema import Count, Int, Str, optional_section
from dataflow.core.contract import Option, Stage, StageContext
from dataflow.core.schema import spark_schema
from dataflow.core.stage import Attempt, StageResult, read_stage_input, write_stage
from dataflow.models.tokenizer import check_model
from dataflow.trainset.tokenize import tokenizer_info

ROW_SCHEMA = pa.schema([
    ("input_ids", pa.list_(pa.int32())),   # exactly seq_len
    ("doc_lens", pa.list_(pa.int32())),    # sums to seq_len; end padding is its own last entry
    ("source", pa.string()),               # the source with the most tokens in the row
    ("loss_mask", pa.list_(pa.int8())),    # null = all ones (stage-1 rows without padding)
    ("num_pad", pa.int32()),
    ("doc_ids", pa.list_(pa.string())),    # per doc_lens entry; null for padding
    ("seg_starts", pa.list_(pa.int32())),  # per entry: offset of the segment inside its document; null for padding
    ("doc_sources", pa.list_(pa.string())),
    ("group", pa.string()),                # packing group (not written to shards)
    ("row", pa.int64()),                   # row index inside its group (not written to shards)
])
SHARD_COLUMNS = ["input_ids", "doc_lens", "source", "loss_mask", "num_pad", "doc_ids", "seg_starts", "doc_sources"]


@dataclass
class Segment:
    doc_id: str
    source: str
    start: int              # offset of this segment inside its document
    ids: np.ndarray         # int32
    mask: np.ndarray | None  # int8, None = all ones


def make_row(segments: Sequence[Segment], seq_len: int, pad_id: int, explicit_mask: bool) -> dict:
    """Concatenate segments, pad to seq_len, and describe the row."""
    used = sum(len(s.ids) for s in segments)
    if used > seq_len:
        raise ValueError(f"segments hold {used} tokens, more than seq_len {seq_len}")
    num_pad = seq_len - used
    ids = np.concatenate([s.ids for s in segments] + [np.full(num_pad, pad_id, dtype=np.int32)]).astype(np.int32)
    lens = [len(s.ids) for s in segments] + ([num_pad] if num_pad else [])
    mask = None
    if explicit_mask or num_pad or any(s.mask is not None for s in segments):
        mask = np.concatenate([s.mask if s.mask is not None else np.ones(len(s.ids), np.int8) for s in segments]
                              + [np.zeros(num_pad, np.int8)]).astype(np.int8)
    tokens: dict[str, int] = {}
    for s in segments:
        tokens[s.source] = tokens.get(s.source, 0) + len(s.ids)
    source = max(tokens.items(), key=lambda kv: (kv[1], kv[0]))[0] if tokens else None
    pad = [None] if num_pad else []
    return {"input_ids": ids, "doc_lens": lens, "source": source, "loss_mask": mask, "num_pad": num_pad,
            "doc_ids": [s.doc_id for s in segments] + pad, "seg_starts": [s.start for s in segments] + pad,
            "doc_sources": [s.source for s in segments] + pad}


def greedy_rows(docs: Iterable[tuple[str, str, np.ndarray, np.ndarray | None]], seq_len: int, pad_id: int,
                explicit_mask: bool = False) -> Iterator[dict]:
    """Stage 1: concatenate (id, source, ids, mask) in the given order into seq_len rows; split documents at
    row ends; pad only the final row."""
    segs: list[Segment] = []
    fill = 0
    for doc_id, source, ids, mask in docs:
        pos, n = 0, len(ids)
        while pos < n:
            take = min(n - pos, seq_len - fill)
            segs.append(Segment(doc_id, source, pos, ids[pos:pos + take],
                                None if mask is None else mask[pos:pos + take]))
            pos += take
            fill += take
            if fill == seq_len:
                yield make_row(segs, seq_len, pad_id, explicit_mask)
                segs, fill = [], 0
    if segs:
        yield make_row(segs, seq_len, pad_id, explicit_mask)


def ffd_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indexes of `lengths` per bin. Ties keep input order (the caller's seeded order).
    A max segment tree over remaining capacities finds the first bin that fits in O(log n)."""
    n = len(lengths)
    if any(l > capacity or l <= 0 for l in lengths):
        raise ValueError("every length must be in 1..capacity")
    size = 1
    while size < max(1, n):
        size *= 2
    tree = [0] * (2 * size)
    for i in range(n):          # n bins at most; unopened bins are full, so first-fit opens them in order
        tree[size + i] = capacity
    for i in range(size - 1, 0, -1):
        tree[i] = max(tree[2 * i], tree[2 * i + 1])
    bins: list[list[int]] = []
    for i in sorted(range(n), key=lambda k: -lengths[k]):
        need, node = lengths[i], 1
        while node < size:
            node = 2 * node if tree[2 * node] >= need else 2 * node + 1
        b = node - size
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        tree[node] -= need
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return bins


# ---------------------------------------------------------------- Arrow plumbing
def _lists(col: pa.Array):
    """(offsets, values, nulls) of a list column, for zero-copy slicing per row."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return (col.offsets.to_numpy(), col.values.to_numpy(zero_copy_only=False),
            col.is_null().to_numpy(zero_copy_only=False))


def _docs_of(batch: pa.RecordBatch):
    """(group, id, source, ids, mask) per row of a batch."""
    off, vals, _ = _lists(batch.column("input_ids"))
    moff, mvals, mnull = _lists(batch.column("loss_mask"))
    groups, ids, sources = (batch.column(c).to_pylist() for c in ("_group", "id", "source"))
    for i in range(batch.num_rows):
        mask = None if mnull[i] else mvals[moff[i]:moff[i + 1]]
        yield groups[i], ids[i], sources[i], vals[off[i]:off[i + 1]], mask


def rows_to_batch(rows: list[dict]) -> pa.RecordBatch:
    lens = [len(r["input_ids"]) for r in rows]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate([r["input_ids"] for r in rows]), pa.int32()))
    cols = {
        "input_ids": ids,
        "doc_lens": pa.array([r["doc_lens"] for r in rows], pa.list_(pa.int32())),
        "source": pa.array([r["source"] for r in rows], pa.string()),
        "loss_mask": pa.array([r["loss_mask"] for r in rows], pa.list_(pa.int8())),
        "num_pad": pa.array([r["num_pad"] for r in rows], pa.int32()),
        "doc_ids": pa.array([r["doc_ids"] for r in rows], pa.list_(pa.string())),
        "seg_starts": pa.array([r["seg_starts"] for r in rows], pa.list_(pa.int32())),
        "doc_sources": pa.array([r["doc_sources"] for r in rows], pa.list_(pa.string())),
        "group": pa.array([r["group"] for r in rows], pa.string()),
        "row": pa.array([r["row"] for r in rows], pa.int64()),
    }
    return pa.RecordBatch.from_pydict(cols, schema=ROW_SCHEMA)


def _emit(rows: Iterable[dict], group: str, start: int, out: list[dict], flush_at: int) -> Iterator[pa.RecordBatch]:
    for k, r in enumerate(rows):
        r["group"], r["row"] = group, start + k
        out.append(r)
        if len(out) >= flush_at:
            yield rows_to_batch(out)
            out.clear()


def greedy_partition(batches: Iterator[pa.RecordBatch], seq_len: int, pad_id: int, explicit_mask: bool,
                     flush_at: int = 64) -> Iterator[pa.RecordBatch]:
    """mapInArrow body for stage 1: rows arrive sorted by (group, key); each group is packed on its own."""
    out: list[dict] = []
    stream = (doc for b in batches for doc in _docs_of(b))
    # itertools.groupby streams: a group's documents flow through greedy_rows without being held in memory
    for g, docs in itertools.groupby(stream, key=lambda d: d[0]):
        yield from _emit(greedy_rows(((i, s, ids, m) for _, i, s, ids, m in docs), seq_len, pad_id, explicit_mask),
                         g, 0, out, flush_at)
    if out:
        yield rows_to_batch(out)


def ffd_partition(batches: Iterator[pa.RecordBatch], seq_len: int, pad_id: int,
                  flush_at: int = 64) -> Iterator[pa.RecordBatch]:
    """mapInArrow body for stages 2/3: each (type, bucket) group is bin-packed whole."""
    out: list[dict] = []
    cur, items = None, []

    def pack(g, items):
        bins = ffd_bins([len(x[2]) for x in items], seq_len)
        rows = (make_row([Segment(items[i][0], items[i][1], 0, items[i][2], items[i][3]) for i in b],
                         seq_len, pad_id, explicit_mask=True) for b in bins)
        return _emit(rows, g, 0, out, flush_at)

    for b in batches:
        for g, i, s, ids, m in _docs_of(b):
            if g != cur and cur is not None:
                yield from pack(cur, items)
                items = []
            cur = g
            items.append((i, s, ids, m))
    if cur is not None:
        yield from pack(cur, items)
    if out:
        yield rows_to_batch(out)


# ---------------------------------------------------------------- Spark
def _key(seed: int, *cols):
    from pyspark.sql import functions as F

    return F.xxhash64(F.lit(int(seed)), *cols)


def pack_pretrain(docs, seq_len: int, seed: int, group_tokens: int, pad_id: int, label: str = "u",
                  explicit_mask: bool = False):
    """Stage-1 rows from (id, source, input_ids, n_tokens[, loss_mask]): seeded global shuffle, groups of
    ~group_tokens tokens, greedy concatenation per group."""
    from pyspark.sql import functions as F

    total = docs.agg(F.sum("n_tokens")).first()[0] or 0
    n_groups = max(1, math.ceil(total / int(group_tokens)))
    d = docs.select("id", "source", "input_ids", F.lit(None).cast("array<tinyint>").alias("loss_mask"),
                    _key(seed, F.lit("order"), F.col("id")).alias("_key"),
                    F.concat(F.lit(label), F.pmod(_key(seed, F.lit("group"), F.col("id")), F.lit(n_groups)).cast("string"))
                    .alias("_group"))
    d = d.repartition(n_groups, "_group").sortWithinPartitions("_group", "_key", "id")
    return d.mapInArrow(lambda it: greedy_partition(it, seq_len, pad_id, explicit_mask), spark_schema(ROW_SCHEMA))


def pack_supervised(examples, seq_len: int, seed: int, buckets: int, pad_id: int):
    """(rows, too_long): examples of each type bin-packed whole; longer-than-row examples rejected."""
    from pyspark.sql import functions as F

    too_long = (examples.filter(F.col("n_tokens") > seq_len)
                .withColumn("reason", F.lit("too_long"))
                .withColumn("detail", F.format_string(f"%d tokens > seq_len {seq_len}", F.col("n_tokens"))))
    ok = examples.filter(F.col("n_tokens") <= seq_len)
    d = ok.select("id", "source", "input_ids", "loss_mask",
                  _key(seed, F.lit("order"), F.col("id")).alias("_key"),
                  F.concat(F.col("type"), F.lit("/"),
                           F.pmod(_key(seed, F.lit("bucket"), F.col("id")), F.lit(int(buckets))).cast("string"))
                  .alias("_group"))
    d = d.repartition("_group").sortWithinPartitions("_group", "_key", "id")
    rows = d.mapInArrow(lambda it: ffd_partition(it, seq_len, pad_id), spark_schema(ROW_SCHEMA))
    return rows, too_long


def placements(rows):
    """One record per packed document (the segment that starts it): the accounting side of packing."""
    from pyspark.sql import functions as F

    seg = rows.select("group", "row", F.explode(F.arrays_zip("doc_ids", "seg_starts", "doc_sources")).alias("s"))
    return (seg.filter(F.col("s.doc_ids").isNotNull() & (F.col("s.seg_starts") == 0))
               .select(F.col("s.doc_ids").alias("id"), F.col("s.doc_sources").alias("source"), "group", "row"))


def row_stats(rows, seq_len: int) -> dict:
    """tokens per source, padding, efficiency, overall and per packing kind (u* groups = unsupervised)."""
    from pyspark.sql import functions as F

    seg = rows.select(F.explode(F.arrays_zip("doc_sources", "doc_lens")).alias("s"))
    tokens = {r["src"]: int(r["n"]) for r in seg.filter(F.col("s.doc_sources").isNotNull())
              .groupBy(F.col("s.doc_sources").alias("src")).agg(F.sum("s.doc_lens").alias("n")).collect()}
    kinds = {}
    for r in (rows.groupBy(F.when(F.col("group").startswith("u"), "unsupervised").otherwise("supervised").alias("k"))
              .agg(F.count(F.lit(1)).alias("rows"), F.sum("num_pad").alias("pad"),
                   F.sum((F.col("num_pad") > 0).cast("int")).alias("padded_rows")).collect()):
        kinds[r["k"]] = {"rows": int(r["rows"]), "padding_tokens": int(r["pad"]), "padded_rows": int(r["padded_rows"]),
                         "efficiency": round(1 - r["pad"] / (r["rows"] * seq_len), 6)}
    n_rows = sum(k["rows"] for k in kinds.values())
    pad = sum(k["padding_tokens"] for k in kinds.values())
    return {"rows": n_rows, "tokens": dict(sorted(tokens.items())), "padding_tokens": pad,
            "efficiency": round(1 - pad / (n_rows * seq_len), 6) if n_rows else 0.0, "packing": kinds}


def write_shards(rows, out_dir: str | os.PathLike, seed: int, rows_per_shard: int, n_rows: int) -> list[dict]:
    """OUT/shards/part-XXXXX.parquet: a seeded hash of (group, row) picks each row's shard and its place in
    it, so the files are byte-identical for a seed whatever the partitioning. Returns [{path, rows}].
    `out_dir` is a path or URI (through dataflow.core.fs)."""
    from pyspark.sql import functions as F

    out_dir = str(out_dir)
    shards_dir, tmp = fs.join(out_dir, "shards"), fs.join(out_dir, "_shards_tmp")
    for p in (shards_dir, tmp):
        fs.delete(p)
    n_shards = max(1, math.ceil(n_rows / int(rows_per_shard)))
    keyed = (rows.withColumn("_ok", _key(seed, F.lit("row"), F.col("group"), F.col("row")))
                 .withColumn("_shard", F.pmod(F.col("_ok"), F.lit(n_shards))))
    (keyed.repartition(n_shards, "_shard").sortWithinPartitions("_shard", "_ok")
          .select(*SHARD_COLUMNS, "_shard")
          .write.partitionBy("_shard").option("compression", "zstd").parquet(fs.spark_uri(tmp)))
    fs.makedirs(shards_dir)

    def entries(uri):   # raw listing: `_shard=K` folders are hidden from fs.walk
        fsys, path = fs.resolve(uri)
        return [(e.base_name, e.type) for e in fsys.get_file_info(pafs.FileSelector(path, recursive=False))]

    found = sorted((int(name.split("=", 1)[1]), fs.join(tmp, name)) for name, t in entries(tmp)
                   if t == pafs.FileType.Directory and name.startswith("_shard="))
    listing = []
    for k, (_, d) in enumerate(found):
        files = sorted(name for name, t in entries(d) if t == pafs.FileType.File
                       and name.startswith("part-") and name.endswith(".parquet"))
        if len(files) != 1:
            raise RuntimeError(f"shard directory {d} holds {len(files)} files, expected 1")
        dest = fs.join(shards_dir, f"part-{k:05d}.parquet")
        fs.move(fs.join(d, files[0]), dest)
        with fs.open_input(dest) as f:
            listing.append({"path": f"shards/{fs.basename(dest)}", "rows": pq.ParquetFile(f).metadata.num_rows})
    fs.delete(tmp)
    if sum(s["rows"] for s in listing) != n_rows:
        raise RuntimeError(f"shards hold {sum(s['rows'] for s in listing)} rows, expected {n_rows}")
    return listing


def stage_manifest(stage: int | None, seq_len: int, seed: int, tokenizer: Mapping, shards: list[dict],
                   stats: Mapping, **extra: Any) -> dict:
    """The manifest the trainer reads (keys fixed by the contract; later keys are additions)."""
    return {"stage": stage, "seq_len": seq_len, "seed": seed, "tokenizer": dict(tokenizer), "shards": shards,
            "rows": stats["rows"], "tokens": stats["tokens"], "padding_tokens": stats["padding_tokens"],
            "efficiency": stats["efficiency"], "packing": stats["packing"], **extra}


def write_manifest(manifest: Mapping, out_dir: str | os.PathLike) -> str:
    p = fs.join(str(out_dir), "manifest.json")
    fs.write_text(p, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return p


# ---------------------------------------------------------------- the stage
@dataclass
class Packed:
    rows: Any          # packed rows (persisted)
    placed: Any        # one record per packed document
    rejected: Any      # documents that could not be packed, with reason/detail


def pack(df, cfg: Mapping, mode: str, pad_id: int) -> Packed:
    """Pack a tokenize-stage output. mode `pretrain`: everything as stage-1 documents (loss masks ignored);
    `supervised`: rows grouped by `type` and bin-packed whole (a record without `type` is rejected)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    seq_len, seed = int(cfg["seq_len"]), int(cfg["seed"])
    if mode == "pretrain":
        rows = pack_pretrain(df, seq_len, seed, int(cfg["group_tokens"]), pad_id)
        rejected = df.limit(0).withColumn("reason", F.lit(None).cast("string")).withColumn("detail", F.lit(None).cast("string"))
    elif mode == "supervised":
        no_type = (df.filter(F.col("type").isNull()).withColumn("reason", F.lit("malformed:no_type"))
                     .withColumn("detail", F.lit("supervised packing needs `type`")))
        rows, too_long = pack_supervised(df.filter(F.col("type").isNotNull()), seq_len, seed,
                                         int(cfg["supervised_buckets"]), pad_id)
        rejected = no_type.unionByName(too_long)
    else:
        raise ValueError(f"pack mode must be pretrain or supervised, not {mode!r}")
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    return Packed(rows=rows, placed=placements(rows), rejected=rejected)


def write_products(packed: Packed, attempt_dir: str, *, stage_no: int | None, seq_len: int, seed: int,
                   rows_per_shard: int, tokenizer: Mapping, manifest_extra: Mapping | None = None) -> tuple[dict, dict]:
    """The packed products, into an attempt (committed with the stage): shards/part-XXXXX.parquet and
    manifest.json. Returns (manifest, row statistics)."""
    stats = row_stats(packed.rows, seq_len)
    shards = write_shards(packed.rows, attempt_dir, seed, rows_per_shard, stats["rows"])
    manifest = stage_manifest(stage_no, seq_len, seed, tokenizer, shards, stats, **dict(manifest_extra or {}))
    write_manifest(manifest, attempt_dir)
    return manifest, stats


def packed_result(packed: Packed, stats: Mapping) -> StageResult:
    """The per-document accounting of a packing: placed documents kept, the rest rejected; the packed rows are
    unpersisted once both are written."""
    return StageResult(kept=packed.placed, rejected=packed.rejected, annotated=packed.rows,
                       stats={k: stats[k] for k in ("rows", "efficiency", "padding_tokens", "packing")})


def write_packed(packed: Packed, out: str, *, stage_no: int | None, seq_len: int, seed: int, rows_per_shard: int,
                 tokenizer: Mapping, stage: str, input_count: int, input_paths: Iterable[str] = (),
                 cfg: Mapping | None = None, t0: float | None = None, manifest_extra: Mapping | None = None) -> dict:
    """The packed-output sequence of every mixer stage (the `pack` stage does the same through the runner):
    shards and manifest.json into an attempt, then the per-document accounting through `write_stage`, which
    commits it all (`_SUCCESS` last). Returns (manifest, stats)."""
    attempt = Attempt(out).begin()
    manifest, stats = write_products(packed, attempt.dir, stage_no=stage_no, seq_len=seq_len, seed=seed,
                                     rows_per_shard=rows_per_shard, tokenizer=tokenizer, manifest_extra=manifest_extra)
    out_stats = write_stage(packed_result(packed, stats), out, stage=stage, input_count=input_count,
                            input_paths=input_paths, cfg=cfg, t0=t0, attempt=attempt)
    return manifest, out_stats


# the `pack` section of conf/pipeline.yaml
MODES = ("pretrain", "supervised")
SPEC = optional_section({
    "seq_len": Count(1),
    "seed": Int(),
    "group_tokens": Count(1),
    "supervised_buckets": Count(1),
    "rows_per_shard": Count(1),
    "pad_id": Count(0, nullable=True),
    "mode": Str(MODES, nullable=True),   # the `pack` stage only (jobs.pack --mode): required there
    "stage": Int(nullable=True),         # the `pack` stage only (--stage): the manifest's stage (null: 1 for pretrain)
}, required=("seq_len", "seed"))
INPUT_COLUMNS = ("id", "source", "type", "input_ids", "loss_mask", "n_tokens")


def _mode(cfg: Mapping) -> str:
    mode = cfg.get("mode")
    if mode not in MODES:
        raise ValueError(f"pack: --mode is required ({' or '.join(MODES)}; or set pack.mode), got {mode!r}")
    return mode


def _precheck(conf, inputs: list[str], output: str) -> None:
    """On the driver, before a JVM starts: the mode, and the tokenizer the manifest names (loaded and tried)."""
    _mode(conf.get("pack") or {})
    check_model(conf["tokenizer"]["model"])


def _read(ctx: StageContext):
    """A tokenize-stage output, cached: packing reads it more than once (token total, rows, rejects)."""
    df, paths = read_stage_input(ctx.spark, ctx.inputs, output=ctx.output, allow_incomplete=ctx.allow_incomplete,
                                 require=("id", "input_ids", "n_tokens"))
    return df.select(*INPUT_COLUMNS).cache(), paths


def _transform(df, ctx: StageContext) -> StageResult:
    """Pack, then write shards/ and manifest.json into the attempt; the runner writes the per-document accounting
    (data/: one record per placed document, rejected/) and commits it all."""
    cfg = ctx.cfg
    mode = _mode(cfg)
    tok = tokenizer_info(ctx.conf["tokenizer"]["model"], cfg.get("pad_id"))
    packed = pack(df, cfg, mode, tok["pad_id"])
    stage_no = cfg.get("stage") if cfg.get("stage") is not None else (1 if mode == "pretrain" else None)
    _, stats = write_products(packed, ctx.attempt.dir, stage_no=stage_no, seq_len=int(cfg["seq_len"]),
                              seed=int(cfg["seed"]), rows_per_shard=int(cfg["rows_per_shard"]), tokenizer=tok,
                              manifest_extra={"mode": mode})
    result = packed_result(packed, stats)
    extra = result.stats

    def after_writes() -> dict:   # data/ and rejected/ are written: the cached input is no longer read
        df.unpersist()
        return extra

    result.stats = after_writes
    return result


STAGE = Stage(
    name="pack",
    summary="tokenized documents -> rows of exactly seq_len tokens (the trainer's shards + manifest.json)",
    report=lambda st: f"{st['extra']['rows']} rows, efficiency {st['extra']['efficiency']}",
    spec=SPEC,
    transform=_transform,
    read=_read,
    precheck=_precheck,
    files=("tokenizer",),
    input_help="a jobs.encode output directory (or its data/ Parquet)",
    options=(
        Option(("--mode",), {"choices": list(MODES), "default": None,
                             "help": "stage-1 concatenation or stage-2/3 bin packing (required; sets pack.mode)"},
               to_sets=lambda v: [f"pack.mode={v}"]),
        Option(("--tokenizer",), {"default": None,
                                  "help": "tokenizer.model the input was tokenized with (default: tokenizer.model in "
                                          "the conf); recorded in the manifest"},
               to_sets=lambda v: [f"tokenizer.model={v}"]),
        Option(("--stage",), {"type": int, "default": None,
                              "help": "stage number written to the manifest (default: 1 for pretrain, null otherwise)"},
               to_sets=lambda v: [f"pack.stage={int(v)}"]),
    ),
    doc="""Pack one tokenized dataset into rows of exactly seq_len tokens (the trainer's shard format).

  python -m jobs.pack --input build/runs/tokenized/pretrain --output build/runs/packed/pretrain --mode pretrain
  python -m jobs.pack --input build/runs/tokenized/sft --output build/runs/packed/sft --mode supervised

--mode pretrain: seeded global shuffle, greedy concatenation, long documents split into segments (stage 1).
--mode supervised: examples grouped by `type`, bin-packed whole (first-fit decreasing); an example longer
than seq_len goes to rejected/ (reason too_long), a record without `type` too (malformed:no_type).
Writes OUT/shards/part-XXXXX.parquet, OUT/manifest.json (rows, tokens per source, padding, efficiency),
OUT/data (one record per packed document: id, source, group, row), OUT/rejected, OUT/stats.json, OUT/_SUCCESS.
jobs.mix does the same per training stage, after sampling. Settings: the `pack` section of conf/pipeline.yaml.""",
)
