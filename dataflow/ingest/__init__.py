"""Ingest: list input files on the driver, read them in executors into raw records (Arrow batches).

`read(spark, paths, cfg)` returns a DataFrame with `RAW_SCHEMA` (one row per input document, malformed
input included as `malformed:<what>` rows; dumps of other sources through `dataflow.ingest.sources` readers) and the list of files. The driver only sees file names and
sizes (listed through `dataflow.core.fs`, so any URI); a DataFrame of read units (a file, or a byte range of a
WARC/WET larger than `preprocess.split_bytes`) is spread over tasks and `mapInArrow` opens each where it runs.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from dataflow.core import fs
from dataflow.core.progress import Work
from dataflow.core.recipes import READER_KINDS
from dataflow.core.stage import AccountingError
from dataflow.core.schema import spark_schema
from dataflow.ingest.jsonl import iter_jsonl
from dataflow.ingest.listing import UNKNOWN as UNKNOWN_FORMAT, InputFile, file_format, list_inputs
from dataflow.ingest.parquet import iter_parquet
from dataflow.ingest.records import RAW_COLUMNS, RAW_SCHEMA, quarantine, record, source_for, to_batch
from dataflow.ingest.sources import READERS, SOURCE_TYPE
from dataflow.ingest.warc import iter_warc

__all__ = ["InputFile", "file_format", "list_inputs", "read", "iter_file", "splits", "RAW_SCHEMA", "RAW_COLUMNS"]

_PATHS_SCHEMA = "path string, fmt string, size long, lo long, hi long, rel string"


def iter_file(path: str, fmt: str, cfg: dict, batch_rows: int = 1000, *, start: int = 0,
              end: int | None = None, sources: dict | None = None, counter: dict | None = None,
              rel: str | None = None):
    """Every raw record of one file (or, for WARC/WET, of the byte range [start, end): the records whose
    gzip member or WARC header starts there), in file order. Pure Python, usable without Spark; the file
    is opened through `dataflow.core.fs` where this runs (any URI), never with `open()` on a driver path.

    `sources`: the configuration's `sources` section (per-type reader settings for dump kinds). A record's
    declared type (`meta.source_type`: set by a dump reader, or a JSONL/Parquet `source_type` field) moves
    to the `source_type` column; DP validates it.

    `counter`: `counter["seen"]` grows by the units the reader framed (JSONL lines, the rows a Parquet footer
    declares), counted apart from what it yields; `counter["rows"]` by the rows yielded. For formats whose
    framing is the row itself (WARC records, dump members), seen grows with each row.
    `rel`: the file's path relative to its input root (`InputFile.rel`), kept as `meta.rel_path`: with the
    offset it makes the record's id independent of where the data lives."""
    counter = counter if counter is not None else {}
    counter.setdefault("seen", 0)
    counter.setdefault("rows", 0)
    framed = fmt in _FRAMED
    for r in _iter_file(path, fmt, cfg, batch_rows, start=start, end=end, sources=sources, counter=counter):
        r["source_type"] = r["meta"].pop("source_type", None) if r["meta"] else None
        if rel is not None:
            r["meta"]["rel_path"] = rel
        counter["rows"] += 1
        if not framed:
            counter["seen"] += 1
        yield r


# formats whose reader counts the units it framed by itself (`counter["seen"]`), apart from the rows it yields
_FRAMED = {"parquet", "jsonl"}


def _iter_source_dump(path: str, kind: str, cfg: dict, source: str, sources: dict | None):
    """A dump through its `dataflow.ingest.sources` reader (ingest's size and quarantine settings plus the type's
    `sources.<type>` settings). A reader error it did not catch itself becomes one quarantine row after the
    rows already read, naming the file and the unit reached, never a lost task."""
    stype = SOURCE_TYPE[kind]
    rcfg = {**cfg, **((sources or {}).get(stype) or {})}
    n = 0
    try:
        for r in READERS[kind](path, source=source, cfg=rcfg):
            r["meta"]["reader"] = kind
            n += 1
            yield r
    except Exception as e:  # noqa: BLE001 - any reader failure is reported as a row, with its type and message
        yield quarantine(source=source, file=path, offset=n, what="reader_error",
                         why=f"{kind} reader failed after {n} units: {type(e).__name__}: {e}",
                         meta={"source_type": stype, "reader": kind})


def _iter_file(path: str, fmt: str, cfg: dict, batch_rows: int = 1000, *, start: int = 0,
               end: int | None = None, sources: dict | None = None, counter: dict | None = None):
    source = source_for(path, cfg.get("source"))
    if fmt == UNKNOWN_FORMAT:   # listed so that it does not disappear: one row saying it was not read
        yield record(source=source, file=path, offset=0, meta={"file": path, "offset": "0"},
                     reason="skipped:unknown_format",
                     detail=f"{path}: no reader takes this file name (docs/preprocess.md lists the formats)")
        return
    if fmt in ("warc", "wet"):
        try:
            f = fs.open_input(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"input file {path} does not exist (listed on the driver, missing where the "
                                    f"task runs)") from None
        try:
            size = f.size()
            if size == 0:
                yield quarantine(source=source, file=path, offset=0, what="empty_file", why="zero-byte file")
                return
            yield from iter_warc(path, source=source, is_wet=fmt == "wet", cfg=cfg, start=start, end=end, f=f,
                                 size=size)
        finally:
            f.close()
        return
    if start:
        raise ValueError(f"input file {path}: only WARC/WET files are read in byte ranges, not {fmt}")
    if fmt not in ("jsonl", "parquet") and fmt not in READER_KINDS:
        raise ValueError(f"input file {path}: unknown format {fmt!r}")
    try:
        size = fs.size(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"input file {path} does not exist (listed on the driver, missing where the "
                                f"task runs)") from None
    if size == 0:
        if fmt in _FRAMED:   # the file itself is the one unit seen
            counter["seen"] += 1
        yield quarantine(source=source, file=path, offset=0, what="empty_file", why="zero-byte file")
    elif fmt in READER_KINDS:
        yield from _iter_source_dump(path, fmt, cfg, source, sources)
    elif fmt == "jsonl":
        yield from iter_jsonl(path, source=source, cfg=cfg, counter=counter)
    else:
        yield from iter_parquet(path, source=source, cfg=cfg, batch_rows=batch_rows, counter=counter)


def splits(files, split_bytes: int) -> list[tuple[str, str, int, int, int, str | None]]:
    """(path, fmt, size, start, end, rel) read units: WARC/WET files over `split_bytes` become several byte
    ranges (each task resyncs at the first record boundary in its range), every other file is one unit."""
    out = []
    for f in files:
        rel = getattr(f, "rel", None)
        if f.fmt in ("warc", "wet") and f.size > split_bytes:
            out.extend((f.path, f.fmt, f.size, a, min(a + split_bytes, f.size), rel)
                       for a in range(0, f.size, split_bytes))
        else:
            out.append((f.path, f.fmt, f.size, 0, f.size, rel))
    return out


def check_ids_apart(files) -> None:
    """Two input files with the same path relative to their input roots would give their records the same
    ids (ids do not depend on where the data lives): refuse before any work, naming both."""
    seen: dict[str, str] = {}
    for f in files:
        rel = getattr(f, "rel", None)
        if rel is None:
            continue
        if rel in seen:
            raise ValueError(f"input files {seen[rel]} and {f.path} have the same path {rel!r} relative to their "
                             f"input roots, so their records would get the same ids: give their common parent "
                             f"directory as the input instead")
        seen[rel] = f.path


class Ledger:
    """What the readers saw, counted where they run and written through `dataflow.core.fs` beside the stage's
    output (so no disk is shared): one small JSON file per read task, named by the units it read, so a task
    that runs again (retried, speculative, recomputed) rewrites the same file instead of counting twice.

    `seen` is what the readers framed (lines, footer rows, WARC records, archive members), counted apart from
    the rows they yielded; the runner makes it the stage's `input` and fails the stage when the written rows
    do not add up to it."""

    def __init__(self, uri: str):
        self.uri = uri

    def record(self, units: list[dict]) -> None:
        import hashlib
        import json

        key = hashlib.sha1("\n".join(f"{u['path']}\x1f{u['lo']}\x1f{u['hi']}" for u in units)
                           .encode("utf-8", "surrogatepass")).hexdigest()
        fs.write_text(fs.join(self.uri, f"{key}.json"), json.dumps(units, ensure_ascii=True))

    def units(self) -> list[dict]:
        import json

        if not fs.exists(self.uri):
            return []
        return [u for e in fs.walk(self.uri) for u in json.loads(fs.read_text(e.uri))]

    def seen(self, expected_units: int | None = None) -> int:
        """The units seen, summed; raises naming the files whose reader yielded a different number of rows
        than it framed, or when a read unit left no count."""
        units = self.units()
        if expected_units is not None and len(units) != expected_units:
            raise AccountingError(f"the readers' ledger {self.uri} counts {len(units)} read units, the listing "
                               f"had {expected_units}: a read task finished without recording what it saw")
        off = [u for u in units if u["seen"] != u["rows"]]
        if off:
            desc = "; ".join(f"{u['path']} [{u['lo']}, {u['hi']}): saw {u['seen']}, yielded {u['rows']}"
                             for u in off[:5])
            raise AccountingError(f"a reader yielded a different number of rows than the units it saw: {desc}"
                               + (f" (and {len(off) - 5} more)" if len(off) > 5 else ""))
        return sum(u["seen"] for u in units)

    def remove(self) -> None:
        fs.delete(self.uri)

    def work(self, files) -> "Work":
        """The progress measure of a read over `files`: their bytes, done as read tasks record their units (each
        ledger file is read once, so a poll costs a listing)."""
        read: dict[str, tuple[int, int]] = {}

        def done():
            if fs.exists(self.uri):
                import json

                for e in fs.walk(self.uri):
                    if e.uri not in read:
                        try:
                            units = json.loads(fs.read_text(e.uri))
                        except ValueError:   # a task is still writing it: the next poll reads it
                            continue
                        read[e.uri] = (sum(u["hi"] - u["lo"] for u in units), sum(u["seen"] for u in units))
            return sum(b for b, _ in read.values()), sum(n for _, n in read.values())

        return Work(sum(f.size for f in files), "bytes", done)


def _chunks(rows, batch_rows: int, batch_bytes: int):
    """Lists of raw records bounded by count and by payload bytes."""
    buf, size = [], 0
    for r in rows:
        buf.append(r)
        size += len(r["content"] or b"") + len(r["text"] or "")
        if len(buf) >= batch_rows or size >= batch_bytes:
            yield buf
            buf, size = [], 0
    if buf:
        yield buf


def _batches(rows, batch_rows: int, batch_bytes: int):
    for chunk in _chunks(rows, batch_rows, batch_bytes):
        yield to_batch(chunk)


def read(spark, paths, cfg: dict, *, transform: Callable | None = None, schema: pa.Schema | None = None,
         conf: dict | None = None, ledger: Ledger | None = None):
    """(DataFrame, files). `cfg` is the `preprocess` section; `conf` the root configuration (its `sources`
    section names dump files and their reader settings; without it only WARC/WET/JSONL/Parquet are read).

    Without `transform` the frame holds raw records (RAW_SCHEMA). With it, each batch of raw records
    (a list of dicts) goes through `transform(rows) -> pa.RecordBatch` of `schema` in the same Python
    worker that read it, so payload bytes never travel to the JVM and back (the DP job's fused path).
    `ledger`: where each read task records what its readers saw (`Ledger`)."""
    files = list_inputs(paths, conf)
    check_ids_apart(files)
    sources = dict((conf or {}).get("sources") or {})
    units = splits(files, int(cfg.get("split_bytes") or 0) or 1 << 62)
    per_task = max(1, int(cfg["files_per_task"]))
    n_tasks = max(1, (len(units) + per_task - 1) // per_task)
    batch_rows = int(cfg["batch_rows"])
    batch_bytes = int(cfg["batch_bytes"])
    # parallelize slices the list into contiguous chunks: with one unit per task, task i reads unit i
    paths_df = spark.createDataFrame(spark.sparkContext.parallelize(units, n_tasks), _PATHS_SCHEMA)

    def read_files(batches):
        done = []
        for b in batches:
            cols = ("path", "fmt", "lo", "hi", "rel")
            for path, fmt, start, end, rel in zip(*(b.column(c).to_pylist() for c in cols)):
                counter = {"seen": 0, "rows": 0}
                rows = iter_file(path, fmt, cfg, batch_rows, start=start, end=end, sources=sources, counter=counter,
                                 rel=rel)
                if transform is None:
                    yield from _batches(rows, batch_rows, batch_bytes)
                else:
                    yield from (transform(chunk) for chunk in _chunks(rows, batch_rows, batch_bytes))
                done.append({"path": path, "lo": start, "hi": end, **counter})
        if ledger is not None and done:
            ledger.record(done)

    return paths_df.mapInArrow(read_files, spark_schema(schema if transform is not None else RAW_SCHEMA)), files
