"""Encyclopedia: MediaWiki XML dumps (`pages-articles.xml`, `.xml.bz2`, multistream included) -> one record
per `<page>`, and the wiki recipe (wikitext to text with mwparserfromhell).

A multistream dump is many bz2 streams concatenated; Python's bz2 reader decodes them one after another
(the index file is only needed for random access, not for a full pass). The XML is parsed incrementally
(`iterparse`), each page cleared after use, so memory holds one page. A page is one row whatever its
namespace; the recipe rejects other namespaces (`wiki.namespace`) and redirects (`wiki.redirect`).
Damage (a corrupt bz2 block, malformed or truncated XML) ends the file with one `malformed:` row naming
the page count reached; the pages before it are kept.
"""
from __future__ import annotations

import bz2
import gzip
import re
import xml.etree.ElementTree as ET
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.sources._base import bad, kept
from dataflow.core.confschema import List, Str, optional_section

_READ = 1 << 20
# default when no cfg is passed; DP passes conf/pipeline.yaml `sources.wiki`
KEPT_NAMESPACES = ("0",)   # main/article namespace only (LLaMA §2.1 uses article text); conf: sources.wiki.namespaces
# tags whose content is not running text: references, tables, galleries, math and code blocks, etc.
DROP_TAGS = ("ref", "references", "table", "gallery", "math", "chem", "score", "timeline", "imagemap",
             "syntaxhighlight", "source", "pre", "nowiki", "templatedata", "graph", "mapframe", "noinclude")
# link prefixes that are media or categories, not text (English and the canonical names)
DROP_LINK_PREFIXES = ("file:", "image:", "media:", "category:")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _MultiBz2:
    """Concatenated bz2 streams decoded one after another. Python's BZ2File stops without a word when a
    later stream's header is damaged ("trailing garbage"); here that is an OSError, as is a stream cut
    short, so damage is reported, never read as a clean end of file."""

    def __init__(self, raw):
        self.raw, self.d, self.buf, self.started = raw, bz2.BZ2Decompressor(), b"", False

    def read(self, n: int = -1) -> bytes:
        n = _READ if n is None or n < 0 else n
        while len(self.buf) < n:
            data = self.d.unused_data if self.d.eof else b""
            if self.d.eof:
                self.d, self.started = bz2.BZ2Decompressor(), False
            if not data:
                data = self.raw.read(_READ)
            if not data:
                if self.started:
                    raise OSError("bz2 stream ends before its end-of-stream marker (file truncated)")
                break
            self.started = True
            self.buf += self.d.decompress(data)   # raises OSError on a damaged block or stream header
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self):
        pass


def _open(uri: str):
    raw = fs.open_stream(uri)
    low = uri.lower()
    if low.endswith(".bz2"):
        return raw, _MultiBz2(raw)
    if low.endswith(".gz"):
        return raw, gzip.GzipFile(fileobj=raw)
    return raw, raw


def iter_mediawiki(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    raw, fh = _open(uri)
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
            fields = {_local(c.tag): c for c in el}
            rev = fields.get("revision")
            text_el = None
            if rev is not None:
                text_el = next((c for c in rev if _local(c.tag) == "text"), None)
            title = (fields["title"].text if "title" in fields else None) or ""
            meta = dict(title=title, page_id=fields["id"].text if "id" in fields else None,
                        ns=fields["ns"].text if "ns" in fields else "0", lang=lang,
                        redirect=fields["redirect"].get("title") if "redirect" in fields else None)
            if text_el is None:
                yield bad(**common, offset=n, what="wiki_no_text", why=f"page {n} ({title!r}) has no revision text", **meta)
            else:
                yield kept(**common, offset=n, text=text_el.text or "", content_type="text/x-wiki",
                           url=None, **meta)
            n += 1
            el.clear()
    except ET.ParseError as e:
        yield bad(**common, offset=n, what="xml", why=f"XML unreadable after {n} pages: {e}; rest of file unreadable")
    except (OSError, EOFError, ValueError) as e:
        yield bad(**common, offset=n, what="corrupt_compression",
                  why=f"decompression failed after {n} pages: {e}; rest of file unreadable")
    finally:
        if fh is not raw:
            fh.close()
        raw.close()


# ---------------------------------------------------------------- processing
def wikitext_to_text(wikitext: str) -> str:
    """Plain text: templates, tables, references, media and category links removed; links become their
    label; headings and bold/italic markup become their text."""
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    for t in code.filter_templates(recursive=False):
        _remove(code, t)
    for tag in code.filter_tags(recursive=False):
        if str(tag.tag).strip().lower() in DROP_TAGS:
            _remove(code, tag)
    for link in code.filter_wikilinks(recursive=True):
        if str(link.title).strip().lower().lstrip(":").startswith(DROP_LINK_PREFIXES):
            _remove(code, link)
    text = code.strip_code(normalize=True, collapse=True, keep_template_params=False)
    text = re.sub(r"(?m)^\s*[|!{].*$", "", text)   # leftovers of a table the parser could not close
    text = "\n".join(line.strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _remove(code, node) -> None:
    try:
        code.remove(node)
    except ValueError:
        pass   # already gone with an enclosing node


def process_wiki(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    cfg = cfg or {}
    if meta.get("redirect") or re.match(r"\s*#redirect", text, re.I):
        return None, "wiki.redirect"
    if meta.get("ns", "0") not in tuple(str(x) for x in cfg.get("namespaces", KEPT_NAMESPACES)):
        return None, "wiki.namespace"
    out = wikitext_to_text(text)
    return (out, None) if out else (None, "wiki.empty")


# sources.wiki
SPEC = optional_section({"namespaces": List(Str(non_empty=True), unique=True, min_len=1)})
