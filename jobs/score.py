"""AS: KenLM perplexity over SentencePiece pieces and per-language quality buckets.

    python -m jobs.score --input IN --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]
    spark-submit jobs/score.py --input IN --output OUT ...

`--help` lists the stage's own options; the stage itself is `STAGE` in dataflow.stages.score.stage.
"""
from dataflow.pipeline.job import cli, run
from dataflow.stages.score.stage import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.score")


if __name__ == "__main__":
    cli(STAGE)
