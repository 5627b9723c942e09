"""The raw record every reader yields, and the quarantine row for input that cannot be read.

A raw record is one input document before preprocessing: either `content` (payload bytes still to be
decoded, e.g. an HTTP response body) or `text` (already a string, from JSONL/Parquet). A reader never
drops anything: unreadable input becomes a row with `reason = malformed:<what>` and a `detail` naming
the file and offset, and it is counted like any other input record.
"""
from __future__ import annotations

import json
import os
import re

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
    ("source_type", pa.string()),     # as the reader or the record declares it (DP validates it and fills the rest)
])
RAW_COLUMNS = RAW_SCHEMA.names


def source_for(path: str, cfg_source: str | None) -> str:
    """The configured source name, else the file name without its (compound) extension."""
    if cfg_source:
        return str(cfg_source)
    parts = path.rstrip("/").rsplit("/", 2)
    name = parts[-1]
    if name.lower() == "posts.xml" and len(parts) > 1:   # a StackExchange dump unpacked: <site>/Posts.xml
        return parts[-2]
    for suffix in (".warc.wet.gz", ".warc.gz", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".json.zst", ".tar.gz",
                   ".xml.bz2", ".xml.gz", ".txt.gz", ".txt.bz2"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(s) -> bool:
    """True for a str holding a lone surrogate (from a JSON `\\ud800` escape): UTF-8 cannot encode it."""
    return isinstance(s, str) and _SURROGATE.search(s) is not None


def clean(s):
    """A str that UTF-8 can hold (lone surrogates replaced by U+FFFD); other values unchanged."""
    return _SURROGATE.sub("\ufffd", s) if has_surrogate(s) else s


def strip_surrogates(s: str) -> str:
    return _SURROGATE.sub("", s) if has_surrogate(s) else s


# fields of a JSONL object / Parquet row taken as record columns; every other one goes to `meta`
TAKEN = ("text", "url", "source", "meta")
PROVENANCE = ("file", "offset")   # set by the reader; an input's own values are kept as src_file/src_offset


def meta_str(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def too_large(text: str, max_bytes: int) -> bool:
    """Whether `text` is over `max_bytes` in UTF-8 (chars <= bytes <= 4 x chars: encoded only when the length
    alone does not decide)."""
    return len(text) > max_bytes or (4 * len(text) > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes)


def _meta_items(m) -> list:
    """An input's `meta` as (key, value) pairs: an object, or a list of pairs (how Arrow maps come back); any
    other value (a list of ints, a string, a number) is kept whole as `meta.meta`, never an error."""
    if m is None:
        return []
    if isinstance(m, dict):
        return list(m.items())
    if isinstance(m, (list, tuple)) and all(isinstance(x, (list, tuple)) and len(x) == 2 for x in m):
        return [tuple(x) for x in m]
    return [("meta", m)]


def input_fields(obj: dict, *, file: str, offset: int, source: str):
    """(source, url, meta, bad) of a JSONL object or Parquet row. `meta` holds the input's `meta` object and
    every field not in TAKEN (so an input `id` is `meta.id`), as strings; provenance (`file`, `offset`)
    is the reader's and wins, the input's own values move to `src_file`/`src_offset`. `bad` names the first
    field holding a lone surrogate (UTF-8 cannot store it: the caller quarantines the record), else None."""
    rec_source = obj["source"] if isinstance(obj.get("source"), str) and obj["source"] else source
    url = obj.get("url") if isinstance(obj.get("url"), str) else None
    meta: dict = {}
    m = obj.get("meta")
    for k, v in _meta_items(m):
        if v is not None:
            meta[str(k)] = meta_str(v)
    for k, v in obj.items():
        if k not in TAKEN and v is not None:
            meta[str(k)] = meta_str(v)
    for k in PROVENANCE:
        if k in meta:
            meta[f"src_{k}"] = meta.pop(k)
    meta["file"], meta["offset"] = file, str(offset)
    bad = next((name for name, v in (("source", rec_source), ("url", url), *meta.items())
                if has_surrogate(v) or has_surrogate(name)), None)
    if bad is not None:
        rec_source, url = clean(rec_source), clean(url)
        meta = {clean(k): clean(v) for k, v in meta.items()}
    return rec_source, url, meta, bad


def record(*, source, file, offset, url=None, content=None, text=None, content_type=None, meta=None,
           reason=None, detail=None, source_type=None) -> dict:
    return {"source": source, "url": url, "file": file, "offset": offset, "content": content, "text": text,
            "content_type": content_type, "meta": meta or {}, "reason": reason, "detail": detail,
            "source_type": source_type}


def quarantine(*, source, file, offset, what, why, prefix=None, url=None, meta=None) -> dict:
    """A row for input that could not be read. `prefix` keeps a bounded piece of the bad bytes for audit."""
    text = None
    if prefix is not None:
        text = prefix.decode("utf-8", "replace") if isinstance(prefix, (bytes, bytearray)) else str(prefix)
    meta = dict(meta or {})
    meta["file"], meta["offset"] = file, str(offset)   # provenance on every row, quarantined ones too
    return record(source=clean(source), file=file, offset=offset, url=clean(url), text=clean(text), meta=meta,
                  reason=f"malformed:{what}", detail=clean(f"{file} @ offset {offset}: {why}"))


def to_batch(rows: list[dict]) -> pa.RecordBatch:
    cols = {name: [r.get(name) for r in rows] for name in RAW_COLUMNS}
    cols["meta"] = [list(m.items()) for m in cols["meta"]]
    try:
        return pa.RecordBatch.from_pydict(cols, schema=RAW_SCHEMA)
    except (UnicodeEncodeError, pa.ArrowException):
        # a lone surrogate the readers did not catch must not kill the task: replace it and go on
        for name in ("source", "url", "file", "text", "content_type", "reason", "detail", "source_type"):
            cols[name] = [clean(v) for v in cols[name]]
        cols["meta"] = [[(clean(k), clean(v)) for k, v in m] for m in cols["meta"]]
        return pa.RecordBatch.from_pydict(cols, schema=RAW_SCHEMA)
