"""Text extraction from package files: HTML (stdlib parser), gz/plain files with encoding fallback, R lazy-load
databases (Moby Dick, Jane Austen), man pages (groff)."""
from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import zlib
from html.parser import HTMLParser


class _BlockText(HTMLParser):
    """Visible text with a newline at every block boundary; script/style/head skipped."""
    SKIP = {"script", "style", "head", "title", "noscript"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "dt", "dd", "table",
             "section", "blockquote", "page", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, d):
        if not self.skip:
            self.out.append(d)


def html2text(s: str) -> str:
    p = _BlockText()
    p.feed(s)
    t = re.sub(r"[ \t\r\f\v]+", " ", "".join(p.out))
    return re.sub(r"\n\s*\n+", "\n\n", t).strip()


def read_text(path: str) -> str:
    """A text file, gzip or not, decoded as UTF-8, then GB18030 (old zh files), then Latin-1."""
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        b = f.read()
    for enc in ("utf-8", "gb18030"):
        try:
            return b.decode(enc)
        except UnicodeDecodeError:
            pass
    return b.decode("latin-1")


def read_bytes(path: str) -> bytes:
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def files(d: str, *exts: str) -> list[str]:
    out = []
    for r, _, fs in os.walk(d):
        for f in fs:
            p = os.path.join(r, f)
            if not os.path.islink(p) and f.endswith(exts):
                out.append(p)
    return sorted(out)


def rdb_strings(path: str) -> list[list[str]]:
    """Character vectors of each zlib-compressed object in an R lazy-load DB (data/Rdata.rdb).

    Each object is a 4-byte length then a zlib stream; inside, a CHARSXP is a 4-byte flags word whose low
    byte is 9, a 4-byte length, then the bytes."""
    b = open(path, "rb").read()
    i, objs = 0, []
    while i < len(b) - 6:
        if b[i + 4:i + 5] == b"x":
            d = zlib.decompressobj()
            try:
                o = d.decompress(b[i + 4:])
                used = len(b) - i - 4 - len(d.unused_data)
            except zlib.error:
                i += 1
                continue
            strs, j = [], 0
            while j < len(o) - 8:
                if struct.unpack(">I", o[j:j + 4])[0] & 0xFF == 9:
                    n = struct.unpack(">i", o[j + 4:j + 8])[0]
                    if 0 <= n and j + 8 + n <= len(o):
                        strs.append(o[j + 8:j + 8 + n].decode("utf-8", "replace"))
                        j += 8 + n
                        continue
                j += 1
            objs.append(strs)
            i += 4 + used
            continue
        i += 1
    return objs


def man2text(path: str) -> str:
    r = subprocess.run(["bash", "-c", f"zcat -f '{path}' | groff -Kutf8 -Tutf8 -man -P-cbou 2>/dev/null"],
                       capture_output=True)
    return r.stdout.decode("utf-8", "replace")


def json_items(o):
    """Every dict in a JSON tree (chinese-poetry nests poems at different depths)."""
    if isinstance(o, dict):
        yield o
        for v in o.values():
            if isinstance(v, (dict, list)):
                yield from json_items(v)
    elif isinstance(o, list):
        for v in o:
            yield from json_items(v)
