"""Train the reference classifier (`make refclass`, part of `make models`).

    python -m jobs.refclass --corpus build/corpus/out/fixture --output build/models/refclass.bin

`--help` lists every option; the command is `refclass` in dataflow.pipeline.commands, the work
dataflow.models.refclass.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline import commands


def main(argv=None):
    return commands.refclass(argv)


if __name__ == "__main__":
    main_guard(main)
