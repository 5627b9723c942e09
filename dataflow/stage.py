"""One place does the accounting (the datatrove lesson): every stage returns a `StageResult`, and
`write_stage` writes `data/`, `rejected/`, `stats.json` and `_SUCCESS`, and checks
`input == kept + sum(rejected)` before it marks the stage done.

Stages build one *annotated* DataFrame in which every input record appears once, with `reason` null for
kept rows. `StageResult.from_annotated` splits it; the annotated frame is persisted so the per-record
work runs once even though two outputs and the statistics read it.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .config import conf_hash


class AccountingError(RuntimeError):
    """input != kept + rejected: a stage lost or invented records. Never marked _SUCCESS."""


@dataclass
class StageResult:
    kept: Any                      # pyspark DataFrame
    rejected: Any                  # pyspark DataFrame with the kept schema + reason, detail
    stats: dict | Callable[[], dict] = field(default_factory=dict)  # stage extras; a callable runs after the writes
    annotated: Any = None          # the persisted frame both came from, unpersisted after writing

    @classmethod
    def from_annotated(cls, annotated, stats: dict | Callable[[], dict] | None = None,
                       drop: Iterable[str] = ()) -> "StageResult":
        """Split a frame with a nullable `reason` (and `detail`) column into kept and rejected."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        annotated = annotated.persist(StorageLevel.MEMORY_AND_DISK)
        drop = list(drop)
        kept = annotated.filter(F.col("reason").isNull()).drop("reason", "detail", *drop)
        rejected = annotated.filter(F.col("reason").isNotNull()).drop(*drop)
        return cls(kept=kept, rejected=rejected, stats=stats or {}, annotated=annotated)


def library_versions(extra: Iterable[str] = ()) -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("pyspark", "pyarrow", "pandas", "ziya2-dataflow", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def stage_input_paths(paths: Iterable[str]) -> list[str]:
    """A previous stage's output directory means its `data/`; anything else is taken as given."""
    out = []
    for p in paths:
        p = str(p)
        if os.path.isdir(os.path.join(p, "data")) and os.path.exists(os.path.join(p, "stats.json")):
            out.append(os.path.join(p, "data"))
        else:
            out.append(p)
    return out


def read_stage_input(spark, paths: Iterable[str]):
    """Read Parquet documents written by an earlier stage (or any Parquet with the document columns)."""
    resolved = stage_input_paths(paths)
    for p in resolved:
        if not any(ch in p for ch in "*?[") and not os.path.exists(p):
            raise FileNotFoundError(f"input path {p} does not exist")
    return spark.read.parquet(*resolved), resolved


def _agg_counts(df, by_reason: bool):
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("n"),
            F.coalesce(F.sum(F.length("text")), F.lit(0)).alias("chars"),
            F.coalesce(F.sum(F.octet_length("text")), F.lit(0)).alias("bytes")]
    if "text" not in df.columns:
        aggs = aggs[:1]
    if by_reason:
        return {r["reason"]: r.asDict() for r in df.groupBy("reason").agg(*aggs).collect()}
    return df.agg(*aggs).collect()[0].asDict()


def clear_success(out: str | os.PathLike) -> None:
    p = Path(out) / "_SUCCESS"
    if p.exists():
        p.unlink()


def write_stage(result: StageResult, out: str | os.PathLike, *, stage: str, input_count: int | None,
                input_paths: Iterable[str] = (), cfg: Mapping | None = None, t0: float | None = None,
                partitions: int | None = None, extra_versions: Iterable[str] = ()) -> dict:
    """Write a stage's outputs and its stats.json; raise AccountingError if records went missing."""
    t0 = t0 if t0 is not None else time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_success(out)
    kept, rejected = result.kept, result.rejected
    if partitions:
        kept = kept.coalesce(partitions)
    kept.write.mode("overwrite").option("compression", "zstd").parquet(str(out / "data"))
    rejected.write.mode("overwrite").option("compression", "zstd").parquet(str(out / "rejected"))

    spark = kept.sparkSession
    kept_back = spark.read.parquet(str(out / "data"))
    rej_back = spark.read.parquet(str(out / "rejected"))
    k = _agg_counts(kept_back, by_reason=False)
    r = _agg_counts(rej_back, by_reason=True) if "reason" in rej_back.columns else {}
    rejected_total = sum(v["n"] for v in r.values())
    extra = result.stats() if callable(result.stats) else dict(result.stats or {})
    if result.annotated is not None:
        result.annotated.unpersist()

    wall = time.time() - t0
    stats = {
        "stage": stage,
        "input": input_count,
        "kept": k["n"],
        "rejected_total": rejected_total,
        "rejected": {reason: v["n"] for reason, v in sorted(r.items())},
        "chars": {"kept": k.get("chars", 0), "rejected": {reason: v.get("chars", 0) for reason, v in sorted(r.items())}},
        "bytes": {"kept": k.get("bytes", 0), "rejected": {reason: v.get("bytes", 0) for reason, v in sorted(r.items())}},
        "wall_s": round(wall, 3),
        "docs_per_s": round((input_count or 0) / wall, 2) if wall > 0 else None,
        "config_hash": conf_hash(cfg or {}),
        "inputs": [str(p) for p in input_paths],
        "versions": library_versions(extra_versions),
        "argv": sys.argv,
        **({"extra": extra} if extra else {}),
    }
    stats["chars"]["input"] = stats["chars"]["kept"] + sum(stats["chars"]["rejected"].values())
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False, default=str) + "\n")
    if input_count is not None and input_count != k["n"] + rejected_total:
        raise AccountingError(f"{stage}: input {input_count} != kept {k['n']} + rejected {rejected_total} "
                              f"({stats['rejected']}); {out} is not marked _SUCCESS")
    (out / "_SUCCESS").write_text(json.dumps({"stage": stage, "config_hash": stats["config_hash"],
                                              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    return stats


def remove_output(out: str | os.PathLike) -> None:
    p = Path(out)
    if p.exists():
        shutil.rmtree(p)
