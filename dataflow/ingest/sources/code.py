"""Code: repository archives (`.tar.gz`, `.tgz`, `.tar`, `.zip`) -> one record per regular file, and the
per-record code recipe (LLaMA §2.1: permissive licences only, RedPajama's GitHub heuristics, licence
header comments stripped).

Licence of a file, first found wins: an `SPDX-License-Identifier:` line in its first lines; the nearest
LICENSE/LICENCE/COPYING file in its directory or above (text classified by its wording); the package
metadata (`PKG-INFO`/`METADATA` `License-Expression:`/`License:`, `package.json` `"license"`). Unknown
licences are rejected, not guessed.

Archive members are listed first (so a LICENSE found late still applies to files before it: a tar is read
forward twice, decoded through `dataflow.ingest.decode` with `max_archive_bytes` in all); a truncated or
corrupt archive yields the members listed before the damage and one `malformed:corrupt_archive` row
(`malformed:too_large` past the archive cap). Every member but a directory is a row: a member over
`max_doc_bytes` (by its declared size, before it is read) is `malformed:too_large`, a symlink, hard link,
device or FIFO `malformed:member_type`, and a member that fails in any other way `malformed:reader_error`.
"""
from __future__ import annotations

import json
import posixpath
import re
import stat
import zipfile
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.jsonl import iter_jsonl
from dataflow.ingest.parquet import iter_parquet
from dataflow.ingest.sources._base import (TAR_ERRORS, TarStream, bad, caps, container_what, decode, guarded, kept,
                                           member_type, not_a_file, prefix_len, tar_codec)
from dataflow.core.confschema import Count, List, Prob, Str, optional_section

# Thresholds live in conf/pipeline.yaml `sources.code` (DP passes that section as `cfg`); these constants are
# the same values, the defaults when a caller passes no cfg (unit tests, library use).
# Licences kept: LLaMA §2.1 "we only kept projects that are distributed under the Apache, BSD
# and MIT licenses" (Touvron et al. 2023). conf key: sources.code.allowed_licenses.
ALLOWED_LICENSES = ("Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "MIT")
# RedPajama-Data rp_v1 data_prep/github/github_run_filter.py: files dropped when max line length > 1000,
# average line length > 100, or alphanumeric fraction < 0.25. conf keys: sources.code.*
MAX_LINE_LENGTH = 1000
MAX_AVG_LINE_LENGTH = 100
MIN_ALPHANUM_FRACTION = 0.25
TITLE_CHARS = 600      # a licence file's title and version sit in its first lines
SPDX_SCAN_LINES = 20   # an SPDX tag sits in the header; REUSE spec places it in the first comment block

# language from extension (GitHub linguist names; the RedPajama extension list covers the same set)
LANGUAGES = {
    ".py": "Python", ".pyi": "Python", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cxx": "C++",
    ".hpp": "C++", ".hh": "C++", ".cs": "C#", ".java": "Java", ".js": "JavaScript", ".mjs": "JavaScript",
    ".cjs": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript", ".go": "Go",
    ".rs": "Rust", ".rb": "Ruby", ".php": "PHP", ".pl": "Perl", ".pm": "Perl", ".sh": "Shell", ".bash": "Shell",
    ".scala": "Scala", ".kt": "Kotlin", ".swift": "Swift", ".m": "Objective-C", ".lua": "Lua", ".r": "R",
    ".jl": "Julia", ".hs": "Haskell", ".ml": "OCaml", ".f90": "Fortran", ".f": "Fortran", ".sql": "SQL",
    ".tex": "TeX", ".md": "Markdown", ".html": "HTML", ".css": "CSS", ".asm": "Assembly", ".s": "Assembly",
    ".bat": "Batchfile", ".cmd": "Batchfile", ".ps1": "PowerShell", ".vue": "Vue", ".dart": "Dart",
    ".ex": "Elixir", ".exs": "Elixir", ".erl": "Erlang", ".clj": "Clojure", ".el": "Emacs Lisp",
    ".lisp": "Common Lisp", ".scm": "Scheme", ".v": "Verilog", ".vhd": "VHDL", ".cmake": "CMake",
    ".mk": "Makefile", ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".xml": "XML",
}
_NAMED = {"makefile": "Makefile", "dockerfile": "Dockerfile", "cmakelists.txt": "CMake"}
_LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|unlicense)([.-].*)?$", re.I)
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-() ]+?)\s*(?:\*/|-->|$)", re.M)


def language(path: str) -> str:
    name = posixpath.basename(path).lower()
    if name in _NAMED:
        return _NAMED[name]
    return LANGUAGES.get(posixpath.splitext(name)[1], "")


def classify_license(text: str) -> str:
    """The SPDX id a licence text reads as, from its wording; "unknown" when it matches none."""
    t = re.sub(r"\s+", " ", text).lower()
    head = t[:TITLE_CHARS]   # the GPL-3 text names the AGPL in its §13: the title decides, not any mention
    if "gnu affero general public license" in head:
        return "AGPL-3.0"
    if "gnu lesser general public license" in head or "gnu library general public license" in head:
        return "LGPL-3.0" if "version 3" in head else "LGPL-2.1"
    if "gnu general public license" in head:
        return "GPL-3.0" if "version 3" in head else ("GPL-2.0" if "version 2" in head else "GPL")
    if "mozilla public license" in t:
        return "MPL-2.0" if "version 2.0" in t else "MPL-1.1"
    if "apache license" in t and "version 2.0" in t:
        return "Apache-2.0"
    if "permission is hereby granted, free of charge" in t:
        return "MIT"
    if "redistribution and use in source and binary forms" in t:
        return "BSD-3-Clause" if ("endorse or promote" in t or "neither the name" in t) else "BSD-2-Clause"
    if "permission to use, copy, modify, and/or distribute" in t or "permission to use, copy, modify, and distribute this software for any purpose" in t:
        return "ISC"
    if "this is free and unencumbered software released into the public domain" in t:
        return "Unlicense"
    return "unknown"


def _metadata_license(name: str, text: str) -> str | None:
    base = posixpath.basename(name)
    if base in ("PKG-INFO", "METADATA"):
        head = text.split("\n\n", 1)[0]
        for field in ("License-Expression", "License"):
            m = re.search(rf"^{field}:\s*(\S.*)$", head, re.M)
            if m and m.group(1).strip().upper() != "UNKNOWN":
                return _normalize_id(m.group(1).strip())
    if base == "package.json":
        try:
            lic = json.loads(text).get("license")
        except (ValueError, AttributeError):
            return None
        return _normalize_id(lic) if isinstance(lic, str) else None
    return None


_ALIASES = {"mit license": "MIT", "bsd": "BSD-3-Clause", "bsd license": "BSD-3-Clause",
            "apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0", "apache license 2.0": "Apache-2.0",
            "apache software license": "Apache-2.0", "gplv3": "GPL-3.0", "gplv2": "GPL-2.0"}


def _normalize_id(s: str) -> str:
    s = s.strip()
    s = re.sub(r"-(only|or-later)$", "", s)
    return _ALIASES.get(s.lower(), s)


def spdx_header(text: str) -> str | None:
    head = "\n".join(text.split("\n", SPDX_SCAN_LINES)[:SPDX_SCAN_LINES])
    m = _SPDX.search(head)
    return _normalize_id(m.group(1)) if m else None


# ---------------------------------------------------------------- reader
class _Licences:
    """Licences by directory: licence files (classified by wording) and package metadata."""

    def __init__(self):
        self.dirs: dict[str, str] = {}
        self.meta: dict[str, str] = {}

    @staticmethod
    def wanted(name: str) -> bool:
        base = posixpath.basename(name)
        return bool(_LICENSE_FILE.match(base)) or base in ("PKG-INFO", "METADATA", "package.json")

    def add(self, name: str, data: bytes) -> None:
        text, d = decode(data) or "", posixpath.dirname(name)
        if _LICENSE_FILE.match(posixpath.basename(name)):
            lic = classify_license(text)
            if lic != "unknown" or d not in self.dirs:
                self.dirs[d] = lic
        else:
            lic = _metadata_license(name, text)
            if lic:
                self.meta.setdefault(d, lic)

    def of(self, name: str, text: str) -> tuple[str, str]:
        """(licence, where it came from) of a file: its SPDX header, else the nearest licence above it."""
        lic, frm = spdx_header(text), "spdx"
        d = posixpath.dirname(name)
        while lic is None:
            lic, frm = self.dirs.get(d) or self.meta.get(d), "file" if d in self.dirs else "metadata"
            if lic is None and d in ("", "/"):
                break
            d = posixpath.dirname(d)
        return (lic, frm) if lic else ("unknown", "none")


def _file_row(name: str, data: bytes, licences: _Licences, common: dict, keep: int) -> dict:
    text = decode(data)
    if text is None:
        return bad(**common, what="binary_file", why=f"member {name} holds a NUL byte (binary)", prefix=data[:keep])
    lic, frm = licences.of(name, text)
    return kept(**common, text=text, content_type="text/x-code", language=language(name), license=lic,
                license_from=frm)


def _member_row(i, name, size, kind, read, licences, uri, source, max_bytes, keep) -> dict:
    """The row of archive member `i`: too large by its declared size, not a regular file, or the file."""
    common = dict(source=source, file=uri, offset=i, source_type="code", path=name)
    if kind is not None:
        return bad(**common, what="member_type", why=not_a_file(kind, name), member_type=kind)
    if size > max_bytes:
        return bad(**common, what="too_large", why=f"member {name} of {size} bytes exceeds max_doc_bytes={max_bytes}")
    try:
        data = read()
    except (zipfile.BadZipFile, *TAR_ERRORS) as e:
        return bad(**common, what=container_what(e), why=f"member {name} unreadable: {type(e).__name__}: {e}")
    if len(data) > max_bytes:
        return bad(**common, what="too_large", why=f"member {name} decodes past max_doc_bytes={max_bytes}")
    return _file_row(name, data, licences, common, keep)


def _iter_tar(uri: str, source: str, max_bytes: int, max_total: int, keep: int) -> Iterator[dict]:
    """Two forward passes over the tar (each decoded with the archive cap): licences, then one row per member.
    Damage met in pass 1 ends pass 2 at the same member, with one row for it."""
    codec, licences, n, damage = tar_codec(uri), _Licences(), 0, None
    with fs.open_input(uri) as raw:
        try:
            ts = TarStream(raw, codec, max_total)
            for ti in ts:
                if member_type(ti) == "directory":
                    continue
                if ti.isfile() and ti.size <= max_bytes and _Licences.wanted(ti.name):
                    licences.add(ti.name, ts.read(ti, max_bytes))
                n += 1
            why = ts.end_damage()
            damage = ("corrupt_archive", why) if why else None
        except TAR_ERRORS as e:
            damage = (container_what(e), f"listing stopped after {n} members: {type(e).__name__}: {e}")
    with fs.open_input(uri) as raw:
        i = 0
        try:
            ts = TarStream(raw, codec, max_total)
            for ti in ts:
                kind = member_type(ti)
                if kind == "directory":
                    continue
                yield guarded(lambda: _member_row(i, ti.name, ti.size, kind, lambda: ts.read(ti, max_bytes), licences,
                                                  uri, source, max_bytes, keep),
                              unit=f"member {ti.name}", source=source, file=uri, offset=i, source_type="code",
                              path=ti.name)
                i += 1
                if i >= n:
                    break
        except TAR_ERRORS:
            pass   # the damage pass 1 met, at the same member: its row follows
    if damage is not None:
        yield bad(source=source, file=uri, offset=n, source_type="code", what=damage[0],
                  why=f"{damage[1]}; later members unreadable")


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink"
    if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
        return {stat.S_IFCHR: "character_device", stat.S_IFBLK: "block_device", stat.S_IFIFO: "fifo",
                stat.S_IFSOCK: "socket"}.get(stat.S_IFMT(mode), f"mode {oct(mode)}")
    return None


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A zip member through zipfile's own inflater, which stops at the size the central directory declares
    (checked against cap before this is called) and checks the CRC."""
    with zf.open(info) as f:
        return f.read(cap + 1)


def _iter_zip(uri: str, source: str, max_bytes: int, max_total: int, keep: int) -> Iterator[dict]:
    with fs.open_input(uri) as fh:
        try:
            zf = zipfile.ZipFile(fh)
            infos = [i for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            yield bad(source=source, file=uri, offset=0, source_type="code", what="corrupt_archive",
                      why=f"not a readable zip: {e}")
            return
        licences = _Licences()
        for info in infos:
            if _zip_kind(info) is None and info.file_size <= max_bytes and _Licences.wanted(info.filename):
                try:
                    licences.add(info.filename, _zip_read(zf, info, max_bytes))
                except Exception:  # noqa: BLE001 - reported in the member's own row below
                    pass
        total = 0
        for i, info in enumerate(infos):
            total += info.file_size
            common = dict(source=source, file=uri, offset=i, source_type="code", path=info.filename)
            if total > max_total:
                yield bad(**common, what="too_large", why=f"members up to {info.filename} declare {total} bytes, "
                                                           f"past max_archive_bytes={max_total}")
                continue
            yield guarded(lambda: _member_row(i, info.filename, info.file_size, _zip_kind(info),
                                              lambda: _zip_read(zf, info, max_bytes), licences, uri, source,
                                              max_bytes, keep),
                          unit=f"member {info.filename}", **common)


def iter_code_archive(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    """One row per member of a repository archive (a directory is none); `meta`: path, language, license,
    license_from. A member that is not a regular file is a `malformed:member_type` row."""
    max_bytes, max_total = caps(cfg)
    keep = prefix_len(cfg)
    if uri.lower().endswith(".zip"):
        yield from _iter_zip(uri, source, max_bytes, max_total, keep)
    else:
        yield from _iter_tar(uri, source, max_bytes, max_total, keep)


# ---------------------------------------------------------------- processing
_HEADER_WORDS = re.compile(r"copyright|licen[cs]e|spdx-license|all rights reserved|permission is hereby granted", re.I)


def strip_license_header(text: str) -> str:
    """Drops the leading comment block (after a shebang/encoding line) when it names a copyright or licence."""
    lines = text.split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith("#!") or re.match(r"#.*coding[:=]", lines[i])):
        i += 1
    start = i
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and lines[i].lstrip().startswith("/*"):
        j = i
        while j < len(lines) and "*/" not in lines[j]:
            j += 1
        end = j + 1
    else:
        j = i
        while j < len(lines) and re.match(r"\s*(#|//|--|;;|%)", lines[j]):
            j += 1
        end = j
    block = "\n".join(lines[i:end])
    if end <= i or not _HEADER_WORDS.search(block):
        return text
    return "\n".join(lines[:start] + lines[end:]).lstrip("\n")


def heuristics(text: str, cfg: dict) -> str | None:
    """The reason a file fails RedPajama's GitHub heuristics, else None."""
    lines = text.splitlines() or [""]
    lengths = [len(x) for x in lines]
    if max(lengths) > float(cfg.get("max_line_length", MAX_LINE_LENGTH)):
        return "code.max_line_length"
    if sum(lengths) / len(lengths) > float(cfg.get("max_avg_line_length", MAX_AVG_LINE_LENGTH)):
        return "code.avg_line_length"
    if not text or sum(c.isalnum() for c in text) / len(text) < float(cfg.get("min_alphanum_fraction", MIN_ALPHANUM_FRACTION)):
        return "code.alphanum_fraction"
    return None


def process_code(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    """(cleaned text, None) for a kept file, (None, reason) for a dropped one."""
    cfg = cfg or {}
    allowed = set(cfg.get("allowed_licenses", ALLOWED_LICENSES))
    if posixpath.basename(meta.get("path", "")) and _LICENSE_FILE.match(posixpath.basename(meta.get("path", ""))):
        return None, "code.license_file"
    if not meta.get("language"):
        return None, "code.not_source"
    lic = meta.get("license", "unknown")
    # SPDX expression: some `OR` alternative whose `AND` parts are all allowed (a repository's list of
    # licences reads as AND: every one applies)
    alternatives = [[y.strip("() ") for y in re.split(r"\s+AND\s+", x)] for x in re.split(r"\s+OR\s+", lic)]
    if not any(all(y in allowed for y in alt) for alt in alternatives):
        return None, f"code.license:{lic}"
    why = heuristics(text, cfg)
    if why:
        return None, why
    out = strip_license_header(text)
    return (out, None) if out.strip() else (None, "code.empty")


# ---------------------------------------------------------------- The-Stack-style tables
PATH_FIELDS = ("path", "max_stars_repo_path", "file_path")
LICENSE_FIELDS = ("license", "license_type", "max_stars_repo_licenses", "detected_licenses", "licenses")
INGEST_DEFAULTS = {"max_doc_bytes": 1 << 20, "quarantine_prefix_chars": 200}
BATCH_ROWS = 1024


def _table_license(meta: dict) -> tuple[str, str]:
    for k in LICENSE_FIELDS:
        v = meta.get(k)
        if not v:
            continue
        if v.startswith("["):   # a JSON list: the repository's licences, all of which apply
            try:
                ids = [_normalize_id(x) for x in json.loads(v) if isinstance(x, str)]
            except ValueError:
                ids = [v]
            if ids:
                return " AND ".join(ids), "metadata"
            continue
        return _normalize_id(v), "metadata"
    return "unknown", "none"


def iter_code_table(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    """The-Stack-style JSONL/Parquet (`content` or `text`, `path`, `license` fields) through ingest's JSONL
    and Parquet readers (same accounting and quarantine), with the code metadata the recipe needs."""
    cfg = {**INGEST_DEFAULTS, **(cfg or {})}
    low = uri.lower()
    rows = (iter_parquet(uri, source=source, cfg=cfg, batch_rows=int(cfg.get("batch_rows", BATCH_ROWS)))
            if low.endswith(".parquet") else iter_jsonl(uri, source=source, cfg=cfg))
    for r in rows:
        meta = dict(r["meta"])
        meta["source_type"] = "code"
        text = r["text"]
        if r["reason"] == "malformed:missing_text" and isinstance(meta.get("content"), str) and meta["content"].strip():
            text = meta.pop("content")
        elif r["reason"]:
            r["meta"] = meta
            yield r
            continue
        path = next((meta[k] for k in PATH_FIELDS if meta.get(k)), "")
        lic, frm = (spdx_header(text), "spdx")
        if lic is None:
            lic, frm = _table_license(meta)
        meta.pop("file", None), meta.pop("offset", None)
        meta.update(path=path, license=lic, license_from=frm,
                    language=meta.get("lang") or meta.get("language") or language(path))
        yield kept(source=r["source"], file=r["file"], offset=r["offset"], url=r["url"], text=text,
                   content_type="text/x-code", **meta)


# sources.code
SPEC = optional_section({"allowed_licenses": List(Str(non_empty=True), unique=True), "max_line_length": Count(1),
                         "max_avg_line_length": Count(1), "min_alphanum_fraction": Prob(),
                         "max_archive_bytes": Count(1)})
