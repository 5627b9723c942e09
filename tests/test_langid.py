"""Language-ID model training (jobs/train_langid.py) on the fixture corpus, and prediction behaviour."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflow.preprocess.langid import load_model, predict
from jobs.train_langid import clean, main as train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lid") / "lid.bin"
    report = train(["--corpus", str(corpus_dir), "--output", str(out), "--set", "preprocess.langid_train.epoch=10"])
    return out, report


def test_training_covers_every_corpus_language_with_pipeline_codes(trained, corpus_docs):
    out, report = trained
    assert json.loads(Path(str(out) + ".json").read_text()) == report
    corpus_langs = {("zh" if d["lang"].startswith("zh") else d["lang"]) for d in corpus_docs}
    assert set(report["labels"]) == corpus_langs >= {"zh", "en", "de", "fr", "ja"}
    acc = report["holdout_accuracy"]
    # held-out samples are single paragraphs and lines, so this is short-text accuracy
    assert acc["zh"] >= 0.95 and acc["en"] >= 0.95 and min(acc.values()) >= 0.7, acc


def test_short_real_lines_are_identified(trained, corpus_docs):
    out, _ = trained
    model = load_model(str(out))
    poem = next(d for d in corpus_docs if d["source"] == "fortunes-zh")["text"]
    line = next(ln for ln in poem.split("\n") if len(ln.strip()) >= 10)
    assert predict(model, line)[0] == "zh"
    devil = next(d for d in corpus_docs if d["source"] == "dict-devil")["text"]
    assert predict(model, " ".join(devil.split()[:12]))[0] == "en"
    assert predict(model, "  \n ") == ("und", 0.0)


def test_training_is_reproducible(corpus_dir, tmp_path):
    """`make models` runs the job as a fresh process; two runs give the same model file. (In one process,
    fastText training after an earlier, different training is not bit-identical, hence subprocesses.)"""
    import subprocess
    import sys

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    for p in (a, b):
        subprocess.run([sys.executable, "-m", "jobs.train_langid", "--corpus", str(corpus_dir), "--output", str(p),
                        "--set", "preprocess.langid_train.epoch=2"], cwd=ROOT, check=True, capture_output=True)
    assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0


def test_clean_drops_lines_shared_across_languages_and_non_cjk_zh(corpus_docs):
    fr = next(d for d in corpus_docs if d["lang"] == "fr" and d["source"] == "debian-reference")
    en = next(d for d in corpus_docs if d["id"] == fr["id"].replace("fr/", "en/"))
    shared = next(ln.strip() for ln in fr["text"].split("\n")
                  if len(ln.strip()) > 20 and ln.strip() in en["text"])
    zh = next(d for d in corpus_docs if d["lang"] == "zh-cn")
    latin_in_zh = next(ln.strip() for ln in zh["text"].split("\n") if len(ln.strip()) > 5 and ln.strip().isascii())
    han_in_zh = next(ln.strip() for ln in zh["text"].split("\n") if "系统" in ln)
    pairs = [("x", "fr", shared), ("y", "en", shared), ("z", "zh", latin_in_zh), ("w", "zh", han_in_zh)]
    assert clean(pairs, {"zh", "ja"}) == [("zh", han_in_zh)]


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="docs.jsonl"):
        train(["--corpus", str(tmp_path / "nowhere"), "--output", str(tmp_path / "m.bin")])
