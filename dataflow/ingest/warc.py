"""WARC and WET files (Common Crawl layout: each record its own gzip member; plain `.warc` works too).

fastwarc does the parsing. What it cannot do is recover from a damaged file: on a corrupt gzip member
it raises (or, on some inputs, just stops early), and a record cut short reads as a shorter payload.
This reader turns each of those into a quarantine row naming the file and byte offset, then resyncs at
the next gzip member that decompresses into a WARC header, so the records after the damage are still read.
"""
from __future__ import annotations

import os
import zlib
from typing import Iterator

from fastwarc.stream_io import GzipReader
from fastwarc.warc import ArchiveIterator, WarcRecordType

from .records import quarantine, record

GZIP_MAGIC = b"\x1f\x8b\x08"
_SCAN_CHUNK = 1 << 20
_TYPES = {"response": WarcRecordType.response, "resource": WarcRecordType.resource,
          "conversion": WarcRecordType.conversion, "metadata": WarcRecordType.metadata}


def _type_mask(names) -> int:
    mask = 0
    for n in names:
        if n not in _TYPES:
            raise ValueError(f"preprocess.warc_record_types: unknown WARC record type {n!r}; known: {sorted(_TYPES)}")
        mask |= _TYPES[n]
    return mask


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(3) == GZIP_MAGIC


def _member_end(f, start: int) -> int | None:
    """End offset of the gzip member at `start`, or None if it does not decompress cleanly."""
    f.seek(start)
    d = zlib.decompressobj(31)
    pos = start
    try:
        while not d.eof:
            chunk = f.read(_SCAN_CHUNK)
            if not chunk:
                return None
            d.decompress(chunk, 0)
            pos += len(chunk)
            # drain: unconsumed_tail is empty because max_length=0
    except zlib.error:
        return None
    return pos - len(d.unused_data)


def _next_warc_member(f, start: int, size: int) -> int:
    """First offset >= start where a gzip member begins that decompresses to a WARC header; else size."""
    pos = start
    while pos < size:
        f.seek(pos)
        buf = f.read(_SCAN_CHUNK + len(GZIP_MAGIC))
        if not buf:
            break
        i = buf.find(GZIP_MAGIC)
        while i != -1:
            cand = pos + i
            f.seek(cand)
            head = f.read(64 << 10)
            try:
                out = zlib.decompressobj(31).decompress(head, 16)
            except zlib.error:
                out = b""
            if out.startswith(b"WARC/"):
                return cand
            i = buf.find(GZIP_MAGIC, i + 1)
        pos += _SCAN_CHUNK
    return size


def iter_warc(path: str, *, source: str, is_wet: bool, cfg: dict) -> Iterator[dict]:
    """Yield one raw record per document record (response/resource/conversion) of a WARC or WET file."""
    size = os.path.getsize(path)
    max_bytes = int(cfg["max_doc_bytes"])
    prefix_chars = int(cfg["quarantine_prefix_chars"])
    mask = _type_mask(cfg["warc_record_types"])
    gz = _is_gzip(path)
    pos = 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            stream = GzipReader(f) if gz else f
            last_start = None           # offset of the last record fastwarc handed out in this pass
            error = None
            try:
                it = ArchiveIterator(stream, record_types=mask, parse_http=not is_wet, fsspec_args=False)
                for r in it:
                    offset = stream.frame_start_position() if gz else r.stream_pos
                    last_start = offset
                    yield _one(r, path=path, offset=offset, source=source, is_wet=is_wet,
                               max_bytes=max_bytes, prefix_chars=prefix_chars)
                end = stream.inner_tell() if gz else f.tell()
            except OSError as e:
                error = str(e) or type(e).__name__
                end = None
            if error is None and (not gz or end >= size):
                return
            # damaged: the bad span starts after the last good member (or where this pass began)
            if last_start is None:
                bad = pos
            elif gz:
                bad = _member_end(f, last_start) or last_start + 1
                # skip members that do decompress (e.g. filtered-out request records) to the damaged one
                while bad < size:
                    nxt_ok = _member_end(f, bad)
                    if nxt_ok is None:
                        break
                    bad = nxt_ok
            else:
                bad = end if end is not None else last_start + 1
            if not gz:  # no member boundaries to resync on in a plain WARC: the rest is lost, say so
                yield quarantine(source=source, file=path, offset=bad, what="unparsable_warc",
                                 why=f"bytes {bad}-{size} could not be parsed as WARC ({error or 'stopped early'})")
                return
            nxt = _next_warc_member(f, bad + 1, size)
            f.seek(bad)
            head = f.read(min(prefix_chars, nxt - bad))
            yield quarantine(source=source, file=path, offset=bad, what="corrupt_gzip",
                             why=f"bytes {bad}-{nxt} unreadable ({error or 'reader stopped before end of file'}); "
                                 f"resynced at {'end of file' if nxt >= size else f'gzip member {nxt}'}",
                             prefix=head.hex()[:prefix_chars])
            pos = nxt


def _one(r, *, path, offset, source, is_wet, max_bytes, prefix_chars) -> dict:
    url = r.headers.get("WARC-Target-URI")
    meta = {"file": path, "offset": str(offset), "warc_type": str(r.record_type),
            "warc_date": r.headers.get("WARC-Date") or "", "warc_record_id": r.headers.get("WARC-Record-ID") or ""}
    if is_wet:
        ctype = r.headers.get("Content-Type") or "text/plain"
        lang = r.headers.get("WARC-Identified-Content-Language")
        if lang:
            meta["warc_lang"] = lang
    else:
        ctype = r.http_content_type or r.headers.get("WARC-Identified-Payload-Type") or ""
        if r.http_charset:
            meta["http_charset"] = r.http_charset
    meta["content_type"] = ctype
    declared = r.headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        return quarantine(source=source, file=path, offset=offset, url=url, meta=meta, what="truncated_record",
                          why="WARC header block ends without a Content-Length (record cut short)")
    if not is_wet and r.record_type == WarcRecordType.response and not r.is_http_parsed:
        return quarantine(source=source, file=path, offset=offset, url=url, meta=meta, what="http_headers",
                          why=f"response record of {declared} bytes has no parsable HTTP header block",
                          prefix=r.reader.read(prefix_chars))
    length = int(r.content_length)
    if length > max_bytes:
        head = r.reader.read(prefix_chars)
        return quarantine(source=source, file=path, offset=offset, url=url, meta=meta, what="too_large",
                          why=f"payload of {length} bytes exceeds preprocess.max_doc_bytes={max_bytes}",
                          prefix=head)
    body = r.reader.read()
    if len(body) < length:
        return quarantine(source=source, file=path, offset=offset, url=url, meta=meta, what="truncated_record",
                          why=f"record declares {length} payload bytes, the file holds {len(body)}",
                          prefix=body[:prefix_chars])
    return record(source=source, file=path, offset=offset, url=url, content=body, content_type=ctype, meta=meta)
