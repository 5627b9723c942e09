"""The whole data factory: DP -> AS -> RF -> CD -> DE (the stage table), by default in one SparkSession.

  python -m jobs.pipeline --input build/corpus/out/fixture --output build/runs/pipeline [--force]
  python -m jobs.pipeline --input s3a://bucket/crawl --output s3a://bucket/run --print-submit

Finished stages are skipped (same section hash, same upstream chain); `--force` reruns everything. Planning and
resume live in dataflow/pipeline/chain.py, the cluster lines in dataflow/pipeline/submit.py (docs/pipeline.md).
"""
from dataflow.pipeline.main import cli, main

__all__ = ["main"]

if __name__ == "__main__":
    cli()
