"""Shared wiring for the `jobs/<stage>.py` entry points: arguments, session, write, summary.

Every job accepts `--input IN [IN ...] --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]`
and runs the same under `spark-submit jobs/<stage>.py` and `python -m jobs.<stage>`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from .config import DEFAULT_CONF, load_conf


def stage_argparser(prog: str, description: str, *, input_help: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", "-i", nargs="+", required=True, metavar="IN",
                    help=input_help or "input: a previous stage's output directory, Parquet files, directories or globs")
    ap.add_argument("--output", "-o", required=True, metavar="OUT",
                    help="output directory: OUT/data (kept Parquet), OUT/rejected (same + reason, detail), "
                         "OUT/stats.json, OUT/_SUCCESS")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), metavar="YAML",
                    help=f"pipeline configuration (default: {DEFAULT_CONF.relative_to(DEFAULT_CONF.parent.parent)})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override one configuration value, e.g. --set preprocess.lang_threshold=0.6 (repeatable)")
    ap.add_argument("--partitions", type=int, default=None,
                    help="coalesce kept output to this many files (default: as computed)")
    ap.add_argument("--force", action="store_true", help="accepted for symmetry with `make pipeline`; a job always reruns")
    return ap


def load_job_conf(args) -> dict:
    return load_conf(args.conf, args.overrides)


def print_summary(stats: dict, out) -> None:
    top = sorted(stats.get("rejected", {}).items(), key=lambda kv: -kv[1])[:3]
    reasons = ", ".join(f"{r}={n}" for r, n in top) or "-"
    print(f"[{stats['stage']}] in={stats['input']} kept={stats['kept']} rejected={stats['rejected_total']} "
          f"({reasons}) {stats.get('docs_per_s')} docs/s -> {out}", flush=True)


def run_job(stage: str, args, body: Callable[[object, dict], dict]) -> dict:
    """Build the session, run `body(spark, cfg) -> stats`, print the summary. Errors exit non-zero."""
    from .spark import get_session

    cfg = load_job_conf(args)
    t0 = time.time()
    spark = get_session(cfg, app_name=f"ziya2-{stage}")
    stats = body(spark, cfg)
    stats.setdefault("wall_s", round(time.time() - t0, 3))
    print_summary(stats, args.output)
    return stats


def run_document_stage(spark, args, stage: str, scfg: dict, transform, **write_kw) -> dict:
    """The common body of a stage over an earlier stage's Parquet documents: read, count the input,
    apply `transform(df) -> StageResult`, and write it through `write_stage` (which does the accounting)."""
    from .stage import clear_success, read_stage_input, write_stage

    t0 = time.time()
    clear_success(args.output)
    df, paths = read_stage_input(spark, args.input)
    n = df.count()
    return write_stage(transform(df), args.output, stage=stage, input_count=n, input_paths=paths, cfg=scfg,
                       t0=t0, partitions=args.partitions, **write_kw)


def main_guard(fn: Callable[[list[str] | None], object]) -> None:
    """Run a job's main and turn expected failures into one clear line and exit code 2."""
    try:
        fn(None)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def dump(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
