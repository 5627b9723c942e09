"""One place does the accounting (the datatrove lesson): every stage returns a `StageResult`, and
`write_stage` writes `data/`, `rejected/`, `stats.json` and `_SUCCESS`, and checks
`input == kept + sum(rejected)` before it marks the stage done. Where the records carry `source_type`,
stats.json's `by_type` breaks input, kept and rejected (by reason) down per source type.

Outputs are atomic (DESIGN §8): a stage writes into `OUT/_attempt-<id>/` and commits at the end, `_SUCCESS`
last; `read_stage_input` is the one place that refuses an unfinished input stage (no `_SUCCESS`) and an
output inside its input tree. All paths are URIs through `dataflow.core.fs`.

Stages build one *annotated* DataFrame in which every input record appears once, with `reason` null for
kept rows. `StageResult.from_annotated` splits it, and `write_stage` writes both outputs in one pass over it
(`fsio.write_split`), counting rows, characters and bytes per reason and source type as it writes: no output
is read back to count it, and no rejected row is materialised twice. The annotated frame is persisted only
for a stage whose statistics read it again after the writes.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from dataflow.core import fs, fsio
from dataflow.core.config import conf_hash


class AccountingError(RuntimeError):
    """input != kept + rejected: a stage lost or invented records. Never marked _SUCCESS."""


@dataclass
class StageResult:
    kept: Any                      # pyspark DataFrame
    rejected: Any                  # pyspark DataFrame with the kept schema + reason, detail
    stats: dict | Callable[[], dict] = field(default_factory=dict)  # stage extras; a callable runs after the writes
    annotated: Any = None          # the frame both came from (unpersisted after writing, when persisted)
    split: bool = False            # kept/rejected are `annotated` split on `reason`: written in one pass over it

    @classmethod
    def from_annotated(cls, annotated, stats: dict | Callable[[], dict] | None = None,
                       drop: Iterable[str] = (), *, persist: bool = True) -> "StageResult":
        """Split a frame with a nullable `reason` (and `detail`) column into kept and rejected; `write_stage`
        writes both in one pass over `annotated`. `persist`: cache it for a stage whose statistics (or side
        files) read it again after the writes; the writes alone read it once."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        if persist:
            annotated = annotated.persist(StorageLevel.MEMORY_AND_DISK)
        drop = tuple(drop)
        kept = annotated.filter(F.col("reason").isNull()).drop("reason", "detail", *drop)
        rejected = annotated.filter(F.col("reason").isNotNull()).drop(*drop)
        return cls(kept=kept, rejected=rejected, stats=stats or {}, annotated=annotated, split=True)


def library_versions(extra: Iterable[str] = ()) -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("pyspark", "pyarrow", "pandas", "ziya2-dataflow", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


class IncompleteInputError(ValueError):
    """An input stage directory without `_SUCCESS` (killed, failed or still running), or an input/output
    overlap. One line naming the path; `--allow-incomplete` reads an unfinished stage's data/ anyway."""


STAGE_MARKERS = ("data", "stats.json")   # not _SUCCESS alone: Spark's own Parquet writer leaves one in plain folders
ATTEMPT_PREFIX = "_attempt-"


def is_stage_dir(uri: str) -> bool:
    """A directory some stage wrote (or began to write): it holds data/, stats.json or an attempt."""
    if not fs.is_dir(uri):
        return False
    if any(fs.exists(fs.join(uri, m)) for m in STAGE_MARKERS):
        return True
    return bool(_attempts(uri))


def _attempts(out: str) -> list[str]:
    import pyarrow.fs as pafs

    fsys, path = fs.resolve(out)
    try:
        entries = fsys.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [fs.join(out, e.base_name) for e in entries if e.base_name.startswith(ATTEMPT_PREFIX)]


def _literal_prefix(p: str) -> str:
    cut = min((i for i, ch in enumerate(p) if ch in fs.GLOB_CHARS), default=None)
    return p if cut is None else p[:cut].rsplit("/", 1)[0]


def check_overlap(inputs: Iterable[str], output: str | None) -> None:
    """Refuse an output inside an input tree (a rerun would read its own previous output) and an input
    inside the output (the commit would delete what the stage reads)."""
    if not output:
        return
    for p in inputs:
        root = _literal_prefix(str(p))
        if fs.is_within(output, root):
            raise IncompleteInputError(f"output {output} lies inside input {p}: choose an output outside the input tree")
        if fs.is_within(root, output):
            raise IncompleteInputError(f"input {p} lies inside output {output}: choose an output outside the input tree")


def stage_input_paths(paths: Iterable[str], *, allow_incomplete: bool = False) -> list[str]:
    """A stage directory means its `data/`, and only once the stage finished (`_SUCCESS`); anything else
    (Parquet files, plain directories, globs) is taken as given."""
    out = []
    for p in paths:
        p = str(p)
        if any(ch in p for ch in fs.GLOB_CHARS) and not fs.exists(p):   # a path that exists is never a glob
            out.append(p)
            continue
        if not fs.exists(p):
            raise FileNotFoundError(f"input path {p} does not exist")
        if is_stage_dir(p):
            if not fs.exists(fs.join(p, "_SUCCESS")) and not allow_incomplete:
                raise IncompleteInputError(f"input {p} is an unfinished stage output (no _SUCCESS: killed, failed or "
                                           f"still running); rerun that stage, or pass --allow-incomplete")
            data = fs.join(p, "data")
            if not fs.exists(data):
                raise IncompleteInputError(f"input {p} holds no data/ (the stage never committed an output)")
            out.append(data)
        else:
            out.append(p)
    return out


def parquet_files(paths: Iterable[str]) -> list[str]:
    """The Parquet files a stage reads from `paths` (files, directories walked recursively, globs), sorted. The
    walk and the globs skip `_`/`.` names at every depth (Spark's `_temporary/`, attempts, `.crc`), and the
    frame is read from exactly these files, so the footers' row counts are the rows the stage saw."""
    out: dict[str, None] = {}
    for p in paths:
        named = fs.is_file(str(p))   # a file named explicitly is read whatever its suffix
        for f in fs.entries(str(p)):
            if named or f.uri.endswith(".parquet"):
                out[f.uri] = None
    return sorted(out)


def parquet_rows(paths: Iterable[str]) -> int:
    """The rows the Parquet footers under `paths` declare (driver reads footers only): a stage's `input`,
    counted from the files, independently of the frame read from them."""
    import pyarrow.parquet as pq

    total = 0
    for uri in parquet_files(paths):
        with fs.open_input(uri) as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def parquet_schemas(files: Iterable[str]) -> dict[str, list[str]]:
    """Parquet footer schemas of `files` (as `parquet_files` lists them; driver reads footers only), grouped:
    'col:type, ...' -> the files with exactly that schema."""
    import pyarrow.parquet as pq

    groups: dict[str, list[str]] = {}
    for uri in files:
        with fs.open_input(uri) as fh:
            schema = pq.ParquetFile(fh).schema_arrow
        key = ", ".join(f"{n}:{t}" for n, t in zip(schema.names, schema.types))
        groups.setdefault(key, []).append(uri)
    return groups


def _merge_schemas(groups: dict[str, list[str]], require: Iterable[str]) -> bool:
    """Whether files of different schemas can be merged: raise naming the files when a column has two types
    or a required column is missing from some files (they would read as null, e.g. `lang` -> no_model)."""
    if len(groups) <= 1:
        return False
    types: dict[str, dict[str, list[str]]] = {}
    cols_of = {}
    for key, files in groups.items():
        cols = dict(c.split(":", 1) for c in key.split(", ")) if key else {}
        cols_of[key] = cols
        for c, t in cols.items():
            types.setdefault(c, {}).setdefault(t, []).extend(files)
    for c, by_type in types.items():
        if len(by_type) > 1:
            desc = "; ".join(f"{t} in {', '.join(fs.basename(x) for x in fl[:3])}" for t, fl in by_type.items())
            raise ValueError(f"input files disagree on the type of column {c!r}: {desc}")
    for c in require:
        lacking = [f for key, files in groups.items() if c not in cols_of[key] for f in files]
        if lacking and c in types:
            raise ValueError(f"input files lack column {c!r} that other files have: "
                             f"{', '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}")
    return True


def read_stage_input(spark, paths: Iterable[str], *, output: str | None = None, allow_incomplete: bool = False,
                     require: Iterable[str] = ("id", "text", "lang")):
    """Read Parquet documents written by an earlier stage (or any Parquet with the document columns).

    The one place input checks live: an unfinished stage directory (no `_SUCCESS`) is refused unless
    `allow_incomplete`; an output inside an input (or the reverse) is refused; files whose schemas differ are
    read with their schemas merged, unless a `require`d column is missing from some of them or a column has
    two types (an error naming the files).

    The frame is read from the files `parquet_files` lists, with Spark's partition discovery off: a folder
    named `lang=zh/` is a folder, not a value of `lang` for the documents in it."""
    paths = [str(p) for p in paths]
    check_overlap(paths, output)
    resolved = stage_input_paths(paths, allow_incomplete=allow_incomplete)
    files = parquet_files(resolved)
    if not files:
        raise FileNotFoundError(f"no Parquet files under {' '.join(resolved)}")
    merge = _merge_schemas(parquet_schemas(files), require)   # the files listed once, above
    reader = spark.read.option("recursiveFileLookup", "true")
    if merge:
        reader = reader.option("mergeSchema", "true")
    return reader.parquet(*[fs.spark_uri(f) for f in files]), resolved


TEXT = "text"   # the column whose characters and bytes stats.json counts


def tally_rows(name: str, batch) -> dict[str, list[int]]:
    """[rows, characters, UTF-8 bytes of `text`] per (source_type, reason) of rows being written (a column the
    batch lacks is null): what Spark's count, length and octet_length would sum over the written output."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    names = batch.schema.names

    def col(c):
        return batch.column(c) if c in names else pa.nulls(n, pa.string())

    chars = nbytes = pa.array([0] * n, pa.int64())
    if TEXT in names:
        text = batch.column(TEXT)
        is_str = pa.types.is_string(text.type) or pa.types.is_large_string(text.type)
        chars = pc.fill_null(pc.cast(pc.utf8_length(text) if is_str else pc.binary_length(text), pa.int64()), 0)
        nbytes = pc.fill_null(pc.cast(pc.binary_length(text), pa.int64()), 0)
    table = pa.table({"t": col("source_type"), "r": col("reason"), "c": chars, "b": nbytes})
    grouped = table.group_by(["t", "r"]).aggregate([("c", "count", pc.CountOptions(mode="all")), ("c", "sum"),
                                                    ("b", "sum")])
    return {json.dumps([t, r]): [k, c or 0, b or 0] for t, r, k, c, b in
            zip(*(grouped.column(x).to_pylist() for x in ("t", "r", "c_count", "c_sum", "b_sum")))}


def _routes(kept_cols: list[str], rejected_cols: list[str]):
    """route(batch) for a split result: rows with a null `reason` to data/ (kept columns), the rest to rejected/."""
    def route(batch):
        import pyarrow.compute as pc

        is_kept = pc.is_null(batch.column("reason"))
        return {"data": batch.filter(is_kept).select(kept_cols),
                "rejected": batch.filter(pc.invert(is_kept)).select(rejected_cols)}

    return route


def _write_outputs(result: StageResult, attempt: "Attempt", partitions: int | None) -> dict[str, dict]:
    """data/ and rejected/ written into the attempt, each row once, counted while written: {"data": tally,
    "rejected": tally}, a tally mapping json [source_type, reason] to [rows, chars, bytes]."""
    from pyspark.sql.pandas.types import to_arrow_schema

    kept, rejected = result.kept, result.rejected
    out = {"data": (attempt.path("data"), to_arrow_schema(kept.schema)),
           "rejected": (attempt.path("rejected"), to_arrow_schema(rejected.schema))}
    if result.split and result.annotated is not None:   # one pass over the frame both come from
        frame = result.annotated.coalesce(partitions) if partitions else result.annotated
        return fsio.write_split(frame, out, _routes(kept.columns, rejected.columns), tally_rows).tally
    if partitions:
        kept = kept.coalesce(partitions)
    tally = {}
    for name, frame in (("data", kept), ("rejected", rejected)):
        tally.update(fsio.write_split(frame, {name: out[name]}, lambda b, n=name: {n: b}, tally_rows).tally)
    return tally


def _counts(tally: dict[str, list[int]], by_reason: bool) -> dict:
    """{n, chars, bytes} of an output, or per reason."""
    out: dict = {}
    for key, (n, chars, nbytes) in tally.items():
        slot = out.setdefault(json.loads(key)[1], {"n": 0, "chars": 0, "bytes": 0}) if by_reason else \
            out.setdefault(None, {"n": 0, "chars": 0, "bytes": 0})
        slot["n"] += n
        slot["chars"] += chars
        slot["bytes"] += nbytes
    return out if by_reason else out.get(None, {"n": 0, "chars": 0, "bytes": 0})


def _by_type(kept_tally: dict, rejected_tally: dict, kept_cols, rejected_cols) -> dict | None:
    """Per source type: input, kept, rejected and rejected by reason (counted as the outputs were written); None
    when neither output has a `source_type` column (a stage over records that carry none). A null type is `none`."""
    if "source_type" not in kept_cols and "source_type" not in rejected_cols:
        return None
    out: dict[str, dict] = {}

    def slot(t):
        return out.setdefault(t or "none", {"input": 0, "kept": 0, "rejected": 0, "rejected_by_reason": {}})

    for key, (n, _, _) in kept_tally.items():
        if n:
            slot(json.loads(key)[0])["kept"] += n
    if "reason" in rejected_cols:
        for key, (n, _, _) in rejected_tally.items():
            t, reason = json.loads(key)
            d = slot(t)
            d["rejected"] += n
            d["rejected_by_reason"][reason] = d["rejected_by_reason"].get(reason, 0) + n
    for d in out.values():
        d["input"] = d["kept"] + d["rejected"]
        d["rejected_by_reason"] = dict(sorted(d["rejected_by_reason"].items()))
    return dict(sorted(out.items()))


def clear_success(out: str | os.PathLike) -> None:
    fs.delete(fs.join(str(out), "_SUCCESS"))


class Attempt:
    """One try at writing a stage's output: everything goes to `OUT/_attempt-<id>/` (hidden from listings),
    and `commit` moves each entry into OUT and writes `_SUCCESS` last. `_SUCCESS` is removed when the attempt
    begins, so a killed attempt leaves an output every reader refuses; the next attempt removes stale ones.

    Side files (cutoffs, examples, manifests, reports) are written to `attempt.path(name)` and committed with
    the data."""

    def __init__(self, out: str | os.PathLike):
        self.out = fs.normalize(str(out))
        self.id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        self.dir = fs.join(self.out, ATTEMPT_PREFIX + self.id)
        self.committed = False

    def begin(self) -> "Attempt":
        clear_success(self.out)
        for stale in _attempts(self.out):
            fs.delete(stale)
        fs.makedirs(self.dir)
        return self

    def path(self, *parts: str) -> str:
        return fs.join(self.dir, *parts)

    def abort(self) -> None:
        fs.delete(self.dir)

    def commit(self, marker: Mapping) -> None:
        import pyarrow.fs as pafs

        fsys, path = fs.resolve(self.dir)
        names = sorted(e.base_name for e in fsys.get_file_info(pafs.FileSelector(path, recursive=False)))
        # data first, stats.json last but one: a reader that sees stats.json sees the data it describes
        order = sorted(names, key=lambda n: (n == "stats.json", n not in ("data", "rejected"), n))
        for name in order:
            fs.move(fs.join(self.dir, name), fs.join(self.out, name))
        fs.delete(self.dir)
        fs.write_text(fs.join(self.out, "_SUCCESS"), json.dumps(dict(marker)) + "\n")
        self.committed = True


def write_stage(result: StageResult, out: str | os.PathLike, *, stage: str,
                input_count: int | Callable[[], int] | None,
                input_paths: Iterable[str] = (), cfg: Mapping | None = None, t0: float | None = None,
                partitions: int | None = None, extra_versions: Iterable[str] = (), attempt: Attempt | None = None,
                side_files: Callable[[dict], Mapping[str, str]] | None = None) -> dict:
    """Write a stage's outputs and its stats.json into an attempt, check the accounting, then commit
    (`_SUCCESS` last). Raises AccountingError (nothing committed, no `_SUCCESS`) if records went missing.

    `input_count`: the units the stage's reader saw; a callable is asked after the writes (a reader's ledger is
    complete only once every read task ran).
    `attempt`: the one the stage already wrote side files into (default: a new one, begun here).
    `side_files(stats) -> {name: text}`: small files derived from the statistics (e.g. cutoffs.json)."""
    t0 = t0 if t0 is not None else time.time()
    attempt = attempt or Attempt(out).begin()
    tally = _write_outputs(result, attempt, partitions)
    if callable(input_count):
        try:
            input_count = input_count()
        except Exception:
            attempt.abort()
            raise
    extra = result.stats() if callable(result.stats) else dict(result.stats or {})
    if result.annotated is not None:
        result.annotated.unpersist()
    return commit_stage(attempt, stage=stage, tally=tally, kept_cols=result.kept.columns,
                        rejected_cols=result.rejected.columns, input_count=input_count, input_paths=input_paths,
                        cfg=cfg, t0=t0, extra=extra, extra_versions=extra_versions, side_files=side_files)


def commit_stage(attempt: Attempt, *, stage: str, tally: Mapping[str, dict], kept_cols, rejected_cols,
                 input_count: int | None, input_paths: Iterable[str] = (), cfg: Mapping | None = None,
                 t0: float | None = None, extra: Mapping | None = None, extra_versions: Iterable[str] = (),
                 side_files: Callable[[dict], Mapping[str, str]] | None = None, fused: Mapping | None = None) -> dict:
    """stats.json from what was written (`tally`: {"data": ..., "rejected": ...}, each mapping json
    [source_type, reason] to [rows, chars, bytes]), the accounting check `input == kept + sum(rejected)`, the
    side files, then the commit (`_SUCCESS` last). A stage run alone (`write_stage`) and a stage of a fused pass
    (`core.fused`) both end here."""
    t0 = t0 if t0 is not None else time.time()
    k = _counts(tally["data"], by_reason=False)
    r = _counts(tally["rejected"], by_reason=True) if "reason" in rejected_cols else {}
    rejected_total = sum(v["n"] for v in r.values())
    by_type = _by_type(tally["data"], tally["rejected"], kept_cols, rejected_cols)
    extra = dict(extra or {})

    wall = time.time() - t0
    stats = {
        "stage": stage,
        "input": input_count,
        "kept": k["n"],
        "rejected_total": rejected_total,
        "rejected": {reason: v["n"] for reason, v in sorted(r.items())},
        "chars": {"kept": k.get("chars", 0), "rejected": {reason: v.get("chars", 0) for reason, v in sorted(r.items())}},
        "bytes": {"kept": k.get("bytes", 0), "rejected": {reason: v.get("bytes", 0) for reason, v in sorted(r.items())}},
        **({"by_type": by_type} if by_type is not None else {}),
        "wall_s": round(wall, 3),
        "docs_per_s": round((input_count or 0) / wall, 2) if wall > 0 else None,
        "config_hash": conf_hash(cfg or {}),
        "inputs": [str(p) for p in input_paths],
        "versions": library_versions(extra_versions),
        "argv": sys.argv,
        **({"extra": _unattempt(extra, attempt)} if extra else {}),
        # a stage of a fused pass: the group, and where its kept rows went (only the last stage writes data/)
        **({"fused": dict(fused)} if fused else {}),
    }
    stats["chars"]["input"] = stats["chars"]["kept"] + sum(stats["chars"]["rejected"].values())
    if input_count is not None and input_count != k["n"] + rejected_total:
        attempt.abort()
        raise AccountingError(f"{stage}: input {input_count} != kept {k['n']} + rejected {rejected_total} "
                              f"({stats['rejected']}); {attempt.out} is not marked _SUCCESS")
    for name, text in (side_files(stats) if side_files else {}).items():
        fs.write_text(attempt.path(name), text)
    fs.write_text(attempt.path("stats.json"), json.dumps(stats, indent=2, ensure_ascii=False, default=str) + "\n")
    attempt.commit({"stage": stage, "config_hash": stats["config_hash"],
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return stats


def _unattempt(obj, attempt: Attempt):
    """Paths a stage reported inside its attempt directory, as they read after the commit."""
    if isinstance(obj, str):
        return obj.replace(attempt.dir, attempt.out)
    if isinstance(obj, dict):
        return {k: _unattempt(v, attempt) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unattempt(v, attempt) for v in obj]
    return obj


def remove_output(out: str | os.PathLike) -> None:
    fs.delete(str(out))


def sibling_stage_dirs(inputs: Iterable[str], output: str) -> list[str]:
    """The stage directories next to the inputs (a run's 10-preprocess ... 40-dedup), by name, without the
    output itself: the funnel DE draws when no --stages are given."""
    out = fs.normalize(str(output))
    found = set()
    for p in inputs:
        p = fs.normalize(str(p))
        if not fs.exists(fs.join(p, "stats.json")):
            continue
        parent = fs.parent(p)
        for d in _children(parent):
            if fs.normalize(d) != out and fs.exists(fs.join(d, "stats.json")):
                found.add(d)
    return sorted(found, key=fs.basename)


def _children(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fsys, path = fs.resolve(uri)
    return [fs.join(uri, e.base_name) for e in fsys.get_file_info(pafs.FileSelector(path, recursive=False))
            if e.type == pafs.FileType.Directory]
