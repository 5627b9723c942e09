"""AS job: perplexity scoring and per-language quality buckets (see docs/score.md).

  python -m jobs.score --input RUN/10-preprocess --output RUN/20-score [--cutoffs cutoffs.json] [--drop low]
  spark-submit --files build/models/lm/zh.sp.model,... jobs/score.py --input ... --output ...

Adds `ppl` (cc_net document perplexity, SentencePiece + 5-gram KenLM), `quality` (high < p30 <= medium <
p60 <= low per language; `unscored` without a model, text or a recipe that scores), `score_note` and
`ref_score` (reference classifier). Cutoffs are computed on this input unless --cutoffs fixes them; --drop
/ score.drop buckets and score.ref_min go to rejected/ (quality:<bucket>, ref_score). Writes OUT/data,
OUT/rejected, OUT/stats.json, OUT/cutoffs.json (reusable with --cutoffs) and OUT/_SUCCESS.
"""
from __future__ import annotations

import json

from dataflow.core.cli import main_guard, run_document_stage, run_job, stage_argparser
from dataflow.core.config import section

STAGE = "score"


def main(argv=None) -> int:
    ap = stage_argparser("jobs.score", __doc__)
    ap.add_argument("--cutoffs", metavar="JSON", default=None,
                    help='fixed cutoffs {"<lang>": {"p30": x, "p60": y}} (e.g. an earlier OUT/cutoffs.json); '
                         "languages not in the file get cutoffs computed on this input; sets score.cutoffs_file")
    ap.add_argument("--drop", nargs="*", metavar="BUCKET", default=None,
                    help="buckets to move to rejected/ (high, medium, low, unscored); sets score.drop")
    args = ap.parse_args(argv)
    if args.drop is not None:
        args.overrides.append(f"score.drop={json.dumps(args.drop)}")
    if args.cutoffs is not None:
        args.overrides.append(f"score.cutoffs_file={json.dumps(args.cutoffs)}")

    def body(spark, cfg):
        from dataflow.models.refclass import model_path
        from dataflow.stages.score.stage import cutoffs_json, read_cutoffs, run

        scfg = section(cfg, STAGE)
        model_path(scfg)    # a required reference model that is missing fails here, before any task
        cutoffs = read_cutoffs(scfg["cutoffs_file"]) if scfg.get("cutoffs_file") else None
        return run_document_stage(spark, args, STAGE, scfg,
                                  lambda df, a: run(df, scfg, cutoffs=cutoffs, conf=cfg, attempt=a),
                                  extra_versions=("kenlm", "sentencepiece", "fasttext"),
                                  side_files=lambda st: {"cutoffs.json": cutoffs_json(st["extra"]["cutoffs"])})

    run_job(STAGE, args, body)
    return 0


if __name__ == "__main__":
    main_guard(main)
