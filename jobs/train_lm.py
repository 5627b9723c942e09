"""Train the AS stage's per-language SentencePiece + 5-gram KenLM pairs (`make models`, lm part).

    python -m jobs.train_lm --corpus build/corpus/out/fixture --output build/models/lm [--langs zh en]

For each language of `score.langs` (or --langs): the training text is `score.train.wiki.<lang>` (a
Wikipedia dump: plain text, one paragraph per line, or JSONL with "text"; .gz/.zst fine) when set, else the
corpus' docs.jsonl records with label in `score.train.labels`, minus a seeded held-out share
(`score.train.heldout_fraction`). Text is normalised as cc_net does (lower case, accents, digits -> 0,
punctuation), encoded with a freshly trained SentencePiece model, and fitted with `lmplz -o 5` then
`build_binary`. `lmplz --discount_fallback` is used only when lmplz asks for it, and the report says so.

Writes OUTPUT/<lang>.sp.model, OUTPUT/<lang>.arpa.bin and OUTPUT/report.json. Needs KenLM's tools
(`make kenlm-tools`; found through $KENLM_BIN, score.train.kenlm_bin or PATH).
"""
from __future__ import annotations

import argparse

from dataflow.core.cli import main_guard
from dataflow.core.config import DEFAULT_CONF, load_conf, section


def main(argv=None) -> dict:
    from dataflow.models.lm.train import train_all

    ap = argparse.ArgumentParser(prog="python -m jobs.train_lm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="corpus directory holding docs.jsonl (fields id, lang, label, text)")
    ap.add_argument("--output", required=True, help="model directory, e.g. build/models/lm (the score.model_dir default)")
    ap.add_argument("--langs", nargs="+", default=None, help="languages to train (default: score.langs)")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (section score, score.train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set score.train.wiki.en=/data/enwiki.txt")
    a = ap.parse_args(argv)
    return train_all(a.corpus, a.output, section(load_conf(a.conf, a.overrides), "score"), a.langs)


if __name__ == "__main__":
    main_guard(main)
