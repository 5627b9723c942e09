"""`make demo`: the whole factory on the sample corpus, then tokenizer -> tokenize -> mix -> a few trainer steps.

  python -m jobs.demo --corpus build/corpus/out/fixture --models build/models --output build/runs/demo

The data stages run as one chain in one SparkSession and resume like `make pipeline`; the later steps are
skipped when finished (`--force` redoes them). The sequence lives in dataflow/pipeline/demo.py.
"""
from dataflow.pipeline.demo import cli, main

__all__ = ["main"]

if __name__ == "__main__":
    cli()
