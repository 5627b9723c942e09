"""Ingest: list input files on the driver, read them in executors into raw records (Arrow batches).

`read(spark, paths, cfg)` returns a DataFrame with `RAW_SCHEMA` (one row per input document, malformed
input included as `malformed:<what>` rows) and the list of files. The driver only sees file names and
sizes; a DataFrame of paths is spread over tasks and `mapInArrow` opens each file where it runs.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from .listing import InputFile, file_format, list_inputs
from .records import RAW_COLUMNS, RAW_SCHEMA, quarantine, source_for, to_batch

__all__ = ["InputFile", "file_format", "list_inputs", "read", "iter_file", "RAW_SCHEMA", "RAW_COLUMNS"]

_PATHS_SCHEMA = "path string, fmt string, size long, idx int"


def iter_file(path: str, fmt: str, cfg: dict, batch_rows: int = 1000):
    """Every raw record of one file, in file order (pure Python: usable without Spark)."""
    import os

    source = source_for(path, cfg.get("source"))
    if not os.path.exists(path):  # vanished between listing and reading
        raise FileNotFoundError(f"input file {path} does not exist (listed on the driver, missing on the worker)")
    if os.path.getsize(path) == 0:
        yield quarantine(source=source, file=path, offset=0, what="empty_file", why="zero-byte file")
        return
    if fmt in ("warc", "wet"):
        from .warc import iter_warc

        yield from iter_warc(path, source=source, is_wet=fmt == "wet", cfg=cfg)
    elif fmt == "jsonl":
        from .jsonl import iter_jsonl

        yield from iter_jsonl(path, source=source, cfg=cfg)
    elif fmt == "parquet":
        from .parquet import iter_parquet

        yield from iter_parquet(path, source=source, cfg=cfg, batch_rows=batch_rows)
    else:
        raise ValueError(f"input file {path}: unknown format {fmt!r}")


def _chunks(rows, batch_rows: int, batch_bytes: int):
    """Lists of raw records bounded by count and by payload bytes."""
    buf, size = [], 0
    for r in rows:
        buf.append(r)
        size += len(r["content"] or b"") + len(r["text"] or "")
        if len(buf) >= batch_rows or size >= batch_bytes:
            yield buf
            buf, size = [], 0
    if buf:
        yield buf


def _batches(rows, batch_rows: int, batch_bytes: int):
    for chunk in _chunks(rows, batch_rows, batch_bytes):
        yield to_batch(chunk)


def read(spark, paths, cfg: dict, *, transform: Callable | None = None, schema: pa.Schema | None = None):
    """(DataFrame, files). `cfg` is the `preprocess` section.

    Without `transform` the frame holds raw records (RAW_SCHEMA). With it, each batch of raw records
    (a list of dicts) goes through `transform(rows) -> pa.RecordBatch` of `schema` in the same Python
    worker that read it, so payload bytes never travel to the JVM and back (the DP job's fused path)."""
    files = list_inputs(paths)
    per_task = max(1, int(cfg["files_per_task"]))
    n_tasks = max(1, (len(files) + per_task - 1) // per_task)
    batch_rows = int(cfg["batch_rows"])
    batch_bytes = int(cfg["batch_bytes"])
    # parallelize slices the list into contiguous chunks: with one file per task, task i reads file i
    rows = [(f.path, f.fmt, f.size, i) for i, f in enumerate(files)]
    paths_df = spark.createDataFrame(spark.sparkContext.parallelize(rows, n_tasks), _PATHS_SCHEMA)

    def read_files(batches):
        for b in batches:
            for path, fmt in zip(b.column("path").to_pylist(), b.column("fmt").to_pylist()):
                rows = iter_file(path, fmt, cfg, batch_rows)
                if transform is None:
                    yield from _batches(rows, batch_rows, batch_bytes)
                else:
                    yield from (transform(chunk) for chunk in _chunks(rows, batch_rows, batch_bytes))

    from ..schema import spark_schema

    return paths_df.mapInArrow(read_files, spark_schema(schema if transform is not None else RAW_SCHEMA)), files
