"""Find the input files on the driver (names and sizes only; contents are read in executors).

Every path is a URI through `dataflow.core.fs` (plain paths, `file://`, `s3://`/`s3a://`, `gs://`, `hdfs://`,
`abfs://`): directories are walked recursively, globs are expanded, and each file gets a format from its
name. A path that does not exist is an error naming it; a directory with no readable files is one too.

Dumps of other sources (code archives, arXiv tars, StackExchange `.7z`/`Posts.xml`, MediaWiki `.xml.bz2`,
Gutenberg `.txt`) are opt-in: a file is read by a `dataflow.ingest.sources` reader when a `sources.inputs` entry
of the configuration matches it (its `kind`, or the kind its name implies); its format is then that kind.
"""
from __future__ import annotations

from dataclasses import dataclass

from dataflow.core import fs
from dataflow.core.recipes import reader_kind

# longest suffix first, so `.warc.wet.gz` is not taken for `.warc.gz`
_FORMATS = [
    (".warc.wet.gz", "wet"), (".wet.gz", "wet"), (".warc.wet", "wet"), (".wet", "wet"),
    (".warc.gz", "warc"), (".warc", "warc"), (".arc.gz", "warc"),
    (".jsonl.gz", "jsonl"), (".jsonl.zst", "jsonl"), (".jsonl", "jsonl"),
    (".json.gz", "jsonl"), (".json.zst", "jsonl"), (".ndjson", "jsonl"),
    (".parquet", "parquet"),
]
# files a directory walk passes over without comment (Spark/Hadoop markers, checksums, our own stats)
_IGNORED_NAMES = {"_SUCCESS", "stats.json", "SHA256SUMS", "VERSIONS"}


@dataclass(frozen=True)
class InputFile:
    path: str     # normalized URI (dataflow.core.fs.normalize): an absolute path for local files
    fmt: str      # warc | wet | jsonl | parquet, or a dataflow.ingest.sources reader kind (code_archive, arxiv, ...)
    size: int


def file_format(path: str) -> str | None:
    name = fs.basename(str(path)).lower()
    for suffix, fmt in _FORMATS:
        if name.endswith(suffix):
            return fmt
    return None


def list_inputs(paths, conf=None) -> list[InputFile]:
    """Expand paths (files, directories, globs; any URI) into a sorted, de-duplicated list of input files.

    `conf`: the root configuration, whose `sources.inputs` entries name dump files (`recipes.reader_kind`).
    An explicitly named file with an unknown suffix is an error; inside a directory such files (HTML
    pages, manifests, TeX, ...) are skipped, since a directory holds whatever a dataset ships with."""
    out: dict[str, InputFile] = {}
    for p in paths:
        p = str(p)
        if any(ch in p for ch in fs.GLOB_CHARS):
            matches = fs.glob(p)
            if not matches:
                raise FileNotFoundError(f"input glob {p} matches no file")
            candidates = [(e, False) for e in matches]
        elif fs.is_dir(p):
            candidates = [(e, False) for e in fs.walk(p)]
        elif fs.is_file(p):
            candidates = [(fs.FileEntry(p, fs.size(p)), True)]
        else:
            raise FileNotFoundError(f"input path {p} does not exist")
        for e, explicit in candidates:
            if not explicit and fs.basename(e.uri) in _IGNORED_NAMES:
                continue
            fmt = (reader_kind(conf, e.uri) if conf else None) or file_format(e.uri)
            if fmt is None:
                if explicit:
                    raise ValueError(f"input file {e.uri} has an unknown format; expected one of "
                                     + ", ".join(s for s, _ in _FORMATS) + ", or a dump named by a `sources.inputs` "
                                     "entry of the configuration (docs/sources.md)")
                continue
            uri = fs.normalize(e.uri)
            out[uri] = InputFile(uri, fmt, int(e.size))
    if not out:
        raise FileNotFoundError(f"no WARC/WET/JSONL/Parquet files (nor dumps named by sources.inputs) under {' '.join(map(str, paths))}")
    return [out[k] for k in sorted(out)]
