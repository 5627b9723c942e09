"""`jobs.pipeline`: the chain's command line (run it, or print its lines for a cluster)."""
from __future__ import annotations

import argparse
import sys

from dataflow.core.cli import main_guard
from dataflow.core.config import DEFAULT_CONF
from dataflow.pipeline.chain import __doc__ as CHAIN_DOC
from dataflow.pipeline.chain import run_chain
from dataflow.pipeline.submit import submit_lines


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jobs.pipeline", description=CHAIN_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", "-i", nargs="+", required=True, metavar="IN",
                    help="raw input for the first stage (corpus directory, WARC/WET, JSONL, Parquet)")
    ap.add_argument("--output", "-o", required=True, metavar="OUT", help="run directory; stage i writes OUT/<nn>-<stage>/")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), metavar="YAML", help="pipeline configuration")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="configuration override passed to every stage (repeatable); it counts in the stage's hash")
    ap.add_argument("--force", action="store_true", help="rerun every stage even if its _SUCCESS is current")
    ap.add_argument("--stages", nargs="+", metavar="NAME",
                    help="run only these stages of the chain (the others must be done or absent)")
    ap.add_argument("--runner", choices=["session", "python", "spark-submit"], default=None,
                    help="how stages run (default: pipeline.runner): all in one SparkSession here, or each its own "
                         "process")
    ap.add_argument("--verbose", "-v", action="store_true", help="Spark's own log lines and progress bars (with --print-submit: in the printed lines too)")
    ap.add_argument("--print-submit", action="store_true",
                    help="print the chain's shell lines for a cluster (pipeline.cluster) instead of running")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.print_submit:
        print("\n".join(submit_lines(a.conf, a.overrides, a.input, a.output, verbose=a.verbose)))
        return 0
    return run_chain(a.conf, a.overrides, a.input, a.output, force=a.force, only=a.stages, runner=a.runner,
                     verbose=a.verbose)


def cli() -> None:
    main_guard(lambda argv: sys.exit(main(argv)))
