"""What every command line of the project shares: the common stage arguments, the guard that turns expected
failures into one line and exit code 2, and JSON output. A stage's own command line is `dataflow.pipeline.job`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from dataflow.core.config import DEFAULT_CONF
from dataflow.core.confschema import ConfigError


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


def main_guard(fn: Callable[[list[str] | None], object]) -> None:
    """Run a job's main and turn expected failures into one clear line each and exit code 2."""
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
