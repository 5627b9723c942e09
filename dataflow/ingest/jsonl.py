"""JSON Lines (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`): one object per line with a `text` string.

Optional fields `id`, `url`, `source`, `meta` (an object) are taken over; every other field goes into
`meta` as a string (so `id`, `license`, `domain`, a source-side `lang` label survive for audit). A line
that is not valid UTF-8 or JSON, has no `text`, a `text` that is not a string, or a lone surrogate in
`url`/`source`/a meta field is quarantined with its byte offset (in the decompressed stream). A damaged
compressed stream ends the file with a quarantine row naming the offset where decompression failed (a
single gzip/zstd stream has no point to resync at).

Lines end at `\\n`, `\\r\\n` or a lone `\\r` (old Mac exports): a raw CR cannot occur inside a JSON value,
so splitting there never cuts a record. A UTF-8 byte order mark at the start of the file is skipped.
The file is streamed through `dataflow.core.fs` (any URI), decompressed on top of that stream.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.records import input_fields, quarantine, record, strip_surrogates

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_READ = 64 << 10   # small reads: a damaged gzip block loses only what one read would have returned


class _Zstd:
    """zstd frames decompressed one after another; a stream that ends inside a frame raises OSError
    (zstandard's stream_reader returns a silent EOF there, which would drop the rest without a word)."""

    def __init__(self, raw):
        import zstandard

        self._new = zstandard.ZstdDecompressor().decompressobj
        self.raw, self.d, self.buf, self.pending, self.done = raw, self._new(), b"", False, False

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and not self.done:
            data = self.raw.read(_READ)
            if not data:
                self.done = True
                if self.pending:
                    raise OSError("zstd stream ends inside a frame (file truncated)")
                break
            while data:
                self.pending = True
                self.buf += self.d.decompress(data)
                if not self.d.eof:
                    break
                data, self.d, self.pending = self.d.unused_data, self._new(), False
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self):
        pass


class _Opened:
    """The decompressed byte stream of a URI (gzip and zstd on top of the filesystem stream)."""

    def __init__(self, uri: str):
        self.raw = fs.open_stream(uri)
        low = uri.lower()
        if low.endswith(".gz"):
            self.fh = gzip.GzipFile(fileobj=self.raw, mode="rb")
        elif low.endswith(".zst"):
            self.fh = _Zstd(self.raw)
        else:
            self.fh = self.raw

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        try:
            if self.fh is not self.raw:
                self.fh.close()
        finally:
            self.raw.close()


def _lines(fh, max_bytes: int, keep: int):
    """(offset, line without its end, oversize) for every line; a line longer than max_bytes comes back as
    its first `keep` bytes with oversize = its length (end of line included), never held whole."""
    buf, i, base, eof = b"", 0, 0, False
    while True:
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


def iter_jsonl(path: str, *, source: str, cfg: dict) -> Iterator[dict]:
    max_bytes = int(cfg["max_doc_bytes"])
    prefix = int(cfg["quarantine_prefix_chars"])
    offset = 0
    with _Opened(path) as fh:
        try:
            for offset, line, oversize in _lines(fh, max_bytes, prefix):
                if offset == 0 and line.startswith(_BOM):
                    line = line[len(_BOM):]
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
            yield _corrupt(path, source, offset, e)
        except Exception as e:
            if type(e).__name__ != "ZstdError":
                raise
            yield _corrupt(path, source, offset, e)


def _corrupt(path, source, offset, e) -> dict:
    return quarantine(source=source, file=path, offset=offset, what="corrupt_compression",
                      why=f"decompression failed after offset {offset}: {e}; rest of file unreadable")


def _parse(line: bytes, *, path, offset, source, prefix) -> dict:
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return quarantine(source=source, file=path, offset=offset, what="invalid_utf8",
                          why=f"byte {e.start} of the line is not UTF-8 ({e.reason})", prefix=line[:prefix])
    try:
        obj = json.loads(s)
    except (json.JSONDecodeError, RecursionError) as e:
        why = f"not JSON: {e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "not JSON: nested too deep"
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
