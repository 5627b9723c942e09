"""Pack one tokenized dataset into rows of exactly seq_len tokens (the trainer's shards and manifest.json).

    python -m jobs.pack --input IN --output OUT --mode pretrain|supervised [--tokenizer MODEL] [--stage N]

`--help` lists the inputs, outputs and options; the stage itself is `STAGE` in dataflow.trainset.pack.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline.job import run
from dataflow.trainset.pack import STAGE


def main(argv=None):
    stats = run(STAGE, argv, prog="jobs.pack")
    print(f"[pack] {stats['extra']['rows']} rows, efficiency {stats['extra']['efficiency']}", flush=True)
    return stats


if __name__ == "__main__":
    main_guard(main)
