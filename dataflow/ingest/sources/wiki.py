"""Encyclopedia: MediaWiki XML dumps (`pages-articles.xml`, `.xml.bz2`, multistream included) -> one record
per `<page>`, and the wiki recipe (wikitext to text with mwparserfromhell).

A multistream dump is many bz2 streams concatenated; `dataflow.ingest.decode` decodes them one after another
(the index file is only needed for random access, not for a full pass), `max_dump_bytes` in all. The XML is parsed incrementally
(`iterparse`), each page cleared after use, so memory holds one page. A page is one row whatever its
namespace; the recipe rejects other namespaces (`wiki.namespace`) and redirects (`wiki.redirect`).
Damage (a corrupt bz2 block, malformed or truncated XML) ends the file with one `malformed:` row naming
the page count reached; the pages before it are kept. A page that fails on its own is its own
`malformed:reader_error` row and the next page is read; a page over `max_doc_bytes` is `malformed:too_large`.
Processing is linear in the page (one walk drops templates, tags and links) and refuses a page nested deeper
than `max_nesting` levels of `{{ }}` (`wiki.too_deep`) before the parser would recurse into it.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.decode import DecodeError, codec_for_name, open_decoded
from dataflow.ingest.sources._base import MAX_DOC_BYTES, bad, guarded, kept
from dataflow.core.confschema import Count, List, Str, optional_section

# default when no cfg is passed; DP passes conf/pipeline.yaml `sources.wiki`
KEPT_NAMESPACES = ("0",)   # main/article namespace only (LLaMA §2.1 uses article text); conf: sources.wiki.namespaces
# tags whose content is not running text: references, tables, galleries, math and code blocks, etc.
DROP_TAGS = ("ref", "references", "table", "gallery", "math", "chem", "score", "timeline", "imagemap",
             "syntaxhighlight", "source", "pre", "nowiki", "templatedata", "graph", "mapframe", "noinclude")
# link prefixes that are media or categories, not text (English and the canonical names)
DROP_LINK_PREFIXES = ("file:", "image:", "media:", "category:")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


MAX_DUMP_BYTES = 1 << 40   # decoded bytes of one dump (enwiki's articles are ~100 GB); conf: sources.wiki.max_dump_bytes


def _page_row(el, n: int, lang, common: dict, max_bytes: int) -> dict:
    """The row of one `<page>` element: its revision text, or why there is none to keep."""
    fields = {_local(c.tag): c for c in el}
    rev = fields.get("revision")
    text_el = next((c for c in rev if _local(c.tag) == "text"), None) if rev is not None else None
    title = (fields["title"].text if "title" in fields else None) or ""
    meta = dict(title=title, page_id=fields["id"].text if "id" in fields else None,
                ns=fields["ns"].text if "ns" in fields else "0", lang=lang,
                redirect=fields["redirect"].get("title") if "redirect" in fields else None)
    if text_el is None:
        return bad(**common, offset=n, what="wiki_no_text", why=f"page {n} ({title!r}) has no revision text", **meta)
    text = text_el.text or ""
    if len(text) > max_bytes:
        return bad(**common, offset=n, what="too_large",
                   why=f"page {n} ({title!r}): {len(text)} characters exceed max_doc_bytes={max_bytes}", **meta)
    return kept(**common, offset=n, text=text, content_type="text/x-wiki", url=None, **meta)


def iter_mediawiki(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    """One row per `<page>`, the dump decoded through `dataflow.ingest.decode` (every bz2 stream of a
    multistream dump; damage and a stream cut short are errors, never a quiet end) with `max_dump_bytes`."""
    cfg = cfg or {}
    max_bytes = int(cfg.get("max_doc_bytes", MAX_DOC_BYTES))
    raw = fs.open_stream(uri)
    fh = open_decoded(raw, codec_for_name(uri), cap=int(cfg.get("max_dump_bytes", MAX_DUMP_BYTES)))
    n, lang = 0, None
    common = dict(source=source, file=uri, source_type="wiki")
    try:
        for event, el in ET.iterparse(fh, events=("start", "end")):
            tag = _local(el.tag)
            if event == "start":
                if tag == "mediawiki" and lang is None:
                    lang = el.get("{http://www.w3.org/XML/1998/namespace}lang")
                continue
            if tag != "page":
                continue
            yield guarded(lambda: _page_row(el, n, lang, common, max_bytes), unit=f"page {n}", **common, offset=n)
            n += 1
            el.clear()
    except ET.ParseError as e:
        yield bad(**common, offset=n, what="xml", why=f"XML unreadable after {n} pages: {e}; rest of file unreadable")
    except DecodeError as e:
        what = "too_large" if e.what == "too_large" else "corrupt_compression"
        yield bad(**common, offset=n, what=what, why=f"decompression failed after {n} pages: {e}; rest of file unreadable")
    except (OSError, EOFError) as e:
        yield bad(**common, offset=n, what="corrupt_compression",
                  why=f"reading failed after {n} pages: {e}; rest of file unreadable")
    finally:
        fh.close()


# ---------------------------------------------------------------- processing
MAX_NESTING = 40   # nested {{ }} levels a page may hold (MediaWiki's own $wgMaxTemplateDepth is 40); conf: sources.wiki.max_nesting
_BRACE = re.compile(r"[{}]")
_TABLE_LEFTOVER = re.compile(r"(?m)^[^\S\n]*[|!{].*$")


def nesting(wikitext: str) -> int:
    """How deep `{{ }}` (templates, parser functions, {{{arguments}}}) nest, in levels of two braces; one
    linear pass, so a page the parser would recurse into past Python's limit is refused before it parses."""
    depth = deepest = 0
    for m in _BRACE.finditer(wikitext):
        depth = depth + 1 if m.group() == "{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return (deepest + 1) // 2


def _dropped(node, top: bool) -> bool:
    """A node that is not running text: a top-level template or DROP_TAGS tag, or a media/category link."""
    from mwparserfromhell.nodes import Tag, Template, Wikilink

    if top and isinstance(node, Template):
        return True
    if top and isinstance(node, Tag) and str(node.tag).strip().lower() in DROP_TAGS:
        return True
    return isinstance(node, Wikilink) and str(node.title).strip().lower().lstrip(":").startswith(DROP_LINK_PREFIXES)


def _prune(code) -> None:
    """Drops the `_dropped` nodes in one walk over the tree (an explicit stack, no recursion): each node list
    is rebuilt once, where removing nodes one by one searched the list for each (quadratic in the page)."""
    stack = [(code, True)]
    while stack:
        wc, top = stack.pop()
        kept = [n for n in wc.nodes if not _dropped(n, top)]
        if len(kept) != len(wc.nodes):
            wc.nodes = kept
        for n in kept:
            stack.extend((child, False) for child in n.__children__())


def wikitext_to_text(wikitext: str) -> str:
    """Plain text: templates, tables, references, media and category links removed; links become their
    label; headings and bold/italic markup become their text."""
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    _prune(code)
    text = code.strip_code(normalize=True, collapse=True, keep_template_params=False)
    text = _TABLE_LEFTOVER.sub("", text)   # leftovers of a table the parser could not close
    text = "\n".join(line.strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def process_wiki(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    cfg = cfg or {}
    if meta.get("redirect") or re.match(r"\s*#redirect", text, re.I):
        return None, "wiki.redirect"
    if meta.get("ns", "0") not in tuple(str(x) for x in cfg.get("namespaces", KEPT_NAMESPACES)):
        return None, "wiki.namespace"
    if nesting(text) > int(cfg.get("max_nesting", MAX_NESTING)):
        return None, "wiki.too_deep"
    try:
        out = wikitext_to_text(text)
    except RecursionError:   # nesting the brace count does not see (links, tags): the same refusal
        return None, "wiki.too_deep"
    return (out, None) if out else (None, "wiki.empty")


# sources.wiki
SPEC = optional_section({"namespaces": List(Str(non_empty=True), unique=True, min_len=1), "max_nesting": Count(1),
                         "max_dump_bytes": Count(1)})
