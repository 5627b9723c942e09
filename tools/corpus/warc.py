"""Write real WARC and WET files the way Common Crawl does: WARC/1.0 records, each its own gzip member.

Used by `make data` to wrap the corpus's HTML pages, and by tests that need (then corrupt) real files.
Record ids are uuid5 of the record's type and URI, and gzip headers carry mtime 0, so a rebuild of the
same pages is byte-identical.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import uuid
from typing import BinaryIO, Iterable, Mapping
from urllib.parse import urlsplit

_NS = uuid.UUID("6f1c5d1e-6a8e-4c1b-9c1d-2b7d0e3f4a51")
CRLF = b"\r\n"


def _digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def _record_id(kind: str, key: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(_NS, kind + ' ' + key)}>"


def _record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    head = [b"WARC/1.0"]
    head += [f"{k}: {v}".encode("utf-8") for k, v in headers]
    head.append(f"Content-Length: {len(block)}".encode("ascii"))
    return CRLF.join(head) + CRLF + CRLF + block + CRLF + CRLF


def _write_member(f: BinaryIO, record: bytes) -> None:
    f.write(gzip.compress(record, compresslevel=6, mtime=0))


def _warcinfo(filename: str, date: str, software: str, fmt: str) -> bytes:
    fields = (f"software: {software}\r\nformat: {fmt}\r\n"
              f"conformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n"
              f"isPartOf: ziya2-dataflow-sample-corpus\r\n").encode("utf-8")
    return _record([("WARC-Type", "warcinfo"), ("WARC-Date", date), ("WARC-Filename", filename),
                    ("WARC-Record-ID", _record_id("warcinfo", filename)),
                    ("Content-Type", "application/warc-fields")], fields)


def http_response(body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Server: ziya2-sample-corpus\r\nConnection: close\r\n\r\n").encode("latin-1")
    return head + body


def write_warc(path: str, pages: Iterable[Mapping], *, gzip_records: bool = True,
               software: str = "ziya2-dataflow corpus builder") -> int:
    """Write a warcinfo record, then a request and a response record per page.

    pages: dicts with url, body (bytes), content_type, date (ISO 8601, e.g. 2024-01-01T00:00:00Z).
    Returns the number of pages written.
    """
    name = path.rsplit("/", 1)[-1]
    n = 0
    with open(path, "wb") as f:
        put = (lambda rec: _write_member(f, rec)) if gzip_records else f.write
        first_date = None
        for page in pages:
            url, body, date = page["url"], page["body"], page["date"]
            if first_date is None:
                first_date = date
                put(_warcinfo(name, date, software, "WARC File Format 1.0"))
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "") or "/"
            req_block = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         f"User-Agent: ziya2-sample-corpus\r\nAccept: text/html\r\n\r\n").encode("utf-8")
            req_id = _record_id("request", url)
            put(_record([("WARC-Type", "request"), ("WARC-Date", date), ("WARC-Record-ID", req_id),
                         ("WARC-Target-URI", url), ("Content-Type", "application/http; msgtype=request"),
                         ("WARC-Block-Digest", _digest(req_block))], req_block))
            block = http_response(body, page.get("content_type", "text/html; charset=utf-8"))
            put(_record([("WARC-Type", "response"), ("WARC-Date", date),
                         ("WARC-Record-ID", _record_id("response", url)), ("WARC-Concurrent-To", req_id),
                         ("WARC-Target-URI", url), ("WARC-IP-Address", "192.0.2.1"),
                         ("Content-Type", "application/http; msgtype=response"),
                         ("WARC-Payload-Digest", _digest(body)), ("WARC-Block-Digest", _digest(block)),
                         ("WARC-Identified-Payload-Type", page.get("content_type", "text/html").split(";")[0])],
                        block))
            n += 1
    return n


def write_wet(path: str, docs: Iterable[Mapping], *, gzip_records: bool = True,
              software: str = "ziya2-dataflow corpus builder") -> int:
    """Write a warcinfo record, then one `conversion` record (text/plain) per document.

    docs: dicts with url, text (str), date. Returns the number of documents written.
    """
    name = path.rsplit("/", 1)[-1]
    n = 0
    with open(path, "wb") as f:
        put = (lambda rec: _write_member(f, rec)) if gzip_records else f.write
        first = True
        for doc in docs:
            if first:
                put(_warcinfo(name, doc["date"], software, "WARC Encapsulated Text (WET)"))
                first = False
            block = doc["text"].encode("utf-8")
            put(_record([("WARC-Type", "conversion"), ("WARC-Target-URI", doc["url"]), ("WARC-Date", doc["date"]),
                         ("WARC-Record-ID", _record_id("conversion", doc["url"])),
                         ("WARC-Refers-To", _record_id("response", doc["url"])),
                         ("WARC-Block-Digest", _digest(block)),
                         ("WARC-Identified-Content-Language", doc.get("lang", "")),
                         ("Content-Type", "text/plain")], block))
            n += 1
    return n
