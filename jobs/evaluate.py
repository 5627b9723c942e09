"""DE job: evaluate the pipeline's output (sample, metrics, review sheet, report) or gate reviewer labels.

  python -m jobs.evaluate --input RUN/40-dedup --output RUN/50-evaluate [--conf conf/pipeline.yaml]
  python -m jobs.evaluate --output RUN/50-evaluate --labels reviewed.csv     # the gate; exit 1 on FAIL
"""
from __future__ import annotations

import sys

from dataflow.core.cli import load_job_conf, main_guard, run_document_stage, run_job, stage_argparser
from dataflow.core.config import section

STAGE = "evaluate"


def main(argv=None) -> int:
    ap = stage_argparser("jobs.evaluate", __doc__, input_required=False)
    ap.add_argument("--stages", nargs="*", default=None, metavar="DIR",
                    help="stage output directories whose stats.json make the funnel, in pipeline order "
                         "(default: the input's sibling directories that hold a stats.json, by name)")
    ap.add_argument("--labels", metavar="SHEET",
                    help="a reviewed review.csv / review.jsonl: compute the unqualified rate and its Clopper-Pearson "
                         "bound, write OUT/gate.json, re-render the report; exit 1 if the gate fails")
    args = ap.parse_args(argv)
    if args.labels:
        from dataflow.stages.evaluate import gate

        decision = gate(args.output, args.labels, section(load_job_conf(args), STAGE))
        print(decision["message"], flush=True)
        print(f"[evaluate] gate written to {args.output}/gate.json; report {decision['report']['html']}")
        return 0 if decision["passed"] else 1
    if not args.input:
        ap.error("--input is required (or --labels to gate a reviewed sheet)")

    def body(spark, cfg):
        from dataflow.stages.evaluate.stage import transform

        ecfg = section(cfg, STAGE)
        return run_document_stage(spark, args, STAGE, ecfg, transform(spark, ecfg, args.input, args.output, args.stages,
                                                                    section(cfg, "dedup")))

    run_job(STAGE, args, body)
    return 0


if __name__ == "__main__":
    main_guard(lambda argv: sys.exit(main(argv)))
