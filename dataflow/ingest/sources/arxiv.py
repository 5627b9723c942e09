"""Papers: arXiv source archives -> one record per paper, and the paper recipe.

Input forms (as arXiv's bulk source files are published): a `.tar` whose members are per-paper `.gz`
(one gzipped `.tex`) or `.tar.gz`/`.tgz` (the paper's source tree); a bare `.tex`; a bare per-paper
`.gz`/`.tar.gz`. A paper's `.tex` files are concatenated, the one holding `\\documentclass` first.

Processing follows LLaMA §2.1 ("we removed everything before the first section, as well as the
bibliography ... removed the comments ... inline-expanded definitions and macros written by users") as
RedPajama-Data rp_v1 data_prep/arxiv/arxiv_cleaner.py implements it; unlike RedPajama (argument-less macros
only), macros with #1..#9 arguments are expanded too.
"""
from __future__ import annotations

import gzip
import io
import posixpath
import re
import tarfile
import zlib
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.sources._base import bad, decode, kept, prefix_len, tar_end_damage

MAX_EXPANSION_PASSES = 10   # nested user macros are expanded this many levels deep; guards \def\a{\a}


def _paper_text(name: str, data: bytes) -> tuple[str | None, str]:
    """(concatenated TeX source, why not) of one paper's bytes: a gzip of a .tex or of a tar, a tar, or a .tex."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)   # raises on a corrupt member: the caller quarantines it
    if len(data) > 262 and data[257:262] == b"ustar":
        texts = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for ti in tf:
                if ti.isfile() and ti.name.lower().endswith(".tex"):
                    t = decode(tf.extractfile(ti).read())
                    if t is not None:
                        texts.append(t)
        if not texts:
            return None, "no .tex file in the paper's archive"
        texts.sort(key=lambda t: "\\documentclass" not in t)
        return "\n".join(texts), ""
    text = decode(data)
    if text is None:
        return None, "binary (PDF-only submission or unknown format)"
    return text, ""


def iter_arxiv(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    cfg = cfg or {}
    keep = prefix_len(cfg)
    low = uri.lower()
    common = dict(source=source, file=uri, source_type="paper")
    if low.endswith(".tar") and not low.endswith((".tar.gz", ".tgz")):
        i = 0
        with fs.open_input(uri) as raw:
            try:
                with tarfile.open(fileobj=raw, mode="r:") as tf:
                    for i, ti in enumerate(tf):
                        if not ti.isfile():
                            continue
                        paper_id = re.sub(r"(\.tar)?\.(gz|tgz|tex)$", "", posixpath.basename(ti.name))
                        try:
                            text, why = _paper_text(ti.name, tf.extractfile(ti).read())
                        except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
                            yield bad(**common, offset=ti.offset, what="corrupt_archive",
                                      why=f"member {ti.name}: {e}", paper_id=paper_id)
                            continue
                        if text is None:
                            yield bad(**common, offset=ti.offset, what="no_tex_source", why=f"member {ti.name}: {why}",
                                      paper_id=paper_id)
                            continue
                        yield kept(**common, offset=ti.offset, text=text, content_type="text/x-tex",
                                   paper_id=paper_id, member=ti.name)
                    end = tar_end_damage(tf)
                if end:
                    yield bad(**common, offset=tf.offset, what="corrupt_archive", why=f"outer tar: {end}")
            except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
                yield bad(**common, offset=i, what="corrupt_archive", why=f"outer tar unreadable after member {i}: {e}")
        return
    data = fs.read_bytes(uri)
    paper_id = re.sub(r"(\.tar)?\.(gz|tgz|tex)$", "", posixpath.basename(uri))
    try:
        text, why = _paper_text(uri, data)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        yield bad(**common, offset=0, what="corrupt_archive", why=str(e), paper_id=paper_id, prefix=data[:keep])
        return
    if text is None:
        yield bad(**common, offset=0, what="no_tex_source", why=why, paper_id=paper_id)
        return
    yield kept(**common, offset=0, text=text, content_type="text/x-tex", paper_id=paper_id)


# ---------------------------------------------------------------- processing
_COMMENT = re.compile(r"(?<!\\)%.*$", re.M)
_SECTION = re.compile(r"\\(?:part|chapter|section|subsection|subsubsection|paragraph|subparagraph)\*?\s*[\[{]")
_BIBLIO = re.compile(r"\\begin\{thebibliography\}|\\begin\{references\}|\\bibliography\{|\\printbibliography")
_NAME = re.compile(r"\\([A-Za-z@]+|.)")


def strip_comments(tex: str) -> str:
    """Comment-only lines removed, trailing `%...` removed (an escaped `\\%` kept)."""
    out = []
    for line in tex.split("\n"):
        if line.lstrip().startswith("%"):
            continue
        out.append(_COMMENT.sub("", line))
    return "\n".join(out)


def _group(s: str, i: int) -> tuple[str, int] | None:
    """The balanced {...} group starting at s[i] (after spaces): (inside, index after it)."""
    while i < len(s) and s[i] in " \t\n":
        i += 1
    if i >= len(s) or s[i] != "{":
        return None
    depth, j = 0, i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
        j += 1
    return None


def _arg(s: str, i: int) -> tuple[str, int] | None:
    """One macro argument at s[i]: a {group}, a control sequence, or a single character."""
    while i < len(s) and s[i] in " \t\n":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        return _group(s, i)
    if s[i] == "\\":
        m = _NAME.match(s, i)
        return m.group(), m.end()
    return s[i], i + 1


def find_macros(tex: str) -> tuple[dict[str, tuple[int, str | None, str]], list[tuple[int, int]]]:
    """User macros {name: (n_args, default of an optional first arg, body)} and the spans defining them."""
    macros, spans = {}, []
    for m in re.finditer(r"\\(?:re)?newcommand\*?|\\providecommand\*?|\\def(?![A-Za-z])", tex):
        i = m.end()
        is_def = m.group() == "\\def"
        if is_def:
            nm = _NAME.match(tex, i)
            if not nm:
                continue
            name, i = nm.group(1), nm.end()
            params = re.match(r"(#[1-9])*", tex[i:]).group()
            n, i, default = len(params) // 2, i + len(params), None
        else:
            g = _group(tex, i)
            if g:
                inner, i = g
                inner = inner.strip()
            else:
                nm = _NAME.match(tex, i) or _NAME.match(tex, i + (len(tex[i:]) - len(tex[i:].lstrip())))
                if not nm:
                    continue
                inner, i = nm.group(), nm.end()
            if not inner.startswith("\\"):
                continue
            name = inner[1:]
            n, default = 0, None
            om = re.match(r"\s*\[(\d)\]", tex[i:])
            if om:
                n, i = int(om.group(1)), i + om.end()
                dm = re.match(r"\s*\[([^\]]*)\]", tex[i:])
                if dm:
                    default, i = dm.group(1), i + dm.end()
        body = _group(tex, i)
        if body is None:
            continue
        macros[name] = (n, default, body[0])
        spans.append((m.start(), body[1]))
    return macros, spans


def _substitute(body: str, args: list[str]) -> str:
    """#k replaced by the k-th argument; a space kept between a control word and an argument starting with
    a letter (`\\foo#1` with `bar` is `\\foo bar`, as TeX reads the tokens, not `\\foobar`)."""
    def one(m):
        k = int(m.group(1))
        if k > len(args):
            return m.group()
        a = args[k - 1]
        before = body[:m.start()]
        if a[:1].isalpha() and re.search(r"\\[A-Za-z@]+$", before):
            return " " + a
        return a
    return re.sub(r"#([1-9])", one, body)


def expand_macros(tex: str, macros: dict) -> str:
    """Every use of a user macro replaced by its body with #1..#9 substituted (nested uses expanded too)."""
    if not macros:
        return tex
    pattern = re.compile(r"\\(" + "|".join(sorted(map(re.escape, macros), key=len, reverse=True)) + r")(?![A-Za-z@])")
    for _ in range(MAX_EXPANSION_PASSES):
        out, pos, changed = [], 0, False
        for m in pattern.finditer(tex):
            if m.start() < pos:
                continue
            n, default, body = macros[m.group(1)]
            i, args = m.end(), []
            if default is not None:
                om = re.match(r"\s*\[([^\]]*)\]", tex[i:])
                if om:
                    args.append(om.group(1))
                    i += om.end()
                else:
                    args.append(default)
            ok = True
            while len(args) < n:
                a = _arg(tex, i)
                if a is None:
                    ok = False
                    break
                args.append(a[0])
                i = a[1]
            if not ok:
                continue
            rep = _substitute(body, args)
            if n == 0 and i < len(tex) and tex[i].isalpha():
                rep += " "   # `\foo bar`: the space ended the control word
            out.append(tex[pos:m.start()])
            out.append(rep)
            pos, changed = i, True
        out.append(tex[pos:])
        tex = "".join(out)
        if not changed:
            break
    return tex


def process_paper(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    tex = strip_comments(text)
    macros, spans = find_macros(tex)
    for a, b in reversed(spans):
        tex = tex[:a] + tex[b:]
    m = _SECTION.search(tex)
    if m is None:
        return None, "paper.no_section"   # RedPajama drops papers without a section (no body to find)
    tex = tex[m.start():]
    b = _BIBLIO.search(tex)
    if b:
        tex = tex[:b.start()]
    tex = expand_macros(tex, macros)
    tex = re.sub(r"\n{3,}", "\n\n", tex).strip()
    return (tex, None) if tex else (None, "paper.empty")
