"""Books: plain-text books (`.txt`, `.txt.gz`, `.txt.bz2`) -> one record per file, and the book recipe:
the Project Gutenberg header and footer (licence boilerplate, not the book) removed.

Markers, as Gutenberg has written them over the years: `*** START OF THE PROJECT GUTENBERG EBOOK ... ***`,
`*** START OF THIS PROJECT GUTENBERG EBOOK ... ***`, `*END*THE SMALL PRINT!` (pre-2000 files) and the
matching `*** END OF ...` / `End of the Project Gutenberg EBook` / `End of Project Gutenberg's ...` lines.
Book-level near-duplicate removal (> 90% overlap, LLaMA §2.1) is the dedup stage's, not this module's.
"""
from __future__ import annotations

import bz2
import gzip
import posixpath
import re
import zlib
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.sources._base import bad, decode, kept, prefix_len
from dataflow.core.confschema import Count, optional_section

_START = re.compile(r"^\s*(\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*|\*END\*THE SMALL PRINT!.*)$",
                    re.I | re.M)
_END = re.compile(r"^\s*(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*"
                  r"|End of (the )?Project Gutenberg'?s? E-?Book.*|End of Project Gutenberg'?s .*)$", re.I | re.M)


def iter_books(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    cfg = cfg or {}
    max_bytes = int(cfg.get("max_book_bytes", 64 << 20))   # conf: sources.book.max_book_bytes (same default)
    common = dict(source=source, file=uri, offset=0, source_type="book", book=posixpath.basename(uri))
    try:
        data = fs.read_bytes(uri)
        if uri.lower().endswith(".gz"):
            data = gzip.decompress(data)
        elif uri.lower().endswith(".bz2"):
            data = bz2.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error) as e:
        yield bad(**common, what="corrupt_compression", why=f"book unreadable: {e}")
        return
    if len(data) > max_bytes:
        yield bad(**common, what="too_large", why=f"{len(data)} bytes exceeds max_book_bytes={max_bytes}",
                  prefix=data[:prefix_len(cfg)])
        return
    text = decode(data)
    if text is None:
        yield bad(**common, what="binary_file", why="a NUL byte: not a plain-text book", prefix=data[:prefix_len(cfg)])
        return
    title = re.search(r"^Title:\s*(.+)$", text[:20000], re.M)
    yield kept(**common, text=text, title=title.group(1).strip() if title else None)


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
