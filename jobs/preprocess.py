"""DP: WARC/WET/JSONL/Parquet and source dumps -> document records (HTML to text, normalization, language ID).

    python -m jobs.preprocess --input IN --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]
    spark-submit jobs/preprocess.py --input IN --output OUT ...

`--help` lists the stage's own options; the stage itself is `STAGE` in dataflow.stages.preprocess.stage.
"""
from dataflow.pipeline.job import cli, run
from dataflow.stages.preprocess.stage import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.preprocess")


if __name__ == "__main__":
    cli(STAGE)
