"""Train the fastText language-ID model (`make models`, langid part), or `--assess` an existing one.

    python -m jobs.train_langid --catalogues build/corpus/out/langid --corpus build/corpus/out/fixture \
        --output build/models/langid.bin [--markdown FILE]

`--help` lists every option; the command is `train_langid` in dataflow.pipeline.commands, the work
dataflow.models.langid.train.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline import commands


def main(argv=None):
    return commands.train_langid(argv)


if __name__ == "__main__":
    main_guard(main)
