"""Parquet with a `text` column (and optional `id/url/source/meta`), read batch by batch in the executor.

Other columns go into `meta` as strings. Rows whose `text` is null, empty or not a string are
quarantined with their row index as offset; a file that is not Parquet is one quarantine row.
"""
from __future__ import annotations

import json
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .records import quarantine, record

_TAKEN = ("text", "url", "source", "meta")


def _str(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def iter_parquet(path: str, *, source: str, cfg: dict, batch_rows: int) -> Iterator[dict]:
    max_bytes = int(cfg["max_doc_bytes"])
    prefix = int(cfg["quarantine_prefix_chars"])
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        yield quarantine(source=source, file=path, offset=0, what="parquet", why=f"not readable as Parquet: {e}")
        return
    names = pf.schema_arrow.names
    ttype = pf.schema_arrow.field("text").type if "text" in names else None
    text_is_str = ttype is not None and (pa.types.is_string(ttype) or pa.types.is_large_string(ttype))
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        for obj in batch.to_pylist():
            yield _row(obj, path=path, offset=row, source=source, text_is_str=text_is_str,
                       max_bytes=max_bytes, prefix=prefix)
            row += 1


def _row(obj: dict, *, path, offset, source, text_is_str, max_bytes, prefix) -> dict:
    rec_source = obj["source"] if isinstance(obj.get("source"), str) and obj["source"] else source
    url = obj.get("url") if isinstance(obj.get("url"), str) else None
    meta = {"file": path, "offset": str(offset)}
    m = obj.get("meta")
    if isinstance(m, dict):
        meta.update({str(k): _str(v) for k, v in m.items() if v is not None})
    elif isinstance(m, list):  # Arrow maps come back as [(key, value), ...]
        meta.update({str(k): _str(v) for k, v in m if v is not None})
    for k, v in obj.items():
        if k not in _TAKEN and v is not None:
            meta[k if k not in ("file", "offset") else f"src_{k}"] = _str(v)
    text = obj.get("text")
    common = dict(source=rec_source, file=path, offset=offset, url=url, meta=meta)
    if "text" not in obj:
        return quarantine(**common, what="missing_text", why="the file has no `text` column")
    if text is None:
        return quarantine(**common, what="missing_text", why="`text` is null")
    if not text_is_str or not isinstance(text, str):
        return quarantine(**common, what="text_type", why=f"`text` is a {type(text).__name__}, not a string",
                          prefix=_str(text)[:prefix])
    # chars <= UTF-8 bytes <= 4 * chars: encode only when the length alone does not decide
    if len(text) > max_bytes or (4 * len(text) > max_bytes and len(text.encode("utf-8")) > max_bytes):
        return quarantine(**common, what="too_large",
                          why=f"text of {len(text.encode('utf-8'))} bytes exceeds preprocess.max_doc_bytes={max_bytes}",
                          prefix=text[:prefix])
    if not text.strip():
        return quarantine(**common, what="empty_text", why="`text` is empty or whitespace only")
    return record(**common, text=text, content_type="text/plain")
