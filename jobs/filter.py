"""RF job: rule-based filtering (document, then paragraph, then sentence rules; see docs/filter.md).

  python -m jobs.filter --input RUN/20-score --output RUN/30-filter [--conf conf/pipeline.yaml] [--set ...]
  spark-submit jobs/filter.py --input ... --output ...
  python -m jobs.filter --list-rules [--markdown]   # every rule: level, languages, enabled, description

Writes OUT/data (kept, with `rule_flags`), OUT/rejected (+ reason = rule name, detail), OUT/stats.json
(extra.rules: documents/paragraphs/sentences/chars removed per rule) and OUT/examples/<rule>.jsonl.
Disable a rule with --set filter.rules.<group>.<check>.enabled=false; each source_type gets the rules its
recipe names (--set 'recipes.web.rules=[gopher_quality,c4]').
"""
from __future__ import annotations

from dataflow.core.cli import load_job_conf, main_guard, run_document_stage, run_job, stage_argparser
from dataflow.core.config import section

STAGE = "filter"


def main(argv=None) -> int:
    ap = stage_argparser("jobs.filter", __doc__, input_required=False, output_required=False)
    ap.add_argument("--list-rules", action="store_true",
                    help="print every rule (application order, level, languages, enabled in this conf) and exit")
    ap.add_argument("--markdown", action="store_true",
                    help="with --list-rules: a Markdown table with each rule's thresholds (the table in docs/filter.md)")
    args = ap.parse_args(argv)
    if args.list_rules:
        from dataflow.stages.filter.report import list_rules

        print(list_rules(section(load_job_conf(args), STAGE), markdown=args.markdown))
        return 0
    if not args.input or not args.output:
        ap.error("--input and --output are required (or --list-rules)")

    def body(spark, cfg):
        from dataflow.stages.filter.report import run_with_examples

        fcfg = section(cfg, STAGE)
        return run_document_stage(spark, args, STAGE, fcfg, lambda df, attempt: run_with_examples(df, fcfg, attempt.dir, cfg))

    run_job(STAGE, args, body)
    return 0


if __name__ == "__main__":
    main_guard(main)
