"""Train a SentencePiece BPE tokenizer (LLaMA-2 settings) from a seeded sample of pipeline output.

    python -m jobs.train_tokenizer --input IN [IN ...] --output OUT [--set tokenizer.train.vocab_size=8000]

`--help` lists every option; the command is `train_tokenizer` in dataflow.pipeline.commands, the work
dataflow.models.tokenizer.train.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline import commands


def main(argv=None):
    return commands.train_tokenizer(argv)


if __name__ == "__main__":
    main_guard(main)
