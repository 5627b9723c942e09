"""RF: rule-based filtering, document -> paragraph -> sentence.

    python -m jobs.filter --input IN --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]
    spark-submit jobs/filter.py --input IN --output OUT ...

`--help` lists the stage's own options; the stage itself is `STAGE` in dataflow.stages.filter.stage.
"""
from dataflow.pipeline.job import cli, run
from dataflow.stages.filter.stage import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.filter")


if __name__ == "__main__":
    cli(STAGE)
