"""CD: URL, exact, SimHash, MinHash, book and line de-duplication.

    python -m jobs.dedup --input IN --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]
    spark-submit jobs/dedup.py --input IN --output OUT ...

`--help` lists the stage's own options; the stage itself is `STAGE` in dataflow.stages.dedup.stage.
"""
from dataflow.pipeline.job import cli, run
from dataflow.stages.dedup.stage import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.dedup")


if __name__ == "__main__":
    cli(STAGE)
