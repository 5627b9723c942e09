"""Pack one tokenized dataset into rows of exactly seq_len tokens (the trainer's shards and manifest.json).

    python -m jobs.pack --input IN --output OUT --mode pretrain|supervised [--tokenizer MODEL] [--stage N]

`--help` lists the inputs, outputs and options; the stage itself is `STAGE` in dataflow.trainset.pack.
"""
from dataflow.pipeline.job import cli, run
from dataflow.trainset.pack import STAGE


def main(argv=None):
    return run(STAGE, argv, prog="jobs.pack")


if __name__ == "__main__":
    cli(STAGE, prog="jobs.pack")
