"""DE: sample, metrics, review sheet and report; --labels gates a reviewed sheet.

    python -m jobs.evaluate --input IN --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]
    spark-submit jobs/evaluate.py --input IN --output OUT ...

`--help` lists the stage's own options; the stage itself is `STAGE` in dataflow.stages.evaluate.stage.
"""
from dataflow.pipeline.job import cli, run
from dataflow.stages.evaluate.stage import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.evaluate")


if __name__ == "__main__":
    cli(STAGE)
