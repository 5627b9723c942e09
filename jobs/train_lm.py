"""Train the AS stage's per-language SentencePiece + 5-gram KenLM pairs (`make models`, lm part).

    python -m jobs.train_lm --corpus build/corpus/out/fixture --output build/models/lm [--langs zh en]

`--help` lists every option; the command is `train_lm` in dataflow.pipeline.commands, the work
dataflow.models.lm.train.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline import commands


def main(argv=None):
    return commands.train_lm(argv)


if __name__ == "__main__":
    main_guard(main)
