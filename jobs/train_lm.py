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
import json
import sys
import time
from pathlib import Path


from dataflow.cli import main_guard
from dataflow.config import DEFAULT_CONF, load_conf, section


def main(argv=None) -> dict:
    from dataflow.lm.train import corpus_texts, train_language, wiki_texts

    ap = argparse.ArgumentParser(prog="python -m jobs.train_lm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="corpus directory holding docs.jsonl (fields id, lang, label, text)")
    ap.add_argument("--output", required=True, help="model directory, e.g. build/models/lm (the score.model_dir default)")
    ap.add_argument("--langs", nargs="+", default=None, help="languages to train (default: score.langs)")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (section score, score.train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set score.train.wiki.en=/data/enwiki.txt")
    a = ap.parse_args(argv)
    scfg = section(load_conf(a.conf, a.overrides), "score")
    tcfg = scfg["train"]
    out = Path(a.output)
    docs = Path(a.corpus) / "docs.jsonl"
    report = {"corpus": str(a.corpus), "normalize": scfg.get("normalize"), "langs": {}}
    t0 = time.time()
    for lang in a.langs or scfg["langs"]:
        wiki = (tcfg.get("wiki") or {}).get(lang)
        counts: dict = {}
        if wiki:
            if not Path(wiki).exists():
                raise FileNotFoundError(f"score.train.wiki.{lang} = {wiki} does not exist")
            texts, source = wiki_texts(Path(wiki)), f"wiki:{wiki}"
        else:
            if not docs.exists():
                raise FileNotFoundError(f"{docs} does not exist (run `make data`)")
            texts = corpus_texts(docs, lang, tcfg["labels"], float(tcfg["heldout_fraction"]),
                                 int(tcfg["seed"]), counts)
            source = f"corpus:{docs} labels={list(tcfg['labels'])}"
        print(f"[train_lm] {lang}: training on {source}", flush=True)
        info = train_language(lang, texts, out, scfg, log=lambda m: print(f"[train_lm] {lang}: {m}", flush=True))
        info.update(source=source, **counts)
        if not wiki:
            info.update(heldout_fraction=float(tcfg["heldout_fraction"]), seed=int(tcfg["seed"]))
        report["langs"][lang] = info
        print(f"[train_lm] {lang}: {info['lines']} lines, {info['pieces']} pieces, vocab {info['sp_vocab']}, "
              f"ngrams {info['ngrams']}, discount_fallback={info['discount_fallback']}, {info['train_s']} s",
              flush=True)
    report["wall_s"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"[train_lm] wrote {out}/report.json", flush=True)
    return report


if __name__ == "__main__":
    main_guard(main)
