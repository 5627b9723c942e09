"""Shared pieces of the per-type readers: the row builders with `meta.source_type` set, the per-unit guard, text
decoding, and tar archives read forward through `dataflow.ingest.decode` (bounded) with their member types."""
from __future__ import annotations

import tarfile
import zlib
from typing import Callable

from dataflow.ingest.decode import DecodeError, codec_for_name, open_decoded
from dataflow.ingest.records import clean, quarantine, record

PREFIX_CHARS = 200   # bytes of a bad unit kept for audit (ingest's quarantine_prefix_chars when cfg has it)
MAX_DOC_BYTES = 1 << 20   # a unit's bytes when cfg names no max_doc_bytes (ingest passes preprocess.max_doc_bytes)
MAX_ARCHIVE_BYTES = 1 << 34   # decoded bytes of one archive or dump when cfg names none (conf: sources.<type>.max_archive_bytes)


def prefix_len(cfg: dict) -> int:
    return int((cfg or {}).get("quarantine_prefix_chars", PREFIX_CHARS))


def kept(*, source, file, offset, text, source_type, content_type="text/plain", url=None, **meta) -> dict:
    m = {k: str(v) for k, v in meta.items() if v is not None}
    m["source_type"], m["file"], m["offset"] = source_type, file, str(offset)
    return record(source=source, file=file, offset=offset, url=url, text=clean(text), content_type=content_type,
                  meta={clean(k): clean(v) for k, v in m.items()})


def bad(*, source, file, offset, what, why, source_type, prefix=None, **meta) -> dict:
    m = {k: str(v) for k, v in meta.items() if v is not None}
    m["source_type"] = source_type
    return quarantine(source=source, file=file, offset=offset, what=what, why=why, prefix=prefix, meta=m)


def decode(data: bytes) -> str | None:
    """UTF-8 text (BOM dropped), else Latin-1 for 8-bit text files; None for binary (a NUL byte)."""
    if b"\x00" in data[:8192]:
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def guarded(build: Callable[[], dict], *, unit: str, **common) -> dict:
    """The row `build()` makes for one unit, or, when it raises, that unit's `malformed:reader_error` row naming
    the unit and the exception: one bad unit never ends the file."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - any failure on one unit is that unit's row, with its type and message
        return bad(**common, what="reader_error", why=f"{unit}: {type(e).__name__}: {e}")


# tar member types that are not a regular file (a directory is no unit: it holds no text)
_TAR_TYPES = {tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "character_device",
              tarfile.BLKTYPE: "block_device", tarfile.FIFOTYPE: "fifo"}


def member_type(ti: tarfile.TarInfo) -> str | None:
    """None for a regular file, "directory" for a directory, else what the member is (symlink, hardlink,
    character_device, block_device, fifo, or `type <flag>` for a type tarfile does not know)."""
    if ti.isfile():
        return None
    if ti.isdir():
        return "directory"
    return _TAR_TYPES.get(ti.type, f"type {ti.type!r}")


def not_a_file(kind: str, name: str, ti: tarfile.TarInfo | None = None) -> str:
    target = f" -> {ti.linkname}" if ti is not None and ti.linkname else ""
    return f"member {name}{target} is a {kind}, not a regular file"


def tar_codec(uri: str) -> str | None:
    """The compression of a tar by its name (`.tgz` is a gzip)."""
    return "gzip" if uri.lower().endswith(".tgz") else codec_for_name(uri)


TAR_ERRORS = (tarfile.TarError, DecodeError, OSError, EOFError, zlib.error)
_WINDOW = 64 << 10   # decoded bytes remembered behind tarfile's read position (its buffer is 10 KiB)


class _Window:
    """A forward stream that remembers its last bytes, so the end of a streamed tar can be checked."""

    def __init__(self, inner):
        self.inner, self.tail, self.total = inner, b"", 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.tail = (self.tail + data)[-_WINDOW:]
        self.total += len(data)
        return data

    def at(self, offset: int, n: int) -> bytes:
        have = self.tail[max(0, offset - (self.total - len(self.tail))):]
        while len(have) < n:
            more = self.inner.read(n - len(have))
            if not more:
                break
            have += more
        return have[:n]


class TarStream:
    """A tar read forward once, its decompression through `dataflow.ingest.decode` with `cap` decoded bytes
    in all: iterating gives each member's TarInfo (errors propagate: TAR_ERRORS), `read(ti, cap)` its bytes
    while it is the current member, `end_damage()` after the last one why the archive did not end cleanly."""

    def __init__(self, raw, codec: str | None, cap: int):
        self.win = _Window(open_decoded(raw, codec, cap=cap))
        self.tf = tarfile.open(fileobj=self.win, mode="r|")

    def __iter__(self):
        while True:
            ti = self.tf.next()
            if ti is None:
                return
            self.tf.members.clear()   # tarfile keeps every TarInfo; a stream needs only the current one
            yield ti

    def read(self, ti: tarfile.TarInfo, cap: int) -> bytes:
        """The member's bytes (at most cap + 1: the caller checked its declared size against cap)."""
        f = self.tf.extractfile(ti)
        return f.read(cap + 1) if f is not None else b""

    def end_damage(self) -> str | None:
        """Why the tar did not end cleanly, else None. tarfile ends without an error at a header cut short or
        unreadable (any offset but 0): a complete tar ends with two zero 512-byte blocks."""
        try:
            rest = self.win.at(self.tf.offset, 1024)
        except TAR_ERRORS as e:
            return f"unreadable after offset {self.tf.offset}: {e}"
        if len(rest) < 1024 or rest.strip(b"\0"):
            return f"no end-of-archive marker at offset {self.tf.offset} (archive truncated or damaged)"
        return None


def caps(cfg: dict) -> tuple[int, int]:
    """(bytes one unit may have, decoded bytes one archive/dump may have) from a reader's cfg."""
    cfg = cfg or {}
    return int(cfg.get("max_doc_bytes", MAX_DOC_BYTES)), int(cfg.get("max_archive_bytes", MAX_ARCHIVE_BYTES))


def container_what(e: Exception) -> str:
    """The `malformed:<what>` of an archive that cannot be read further: too_large past its decode cap, else
    corrupt_archive."""
    return "too_large" if isinstance(e, DecodeError) and e.what == "too_large" else "corrupt_archive"
