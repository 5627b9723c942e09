"""Find the input files on the driver (names and sizes only; contents are read in executors).

Every path is a URI through `dataflow.core.fs` (plain paths, `file://`, `s3://`/`s3a://`, `gs://`, `hdfs://`,
`abfs://`): directories are walked recursively, globs are expanded, and each file gets a format from its
name. A path that does not exist is an error naming it; a directory with no files is one too. Every other file
under a directory is listed, with fmt `unknown` when no reader takes it, so no file disappears unreported.
Hidden and marker names (`.x`, `_x`: `_temporary/`, `_attempt-*`, `.crc`) are skipped at every depth, in walks
and glob matches alike (`fs.walk`, `fs.glob`); local symbolic links are followed without looping.
Each file keeps the input it was found under (`root`) and its path below it (`rel`), for ids that do not
depend on where the data lives (DESIGN §9).

Dumps of other sources (code archives, arXiv tars, StackExchange `.7z`/`Posts.xml`, MediaWiki `.xml.bz2`,
Gutenberg `.txt`) are opt-in: a file is read by a `dataflow.ingest.sources` reader when a `sources.inputs` entry
of the configuration matches it (its `kind`, or the kind its name implies); its format is then that kind.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from dataflow.core import fs
from dataflow.core.recipes import reader_kind

# JSON Lines under any of its names, plain or compressed (the codec comes from the last suffix: decode.codec_for_name)
_JSONL_NAMES = (".jsonl", ".json", ".ndjson")
_COMPRESSED = ("", ".gz", ".bz2", ".xz", ".zst", ".zstd")
# longest suffix first, so `.warc.wet.gz` is not taken for `.warc.gz`
_FORMATS = [
    (".warc.wet.gz", "wet"), (".wet.gz", "wet"), (".warc.wet", "wet"), (".wet", "wet"),
    (".warc.gz", "warc"), (".warc", "warc"), (".arc.gz", "warc"),
    *sorted(((n + c, "jsonl") for n in _JSONL_NAMES for c in _COMPRESSED), key=lambda f: -len(f[0])),
    (".parquet", "parquet"),
]
UNKNOWN = "unknown"   # a file found under a folder or glob that no reader takes: the read side reports it
# files a directory walk passes over without comment (Spark/Hadoop markers, checksums, our own stats)
_IGNORED_NAMES = {"_SUCCESS", "stats.json", "SHA256SUMS", "VERSIONS"}


@dataclass(frozen=True)
class InputFile:
    path: str     # normalized URI (dataflow.core.fs.normalize): an absolute path for local files
    fmt: str      # warc | wet | jsonl | parquet, a dataflow.ingest.sources reader kind (code_archive, arxiv, ...),
                  # or `unknown` (found under a folder or glob, no reader takes it)
    size: int
    root: str = ""   # the input it was found under: the folder given, a glob's literal folder, a named file's folder

    @property
    def rel(self) -> str:
        """The path below `root` with `/` separators: the same for the same data wherever it lives."""
        root = self.root.rstrip("/")
        if root and self.path.startswith(root + "/"):
            return self.path[len(root) + 1:].replace("\\", "/")
        return fs.basename(self.path)


def file_format(path: str) -> str | None:
    name = fs.basename(str(path)).lower()
    for suffix, fmt in _FORMATS:
        if name.endswith(suffix):
            return fmt
    return None


def _candidates(p: str) -> tuple[str, list, bool]:
    """(root, file entries, named explicitly) of one input argument. A path that exists is taken literally,
    even when it holds glob characters."""
    if fs.is_file(p):
        return fs.normalize(fs.parent(p)), [fs.FileEntry(p, fs.size(p))], True
    if fs.is_dir(p):
        return fs.normalize(p), list(fs.walk(p)), False
    if any(ch in p for ch in fs.GLOB_CHARS):
        matches = fs.glob(p)
        if not matches:
            raise FileNotFoundError(f"input glob {p} matches no file")
        return fs.normalize(fs.glob_root(p)), matches, False
    raise FileNotFoundError(f"input path {p} does not exist")


def _same_file_key(uri: str) -> str:
    """Two names of one local file (a symbolic link and its target) are one input."""
    return os.path.realpath(uri) if fs.is_local(uri) else uri


def list_inputs(paths, conf=None) -> list[InputFile]:
    """Expand paths (files, directories, globs; any URI) into a sorted, de-duplicated list of input files.

    `conf`: the root configuration, whose `sources.inputs` entries name dump files (`recipes.reader_kind`).
    An explicitly named file with an unknown suffix is an error; a file under a directory or glob that no
    reader takes is listed with fmt `unknown` (a directory holds whatever a dataset ships with, and the read
    side reports each such file), except our own markers (`_IGNORED_NAMES`). A file reached by several
    names (symbolic links, overlapping inputs) is listed once, under its first name in sorted order."""
    out: dict[str, InputFile] = {}
    for p in paths:
        p = str(p)
        root, candidates, explicit = _candidates(p)
        for e in candidates:
            if not explicit and fs.basename(e.uri) in _IGNORED_NAMES:
                continue
            fmt = (reader_kind(conf, e.uri) if conf else None) or file_format(e.uri)
            if fmt is None:
                if explicit:
                    raise ValueError(f"input file {e.uri} has an unknown format; expected one of "
                                     + ", ".join(s for s, _ in _FORMATS) + ", or a dump named by a `sources.inputs` "
                                     "entry of the configuration (docs/sources.md)")
                fmt = UNKNOWN
            uri = fs.normalize(e.uri)
            out.setdefault(uri, InputFile(uri, fmt, int(e.size), root))
    if not out:
        raise FileNotFoundError(f"no input files under {' '.join(map(str, paths))}")
    files, seen = [], set()
    for k in sorted(out):
        key = _same_file_key(k)
        if key not in seen:
            seen.add(key)
            files.append(out[k])
    return files
