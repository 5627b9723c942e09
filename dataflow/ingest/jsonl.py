"""JSON Lines (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`): one object per line with a `text` string.

Optional fields `id`, `url`, `source`, `meta` (an object) are taken over; every other field goes into
`meta` as a string (so `license`, `domain`, a source-side `lang` label survive for audit). A line that is
not valid UTF-8 or JSON, has no `text`, or a `text` that is not a string is quarantined with its byte
offset (in the decompressed stream). A damaged compressed stream ends the file with a quarantine row
naming the offset where decompression failed (a single gzip/zstd stream has no point to resync at).
"""
from __future__ import annotations

import gzip
import io
import json
import zlib
from typing import Iterator

from .records import quarantine, record

_TAKEN = ("text", "url", "source", "meta")


def _open(path: str):
    low = path.lower()
    if low.endswith(".gz"):
        return gzip.open(path, "rb")
    if low.endswith(".zst"):
        import zstandard

        # the zstd reader has no readline; a buffered wrapper provides it
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(
            open(path, "rb"), read_across_frames=True, closefd=True), buffer_size=1 << 20)
    return open(path, "rb")


def _str(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _lines(fh, max_bytes: int):
    """(offset, line, oversize_length) with lines longer than max_bytes cut to a bounded head."""
    offset = 0
    while True:
        line = fh.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            total = len(line)
            head = line
            while True:  # consume the rest of the over-long line without keeping it
                more = fh.readline(1 << 20)
                total += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield offset, head, total
            offset += total
            continue
        yield offset, line, None
        offset += len(line)


def iter_jsonl(path: str, *, source: str, cfg: dict) -> Iterator[dict]:
    max_bytes = int(cfg["max_doc_bytes"])
    prefix = int(cfg["quarantine_prefix_chars"])
    offset = 0
    with _open(path) as fh:
        try:
            for offset, line, oversize in _lines(fh, max_bytes):
                if oversize is not None:
                    yield quarantine(source=source, file=path, offset=offset, what="too_large",
                                     why=f"line of {oversize} bytes exceeds preprocess.max_doc_bytes={max_bytes}",
                                     prefix=line[:prefix])
                    continue
                if not line.strip():
                    continue  # blank lines separate nothing in JSONL; they are not records
                yield _parse(line, path=path, offset=offset, source=source, prefix=prefix)
        except (OSError, EOFError, zlib.error) as e:
            # zstandard raises its own ZstdError (an Exception subclass); gzip raises OSError/EOFError
            yield quarantine(source=source, file=path, offset=offset, what="corrupt_compression",
                             why=f"decompression failed after offset {offset}: {e}; rest of file unreadable")
        except Exception as e:
            if type(e).__name__ != "ZstdError":
                raise
            yield quarantine(source=source, file=path, offset=offset, what="corrupt_compression",
                             why=f"decompression failed after offset {offset}: {e}; rest of file unreadable")


def _parse(line: bytes, *, path, offset, source, prefix) -> dict:
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return quarantine(source=source, file=path, offset=offset, what="invalid_utf8",
                          why=f"byte {e.start} of the line is not UTF-8 ({e.reason})", prefix=line[:prefix])
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        return quarantine(source=source, file=path, offset=offset, what="json",
                          why=f"not JSON: {e.msg} at column {e.colno}", prefix=s[:prefix])
    if not isinstance(obj, dict):
        return quarantine(source=source, file=path, offset=offset, what="json_not_object",
                          why=f"a JSON {type(obj).__name__}, not an object", prefix=s[:prefix])
    rec_source = obj["source"] if isinstance(obj.get("source"), str) and obj["source"] else source
    url = obj.get("url") if isinstance(obj.get("url"), str) else None
    meta = {"file": path, "offset": str(offset)}
    if isinstance(obj.get("meta"), dict):
        meta.update({str(k): _str(v) for k, v in obj["meta"].items()})
    for k, v in obj.items():
        if k not in _TAKEN and v is not None:
            meta[k if k not in ("file", "offset") else f"src_{k}"] = _str(v)
    if "text" not in obj or obj["text"] is None:
        return quarantine(source=rec_source, file=path, offset=offset, url=url, meta=meta, what="missing_text",
                          why=f"no `text` field (fields: {sorted(obj)[:12]})", prefix=s[:prefix])
    text = obj["text"]
    if not isinstance(text, str):
        return quarantine(source=rec_source, file=path, offset=offset, url=url, meta=meta, what="text_type",
                          why=f"`text` is a {type(text).__name__}, not a string", prefix=s[:prefix])
    if not text.strip():
        return quarantine(source=rec_source, file=path, offset=offset, url=url, meta=meta, what="empty_text",
                          why="`text` is empty or whitespace only")
    return record(source=rec_source, file=path, offset=offset, url=url, text=text, meta=meta,
                  content_type="text/plain")
