"""WARC and WET files: Common Crawl's layout (each record its own gzip member), whole-file gzip, plain `.warc`.

The reader is our own (fastwarc cannot recover from damage: on a lying Content-Length it reads into the
next record and drops the rest of the file). What it guarantees:
- **Gzip members are the unit of damage.** Each member is decompressed on its own; one that does not
  decompress (bad deflate data, CRC mismatch, garbage between members) becomes one `malformed:corrupt_gzip`
  row with its byte span, and reading resyncs at the next gzip member that decompresses to a WARC header.
  Records of a member are handed out only after its CRC checked (Common Crawl's one record per member).
- **Content-Length is checked.** After a record's block the next bytes must be the `\\r\\n\\r\\n` end
  mark and then another `WARC/` header or the end of the stream. When they are not, the record lies
  about its length (too many or too few bytes): it becomes `malformed:content_length` with its true span
  (up to the next valid WARC header, or the member's end) and every later record is still read.
- **Lengths are plain numbers.** A Content-Length that is not ASCII digits (`²`, `٣`, which `str.isdigit`
  accepts) or absurdly long is a lying length: `malformed:content_length` up to the next valid header.
- **HTTP bodies are decoded, bounded.** Content-Encoding (gzip incl. several members, x-gzip, deflate raw or
  zlib-wrapped, br, zstd, several codings in order) is undone by `dataflow.ingest.decode` with a cap of
  `max_doc_bytes`: an unknown coding is `malformed:content_encoding`, a cut body `malformed:truncated_body`
  (never kept shortened), bad data `malformed:corrupt_body`, a body over the cap `malformed:too_large`;
  `meta.content_encoding` names what was undone. Any other failure reading one record becomes that
  record's `malformed:record_error` row, and reading goes on at the next record.
- **Byte ranges.** `iter_warc(..., start, end)` reads the records that START inside [start, end): it
  resyncs at the first member (or, uncompressed, `WARC/1.x` header) at/after `start` and owns everything
  up to the first one at/after `end`, so splits of one file read each record exactly once.

Offsets: gzip files give the compressed offset of the record's member (seekable, as CC's index gives);
plain files give the record's byte offset. A member holding several records (whole-file gzip) gives
its member offset and `meta.member_record` = the record's index inside it (0 omitted).
"""
from __future__ import annotations

import re
import zlib
from typing import Callable, Iterator

from dataflow.core import fs
from dataflow.ingest.decode import CODECS, DecodeError, content_codings, decode_bytes
from dataflow.ingest.records import quarantine, record

GZIP_MAGIC = b"\x1f\x8b\x08"
_RAW_BUF = 4 << 20       # raw read-ahead: one request per 4 MiB on object stores (S3 GETs cost ~10-50 ms each)
_CHUNK = 1 << 20         # decompressed/plain bytes handed to the parser at a time
_HEADER_MAX = 64 << 10   # a WARC/HTTP header block longer than this is not one (CC's are < 2 KiB; warcio reads lines of 64 KiB)
_MEMBER_FLUSH = 256      # a member holding more records than this (whole-file gzip) hands them out before its CRC is seen
_KNOWN_TYPES = ("response", "resource", "conversion", "metadata", "request", "revisit", "warcinfo")
_HEADER_START = b"WARC/1."


def _type_set(names) -> frozenset:
    for n in names:
        if n not in _KNOWN_TYPES:
            raise ValueError(f"preprocess.warc_record_types: unknown WARC record type {n!r}; known: {sorted(_KNOWN_TYPES)}")
    return frozenset(names)


# ---------------------------------------------------------------- raw bytes with read-ahead
class _Raw:
    """Random-access reads of a seekable file with one read-ahead buffer (members are read in order)."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size
        self.base, self.buf = 0, b""

    def read_at(self, pos: int, n: int) -> bytes:
        off = pos - self.base
        if off < 0 or off + n > len(self.buf):
            if pos >= self.size:
                return b""
            self.f.seek(pos)
            self.base, self.buf = pos, self.f.read(max(n, _RAW_BUF))
            off = 0
        return self.buf[off:off + n]


# ---------------------------------------------------------------- a byte stream with lookahead
class _Stream:
    """Sequential bytes from an iterator of chunks; `pos` is the stream position of the next byte."""

    def __init__(self, chunks: Iterator[bytes], pos: int = 0):
        self._it, self._buf, self._i, self.pos, self.eof = chunks, b"", 0, pos, False

    def _avail(self) -> int:
        return len(self._buf) - self._i

    def _fill(self, n: int) -> bool:
        have = self._avail()
        if have >= n or self.eof:
            return have >= n
        parts = [self._buf[self._i:]]
        while have < n:
            c = next(self._it, None)
            if c is None:
                self.eof = True
                break
            parts.append(c)
            have += len(c)
        self._buf, self._i = b"".join(parts), 0
        return have >= n

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._i:self._i + n]

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = self._buf[self._i:self._i + n]
        self._i += len(out)
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        done = 0
        while done < n:
            if self._avail() == 0 and not self._fill(1):
                break
            k = min(n - done, self._avail(), _CHUNK)
            self._i += k
            self.pos += k
            done += k
        return done

    def find(self, pat: bytes, limit: int) -> int:
        """Offset from the cursor of the first `pat` inside the next `limit` bytes, else -1."""
        while True:
            j = self._buf.find(pat, self._i, self._i + limit)
            if j != -1:
                return j - self._i
            if self._avail() >= limit or self.eof:
                return -1
            self._fill(min(limit, self._avail() + _CHUNK))

    def skip_newlines(self) -> int:
        """Skip CR/LF bytes at the cursor; how many."""
        n = 0
        while self._avail() or self._fill(1):
            buf, j = self._buf, self._i
            end = len(buf)
            while j < end and buf[j] in (10, 13):
                j += 1
            n += j - self._i
            self.pos += j - self._i
            self._i = j
            if j < end:
                break
        return n

    def seek_header(self) -> bool:
        """Advance to the next valid WARC header (`WARC/1.x`, then fields with WARC-Type and a numeric
        Content-Length, then a blank line); False (at the end) when there is none."""
        while True:
            j = self._buf.find(_HEADER_START, self._i)
            if j == -1:
                if self.eof:
                    self.skip(self._avail())
                    return False
                self.skip(max(0, self._avail() - len(_HEADER_START) + 1))
                self._fill(self._avail() + _CHUNK)
                continue
            self.skip(j - self._i)
            if header_at(self) is not None:
                return True
            self.skip(1)


_LENGTH_DIGITS = 18   # a Content-Length of more digits is no length (int() refuses past 4,300 digits anyway)


def plain_length(value: str) -> bool:
    """A length field as RFC 9110 writes it: ASCII digits only (`str.isdigit` also takes `²` and `٣`)."""
    return value.isascii() and value.isdigit() and len(value) <= _LENGTH_DIGITS


def parse_header(block: bytes, *, any_length: bool = False) -> dict | None:
    """A WARC header block (up to and including the blank line) -> lower-cased names, or None. With
    `any_length`, a header whose Content-Length is not a plain number is returned too (to report it)."""
    lines = block.split(b"\r\n")
    if not lines or not lines[0].startswith(b"WARC/"):
        return None
    out: dict = {}
    last = None
    for ln in lines[1:]:
        if not ln:
            continue
        if ln[:1] in (b" ", b"\t") and last:  # folded continuation line
            out[last] += " " + ln.strip().decode("utf-8", "replace")
            continue
        name, sep, value = ln.partition(b":")
        if not sep:
            return None
        last = name.strip().decode("latin-1").lower()
        out[last] = value.strip().decode("utf-8", "replace")
    cl = out.get("content-length", "")
    if "warc-type" not in out or not (plain_length(cl) or (any_length and "content-length" in out)):
        return None
    return out


def header_at(s: _Stream) -> tuple[dict, int] | None:
    """(headers, header length) of a valid WARC header at the cursor, without consuming it."""
    if s.peek(5) != b"WARC/":
        return None
    n = s.find(b"\r\n\r\n", _HEADER_MAX)
    if n == -1:
        return None
    h = parse_header(s.peek(n + 4))
    return None if h is None else (h, n + 4)


def _bad_length(s: _Stream) -> str | None:
    """The Content-Length value of a WARC header at the cursor that is valid but for its length, else None."""
    if s.peek(5) != b"WARC/":
        return None
    n = s.find(b"\r\n\r\n", _HEADER_MAX)
    h = parse_header(s.peek(n + 4), any_length=True) if n != -1 else None
    return None if h is None or plain_length(h["content-length"]) else h["content-length"]


# ---------------------------------------------------------------- the record parser (any stream)
def _records(s: _Stream, *, reopen: Callable[[int], _Stream], cut: Callable[[], bool], keep: frozenset,
             max_bytes: int, prefix: int, stop: int | None = None):
    """Events for every record of a stream:
    ("record", start, end, headers, block)   block is None for a wanted record over max_bytes (head kept in
                                              headers["_head"], declared size in headers["content-length"])
    ("damaged", start, end, what, why)"""
    while True:
        s.skip_newlines()
        if not s.peek(1) or (stop is not None and s.pos >= stop):
            return
        start = s.pos
        got = header_at(s)
        if got is None:
            truncated = s.find(b"\r\n\r\n", _HEADER_MAX) == -1 and s.eof and s.peek(5) == b"WARC/"
            bad_length = _bad_length(s)
            s.skip(1)
            s.seek_header()
            end = s.pos if stop is None else min(s.pos, max(stop, start + 1))
            if bad_length is not None:
                yield ("damaged", start, end, "content_length",
                       f"Content-Length {bad_length[:40]!r} is not a plain decimal number; the record spans bytes "
                       f"{start}-{end} (next WARC header at {end})")
            elif truncated and cut():
                yield ("damaged", start, end, "truncated_record", "WARC header block cut short by the end of the file")
            else:
                yield ("damaged", start, end, "unparsable_warc", f"bytes {start}-{end} are not a WARC record")
            continue
        h, hlen = got
        s.skip(hlen)
        block_start = s.pos
        cl = int(h["content-length"])
        wanted = h["warc-type"] in keep
        if wanted and cl <= max_bytes:
            block = s.read(cl)
            n = len(block)
        else:
            head = s.read(min(cl, prefix)) if wanted else b""
            n = len(head) + s.skip(cl - len(head))
            block = None
            h["_head"] = head
        term = s.peek(4) == b"\r\n\r\n"   # the record's end mark (WARC 1.1 §4): what follows is the next record's business
        ends = s.skip_newlines()
        if n == cl and term:
            if wanted:
                yield ("record", start, s.pos, h, block)
            continue
        # the block is not followed by the end of the record: Content-Length lies, or the file is cut
        s = reopen(block_start)
        found = s.seek_header()
        end = s.pos if stop is None else min(s.pos, max(stop, block_start))
        kind = h.get("warc-type")
        if n < cl and not found and cut():
            yield ("damaged", start, end, "truncated_record",
                   f"{kind} record declares {cl} bytes, the file holds {n}")
        else:
            yield ("damaged", start, end, "content_length",
                   f"{kind} record declares Content-Length {cl}, but its block spans {end - block_start} bytes "
                   f"(bytes {start}-{end}; next WARC header at {end})")


# ---------------------------------------------------------------- gzip members
class _Corrupt(Exception):
    pass


def _member_chunks(raw: _Raw, start: int, state: dict):
    """Decompressed chunks of the gzip member at `start`. Sets state['end'] (compressed end offset) and
    state['cut'] (True when the file ends inside the member); raises _Corrupt on bad data."""
    d = zlib.decompressobj(31)
    pos = start
    state.pop("end", None)
    state["cut"] = False
    while not d.eof:
        data = raw.read_at(pos, 64 << 10)
        if not data:
            state["cut"], state["end"] = True, pos
            return
        pos += len(data)
        while data:
            try:
                out = d.decompress(data, _CHUNK)
            except zlib.error as e:
                state["end"] = pos
                raise _Corrupt(str(e)) from None
            if out:
                yield out
            if d.eof:
                break
            data = d.unconsumed_tail
    state["end"] = pos - len(d.unused_data)


def _is_member(raw: _Raw, pos: int) -> bool:
    """True when a gzip member starts at `pos` and its first bytes decompress to a WARC header."""
    head = raw.read_at(pos, 64 << 10)
    if not head.startswith(GZIP_MAGIC):
        return False
    try:
        return zlib.decompressobj(31).decompress(head, 16).startswith(b"WARC/")
    except zlib.error:
        return False


def next_member(raw: _Raw, start: int, size: int) -> int:
    """First offset >= start where a gzip member begins that decompresses to a WARC header; else size."""
    pos = start
    while pos < size:
        buf = raw.read_at(pos, _CHUNK + len(GZIP_MAGIC))
        if not buf:
            break
        i = buf.find(GZIP_MAGIC)
        while i != -1 and i < _CHUNK:
            if _is_member(raw, pos + i):
                return pos + i
            i = buf.find(GZIP_MAGIC, i + 1)
        pos += _CHUNK
    return size


def _plain_chunks(raw: _Raw, pos: int):
    while True:
        data = raw.read_at(pos, _CHUNK)
        if not data:
            return
        pos += len(data)
        yield data


def next_plain_record(raw: _Raw, start: int, size: int) -> int:
    """First offset >= start where a valid WARC header starts; else size."""
    if start <= 0:
        return 0
    s = _Stream(_plain_chunks(raw, start), start)
    return s.pos if s.seek_header() else size


def is_gzip(raw: _Raw) -> bool:
    return raw.read_at(0, 3) == GZIP_MAGIC


# ---------------------------------------------------------------- the reader
def iter_warc(uri: str, *, source: str, is_wet: bool, cfg: dict, start: int = 0, end: int | None = None,
              f=None, size: int | None = None) -> Iterator[dict]:
    """Raw records of the document records (warc_record_types) that start in [start, end) of a WARC/WET."""
    opened = f is None
    if opened:
        f = fs.open_input(uri)
    try:
        size = f.size() if size is None else size
        raw = _Raw(f, size)
        ctx = dict(uri=uri, source=source, is_wet=is_wet, max_bytes=int(cfg["max_doc_bytes"]),
                   prefix=int(cfg["quarantine_prefix_chars"]), keep=_type_set(cfg["warc_record_types"]))
        end = size if end is None else min(end, size)
        if is_gzip(raw) or uri.lower().endswith(".gz"):
            lo = 0 if start == 0 else next_member(raw, start, size)
            hi = size if end >= size else next_member(raw, end, size)
            yield from _iter_gz(raw, lo, hi, ctx)
        else:
            lo = next_plain_record(raw, start, size)
            hi = size if end >= size else next_plain_record(raw, end, size)
            yield from _iter_plain(raw, lo, hi, ctx)
    finally:
        if opened:
            f.close()


def _iter_plain(raw: _Raw, lo: int, hi: int, ctx: dict) -> Iterator[dict]:
    if lo >= hi:
        return
    reopen = lambda p: _Stream(_plain_chunks(raw, p), p)  # noqa: E731
    for ev in _records(reopen(lo), reopen=reopen, cut=lambda: True, keep=ctx["keep"], max_bytes=ctx["max_bytes"] + _HEADER_MAX,
                       prefix=ctx["prefix"], stop=hi):
        yield _event_row(ev, offset=ev[1], index=0, span=(ev[1], ev[2]), ctx=ctx)


def _iter_gz(raw: _Raw, lo: int, hi: int, ctx: dict) -> Iterator[dict]:
    pos = lo
    while pos < hi:
        state: dict = {}
        member = pos

        def reopen(p, member=member, state=state):
            s = _Stream(_member_chunks(raw, member, state), 0)
            s.skip(p)
            return s

        pending: list = []
        flushed = 0
        try:
            for ev in _records(_Stream(_member_chunks(raw, member, state), 0), reopen=reopen,
                               cut=lambda state=state: state.get("cut", False), keep=ctx["keep"],
                               max_bytes=ctx["max_bytes"] + _HEADER_MAX, prefix=ctx["prefix"]):
                pending.append(ev)
                if len(pending) > _MEMBER_FLUSH:  # a whole-file gzip: no per-record CRC to wait for
                    for k, e in enumerate(pending):
                        yield _event_row(e, offset=member, index=flushed + k, span=None, ctx=ctx)
                    flushed += len(pending)
                    pending = []
            mend = state["end"]
            if state.get("cut"):  # the file ends inside this member: nothing in it is CRC-checked
                why = f"the file ends inside the gzip member at {member} (bytes {member}-{mend})"
                if pending:
                    why += f"; {len(pending)} record(s) in it dropped"
                yield quarantine(source=ctx["source"], file=ctx["uri"], offset=member, what="truncated_record",
                                 why=why, meta={"span_end": str(mend)})
                return
            whole = flushed == 0 and len(pending) == 1
            for k, e in enumerate(pending):
                yield _event_row(e, offset=member, index=flushed + k, span=(member, mend) if whole else None, ctx=ctx)
            pos = mend
        except _Corrupt as e:
            nxt = next_member(raw, member + 1, raw.size)
            stop = min(nxt, hi) if member < hi else nxt
            lost = f"{len(pending)} record(s) of the member dropped, " if pending else ""
            head = raw.read_at(member, min(ctx["prefix"], max(1, stop - member)))
            yield quarantine(source=ctx["source"], file=ctx["uri"], offset=member, what="corrupt_gzip",
                             why=f"bytes {member}-{stop} unreadable (gzip: {e}); {lost}"
                                 f"resynced at {'end of file' if stop >= raw.size else f'gzip member {stop}'}",
                             prefix=head.hex()[:ctx["prefix"]], meta={"span_end": str(stop)})
            pos = stop


def _event_row(ev, *, offset: int, index: int, span, ctx: dict) -> dict:
    meta = {"member_record": str(index)} if index else {}
    if ev[0] == "damaged":
        _, a, b, what, why = ev
        where = f"bytes {span[0]}-{span[1]}" if span else f"decompressed bytes {a}-{b} of gzip member {offset}"
        if span:
            meta["span_end"] = str(span[1])
        return quarantine(source=ctx["source"], file=ctx["uri"], offset=offset, what=what,
                          why=f"{why} [{where}]", meta=meta)
    _, a, b, h, block = ev
    try:
        return _one(h, block, offset=offset, meta=meta, ctx=ctx)
    except Exception as e:  # noqa: BLE001 - input from outside: any failure is this record's, the next is read
        return quarantine(source=ctx["source"], file=ctx["uri"], offset=offset, what="record_error", meta=meta,
                          why=f"{h.get('warc-type')} record could not be read: {type(e).__name__}: {e}")


# ---------------------------------------------------------------- one document record
_CHUNK_LINE = re.compile(rb"[0-9a-fA-F]{1,16}[ \t]*(;[^\r\n]*)?\r?\n")


def dechunk(body: bytes) -> bytes | None:
    """HTTP/1.1 chunked transfer coding removed (RFC 9112 §7.1); None when the body is not chunked."""
    out, i = [], 0
    while True:
        m = _CHUNK_LINE.match(body, i)
        if not m:
            return None
        n = int(body[i:m.start(1) if m.group(1) else m.end()].strip(), 16)
        i = m.end()
        if n == 0:
            return b"".join(out)   # trailer fields, if any, are not payload
        if i + n > len(body):
            return None
        out.append(body[i:i + n])
        i += n
        if body[i:i + 2] == b"\r\n":
            i += 2
        elif body[i:i + 1] == b"\n":
            i += 1
        else:
            return None


def _split_http(block: bytes):
    """(status line, lower-cased headers, body) of an HTTP response block, or None."""
    if not block.startswith(b"HTTP/"):
        return None
    i = block.find(b"\r\n\r\n", 0, _HEADER_MAX)
    j = block.find(b"\n\n", 0, _HEADER_MAX)
    if i == -1 and j == -1:
        return None
    cut, skip = (i, 4) if i != -1 and (j == -1 or i < j) else (j, 2)
    lines = block[:cut].split(b"\n")
    headers: dict = {}
    for ln in lines[1:]:
        name, sep, value = ln.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return lines[0].strip().decode("latin-1"), headers, block[cut + skip:]


def _content_decoded(body: bytes, header: str | None, meta: dict, ctx: dict) -> tuple[bytes, tuple | None]:
    """(body, None) with the HTTP Content-Encoding removed (codings undone last-applied first, each bounded by
    max_doc_bytes; `meta.content_encoding` names what was undone), or (body, (what, why)) when it cannot be:
    an unknown coding (`content_encoding`), a cut body (`truncated_body`, never kept shortened), bad data
    (`corrupt_body`), a body over the cap (`too_large`). A `gzip` body without the gzip magic was stored
    decoded by its archiver (the header kept as sent): it is taken as is, and `meta.content_encoding_stored`
    says so."""
    codings = content_codings(header)
    if not codings:
        return body, None
    unknown = [c for c in codings if c not in CODECS]
    if unknown:
        return body, ("content_encoding", f"unknown Content-Encoding {unknown[0][:60]!r} (header {header[:120]!r})")
    if codings[-1] == "gzip" and body[:2] != GZIP_MAGIC[:2]:
        meta["content_encoding_stored"] = "decoded"
        codings = codings[:-1]
    done = []
    try:
        for c in reversed(codings):
            body = decode_bytes(body, c, cap=ctx["max_bytes"])
            done.append(c)
    except DecodeError as e:
        what = {"truncated": "truncated_body", "too_large": "too_large"}.get(e.what, "corrupt_body")
        return body, (what, f"Content-Encoding {header[:120]!r}: {e}" + (
            f" (preprocess.max_doc_bytes={ctx['max_bytes']})" if e.what == "too_large" else ""))
    if done:
        meta["content_encoding"] = ", ".join(reversed(done))
    return body, None


def _charset(ctype: str) -> str | None:
    for part in ctype.split(";")[1:]:
        k, _, v = part.partition("=")
        if k.strip().lower() == "charset":
            v = v.strip().strip("'\"").strip()
            return v.lower() or None
    return None


def _one(h: dict, block: bytes | None, *, offset: int, meta: dict, ctx: dict) -> dict:
    uri, source = ctx["uri"], ctx["source"]
    url = (h.get("warc-target-uri") or "").strip().strip("<>") or None
    meta.update({"file": uri, "offset": str(offset), "warc_type": h["warc-type"],
                 "warc_date": h.get("warc-date") or "", "warc_record_id": h.get("warc-record-id") or ""})
    common = dict(source=source, file=uri, offset=offset, url=url, meta=meta)
    cl = int(h["content-length"])
    if block is None:  # wanted, but over max_doc_bytes: the head is kept for audit
        return quarantine(**common, what="too_large",
                          why=f"record of {cl} bytes exceeds preprocess.max_doc_bytes={ctx['max_bytes']}",
                          prefix=h.get("_head", b"")[:ctx["prefix"]])
    if ctx["is_wet"] or h["warc-type"] != "response":
        ctype = h.get("content-type") or ("text/plain" if ctx["is_wet"] else "")
        if h.get("warc-identified-content-language"):
            meta["warc_lang"] = h["warc-identified-content-language"]
        body = block
    else:
        parts = _split_http(block)
        if parts is None:
            return quarantine(**common, what="http_headers",
                              why=f"response record of {cl} bytes has no parsable HTTP header block",
                              prefix=block[:ctx["prefix"]])
        status, hh, body = parts
        meta["http_status"] = status.split(" ")[1] if status.count(" ") else ""
        ctype = hh.get("content-type") or h.get("warc-identified-payload-type") or ""

        if "chunked" in hh.get("transfer-encoding", "").lower():
            plain = dechunk(body)
            if plain is not None:  # some archivers store the body already de-chunked under the same header
                body = plain
                meta["dechunked"] = "true"
        body, bad = _content_decoded(body, hh.get("content-encoding"), meta, ctx)
        if bad is not None:
            what, why = bad
            return quarantine(**common, what=what, why=why, prefix=body[:ctx["prefix"]] if what != "too_large" else b"")
    charset = _charset(ctype)
    if charset:
        meta["http_charset"] = charset
    mtype = ctype.split(";", 1)[0].strip().lower()
    meta["content_type"] = mtype
    if len(body) > ctx["max_bytes"]:
        return quarantine(**common, what="too_large",
                          why=f"payload of {len(body)} bytes exceeds preprocess.max_doc_bytes={ctx['max_bytes']}",
                          prefix=body[:ctx["prefix"]])
    return record(**common, content=body, content_type=mtype)


__all__ = ["iter_warc", "dechunk", "next_member", "next_plain_record", "parse_header"]
