"""Find the input files on the driver (names and sizes only; contents are read in executors).

Directories are walked recursively, globs are expanded, and each file gets a format from its name.
A path that does not exist is an error naming it; a directory with no readable files is one too.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

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
    path: str
    fmt: str      # warc | wet | jsonl | parquet
    size: int


def file_format(path: str) -> str | None:
    name = os.path.basename(path).lower()
    for suffix, fmt in _FORMATS:
        if name.endswith(suffix):
            return fmt
    return None


def _walk(root: str):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        for name in sorted(filenames):
            if not name.startswith((".", "_")) and name not in _IGNORED_NAMES:
                yield os.path.join(dirpath, name)


def list_inputs(paths) -> list[InputFile]:
    """Expand paths (files, directories, globs) into a sorted, de-duplicated list of input files.

    An explicitly named file with an unknown suffix is an error; inside a directory such files (HTML
    pages, manifests, TeX, ...) are skipped, since a directory holds whatever a dataset ships with."""
    out: dict[str, InputFile] = {}
    for p in paths:
        p = str(p)
        if any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise FileNotFoundError(f"input glob {p} matches no file")
            candidates = [(m, False) for m in matches]
        elif os.path.isdir(p):
            candidates = [(f, False) for f in _walk(p)]
        elif os.path.exists(p):
            candidates = [(p, True)]
        else:
            raise FileNotFoundError(f"input path {p} does not exist")
        for f, explicit in candidates:
            if os.path.isdir(f):
                candidates.extend((g, False) for g in _walk(f))
                continue
            fmt = file_format(f)
            if fmt is None:
                if explicit:
                    raise ValueError(f"input file {f} has an unknown format; expected one of "
                                     + ", ".join(s for s, _ in _FORMATS))
                continue
            real = os.path.abspath(f)
            out[real] = InputFile(real, fmt, os.path.getsize(real))
    if not out:
        raise FileNotFoundError(f"no WARC/WET/JSONL/Parquet files under {' '.join(map(str, paths))}")
    return [out[k] for k in sorted(out)]
