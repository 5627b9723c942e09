"""The raw record every reader yields, and the quarantine row for input that cannot be read.

A raw record is one input document before preprocessing: either `content` (payload bytes still to be
decoded, e.g. an HTTP response body) or `text` (already a string, from JSONL/Parquet). A reader never
drops anything: unreadable input becomes a row with `reason = malformed:<what>` and a `detail` naming
the file and offset, and it is counted like any other input record.
"""
from __future__ import annotations

import os

import pyarrow as pa

RAW_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("url", pa.string()),
    ("file", pa.string()),            # the input file's path
    ("offset", pa.int64()),           # byte offset of the record (gzip member, line start) or Parquet row
    ("content", pa.binary()),         # payload bytes still to decode (HTML, WET text), else null
    ("text", pa.string()),            # already decoded text (JSONL, Parquet), else null
    ("content_type", pa.string()),
    ("meta", pa.map_(pa.string(), pa.string())),
    ("reason", pa.string()),          # null, or malformed:<what>
    ("detail", pa.string()),
])
RAW_COLUMNS = RAW_SCHEMA.names


def source_for(path: str, cfg_source: str | None) -> str:
    """The configured source name, else the file name without its (compound) extension."""
    if cfg_source:
        return str(cfg_source)
    name = os.path.basename(path)
    for suffix in (".warc.wet.gz", ".warc.gz", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".json.zst"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def record(*, source, file, offset, url=None, content=None, text=None, content_type=None, meta=None,
           reason=None, detail=None) -> dict:
    return {"source": source, "url": url, "file": file, "offset": offset, "content": content, "text": text,
            "content_type": content_type, "meta": meta or {}, "reason": reason, "detail": detail}


def quarantine(*, source, file, offset, what, why, prefix=None, url=None, meta=None) -> dict:
    """A row for input that could not be read. `prefix` keeps a bounded piece of the bad bytes for audit."""
    text = None
    if prefix is not None:
        text = prefix.decode("utf-8", "replace") if isinstance(prefix, (bytes, bytearray)) else str(prefix)
    return record(source=source, file=file, offset=offset, url=url, text=text, meta=meta,
                  reason=f"malformed:{what}", detail=f"{file} @ offset {offset}: {why}")


def to_batch(rows: list[dict]) -> pa.RecordBatch:
    cols = {name: [r[name] for r in rows] for name in RAW_COLUMNS}
    cols["meta"] = [list(m.items()) for m in cols["meta"]]
    return pa.RecordBatch.from_pydict(cols, schema=RAW_SCHEMA)
