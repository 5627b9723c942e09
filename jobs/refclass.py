"""Train the reference classifier (`make refclass`, part of `make models`); the logic is dataflow/models/refclass.py.

    python -m jobs.refclass --corpus build/corpus/out/fixture --output build/models/refclass.bin

Positives and negatives come from `score.ref_train` (docs.jsonl labels/sources of --corpus, JSONL paths).
Writes the fastText model and `<output>.json`: held-out precision/recall of the reference label per chunk and
per document, and the mean held-out score of each class.
"""
from __future__ import annotations

import argparse

from dataflow.core.cli import main_guard
from dataflow.core.config import DEFAULT_CONF, load_conf, section
from dataflow.models.refclass import train


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m jobs.refclass", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="sample corpus directory holding docs.jsonl (fields id, label, source, text)")
    ap.add_argument("--output", required=True, help="model path to write, e.g. build/models/refclass.bin")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (score.ref_train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set score.ref_train.epoch=20")
    a = ap.parse_args(argv)
    report = train(a.corpus, a.output, section(load_conf(a.conf, a.overrides), "score"))
    d = report["heldout"]["documents"]
    print(f"refclass: {report['documents']} documents -> {a.output}; held-out documents precision "
          f"{d['precision']:.3f} recall {d['recall']:.3f}, mean score ref {report['heldout']['mean_score']['ref']} "
          f"other {report['heldout']['mean_score']['other']}")
    return report


if __name__ == "__main__":
    main_guard(main)
