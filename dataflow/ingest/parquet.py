"""Parquet with a `text` column (and optional `id/url/source/meta`), read row group by row group in the executor.

Other columns go into `meta` as strings (an input `id` is `meta.id`). `text` may be any Arrow string type
(`string`, `large_string`, `string_view`, dictionary-encoded). The rows a reader *saw* are the rows the
footer declares, and each one leaves as exactly one row: rows whose `text` is null, empty or not a string
are quarantined with their row index as offset; a row whose fields cannot be taken over (a `meta` list of
ints, a field of an unexpected type) costs that row alone (`malformed:row`, the exception named); a row
group that cannot be decoded (a corrupt data page: a bare ZSTD/snappy/thrift error) gives one
`malformed:parquet_row_group` row per row it held that was not yet read, and the next row group is read.
A file that is not Parquet is one quarantine row.

`counter["seen"]` (when given) grows by the rows the footer declares, independently of what is yielded.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from dataflow.core import fs
from dataflow.ingest.records import input_fields, meta_str, quarantine, record, strip_surrogates, too_large


def iter_parquet(path: str, *, source: str, cfg: dict, batch_rows: int, counter: dict | None = None) -> Iterator[dict]:
    max_bytes = int(cfg["max_doc_bytes"])
    prefix = int(cfg["quarantine_prefix_chars"])
    counter = counter if counter is not None else {}
    f = fs.open_input(path)
    try:
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowException, OSError, ValueError) as e:
            counter["seen"] = counter.get("seen", 0) + 1
            yield quarantine(source=source, file=path, offset=0, what="parquet", why=f"not readable as Parquet: {e}")
            return
        row = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            counter["seen"] = counter.get("seen", 0) + n
            first, done = row, 0
            try:
                for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[g]):
                    for obj in batch.to_pylist():
                        yield _guarded_row(obj, path=path, offset=row, source=source, max_bytes=max_bytes,
                                           prefix=prefix)
                        row += 1
                        done += 1
            except Exception as e:  # noqa: BLE001 - Arrow raises OSError, ArrowException or a bare codec error
                why = (f"row group {g} (rows {first}-{first + n - 1}) cannot be decoded after row {row}: "
                       f"{type(e).__name__}: {e}")
                for r in range(row, first + n):   # every row the footer declares leaves as a row of its own
                    yield quarantine(source=source, file=path, offset=r, what="parquet_row_group", why=why,
                                     meta={"row_group": str(g)})
                row = first + n
    finally:
        f.close()


def _guarded_row(obj: dict, **kw) -> dict:
    """`_row`, with any exception in taking the row over costing that row alone (named, with its offset)."""
    try:
        return _row(obj, **kw)
    except Exception as e:  # noqa: BLE001 - one odd row must never take its row group with it
        return quarantine(source=kw["source"], file=kw["path"], offset=kw["offset"], what="row",
                          why=f"row cannot be taken over: {type(e).__name__}: {e}")


def _row(obj: dict, *, path, offset, source, max_bytes, prefix) -> dict:
    rec_source, url, meta, bad = input_fields(obj, file=path, offset=offset, source=source)
    common = dict(source=rec_source, file=path, offset=offset, url=url, meta=meta)
    if bad is not None:
        return quarantine(**common, what="lone_surrogate", why=f"field `{bad}` holds a lone surrogate")
    text = obj.get("text")
    if "text" not in obj:
        return quarantine(**common, what="missing_text", why="the file has no `text` column")
    if text is None:
        return quarantine(**common, what="missing_text", why="`text` is null")
    if not isinstance(text, str):
        return quarantine(**common, what="text_type", why=f"`text` is a {type(text).__name__}, not a string",
                          prefix=meta_str(text)[:prefix] if not isinstance(text, bytes) else text[:prefix])
    text = strip_surrogates(text)
    if too_large(text, max_bytes):
        return quarantine(**common, what="too_large",
                          why=f"text of {len(text.encode('utf-8'))} bytes exceeds preprocess.max_doc_bytes={max_bytes}",
                          prefix=text[:prefix])
    if not text.strip():
        return quarantine(**common, what="empty_text", why="`text` is empty or whitespace only")
    return record(**common, text=text, content_type="text/plain")
