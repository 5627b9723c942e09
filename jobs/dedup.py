"""CD job: content de-duplication (see docs/dedup.md).

  python -m jobs.dedup --input RUN/30-filter --output RUN/40-dedup [--conf conf/pipeline.yaml] [--set ...]
  spark-submit jobs/dedup.py --input ... --output ...

Steps run in this fixed order, each only over the records the earlier ones kept (choose them with
--set 'dedup.steps=[url,exact,simhash,minhash,book,lines]'; a step runs over the records whose
source_type's recipe lists it, recipes.<type>.dedup, and compares only those):
  url      normalized URL, Bloom filter per URL-hash partition, first crawl kept      reason dedup:url
  exact    xxh3-128 of the text without punctuation/symbols/emoji/whitespace          reason dedup:exact
  simhash  64-bit SimHash, Hamming <= dedup.simhash.max_distance, connected components reason dedup:simhash
  minhash  datasketch-compatible MinHash LSH (bands x rows), connected components      reason dedup:minhash
  book     MinHash at Jaccard >= 0.9 over book-length documents                         reason dedup:book
  lines    CCNet line dedup; documents emptied are rejected                            reason dedup:lines

Writes OUT/data (kept; + simhash, lines_removed when those steps ran), OUT/rejected (+ reason, detail,
dup_of = the kept representative's id), OUT/stats.json (extra: per-step counters such as the Bloom
filter's estimated and measured false positives) and OUT/_SUCCESS.
"""
from __future__ import annotations

from dataflow.core.cli import main_guard, run_document_stage, run_job, stage_argparser
from dataflow.core.config import section

STAGE = "dedup"


def main(argv=None) -> int:
    args = stage_argparser("jobs.dedup", __doc__).parse_args(argv)

    def body(spark, cfg):
        from dataflow.stages.dedup import run

        dcfg = section(cfg, STAGE)
        return run_document_stage(spark, args, STAGE, dcfg, lambda df, _attempt: run(df, dcfg, cfg))

    run_job(STAGE, args, body)
    return 0


if __name__ == "__main__":
    main_guard(main)
