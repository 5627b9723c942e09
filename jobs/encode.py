"""Tokenize documents and supervised examples into int32 ids with BOS/EOS and loss masks (SentencePiece).

    python -m jobs.encode --input IN [IN ...] --output OUT [--model tokenizer.model] [--set key.path=value ...]

`--help` lists the inputs, outputs and options; the stage itself is `STAGE` in dataflow.trainset.tokenize.
"""
from dataflow.pipeline.job import cli, run
from dataflow.trainset.tokenize import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.encode")


if __name__ == "__main__":
    cli(STAGE, prog="jobs.encode")
