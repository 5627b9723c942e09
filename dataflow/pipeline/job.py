"""The command line of one stage: `python -m jobs.<name>`, `spark-submit jobs/<name>.py`, or for any stage of
the table `python -m jobs.stage NAME` / `spark-submit jobs/stage.py NAME`.

Every stage accepts `--input IN [IN ...] --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]`
plus the options it declares (`contract.Option`). The configuration is validated and the files it names are
checked before the SparkSession starts, and so is every input and output scheme (`core.preflight`, again with
the JVM before the attempt begins); the console shows one progress line and one summary line per stage
(`--verbose`: Spark's own logs and bars). The work itself is `core.runner.run_stage`.
"""
from __future__ import annotations

import argparse
import sys

from dataflow.core import preflight
from dataflow.core.cli import main_guard, stage_argparser
from dataflow.core.contract import Stage
from dataflow.core.runner import check_inputs, print_summary, run_stage
from dataflow.core.spark import get_session
from dataflow.pipeline.conf import load_conf, require_files
from dataflow.stages import table


def parser(stage: Stage, prog: str | None = None) -> argparse.ArgumentParser:
    ap = stage_argparser(prog or f"jobs.{stage.name}", stage.doc or stage.summary, input_help=stage.input_help,
                         input_required=False, output_required=False)
    if stage.uses_upstream:
        ap.add_argument("--upstream", "--stages", dest="upstream", nargs="*", default=None, metavar="DIR",
                        help="the output directories of the chain's earlier stages, in order (the funnel; default: "
                             "the input's sibling directories that hold a stats.json, by name)")
    for opt in stage.options:
        ap.add_argument(*opt.flags, **dict(opt.kwargs))
    return ap


def run(stage: Stage | str, argv: list[str] | None = None, prog: str | None = None):
    """Parse `argv` and run the stage: its stats.json, or the exit code of a command option (a gate, a table)."""
    stage = table.get(stage) if isinstance(stage, str) else stage
    ap = parser(stage, prog)
    args = ap.parse_args(argv)
    for opt in stage.options:
        value = getattr(args, opt.dest, None)
        if opt.to_sets is not None and value is not None:
            args.overrides.extend(opt.to_sets(value))
    conf = load_conf(args.conf, args.overrides)          # configuration mistakes first, before any JVM
    for opt in stage.options:
        if opt.command is not None and getattr(args, opt.dest, None):
            return opt.command(args, conf)
    if not args.input or not args.output:
        ap.error("--input and --output are required")
    require_files(conf, stage.required_files)           # then the inputs: all refused before a JVM starts
    preflight.before_jvm(stage, conf, args.input, args.output)   # both filesystem layers reach every scheme
    check_inputs(stage, conf, args.input, args.output, allow_incomplete=args.allow_incomplete)
    spark = get_session(conf, app_name=f"ziya2-{stage.name}", verbose=args.verbose)
    preflight.after_jvm(stage, spark, args.input, args.output)   # before the attempt creates anything
    stats = run_stage(stage, spark, conf, args.input, args.output, upstream=getattr(args, "upstream", None) or (),
                      options=vars(args), allow_incomplete=args.allow_incomplete, partitions=args.partitions,
                      progress=not args.verbose)
    print_summary(stats, args.output, stage=stage)
    return stats


def cli(stage: Stage | str, argv: list[str] | None = None, prog: str | None = None) -> None:
    """`if __name__ == "__main__"` of a job: expected failures are one line each and exit code 2; a command
    option's exit code is the process's."""
    main_guard(lambda _: _exit_code(run(stage, argv, prog=prog)))


def main(argv: list[str] | None = None) -> None:
    """`jobs/stage.py NAME ...`: any stage of the table by name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print(f"usage: jobs/stage.py NAME [--input ...] [--output ...]; NAME: one of {', '.join(table.names())}",
              file=sys.stderr)
        sys.exit(2)
    cli(argv[0], argv[1:], prog=f"jobs.stage {argv[0]}")


def _exit_code(rc) -> None:
    if isinstance(rc, int):
        sys.exit(rc)
