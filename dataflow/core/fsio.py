"""Writes built on `dataflow.core.fs` that take more than one call: files written by executors and committed by
the driver, and the local copies a single-machine tool needs (DESIGN §9: no shared disk).

- `write_parts`: each partition of a Spark frame is written by the executor that holds it, through `fs`, to the
  output URI (local, file://, s3://, ...). Attempts write under `DIR/_parts-<token>/`; the driver moves the
  parts of the tasks that succeeded to `DIR/part-NNNNN<suffix>` and removes the rest, so a retried or
  speculative task never leaves a second copy. It needs no Hadoop connector for the store, only pyarrow.
- `write_split`: one pass over a frame into several Parquet outputs (a stage's data/ and rejected/), each batch's
  rows routed to the outputs and counted as they are written, so no output is cached first or read back to
  count it. The same staging and commit as `write_parts`.
- `single_file`: the one part of a one-partition frame moved to its final name (a review sheet, a sample).
- `to_local` / `from_local`: the bytes of URIs concatenated into a local file (SentencePiece trains on a
  local file), and a local file streamed to a URI (the trained model).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, IO, Iterable, Iterator, Mapping

from dataflow.core import fs

_CHUNK = 1 << 20   # bytes per read when streaming a file from one place to another

# encode(batches, out) -> rows written: the format of one part (JSONL, CSV, Parquet, text lines)
Encoder = Callable[[Iterator, IO[bytes]], int]


@dataclass(frozen=True)
class Part:
    index: int     # the partition
    uri: str       # where its file lies after `write_parts`
    rows: int


def _done_schema():
    import pyarrow as pa

    return pa.schema([("part", pa.int64()), ("uri", pa.string()), ("rows", pa.int64())])


_DONE = _done_schema()


def _attempt_uri(staging: str, suffix: str) -> str:
    """Where this task attempt writes its part: the staging directory, named by partition and attempt."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return fs.join(staging, f"part-{ctx.partitionId():05d}-{ctx.attemptNumber()}{suffix}")


def _commit(uri: str, dest_dir: str, index: int, suffix: str) -> str:
    """Move a winning attempt's part to its final name `dest_dir/part-NNNNN<suffix>`; returns that name."""
    final = fs.join(dest_dir, f"part-{index:05d}{suffix}")
    fs.move(uri, final)
    return final


def write_parts(df, dest_dir: str, suffix: str, encode: Encoder, *, skip_empty: bool = False) -> list[Part]:
    """Write every partition of `df` as `dest_dir/part-NNNNN<suffix>` from the executors, through `fs`; only
    (partition, uri, rows) reach the driver. `skip_empty`: partitions without rows write no file."""
    import pyarrow as pa
    from pyspark import TaskContext

    dest_dir = fs.normalize(str(dest_dir))
    staging = fs.join(dest_dir, f"_parts-{uuid.uuid4().hex[:8]}")

    def write(batches):
        index, uri = TaskContext.get().partitionId(), _attempt_uri(staging, suffix)
        batches = iter(batches)
        first = next(batches, None)
        rows = 0
        if first is not None or not skip_empty:
            with fs.open_output(uri) as out:
                rows = encode(_chain(first, batches), out)
        yield pa.RecordBatch.from_pydict({"part": [index], "uri": [uri if rows or not skip_empty else None],
                                          "rows": [rows]}, schema=_DONE)

    try:
        done = df.mapInArrow(write, "part long, uri string, rows long").collect()
        parts = []
        for r in sorted(done, key=lambda r: r["part"]):
            if r["uri"] is None:
                continue
            parts.append(Part(r["part"], _commit(r["uri"], dest_dir, r["part"], suffix), r["rows"]))
    finally:
        fs.delete(staging)   # parts of failed or losing attempts
    return parts


# route(batch) -> {output: the batch's rows for it}; tally(output, rows) -> {key: counts}, summed per output
Route = Callable[[Any], Mapping[str, Any]]
Tally = Callable[[str, Any], Mapping[str, list[int]]]


@dataclass(frozen=True)
class Split:
    """What `write_split` wrote: the parts of each output, and per output the sum of `tally` over its rows."""
    parts: dict[str, list[Part]]
    tally: dict[str, dict[str, list[int]]]


def _split_done_schema():
    import pyarrow as pa

    return pa.schema([("part", pa.int64()), ("name", pa.string()), ("uri", pa.string()), ("rows", pa.int64()),
                      ("tally", pa.string())])


_SPLIT_DONE = _split_done_schema()


def _add(into: dict[str, list[int]], counts: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    for key, vals in counts.items():
        vals = list(vals)
        have = into.setdefault(key, [0] * len(vals))
        into[key] = [a + b for a, b in zip(have, vals)]
    return into


def write_split(df, outputs: Mapping[str, tuple[str, Any]], route: Route, tally: Tally | None = None, *,
                suffix: str = ".zstd.parquet", compression: str = "zstd") -> Split:
    """Write `df` in one pass into the Parquet outputs `outputs` ({name: (dir, arrow schema)}): each Arrow batch
    of a partition goes through `route` to the outputs, which the executor writes as `dir/part-NNNNN<suffix>`
    through `fs`; `tally` counts the rows of each output as they are written. Only (partition, output, uri,
    rows, tally) reach the driver, and only from the attempts that won; an output no row reached is one empty
    file with its schema (a readable folder with its columns). An output whose dir is None is counted and never
    written (the counters a fused pass carries beside its rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    dirs = {n: fs.normalize(str(d)) for n, (d, _) in outputs.items() if d is not None}
    schemas = {n: s for n, (_, s) in outputs.items()}
    token = uuid.uuid4().hex[:8]
    staging = {n: fs.join(d, f"_parts-{token}") for n, d in dirs.items()}

    def write(batches):
        index = TaskContext.get().partitionId()
        open_ = {}       # name -> (uri, stream, writer)
        rows: dict[str, int] = {}
        counts: dict[str, dict[str, list[int]]] = {}
        try:
            for batch in batches:
                for name, sub in route(batch).items():
                    if not sub.num_rows:
                        continue
                    if name not in dirs:     # counted only
                        rows[name] = rows.get(name, 0) + sub.num_rows
                        if tally is not None:
                            _add(counts.setdefault(name, {}), tally(name, sub))
                        continue
                    if name not in open_:
                        uri = _attempt_uri(staging[name], suffix)
                        out = fs.open_output(uri)
                        open_[name] = (uri, out, pq.ParquetWriter(out, schemas[name], compression=compression))
                    sub = sub.cast(schemas[name]) if sub.schema != schemas[name] else sub
                    open_[name][2].write_batch(sub)
                    rows[name] = rows.get(name, 0) + sub.num_rows
                    if tally is not None:
                        _add(counts.setdefault(name, {}), tally(name, sub))
        finally:
            for _, out, writer in open_.values():
                writer.close()
                out.close()
        names = sorted(rows)
        if names:
            yield pa.RecordBatch.from_pydict({"part": [index] * len(names), "name": names,
                                              "uri": [open_[n][0] if n in open_ else None for n in names],
                                              "rows": [rows[n] for n in names],
                                              "tally": [json.dumps(counts.get(n, {})) for n in names]},
                                             schema=_SPLIT_DONE)

    try:
        done = df.mapInArrow(write, "part long, name string, uri string, rows long, tally string").collect()
        parts: dict[str, list[Part]] = {n: [] for n in outputs}
        tallies: dict[str, dict[str, list[int]]] = {n: {} for n in outputs}
        for r in sorted(done, key=lambda r: (r["name"], r["part"])):
            if r["uri"] is not None:
                final = _commit(r["uri"], dirs[r["name"]], r["part"], suffix)
                parts[r["name"]].append(Part(r["part"], final, r["rows"]))
            _add(tallies[r["name"]], json.loads(r["tally"]))
        for name, got in parts.items():
            if not got and name in dirs:
                uri = fs.join(dirs[name], f"part-00000{suffix}")
                with fs.open_output(uri) as out:
                    pq.ParquetWriter(out, schemas[name], compression=compression).close()
                got.append(Part(0, uri, 0))
    finally:
        for s in staging.values():
            fs.delete(s)   # parts of failed or losing attempts
    return Split(parts=parts, tally=tallies)


def _chain(first, rest) -> Iterator:
    if first is not None:
        yield first
        yield from rest


def single_file(parts: list[Part], uri: str) -> int:
    """Move the one part of a one-partition write to `uri`; the rows it holds."""
    if len(parts) != 1:
        raise RuntimeError(f"expected one part for {uri}, found {len(parts)}: write a one-partition frame")
    fs.move(parts[0].uri, uri)
    return parts[0].rows


def copy_stream(src: IO[bytes], dst: IO[bytes]) -> int:
    n = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            return n
        dst.write(chunk)
        n += len(chunk)


def to_local(uris: Iterable[str], local_path: str) -> int:
    """Concatenate the files `uris` (any store) into the local file `local_path`; the bytes written."""
    n = 0
    with fs.open_output(fs.local_path(local_path)) as out:
        for uri in uris:
            with fs.open_stream(uri) as src:
                n += copy_stream(src, out)
    return n


def from_local(local_path: str, uri: str) -> str:
    """Stream the local file `local_path` to `uri` (any store); returns `uri`."""
    with fs.open_stream(fs.local_path(local_path)) as src, fs.open_output(uri) as out:
        copy_stream(src, out)
    return uri


def parquet_encoder(arrow_schema, compression: str = "zstd") -> Encoder:
    """Arrow batches -> one Parquet file of `arrow_schema` (the frame's schema, given by the driver, so an
    empty part still has its columns)."""
    def encode(batches, out) -> int:
        import pyarrow.parquet as pq

        rows = 0
        with pq.ParquetWriter(out, arrow_schema, compression=compression) as w:
            for b in batches:
                w.write_batch(b.cast(arrow_schema) if b.schema != arrow_schema else b)
                rows += b.num_rows
        return rows

    return encode
