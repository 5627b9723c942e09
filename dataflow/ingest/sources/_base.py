"""Shared pieces of the per-type readers: the row builders with `meta.source_type` set, and text decoding."""
from __future__ import annotations

from dataflow.ingest.records import clean, quarantine, record

PREFIX_CHARS = 200   # bytes of a bad unit kept for audit (ingest's quarantine_prefix_chars when cfg has it)


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


def tar_end_damage(tf) -> str | None:
    """Why a tar that tarfile finished reading did not end cleanly, else None. tarfile ends without an
    error at a header cut short (any offset but 0): a complete tar ends with two zero 512-byte blocks."""
    try:
        tf.fileobj.seek(tf.offset)
        rest = tf.fileobj.read(1024)
    except (OSError, EOFError) as e:
        return f"unreadable after offset {tf.offset}: {e}"
    if len(rest) < 1024 or rest.strip(b"\0"):
        return f"no end-of-archive marker at offset {tf.offset} (archive truncated or damaged)"
    return None
