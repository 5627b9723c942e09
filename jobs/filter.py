"""RF job: rule-based filtering (document, then paragraph, then sentence rules; see docs/filter.md).

  python -m jobs.filter --input RUN/20-score --output RUN/30-filter [--conf conf/pipeline.yaml] [--set ...]
  spark-submit jobs/filter.py --input ... --output ...
  python -m jobs.filter --list-rules            # every rule: level, languages, enabled, description

Writes OUT/data (kept, with `rule_flags`), OUT/rejected (+ reason = rule name, detail), OUT/stats.json
(extra.rules: documents/paragraphs/sentences/chars removed per rule) and OUT/examples/<rule>.jsonl.
Disable a rule with --set filter.rules.<group>.<check>.enabled=false.
"""
from __future__ import annotations

import sys
from pathlib import Path


from dataflow.cli import load_job_conf, main_guard, run_document_stage, run_job, stage_argparser
from dataflow.config import section

STAGE = "filter"


def parser():
    ap = stage_argparser("jobs.filter", __doc__)
    for action in ap._actions:  # --list-rules needs neither input nor output
        if action.dest in ("input", "output"):
            action.required = False
    ap.add_argument("--list-rules", action="store_true",
                    help="print every rule (application order, level, languages, enabled in this conf) and exit")
    ap.add_argument("--markdown", action="store_true",
                    help="with --list-rules: a Markdown table with each rule's thresholds (the table in docs/filter.md)")
    return ap


def list_rules(cfg: dict, markdown: bool = False) -> str:
    from dataflow.rules import active_rules, all_rules
    from dataflow.rules.registry import rule_conf

    active = {r.name: r for r in active_rules(cfg)}
    if markdown:
        rows = ["| # | rule | level | languages | description | thresholds (conf) |", "|---:|---|---|---|---|---|"]
        for i, r in enumerate(all_rules(), 1):
            p = {k: v for k, v in rule_conf(cfg["rules"], r.name).items() if k not in ("enabled", "phrases", "words",
                                                                                      "stop_words", "end_chars", "bullets")}
            thr = ", ".join(f"{k}={v}" for k, v in p.items()).replace("|", "\\|") or "-"
            on = "" if r.name in active else " (disabled)"
            rows.append(f"| {i} | `{r.name}`{on} | {r.level} | {','.join(r.langs)} | {r.description} | {thr} |")
        return "\n".join(rows)
    rows = [f"{'#':>3}  {'rule':36} {'level':9} {'langs':7} {'on':3} description"]
    for i, r in enumerate(all_rules(), 1):
        langs = ",".join(active[r.name].langs if r.name in active else r.langs)
        rows.append(f"{i:>3}  {r.name:36} {r.level:9} {langs:7} {'yes' if r.name in active else 'no':3} {r.description}")
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.list_rules:
        print(list_rules(section(load_job_conf(args), STAGE), markdown=args.markdown))
        return 0
    if not args.input or not args.output:
        print("error: --input and --output are required (or --list-rules)", file=sys.stderr)
        return 2

    def body(spark, cfg):
        from dataflow.filter import run, write_examples

        fcfg = section(cfg, STAGE)

        def transform(df):
            result = run(df, fcfg)
            examples = write_examples(result.annotated, args.output, fcfg)
            stats_fn = result.stats
            result.stats = lambda: {**stats_fn(), "examples": examples}
            return result

        return run_document_stage(spark, args, STAGE, fcfg, transform)

    run_job(STAGE, args, body)
    return 0


if __name__ == "__main__":
    main_guard(main)
