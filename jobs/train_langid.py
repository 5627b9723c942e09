"""Train the fastText language-ID model from the corpus's labelled text (`make models`, langid part).

    python -m jobs.train_langid --corpus build/corpus/out/fixture --output build/models/langid.bin

Samples are paragraphs and single lines (so short text is identified too), normalized exactly as the DP
stage normalizes, labelled with the pipeline code (zh-cn/zh-tw/zh-hans -> zh). A seeded share is held out;
per-language holdout accuracy is printed and written next to the model as `<output>.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path


from dataflow.cli import main_guard
from dataflow.config import DEFAULT_CONF, load_conf, section
from dataflow.preprocess.langid import LABEL_PREFIX
from dataflow.preprocess.normalize import normalize


def samples(docs, lang_map: dict, min_chars: int, form: str):
    """(label, text) pairs: each paragraph, and each line of multi-line paragraphs."""
    for d in docs:
        lang = d.get("lang")
        text = d.get("text")
        if not lang or not isinstance(text, str):
            continue
        label = lang_map.get(lang, lang)
        for para in normalize(text, form=form).split("\n\n"):
            lines = [ln for ln in para.split("\n") if len(ln) >= min_chars]
            if len(para) >= min_chars:
                yield d.get("id", ""), label, " ".join(para.split())
            if len(lines) > 1:
                for ln in lines:
                    yield d.get("id", ""), label, " ".join(ln.split())


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def clean(pairs, require_cjk: set) -> list[tuple[str, str]]:
    """Drop label noise of translated manuals: a text that occurs under two languages (an untranslated
    passage or a command line) teaches nothing, and a zh/ja sample without a CJK character is not zh/ja."""
    pairs = [(label, text) for _doc, label, text in pairs]
    labels: dict[str, set] = {}
    for label, text in pairs:
        labels.setdefault(text, set()).add(label)
    return [(label, text) for label, text in pairs
            if len(labels[text]) == 1 and (label not in require_cjk or _CJK.search(text))]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m jobs.train_langid", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="corpus directory holding docs.jsonl (fields lang, text)")
    ap.add_argument("--output", required=True, help="model path to write, e.g. build/models/langid.bin")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (preprocess.langid_train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set preprocess.langid_train.epoch=10")
    a = ap.parse_args(argv)
    cfg = section(load_conf(a.conf, a.overrides), "preprocess")
    tc = cfg["langid_train"]
    docs_path = Path(a.corpus) / "docs.jsonl"
    if not docs_path.exists():
        raise FileNotFoundError(f"{docs_path} does not exist (run `make data`)")
    with open(docs_path, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    rng = random.Random(int(tc["seed"]))
    train, hold = [], []
    pairs = clean(samples(docs, dict(cfg.get("lang_map") or {}), int(tc["min_sample_chars"]),
                          cfg.get("unicode_form") or None), set(tc["require_cjk"]))
    for label, text in pairs:
        (hold if rng.random() < float(tc["holdout_fraction"]) else train).append((label, text))
    if not train or not hold:
        raise ValueError(f"{docs_path}: too few labelled samples ({len(train)} train, {len(hold)} holdout)")
    rng.shuffle(train)

    import fasttext

    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8", dir=out.parent) as tf:
        for label, text in train:
            tf.write(f"{LABEL_PREFIX}{label} {text}\n")
        train_file = tf.name
    try:
        model = fasttext.train_supervised(input=train_file, dim=int(tc["dim"]), minn=int(tc["minn"]),
                                          maxn=int(tc["maxn"]), wordNgrams=int(tc["word_ngrams"]),
                                          epoch=int(tc["epoch"]), lr=float(tc["lr"]), bucket=int(tc["bucket"]),
                                          thread=int(tc["thread"]), seed=int(tc["seed"]), verbose=0)
    finally:
        os.unlink(train_file)
    model.save_model(str(out))

    total, correct = Counter(), Counter()
    for label, text in hold:
        pred = model.predict(text, k=1)[0][0][len(LABEL_PREFIX):]
        total[label] += 1
        correct[label] += pred == label
    report = {"train_samples": dict(Counter(lb for lb, _ in train)), "holdout_samples": dict(total),
              "holdout_accuracy": {lb: round(correct[lb] / total[lb], 4) for lb in sorted(total)},
              "holdout_accuracy_all": round(sum(correct.values()) / sum(total.values()), 4),
              "labels": sorted(lb[len(LABEL_PREFIX):] for lb in model.get_labels()),
              "corpus": str(docs_path), "config": tc}
    Path(str(out) + ".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"langid: {len(train)} train / {len(hold)} holdout samples -> {out}")
    for lb in sorted(total):
        print(f"  {lb:4s} holdout accuracy {correct[lb] / total[lb]:.3f}  ({correct[lb]}/{total[lb]})")
    print(f"  all  holdout accuracy {report['holdout_accuracy_all']:.3f}")
    return report


if __name__ == "__main__":
    main_guard(main)
