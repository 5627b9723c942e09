"""Writes built on `dataflow.core.fs` that take more than one call: files written by executors and committed by
the driver, and the local copies a single-machine tool needs (DESIGN §9: no shared disk).

- `write_parts`: each partition of a Spark frame is written by the executor that holds it, through `fs`, to the
  output URI (local, file://, s3://, ...). Attempts write under `DIR/_parts-<token>/`; the driver moves the
  parts of the tasks that succeeded to `DIR/part-NNNNN<suffix>` and removes the rest, so a retried or
  speculative task never leaves a second copy. It needs no Hadoop connector for the store, only pyarrow.
- `single_file`: the one part of a one-partition frame moved to its final name (a review sheet, a sample).
- `to_local` / `from_local`: the bytes of URIs concatenated into a local file (SentencePiece trains on a
  local file), and a local file streamed to a URI (the trained model).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable, IO, Iterable, Iterator

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


def write_parts(df, dest_dir: str, suffix: str, encode: Encoder, *, skip_empty: bool = False) -> list[Part]:
    """Write every partition of `df` as `dest_dir/part-NNNNN<suffix>` from the executors, through `fs`; only
    (partition, uri, rows) reach the driver. `skip_empty`: partitions without rows write no file."""
    import pyarrow as pa
    from pyspark import TaskContext

    dest_dir = fs.normalize(str(dest_dir))
    staging = fs.join(dest_dir, f"_parts-{uuid.uuid4().hex[:8]}")

    def write(batches):
        ctx = TaskContext.get()
        index, attempt = ctx.partitionId(), ctx.attemptNumber()
        uri = fs.join(staging, f"part-{index:05d}-{attempt}{suffix}")
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
            final = fs.join(dest_dir, f"part-{r['part']:05d}{suffix}")
            fs.move(r["uri"], final)
            parts.append(Part(r["part"], final, r["rows"]))
    finally:
        fs.delete(staging)   # parts of failed or losing attempts
    return parts


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
