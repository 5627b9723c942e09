"""DP (preprocessing): WARC/WET/JSONL/Parquet -> document records (HTML to text, normalization, language).

    python -m jobs.preprocess --input build/corpus/out/fixture/warc --output build/runs/dp
    spark-submit jobs/preprocess.py --input 's3a://.../*.warc.gz' --output OUT --set preprocess.keep_langs=[zh]

Inputs: files, directories (walked recursively) and globs of `.warc(.gz)`, `.warc.wet(.gz)`,
`.jsonl(.gz|.zst)` and `.parquet`, and the dumps `sources.inputs` names (docs/sources.md). A path that does not exist stops the job (exit 2) naming it.
Malformed records are quarantined in OUT/rejected with reason `malformed:<what>` and the file + offset.
Options live in the `preprocess` section of conf/pipeline.yaml (see docs/preprocess.md).
"""
from __future__ import annotations

import time

from dataflow.core.cli import load_job_conf, main_guard, run_job, stage_argparser
from dataflow.core.config import section

STAGE = "preprocess"


def main(argv=None) -> dict:
    ap = stage_argparser("jobs/preprocess.py", __doc__,
                         input_help="WARC/WET/JSONL/Parquet files, directories (recursive) or globs")
    args = ap.parse_args(argv)
    conf = load_job_conf(args, files=[STAGE])  # configuration mistakes first (before the readers are imported)
    from dataflow.ingest import list_inputs
    from dataflow.core.stage import check_overlap

    check_overlap(args.input, args.output)
    list_inputs(args.input, conf)  # a missing path fails here, before a JVM starts

    def body(spark, cfg):
        from dataflow.stages.preprocess import run_files
        from dataflow.core.stage import Attempt, write_stage

        t0 = time.time()
        pcfg = section(cfg, STAGE)
        attempt = Attempt(args.output).begin()
        result, files = run_files(spark, args.input, pcfg, root=cfg)
        input_count = result.annotated.count()  # one annotated row per raw record; the frame is persisted
        return write_stage(result, args.output, stage=STAGE, input_count=input_count, attempt=attempt,
                           input_paths=[f.path for f in files], cfg=pcfg, t0=t0, partitions=args.partitions,
                           extra_versions=("fastwarc", "resiliparse", "ftfy", "fasttext-numpy2-wheel"))

    return run_job(STAGE, args, body)


if __name__ == "__main__":
    main_guard(main)
