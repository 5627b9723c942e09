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

import io
import posixpath
import re
import tarfile
import zlib
from functools import cached_property
from typing import Iterator

from dataflow.core import fs
from dataflow.core.confschema import Count, optional_section
from dataflow.ingest.decode import DecodeError, decode_bytes
from dataflow.ingest.sources._base import (TAR_ERRORS, TarStream, bad, caps, container_what, decode, guarded, kept,
                                           member_type, not_a_file, prefix_len)

# defaults when no cfg is passed; DP passes conf/pipeline.yaml `sources.paper`
MAX_EXPANSION_PASSES = 10   # nested user macros are expanded this many levels deep; guards \def\a{\a}; conf: sources.paper.max_expansion_passes
MAX_PAPER_BYTES = 64 << 20   # one paper's source, decoded (arXiv accepts submissions up to 50 MB); conf: sources.paper.max_paper_bytes
MAX_EXPANDED_CHARS = 10 << 20   # a paper whose expansion passes this -> paper.expansion_too_large; conf: sources.paper.max_expanded_chars


def _paper_text(name: str, data: bytes, max_bytes: int, max_paper: int) -> tuple[str | None, str, str]:
    """(concatenated TeX source, what, why not) of one paper's bytes: a gzip of a .tex or of a tar, a tar, or a
    .tex. The gzip is decoded with `max_paper` bytes at most (DecodeError past it), each .tex member checked
    by its declared size and the TeX in all held to `max_bytes`."""
    if data[:2] == b"\x1f\x8b":
        data = decode_bytes(data, "gzip", cap=max_paper)
    if len(data) > 262 and data[257:262] == b"ustar":
        texts, size = [], 0
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for ti in tf:
                if ti.isfile() and ti.name.lower().endswith(".tex"):
                    size += ti.size
                    if size > max_bytes:
                        return None, "too_large", f"its .tex files pass max_doc_bytes={max_bytes}"
                    t = decode(tf.extractfile(ti).read())
                    if t is not None:
                        texts.append(t)
        if not texts:
            return None, "no_tex_source", "no .tex file in the paper's archive"
        texts.sort(key=lambda t: "\\documentclass" not in t)
        return "\n".join(texts), "", ""
    if len(data) > max_bytes:
        return None, "too_large", f"{len(data)} bytes of TeX exceed max_doc_bytes={max_bytes}"
    text = decode(data)
    if text is None:
        return None, "no_tex_source", "binary (PDF-only submission or unknown format)"
    return text, "", ""


def _paper_id(name: str) -> str:
    return re.sub(r"(\.tar)?\.(gz|tgz|tex)$", "", posixpath.basename(name))


def _paper_row(name: str, data: bytes, common: dict, max_bytes: int, max_paper: int, **meta) -> dict:
    """The row of one paper: kept, or quarantined with what its bytes are (corrupt, too large, no TeX)."""
    try:
        text, what, why = _paper_text(name, data, max_bytes, max_paper)
    except DecodeError as e:
        text, what, why = None, ("too_large" if e.what == "too_large" else "corrupt_archive"), f"{name}: {e}"
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        text, what, why = None, "corrupt_archive", f"{name}: {e}"
    if text is None:
        return bad(**common, what=what, why=why, **meta)
    return kept(**common, text=text, content_type="text/x-tex", **meta)


def _member_row(ts: TarStream, ti, i: int, common: dict, max_bytes: int, max_paper: int) -> dict:
    common = {**common, "offset": ti.offset}
    kind = member_type(ti)
    if kind is not None:
        return bad(**common, what="member_type", why=not_a_file(kind, ti.name, ti), member=ti.name, member_type=kind)
    paper_id = _paper_id(ti.name)
    if ti.size > max_paper:
        return bad(**common, what="too_large", why=f"member {ti.name} of {ti.size} bytes exceeds "
                                                   f"max_paper_bytes={max_paper}", paper_id=paper_id)
    return _paper_row(ti.name, ts.read(ti, max_paper), common, max_bytes, max_paper, paper_id=paper_id,
                      member=ti.name)


def _iter_tar(uri: str, common: dict, max_bytes: int, max_paper: int, max_total: int) -> Iterator[dict]:
    """One row per member of an outer tar of papers (a directory is none), read forward once."""
    i, where = 0, 0
    with fs.open_input(uri) as raw:
        try:
            ts = TarStream(raw, None, max_total)
            for ti in ts:
                where = ti.offset
                if member_type(ti) == "directory":
                    continue
                yield guarded(lambda: _member_row(ts, ti, i, common, max_bytes, max_paper),
                              unit=f"member {ti.name}", **common, offset=ti.offset, member=ti.name)
                i += 1
            end = ts.end_damage()
            if end:
                yield bad(**common, offset=ts.tf.offset, what="corrupt_archive", why=f"outer tar: {end}")
        except TAR_ERRORS as e:
            yield bad(**common, offset=where, what=container_what(e),
                      why=f"outer tar unreadable after member {i}: {type(e).__name__}: {e}")


def iter_arxiv(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    """One row per paper: each member of an outer `.tar` (a member that is not a file is a
    `malformed:member_type` row), or the one paper a `.tex`/`.gz`/`.tar.gz` file holds."""
    cfg = cfg or {}
    keep = prefix_len(cfg)
    max_bytes, max_total = caps(cfg)
    max_paper = int(cfg.get("max_paper_bytes", MAX_PAPER_BYTES))
    low = uri.lower()
    common = dict(source=source, file=uri, source_type="paper")
    if low.endswith(".tar") and not low.endswith((".tar.gz", ".tgz")):
        yield from _iter_tar(uri, common, max_bytes, max_paper, max_total)
        return
    paper_id = _paper_id(uri)
    with fs.open_stream(uri) as f:
        data = f.read(max_paper + 1)
    if len(data) > max_paper:
        yield bad(**common, offset=0, what="too_large", why=f"file exceeds max_paper_bytes={max_paper}",
                  paper_id=paper_id, prefix=data[:keep])
        return
    yield guarded(lambda: _paper_row(uri, data, {**common, "offset": 0}, max_bytes, max_paper, paper_id=paper_id),
                  unit=f"paper {paper_id}", **common, offset=0, paper_id=paper_id)


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


_SPACES = re.compile(r"[ \t\n]*")
_WS = re.compile(r"\s*")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
_PARAMS = re.compile(r"(#[1-9])*")
_PARAM = re.compile(r"#([1-9])")
_NARGS = re.compile(r"\s*\[(\d)\]")
_OPTARG = re.compile(r"\s*\[([^\]]*)\]")


class _Braces:
    """The closing brace of every `{` of a text, from one scan (a backslash escapes the character after
    it): a group is then found in constant time, where scanning for each use made many uses quadratic."""

    def __init__(self, s: str):
        self.s = s

    @cached_property
    def close(self) -> dict[int, int]:   # computed on the first group asked for: a pass without one skips it
        close, stack = {}, []
        for m in _BRACE_TOKEN.finditer(self.s):
            c = m.group()
            if c == "{":
                stack.append(m.start())
            elif c == "}" and stack:
                close[stack.pop()] = m.start()
        return close

    def group(self, i: int) -> tuple[str, int] | None:
        """The balanced {...} group starting at s[i] (after spaces): (inside, index after it)."""
        s = self.s
        i = _SPACES.match(s, i).end()
        j = self.close.get(i)
        return None if j is None else (s[i + 1:j], j + 1)

    def arg(self, i: int) -> tuple[str, int] | None:
        """One macro argument at s[i]: a {group}, a control sequence, or a single character."""
        s = self.s
        i = _SPACES.match(s, i).end()
        if i >= len(s):
            return None
        if s[i] == "{":
            return self.group(i)
        if s[i] == "\\":
            m = _NAME.match(s, i)
            return m.group(), m.end()
        return s[i], i + 1


def find_macros(tex: str) -> tuple[dict[str, tuple[int, str | None, str]], list[tuple[int, int]]]:
    """User macros {name: (n_args, default of an optional first arg, body)} and the spans defining them."""
    macros, spans, br = {}, [], _Braces(tex)
    for m in re.finditer(r"\\(?:re)?newcommand\*?|\\providecommand\*?|\\def(?![A-Za-z])", tex):
        i = m.end()
        if m.group() == "\\def":
            nm = _NAME.match(tex, i)
            if not nm:
                continue
            name, i = nm.group(1), nm.end()
            params = _PARAMS.match(tex, i).group()
            n, i, default = len(params) // 2, i + len(params), None
        else:
            g = br.group(i)
            if g:
                inner, i = g
                inner = inner.strip()
            else:
                nm = _NAME.match(tex, _WS.match(tex, i).end())
                if not nm:
                    continue
                inner, i = nm.group(), nm.end()
            if not inner.startswith("\\"):
                continue
            name = inner[1:]
            n, default = 0, None
            om = _NARGS.match(tex, i)
            if om:
                n, i = int(om.group(1)), om.end()
                dm = _OPTARG.match(tex, i)
                if dm:
                    default, i = dm.group(1), dm.end()
        body = br.group(i)
        if body is None:
            continue
        macros[name] = (n, default, body[0])
        spans.append((m.start(), body[1]))
    return macros, spans


def without_spans(tex: str, spans: list[tuple[int, int]]) -> str:
    """`tex` less the (start, end) spans, in one join (a span inside an earlier one goes with it)."""
    out, pos = [], 0
    for a, b in sorted(spans):
        if b <= pos:
            continue
        out.append(tex[pos:max(a, pos)])
        pos = b
    out.append(tex[pos:])
    return "".join(out)


def _after_control_word(body: str, k: int) -> bool:
    """body[:k] ends with a control word (`\\foo`); looks back over the letters only, so all the #k of a
    body cost one pass over it."""
    j = k
    while j > 0 and (body[j - 1].isascii() and body[j - 1].isalpha() or body[j - 1] == "@"):
        j -= 1
    return j < k and j > 0 and body[j - 1] == "\\"


def _substitute(body: str, args: list[str]) -> str:
    """#k replaced by the k-th argument; a space kept between a control word and an argument starting with
    a letter (`\\foo#1` with `bar` is `\\foo bar`, as TeX reads the tokens, not `\\foobar`)."""
    def one(m):
        k = int(m.group(1))
        if k > len(args):
            return m.group()
        a = args[k - 1]
        if a[:1].isalpha() and _after_control_word(body, m.start()):
            return " " + a
        return a
    return _PARAM.sub(one, body)


class ExpansionTooLarge(ValueError):
    """Macro expansion would pass the output cap (nested definitions grow exponentially)."""


def _expand_once(tex: str, macros: dict, cap: int) -> tuple[str, bool]:
    """One pass: every use of a user macro replaced by its body, arguments substituted. Control sequences
    are looked up by name (no alternation of every macro name: many definitions stay linear)."""
    out, pos, changed, size, br = [], 0, False, 0, _Braces(tex)
    for m in _NAME.finditer(tex):
        if m.start() < pos or m.group(1) not in macros:
            continue
        n, default, body = macros[m.group(1)]
        i, args = m.end(), []
        if default is not None:
            om = _OPTARG.match(tex, i)
            if om:
                args.append(om.group(1))
                i = om.end()
            else:
                args.append(default)
        while len(args) < n:
            a = br.arg(i)
            if a is None:
                break
            args.append(a[0])
            i = a[1]
        if len(args) < n:
            continue
        rep = _substitute(body, args) if args else body
        if n == 0 and i < len(tex) and tex[i].isalpha():
            rep += " "   # `\foo bar`: the space ended the control word
        size += m.start() - pos + len(rep)
        if size > cap:
            raise ExpansionTooLarge(f"expansion passes {cap} characters")
        out += (tex[pos:m.start()], rep)
        pos, changed = i, True
    out.append(tex[pos:])
    if size + len(tex) - pos > cap:
        raise ExpansionTooLarge(f"expansion passes {cap} characters")
    return "".join(out), changed


def expand_macros(tex: str, macros: dict, *, passes: int = MAX_EXPANSION_PASSES,
                  cap: int = MAX_EXPANDED_CHARS) -> str:
    """Every use of a user macro replaced by its body with #1..#9 substituted (nested uses expanded too, up to
    `passes` levels). Raises ExpansionTooLarge as soon as the output would pass `cap` characters."""
    if not macros:
        return tex
    for _ in range(passes):
        tex, changed = _expand_once(tex, macros, cap)
        if not changed:
            break
    return tex


def process_paper(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    cfg = cfg or {}
    tex = strip_comments(text)
    macros, spans = find_macros(tex)
    tex = without_spans(tex, spans)
    m = _SECTION.search(tex)
    if m is None:
        return None, "paper.no_section"   # RedPajama drops papers without a section (no body to find)
    tex = tex[m.start():]
    b = _BIBLIO.search(tex)
    if b:
        tex = tex[:b.start()]
    try:
        tex = expand_macros(tex, macros, passes=int(cfg.get("max_expansion_passes", MAX_EXPANSION_PASSES)),
                            cap=int(cfg.get("max_expanded_chars", MAX_EXPANDED_CHARS)))
    except ExpansionTooLarge:
        return None, "paper.expansion_too_large"
    tex = re.sub(r"\n{3,}", "\n\n", tex).strip()
    return (tex, None) if tex else (None, "paper.empty")


# sources.paper
SPEC = optional_section({"max_expansion_passes": Count(1), "max_expanded_chars": Count(1), "max_paper_bytes": Count(1),
                         "max_archive_bytes": Count(1)})
