"""Build the three training stages from tokenized data: per-source sampling and epochs, packing, shards
and manifests (the trainer's input).

    python -m jobs.mix --conf conf/mixer.yaml --output OUT [--input NAME=PATH ...] [--stages 1 2] [--set ...]

`--help` lists every option; the command is `mix` in dataflow.pipeline.commands, the work dataflow.trainset.mix.
"""
from dataflow.core.cli import main_guard
from dataflow.pipeline import commands


def main(argv=None):
    return commands.mix(argv)


if __name__ == "__main__":
    main_guard(main)
