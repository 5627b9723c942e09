"""Bounded, streaming decompression: the one place that turns compressed bytes from outside into plain bytes.

Every reader (JSONL files, WARC HTTP bodies, the dump readers of `dataflow.ingest.sources`) decodes through
here, so every codec behaves alike:
- **Bounded steps.** Nothing is inflated whole before its size is checked: zlib/bz2/lzma decompress with
  `max_length`, brotli with `output_buffer_limit`, zstd one block (at most 128 KiB of output) at a time. A
  1 KB bomb that would inflate to 1 GiB stops at `cap` having held about `cap` bytes.
- **No silent short read.** A stream that ends inside a gzip member, bz2/xz stream, brotli stream or zstd
  frame raises `DecodeError("truncated")` (zstandard's own stream reader returns a quiet EOF there, so zstd
  frames are walked here block by block).
- **Every member.** Concatenated gzip members, bz2/xz streams and zstd frames are all read (zero padding
  between members, as gzip(1) and xz(1) write it, is skipped).

Errors are `DecodeError` with `.what` in `truncated | too_large | corrupt | unknown_encoding`; the message
names the codec and the decoded (and raw) offset reached.
"""
from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import Callable, Iterator

import brotli
import zstandard

_IN = 64 << 10      # raw bytes read at a time
_STEP = 64 << 10    # decoded bytes produced per step (brotli may overshoot its limit by one internal buffer)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_BLOCK_MAX = 128 << 10   # RFC 8878 §3.1.1.2.3: Block_Maximum_Size
_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".lzma": "xz", ".zst": "zstd",
             ".zstd": "zstd", ".br": "br"}
# HTTP content-coding names (RFC 9110 §8.4.1; `x-gzip` is gzip's old alias) -> our codec names
_HTTP_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "br": "br", "zstd": "zstd",
                 "bzip2": "bz2", "x-bzip2": "bz2", "xz": "xz", "identity": "identity"}
CODECS = ("gzip", "deflate", "br", "zstd", "bz2", "xz", "identity")


class DecodeError(ValueError):
    """Decoding failed: `.what` is `truncated`, `too_large`, `corrupt` or `unknown_encoding`."""

    def __init__(self, what: str, message: str):
        super().__init__(message)
        self.what = what


def codec_for_name(name: str) -> str | None:
    """The codec a file name's last suffix implies (`x.jsonl.GZ` -> gzip), None for an uncompressed name."""
    low = str(name).lower()
    dot = low.rfind(".")
    return _SUFFIXES.get(low[dot:]) if dot != -1 else None


def content_codings(header: str | None) -> list[str]:
    """An HTTP Content-Encoding value -> the codings in the order they were applied (`gzip, br` -> gzip then
    br); `identity` and empty entries are dropped; known aliases map to codec names (`x-gzip` -> gzip);
    an unknown name is kept verbatim (lower-cased) so the caller can quarantine it by name."""
    out = []
    for part in (header or "").split(","):
        name = part.strip().lower()
        if name and name != "identity":
            out.append(_HTTP_CODINGS.get(name, name))
    return out


# ---------------------------------------------------------------- raw input with a position
class _Src:
    """The raw stream read forward, with the number of raw bytes consumed (for error messages)."""

    def __init__(self, raw):
        self.raw, self.pos, self.buf = raw, 0, b""

    def chunk(self) -> bytes:
        """The next raw bytes (the held-back ones first); b"" at the end."""
        data, self.buf = (self.buf, b"") if self.buf else (self.raw.read(_IN), b"")
        self.pos += len(data)
        return data

    def unread(self, data: bytes) -> None:
        if data:
            self.buf = data + self.buf
            self.pos -= len(data)

    def take(self, n: int, codec: str) -> bytes:
        """Exactly n bytes, or DecodeError("truncated") when the stream ends first."""
        parts, got = [], 0
        while got < n:
            data = self.chunk()
            if not data:
                raise DecodeError("truncated", f"{codec} stream ends inside a frame (raw offset {self.pos}, "
                                               f"{n - got} more bytes expected): file or body cut short")
            parts.append(data[:n - got])
            self.unread(data[n - got:])
            got += len(parts[-1])
        return b"".join(parts)


def _cut(codec: str, src: _Src) -> DecodeError:
    return DecodeError("truncated", f"{codec} stream ends inside a member (raw offset {src.pos}): file or body "
                                    f"cut short")


def _bad(codec: str, src: _Src, e: Exception | str) -> DecodeError:
    return DecodeError("corrupt", f"{codec} data is corrupt near raw offset {src.pos}: {e}")


# ---------------------------------------------------------------- one generator per codec (chunks <= ~_STEP)
def _members(src: _Src, codec: str, new: Callable, errors: tuple) -> Iterator[bytes]:
    """gzip/bz2/xz: members one after another, each through a decompressor with max_length (zlib's keeps
    what it did not consume in `unconsumed_tail`; bz2/lzma keep it inside and say `needs_input`). An empty
    stream is empty; after a member, zero padding is skipped and anything else must start a member."""
    d, data, members = None, src.chunk(), 0
    while True:
        if d is None:
            data = data.lstrip(b"\x00") if members else data
            while not data:
                data = src.chunk()
                if not data:
                    return
                data = data.lstrip(b"\x00") if members else data
            d, members = new(), members + 1
        try:
            out = d.decompress(data, _STEP)
        except errors as e:
            raise _bad(codec, src, e) from None
        data = getattr(d, "unconsumed_tail", b"")
        if out:
            yield out
        if d.eof:  # what follows the member (zlib leaves a stale copy of it in unconsumed_tail too)
            data, d = d.unused_data, None
        elif not data and (len(out) < _STEP if codec == "gzip" else d.needs_input):
            data = src.chunk()
            if not data:
                raise _cut(codec, src)


def _deflate(src: _Src) -> Iterator[bytes]:
    """HTTP `deflate`: zlib-wrapped (RFC 1950) as the RFC says, or raw (RFC 1951) as many servers send it;
    browsers accept both, so the first two bytes decide (a zlib header is CM=8 and a multiple of 31)."""
    data = src.chunk()
    if not data:
        return  # an empty body is empty, whatever its coding
    if len(data) < 2:
        src.unread(data)
        data = src.take(2, "deflate")
    wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    d = zlib.decompressobj(15 if wrapped else -15)
    while True:
        try:
            out = d.decompress(data, _STEP)
        except zlib.error as e:
            raise _bad("deflate", src, e) from None
        data = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            rest = d.unused_data + src.chunk()
            if rest.strip(b"\x00"):
                raise _bad("deflate", src, f"{len(rest)}+ bytes after the end of the deflate stream")
            return
        if not data and len(out) < _STEP:
            data = src.chunk()
            if not data:
                raise _cut("deflate", src)


def _brotli(src: _Src) -> Iterator[bytes]:
    d = brotli.Decompressor()
    first = src.chunk()
    if not first:
        return  # an empty body is empty, whatever its coding
    src.unread(first)
    try:
        while not d.is_finished():
            if d.can_accept_more_data():
                data = src.chunk()
                out = d.process(data, output_buffer_limit=_STEP)
                if not data and not out:  # input over and nothing more comes out
                    raise _cut("br", src)
            else:
                out = d.process(b"", output_buffer_limit=_STEP)
            if out:
                yield out
        if src.chunk():
            raise _bad("br", src, "bytes after the end of the brotli stream")
    except brotli.error as e:
        raise _bad("br", src, e) from None


def _zstd_header_len(fhd: int) -> int:
    """Bytes of a zstd frame header after its descriptor byte (RFC 8878 §3.1.1.1)."""
    single = fhd >> 5 & 1
    fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    return (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs


def _zstd(src: _Src) -> Iterator[bytes]:
    """zstd frames walked block by block: each block goes to the decoder whole, so one step yields at most
    one block (128 KiB), and a stream cut inside a frame is noticed (the library would return a quiet EOF)."""
    while True:
        first = src.chunk()
        if not first:
            return
        src.unread(first)
        magic = src.take(4, "zstd")
        if magic[1:] == b"\x2a\x4d\x18" and magic[0] & 0xF0 == 0x50:  # skippable frame: size, then data
            skip = int.from_bytes(src.take(4, "zstd"), "little")
            while skip:
                skip -= len(src.take(min(skip, _IN), "zstd"))
            continue
        if magic != _ZSTD_MAGIC:
            raise _bad("zstd", src, f"not a zstd frame (magic {magic.hex()})")
        yield from _zstd_frame(src, magic)


def _zstd_frame(src: _Src, magic: bytes) -> Iterator[bytes]:
    d = zstandard.ZstdDecompressor().decompressobj()
    desc = src.take(1, "zstd")
    try:
        d.decompress(magic + desc + src.take(_zstd_header_len(desc[0]), "zstd"))
        while True:
            bh = src.take(3, "zstd")
            v = int.from_bytes(bh, "little")
            btype, bsize = v >> 1 & 3, v >> 3
            if btype == 3 or bsize > _ZSTD_BLOCK_MAX:
                raise _bad("zstd", src, f"invalid block header (type {btype}, size {bsize})")
            out = d.decompress(bh + src.take(1 if btype == 1 else bsize, "zstd"))
            if out:
                yield out
            if v & 1:  # the frame's last block
                break
        if desc[0] & 0x04:  # content checksum
            d.decompress(src.take(4, "zstd"))
    except zstandard.ZstdError as e:
        raise _bad("zstd", src, e) from None
    if not d.eof:
        raise _bad("zstd", src, "frame did not end after its last block")


def _identity(src: _Src) -> Iterator[bytes]:
    while data := src.chunk():
        yield data


def _chunks(raw, codec: str | None) -> Iterator[bytes]:
    src = _Src(raw)
    if codec in (None, "identity"):
        return _identity(src)
    if codec == "gzip":
        return _members(src, "gzip", lambda: zlib.decompressobj(31), (zlib.error,))
    if codec == "bz2":
        return _members(src, "bz2", bz2.BZ2Decompressor, (OSError, EOFError, ValueError))
    if codec == "xz":
        return _members(src, "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO), (lzma.LZMAError, EOFError))
    if codec == "zstd":
        return _zstd(src)
    if codec == "br":
        return _brotli(src)
    if codec == "deflate":
        return _deflate(src)
    raise DecodeError("unknown_encoding", f"unknown coding {codec!r}; known: {', '.join(CODECS)}")


# ---------------------------------------------------------------- the public readers
class Decoded:
    """A decoded stream: `read(n)` -> at most n bytes (b"" at the end), `close()` closes the raw stream.
    Bytes up to `cap` are returned; the read that would go past it raises DecodeError("too_large")."""

    def __init__(self, raw, codec: str | None, cap: int | None):
        self.raw, self.codec, self.cap = raw, codec or "identity", cap
        self._it, self._buf, self.pos = _chunks(raw, codec), b"", 0

    def read(self, n: int = -1) -> bytes:
        want = n if n >= 0 else float("inf")
        if self.cap is not None:  # one byte past the cap is enough to know it is passed
            want = min(want, self.cap - self.pos + 1)
        parts, have = [self._buf], len(self._buf)
        while have < want and self._it is not None:
            more = next(self._it, None)
            if more is None:
                self._it = None
            else:
                parts.append(more)
                have += len(more)
        buf = b"".join(parts)
        out = buf if n < 0 else buf[:n]
        if self.cap is not None and self.pos + len(out) > self.cap:
            if self.pos >= self.cap:
                raise DecodeError("too_large", f"{self.codec} data decodes to more than {self.cap} bytes "
                                               f"(stopped at decoded offset {self.pos})")
            out = out[:self.cap - self.pos]
        self._buf = buf[len(out):]
        self.pos += len(out)
        return out

    def close(self) -> None:
        self._it = None
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_decoded(raw, codec: str | None, *, cap: int | None) -> Decoded:
    """A streaming, bounded decoder over `raw` (a binary stream with read(n)); codec None: `raw` as is
    (cap still enforced). Unknown codec: DecodeError("unknown_encoding") at once."""
    if codec not in (None, *CODECS):
        raise DecodeError("unknown_encoding", f"unknown coding {codec!r}; known: {', '.join(CODECS)}")
    return Decoded(raw, codec, cap)


def decode_bytes(data: bytes, codec: str, *, cap: int) -> bytes:
    """An in-memory payload decoded with the same rules as `open_decoded` (truncated, corrupt and over-cap
    payloads raise DecodeError; nothing past `cap` is ever held)."""
    d = open_decoded(io.BytesIO(data), codec, cap=cap)
    out = d.read(cap + 1)   # stops at cap
    d.read(1)               # raises DecodeError("too_large") when anything follows
    return out
