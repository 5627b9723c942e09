"""Readers and per-type recipes for sources that are not web pages: code, papers, Q&A, encyclopedia, books.

`READERS` maps an input kind to its reader, `iter_<kind>(uri, *, source, cfg) -> Iterator[dict]` yielding
the raw records of `dataflow.ingest.records` (one row per input unit: archive member, paper, post, page,
book; unreadable ones as `malformed:<what>` rows). `meta["source_type"]` names the type.
`PROCESSORS` maps a source type to its recipe, `process_<type>(text, meta, cfg) -> (text, None)` for a
kept record or `(None, reason)` for a dropped one. `kind_for(path)` guesses the kind from a file name;
conf names it explicitly where a name is ambiguous (a `.tar` of code vs of arXiv papers).
"""
from __future__ import annotations

from dataflow.ingest.sources import arxiv, books, code, stackexchange, wiki
from dataflow.ingest.sources.arxiv import iter_arxiv, process_paper
from dataflow.ingest.sources.books import iter_books, process_book
from dataflow.ingest.sources.code import iter_code_archive, iter_code_table, process_code
from dataflow.ingest.sources.stackexchange import iter_stackexchange, process_qa
from dataflow.ingest.sources.wiki import iter_mediawiki, process_wiki
from dataflow.core.confschema import List, Map, Section, Str, optional_section
from dataflow.core.recipes import READER_KINDS, SOURCE_TYPES, kind_for  # noqa: F401 - kind_for is this package's too

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


# the `sources` section of conf/pipeline.yaml: which dumps are read as which type, and each kind's settings
SPEC = optional_section({
    "default_type": Str(SOURCE_TYPES),
    "inputs": List(Section({"match": Str(non_empty=True), "type": Str(SOURCE_TYPES),
                            "kind": Str(READER_KINDS, nullable=True)}, required=("match", "type"))),
    "by_source": Map(Str(SOURCE_TYPES), nullable=True),
    # each type's reader settings, declared by its reader module
    **{t: m.SPEC for t, m in (("code", code), ("paper", arxiv), ("qa", stackexchange), ("wiki", wiki),
                                              ("book", books))},
})
