"""Readers and per-type recipes for sources that are not web pages: code, papers, Q&A, encyclopedia, books.

`READERS` maps an input kind to its reader, `iter_<kind>(uri, *, source, cfg) -> Iterator[dict]` yielding
the raw records of `dataflow.ingest.records` (one row per input unit: archive member, paper, post, page,
book; unreadable ones as `malformed:<what>` rows). `meta["source_type"]` names the type.
`PROCESSORS` maps a source type to its recipe, `process_<type>(text, meta, cfg) -> (text, None)` for a
kept record or `(None, reason)` for a dropped one. `kind_for(path)` guesses the kind from a file name;
conf names it explicitly where a name is ambiguous (a `.tar` of code vs of arXiv papers).
"""
from __future__ import annotations

from dataflow.ingest.sources.arxiv import iter_arxiv, process_paper
from dataflow.ingest.sources.books import iter_books, process_book
from dataflow.ingest.sources.code import iter_code_archive, iter_code_table, process_code
from dataflow.ingest.sources.stackexchange import iter_stackexchange, process_qa
from dataflow.ingest.sources.wiki import iter_mediawiki, process_wiki

READERS = {
    "code_archive": iter_code_archive,
    "code_table": iter_code_table,
    "arxiv": iter_arxiv,
    "stackexchange": iter_stackexchange,
    "mediawiki": iter_mediawiki,
    "gutenberg": iter_books,
}
SOURCE_TYPE = {"code_archive": "code", "code_table": "code", "arxiv": "paper", "stackexchange": "qa", "mediawiki": "wiki",
               "gutenberg": "book"}
PROCESSORS = {"code": process_code, "paper": process_paper, "qa": process_qa, "wiki": process_wiki,
              "book": process_book}


def kind_for(path: str) -> str | None:
    """The reader kind a file name implies, else None (the caller's conf must say)."""
    low = path.lower().rstrip("/")
    name = low.rsplit("/", 1)[-1]
    if name.endswith(".7z") or name == "posts.xml" or name.endswith("-posts.xml"):
        return "stackexchange"
    if name.endswith((".xml.bz2", ".xml.gz")) or ("pages-articles" in name and name.endswith(".xml")):
        return "mediawiki"
    if name.endswith(".tex") or (name.startswith("arxiv_src") and name.endswith(".tar")):
        return "arxiv"
    if name.endswith((".zip", ".tar.gz", ".tgz")):
        return "code_archive"
    if name.endswith((".txt", ".txt.gz", ".txt.bz2")):
        return "gutenberg"
    return None
