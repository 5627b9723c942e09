"""JSON Lines (`.jsonl`, `.json`, `.ndjson`, each plain or `.gz`/`.bz2`/`.xz`/`.zst`/`.zstd`): one object per line
with a `text` string.

Optional fields `id`, `url`, `source`, `meta` (an object) are taken over; every other field goes into
`meta` as a string (so `id`, `license`, `domain`, a source-side `lang` label survive for audit). A line
that is not valid UTF-8 or JSON (a 5,000-digit integer included), has no `text`, a `text` that is not a string,
or a lone surrogate in `url`/`source`/a meta field is quarantined with its byte offset (in the decompressed
stream); any other failure on one line quarantines that line, and the next line is read. A damaged compressed
stream ends the file with one `malformed:corrupt_compression` row, a cut one with `malformed:truncated`, each
naming the decompressed offset reached (a single gzip/zstd stream has no point to resync at).

Lines end at `\\n`, `\\r\\n` or a lone `\\r` (old Mac exports): a raw CR cannot occur inside a JSON value,
so splitting there never cuts a record. A UTF-8 byte order mark at the start of the file is skipped.
The file is streamed through `dataflow.core.fs` (any URI) and decoded on top of that stream by
`dataflow.ingest.decode` (the codec from the last suffix), in bounded steps.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.decode import DecodeError, codec_for_name, open_decoded
from dataflow.ingest.records import input_fields, quarantine, record, strip_surrogates

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_READ = 64 << 10   # small reads: a damaged block loses only what one read would have returned


def _lines(fh, max_bytes: int, keep: int, at: list):
    """(offset, line without its end, oversize) for every line; a line longer than max_bytes comes back as
    its first `keep` bytes with oversize = its length (end of line included), never held whole.
    `at[0]` is kept at the offset of the first byte not yet framed (where a failing stream lost its rest)."""
    buf, i, base, eof = b"", 0, 0, False
    while True:
        at[0] = base + i
        m = _EOL.search(buf, i, min(len(buf), i + max_bytes + 2))
        if m and (m.end() < len(buf) or eof or m.group() != b"\r"):
            yield base + i, buf[i:m.start()], None
            i = m.end()
            continue
        if len(buf) - i > max_bytes + 1:  # no end of line within max_bytes: consume the rest without keeping it
            start, head, j = base + i, buf[i:i + keep], i + max_bytes
            while True:
                m = _EOL.search(buf, j)
                if m:
                    i = m.end()
                    break
                base += len(buf)
                buf, i, j = fh.read(_READ), 0, 0
                if not buf:
                    eof = True
                    break
            yield start, head, base + i - start
            continue
        if eof:
            if i < len(buf):
                yield base + i, buf[i:], None
            return
        more = fh.read(_READ)
        if not more:
            eof = True
        buf, base, i = buf[i:] + more, base + i, 0


def iter_jsonl(path: str, *, source: str, cfg: dict, counter: dict | None = None) -> Iterator[dict]:
    """Raw records of a JSON Lines file. `counter["seen"]` (when given) grows by one per non-blank line framed,
    and by one for the unreadable rest of a damaged stream: each of them is exactly one row."""
    max_bytes = int(cfg["max_doc_bytes"])
    prefix = int(cfg["quarantine_prefix_chars"])
    counter = counter if counter is not None else {}
    counter.setdefault("seen", 0)
    at = [0]
    fh = open_decoded(fs.open_stream(path), codec_for_name(path), cap=None)
    try:
        for offset, line, oversize in _lines(fh, max_bytes, prefix, at):
            if offset == 0 and line.startswith(_BOM):
                line = line[len(_BOM):]
            if oversize is None and not line.strip():
                continue  # blank lines separate nothing in JSONL; they are not records
            counter["seen"] += 1
            if oversize is not None:
                yield quarantine(source=source, file=path, offset=offset, what="too_large",
                                 why=f"line of {oversize} bytes exceeds preprocess.max_doc_bytes={max_bytes}",
                                 prefix=line[:prefix])
                continue
            yield _line(line, path=path, offset=offset, source=source, prefix=prefix)
    except DecodeError as e:
        counter["seen"] += 1
        what = "truncated" if e.what == "truncated" else "corrupt_compression"
        yield quarantine(source=source, file=path, offset=at[0], what=what,
                         why=f"decoding stopped at decompressed offset {fh.pos} ({e}); the rest of the file from "
                             f"offset {at[0]} is unreadable")
    finally:
        fh.close()


def _line(line: bytes, *, path, offset, source, prefix) -> dict:
    """One line's row; a failure nobody foresaw quarantines this line only, naming the exception."""
    try:
        return _parse(line, path=path, offset=offset, source=source, prefix=prefix)
    except Exception as e:  # noqa: BLE001 - input from outside: any failure is this line's, the next is read
        return quarantine(source=source, file=path, offset=offset, what="unreadable_line",
                          why=f"{type(e).__name__}: {e}", prefix=line[:prefix])


def _parse(line: bytes, *, path, offset, source, prefix) -> dict:
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return quarantine(source=source, file=path, offset=offset, what="invalid_utf8",
                          why=f"byte {e.start} of the line is not UTF-8 ({e.reason})", prefix=line[:prefix])
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError) as e:  # ValueError: a JSONDecodeError, or an integer past Python's digit limit
        why = (f"not JSON: {e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError)
               else "not JSON: nested too deep" if isinstance(e, RecursionError) else f"not JSON: {e}")
        return quarantine(source=source, file=path, offset=offset, what="json", why=why, prefix=s[:prefix])
    if not isinstance(obj, dict):
        return quarantine(source=source, file=path, offset=offset, what="json_not_object",
                          why=f"a JSON {type(obj).__name__}, not an object", prefix=s[:prefix])
    rec_source, url, meta, bad = input_fields(obj, file=path, offset=offset, source=source)
    common = dict(source=rec_source, file=path, offset=offset, url=url, meta=meta)
    if bad is not None:
        return quarantine(**common, what="lone_surrogate",
                          why=f"field `{bad}` holds a lone surrogate (an unpaired UTF-16 escape)",
                          prefix=s[:prefix])
    if "text" not in obj or obj["text"] is None:
        return quarantine(**common, what="missing_text", why=f"no `text` field (fields: {sorted(obj)[:12]})",
                          prefix=s[:prefix])
    text = obj["text"]
    if not isinstance(text, str):
        return quarantine(**common, what="text_type", why=f"`text` is a {type(text).__name__}, not a string",
                          prefix=s[:prefix])
    text = strip_surrogates(text)  # normalization drops them anyway; UTF-8 (Arrow) cannot hold them
    if not text.strip():
        return quarantine(**common, what="empty_text", why="`text` is empty or whitespace only")
    return record(**common, text=text, content_type="text/plain")
