"""Train the fastText language-ID model (`make models`, langid part); the logic is dataflow/models/langid/train.py.

    python -m jobs.train_langid --catalogues build/corpus/out/langid --corpus build/corpus/out/fixture \
        --output build/models/langid.bin [--markdown FILE]

Writes the model, `<output>.json` (per-language held-out precision/recall, unknown-language check) and,
with --markdown, the report table for docs/preprocess.md. `--assess MODEL` reports on an existing model
(lid.176.bin / .ftz) on the same held-out split instead of training.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dataflow.core.cli import main_guard
from dataflow.core.config import DEFAULT_CONF, load_conf, section
from dataflow.models.langid.train import assess, markdown, train


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m jobs.train_langid", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="sample corpus directory holding docs.jsonl (fields lang, text)")
    ap.add_argument("--catalogues", help="translation-catalogue set holding samples.jsonl (make data)")
    ap.add_argument("--output", required=True, help="model path to write, e.g. build/models/langid.bin "
                                                     "(with --assess: the JSON report)")
    ap.add_argument("--markdown", help="also write the per-language report table here")
    ap.add_argument("--assess", metavar="MODEL", help="only report on an existing model (e.g. lid.176.ftz): no training")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (preprocess.langid_train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set preprocess.langid_train.epoch=10")
    a = ap.parse_args(argv)
    if not a.corpus and not a.catalogues:
        ap.error("give --catalogues and/or --corpus")
    cfg = section(load_conf(a.conf, a.overrides), "preprocess")
    if a.assess:
        report = assess(a.corpus, a.catalogues, a.assess, cfg)
        Path(a.output).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        report = train(a.corpus, a.catalogues, a.output, cfg)
    if a.markdown:
        Path(a.markdown).write_text(markdown(report), encoding="utf-8")
    if a.assess:
        return report
    worst = min(report["holdout"].items(), key=lambda kv: kv[1]["f1"])
    print(f"langid: {len(report['labels'])} languages, {report['train_samples']} samples -> {a.output}; "
          f"held-out paragraph F1 en {report['holdout']['en']['f1']:.3f}, zh {report['holdout']['zh']['f1']:.3f}, "
          f"lowest {worst[0]} {worst[1]['f1']:.3f}" if {"en", "zh"} <= set(report["holdout"]) else
          f"langid: {len(report['labels'])} languages -> {a.output}")
    return report


if __name__ == "__main__":
    main_guard(main)
