"""Books: plain-text books (`.txt`, `.txt.gz`, `.txt.bz2`, any codec of `dataflow.ingest.decode`, decoded with
`max_book_bytes` at most: a bomb stops there as `malformed:too_large`) -> one record per file, and the book recipe:
the Project Gutenberg header and footer (licence boilerplate, not the book) removed.

Markers, as Gutenberg has written them over the years: `*** START OF THE PROJECT GUTENBERG EBOOK ... ***`,
`*** START OF THIS PROJECT GUTENBERG EBOOK ... ***`, `*END*THE SMALL PRINT!` (pre-2000 files) and the
matching `*** END OF ...` / `End of the Project Gutenberg EBook` / `End of Project Gutenberg's ...` lines.
Book-level near-duplicate removal (> 90% overlap, LLaMA §2.1) is the dedup stage's, not this module's.
"""
from __future__ import annotations

import posixpath
import re
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.decode import DecodeError, codec_for_name, open_decoded
from dataflow.ingest.sources._base import bad, decode, guarded, kept, prefix_len
from dataflow.core.confschema import Count, optional_section

_START = re.compile(r"^\s*(\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*|\*END\*THE SMALL PRINT!.*)$",
                    re.I | re.M)
_END = re.compile(r"^\s*(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*"
                  r"|End of (the )?Project Gutenberg'?s? E-?Book.*|End of Project Gutenberg'?s .*)$", re.I | re.M)


def _read_book(uri: str, max_bytes: int) -> bytes:
    """The book's bytes, decoded through `dataflow.ingest.decode` (by its name) with `max_bytes` at most."""
    with fs.open_stream(uri) as raw:
        return decode_bytes_stream(raw, codec_for_name(uri), cap=max_bytes)


def decode_bytes_stream(raw, codec: str | None, *, cap: int) -> bytes:
    d = open_decoded(raw, codec, cap=cap)
    out = d.read(cap + 1)
    d.read(1)   # DecodeError("too_large") when anything follows the cap
    return out


def iter_books(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    cfg = cfg or {}
    max_bytes = int(cfg.get("max_book_bytes", 64 << 20))   # conf: sources.book.max_book_bytes (same default)
    common = dict(source=source, file=uri, offset=0, source_type="book", book=posixpath.basename(uri))
    try:
        data = _read_book(uri, max_bytes)
    except DecodeError as e:
        what = "too_large" if e.what == "too_large" else "corrupt_compression"
        yield bad(**common, what=what, why=f"book unreadable: {e}")
        return
    yield guarded(lambda: _book_row(data, common, prefix_len(cfg)), unit="book", **common)


def _book_row(data: bytes, common: dict, keep: int) -> dict:
    text = decode(data)
    if text is None:
        return bad(**common, what="binary_file", why="a NUL byte: not a plain-text book", prefix=data[:keep])
    title = re.search(r"^Title:\s*(.+)$", text[:20000], re.M)
    return kept(**common, text=text, title=title.group(1).strip() if title else None)


def strip_gutenberg(text: str) -> tuple[str, bool, bool]:
    """(body, header found, footer found): the text between the START and END markers."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    s = _START.search(text)
    if s:
        text = text[s.end():]
    e = _END.search(text)
    if e:
        text = text[:e.start()]
    return text.strip(), s is not None, e is not None


def process_book(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    body, _, _ = strip_gutenberg(text)
    return (body, None) if body else (None, "book.empty")


# sources.book
SPEC = optional_section({"max_book_bytes": Count(1)})
