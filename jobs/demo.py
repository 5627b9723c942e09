"""`make demo`: the whole factory on the sample corpus, then tokenizer -> tokenize -> mix -> a few trainer steps.

  python -m jobs.demo --corpus build/corpus/out/fixture --models build/models --output build/runs/demo

Each step is its own job's subprocess; finished steps are skipped on a rerun (`--force` redoes them). The
sequence lives in dataflow/pipeline/demo.py.
"""
from __future__ import annotations

import argparse
import sys

from dataflow.core.config import DEFAULT_CONF
from dataflow.pipeline.demo import run


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jobs.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="build/corpus/out/fixture", help="sample corpus (docs.jsonl, warc/)")
    ap.add_argument("--models", default="build/models", help="models directory (langid.bin, lm/)")
    ap.add_argument("--output", default="build/runs/demo", help="demo run directory")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="configuration override for the data stages (repeatable)")
    ap.add_argument("--train-steps", type=int, default=8,
                    help="trainer steps per training stage (conf/train/tiny.yaml data.steps_per_stage; 0 = skip training)")
    ap.add_argument("--vocab-size", type=int, default=4000,
                    help="SentencePiece vocabulary for the demo tokenizer (the few-MB fixture cannot fill LLaMA's 32k; "
                         "a small vocabulary also keeps the tiny model's embedding small)")
    ap.add_argument("--force", action="store_true", help="redo every step, finished or not")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    return run(a.corpus, a.models, a.output, a.conf, a.overrides, train_steps=a.train_steps,
               vocab_size=a.vocab_size, force=a.force)


if __name__ == "__main__":
    sys.exit(main())
