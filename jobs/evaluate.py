"""DE job: evaluate the pipeline's output (sample, metrics, review sheet, report) or gate reviewer labels.

  python -m jobs.evaluate --input RUN/40-dedup --output RUN/50-evaluate [--conf conf/pipeline.yaml]
  python -m jobs.evaluate --output RUN/50-evaluate --labels reviewed.csv     # the gate; exit 1 on FAIL
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


from dataflow.cli import load_job_conf, main_guard, run_job, stage_argparser
from dataflow.config import conf_hash, section

STAGE = "evaluate"


def parser():
    ap = stage_argparser("jobs.evaluate", __doc__)
    for action in ap._actions:  # --input is not needed when only gating labels
        if action.dest == "input":
            action.required = False
    ap.add_argument("--stages", nargs="*", default=None, metavar="DIR",
                    help="stage output directories whose stats.json make the funnel, in pipeline order "
                         "(default: the input's sibling directories that hold a stats.json, by name)")
    ap.add_argument("--labels", metavar="SHEET",
                    help="a reviewed review.csv / review.jsonl: compute the unqualified rate and its Clopper-Pearson "
                         "bound, write OUT/gate.json, re-render the report; exit 1 if the gate fails")
    return ap


def sibling_stage_dirs(inputs, output) -> list[str]:
    out = Path(output).resolve()
    dirs = set()
    for p in inputs:
        p = Path(p)
        if (p / "stats.json").exists():
            for d in p.resolve().parent.iterdir():
                if d.is_dir() and (d / "stats.json").exists() and d.resolve() != out:
                    dirs.add(d)
    return [str(d) for d in sorted(dirs, key=lambda d: d.name)]


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.labels:
        from dataflow.evaluate import gate

        cfg = section(load_job_conf(args), STAGE)
        decision = gate(args.output, args.labels, cfg)
        print(decision["message"], flush=True)
        print(f"[evaluate] gate written to {Path(args.output) / 'gate.json'}; report {decision['report']['html']}")
        return 0 if decision["passed"] else 1
    if not args.input:
        print("error: --input is required (or --labels to gate a reviewed sheet)", file=sys.stderr)
        return 2

    def body(spark, cfg):
        from dataflow.evaluate import evaluate, run
        from dataflow.stage import clear_success, read_stage_input, write_stage

        ecfg = section(cfg, STAGE)
        t0 = time.time()
        clear_success(args.output)
        df, resolved = read_stage_input(spark, args.input)
        stages = args.stages if args.stages is not None else sibling_stage_dirs(args.input, args.output)
        m = evaluate(spark, df, ecfg, args.output, stages, config_hash=conf_hash(ecfg))
        extra = {"sampled": m["sample"]["docs"], "strata": m["sampling"]["strata"], "near_dups": m["near_dups"],
                 "report": m["report"]["html"], "review_sheet": m["sheet"]["csv"]}
        result = run(df, ecfg)
        result.stats = extra
        stats = write_stage(result, args.output, stage=STAGE, input_count=m["output"]["docs"], input_paths=resolved, cfg=ecfg,
                            t0=t0, partitions=args.partitions)
        print(f"[evaluate] sample of {m['sample']['docs']} docs in {m['sampling']['strata']} strata; "
              f"review sheet {m['sheet']['csv']}; report {m['report']['html']}", flush=True)
        return stats

    run_job(STAGE, args, body)
    return 0


if __name__ == "__main__":
    main_guard(lambda argv: sys.exit(main(argv)))
