"""Shared wiring for the `jobs/<stage>.py` entry points: arguments, configuration, session, write, summary.

Every job accepts `--input IN [IN ...] --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]`
and runs the same under `spark-submit jobs/<stage>.py` and `python -m jobs.<stage>`, from any directory.
The configuration is validated and the files it names are checked before the SparkSession starts; the
console shows one progress line and one summary line per stage (`--verbose`: Spark's own logs and bars).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Iterable

from dataflow.core.config import DEFAULT_CONF, load_conf, require_files


def stage_argparser(prog: str, description: str, *, input_help: str | None = None, input_required: bool = True,
                    output_required: bool = True) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", "-i", nargs="+", required=input_required, metavar="IN",
                    help=input_help or "input: a previous stage's output directory, Parquet files, directories or globs")
    ap.add_argument("--output", "-o", required=output_required, metavar="OUT",
                    help="output directory: OUT/data (kept Parquet), OUT/rejected (same + reason, detail), "
                         "OUT/stats.json, OUT/_SUCCESS (written last; the output is committed atomically)")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), metavar="YAML",
                    help=f"pipeline configuration (default: {DEFAULT_CONF.relative_to(DEFAULT_CONF.parent.parent)})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override one configuration value, e.g. --set preprocess.lang_threshold=0.6 (repeatable); "
                         "Spark keys keep their dots: --set spark.conf.spark.sql.shuffle.partitions=2000")
    ap.add_argument("--partitions", type=int, default=None,
                    help="coalesce kept output to this many files (default: as computed)")
    ap.add_argument("--allow-incomplete", action="store_true",
                    help="read an input stage directory that has no _SUCCESS (killed or failed); refused otherwise")
    ap.add_argument("--verbose", "-v", action="store_true",
                    help="Spark's own log lines and progress bars (default: errors only, one progress line)")
    ap.add_argument("--force", action="store_true", help="accepted for symmetry with `make pipeline`; a job always reruns")
    return ap


def load_job_conf(args, files: Iterable[str] = ()) -> dict:
    """The validated configuration; the model/lexicon files of the `files` sections must exist."""
    cfg = load_conf(args.conf, args.overrides)
    require_files(cfg, files)
    return cfg


def print_summary(stats: dict, out) -> None:
    top = sorted(stats.get("rejected", {}).items(), key=lambda kv: -kv[1])[:3]
    reasons = ", ".join(f"{r}={n}" for r, n in top) or "-"
    print(f"[{stats['stage']}] in={stats['input']} kept={stats['kept']} rejected={stats['rejected_total']} "
          f"({reasons}) {stats.get('docs_per_s')} docs/s in {stats.get('wall_s')} s -> {out}", flush=True)
    if len(stats.get("by_type") or {}) > 1:   # one type alone says nothing the line above does not
        print(f"[{stats['stage']}] by type: " + ", ".join(f"{t} {c['kept']}/{c['input']}" for t, c in stats["by_type"].items())
              + " (kept/in)", flush=True)


def run_job(stage: str, args, body: Callable[[object, dict], dict], files: Iterable[str] | None = None) -> dict:
    """Validate the configuration and the files of `files` (default: the stage's own section), build the
    session, run `body(spark, cfg) -> stats` under one progress line, print the summary."""
    from dataflow.core.progress import stage_progress
    from dataflow.core.spark import get_session

    from dataflow.core.stage import check_overlap, stage_input_paths

    verbose = bool(getattr(args, "verbose", False))
    cfg = load_conf(args.conf, args.overrides)
    require_files(cfg, [stage] if files is None else files)
    if getattr(args, "input", None):   # refused before a JVM starts: unfinished inputs, input/output overlap
        check_overlap(args.input, getattr(args, "output", None))
        stage_input_paths(args.input, allow_incomplete=bool(getattr(args, "allow_incomplete", False)))
    t0 = time.time()
    spark = get_session(cfg, app_name=f"ziya2-{stage}", verbose=verbose)
    with stage_progress(spark, stage, enabled=not verbose):
        stats = body(spark, cfg)
    stats.setdefault("wall_s", round(time.time() - t0, 3))
    print_summary(stats, args.output)
    return stats


def run_document_stage(spark, args, stage: str, scfg: dict, transform, **write_kw) -> dict:
    """The common body of a stage over an earlier stage's Parquet documents: check and read the input, begin
    an attempt, count, apply `transform(df, attempt) -> StageResult` (side files go to `attempt.path(...)`),
    and write it through `write_stage` (which does the accounting and commits)."""
    from dataflow.core.stage import Attempt, read_stage_input, write_stage

    t0 = time.time()
    df, paths = read_stage_input(spark, args.input, output=args.output,
                                 allow_incomplete=bool(getattr(args, "allow_incomplete", False)))
    attempt = Attempt(args.output).begin()
    n = df.count()
    return write_stage(transform(df, attempt), args.output, stage=stage, input_count=n, input_paths=paths, cfg=scfg,
                       t0=t0, partitions=args.partitions, attempt=attempt, **write_kw)


def main_guard(fn: Callable[[list[str] | None], object]) -> None:
    """Run a job's main and turn expected failures into one clear line each and exit code 2."""
    from dataflow.core.confschema import ConfigError

    try:
        fn(None)
    except ConfigError as e:
        for line in e.errors:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def dump(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
