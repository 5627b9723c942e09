"""Expand a SentencePiece model with the most frequent Chinese characters it lacks (Ziya2: 7,400).

    python -m jobs.expand_vocab --base MODEL --input IN [IN ...] --output OUT [--lang zh]

`--help` lists every option; the command is `expand_vocab` in dataflow.pipeline.commands, the work
dataflow.models.tokenizer.expand.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline import commands


def main(argv=None):
    return commands.expand_vocab(argv)


if __name__ == "__main__":
    main_guard(main)
