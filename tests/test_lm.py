"""LM tooling: cc_net normalisation, the held-out split, lmplz's discount fallback, the trained models.
Real corpus text throughout; the trained models come from `make models` (jobs.train_lm)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dataflow.pipeline.conf import load_conf
from dataflow.models.lm import build_tools
from dataflow.models.lm.normalize import normalize_line
from dataflow.models.lm.train import (corpus_texts, encode_pieces, is_heldout, paragraph_lines, pipeline_lang,
                               run_lmplz, train_sentencepiece, write_normalized)

ROOT = Path(__file__).resolve().parent.parent
SCFG = load_conf()["score"]
NORM = dict(accent=True, case=True, numbers=True, punct=True)


def doc(corpus_docs, doc_id):
    return next(d for d in corpus_docs if d["id"] == doc_id)


def line_of(d, needle):
    return next(l for l in d["text"].split("\n") if needle in l)


def test_normalize_matches_cc_net_rules_on_real_lines(corpus_docs):
    fr = doc(corpus_docs, "debian-reference:fr/ch03")
    # accents stripped, lower case, digits -> 0, leading space stripped, ’ -> '
    assert normalize_line(line_of(fr, "3.2.3. Initialisation")) == "0.0.0. initialisation de l'interface reseau"
    assert normalize_line(line_of(fr, "3ème étape")).startswith("decrire dans ce document cette 0eme etape")
    zh = doc(corpus_docs, "debian-reference:zh-cn/ch03")
    line = line_of(zh, "initramfs（初始 RAM")
    out = normalize_line(line)
    assert "initramfs(初始 ram 文件系统)映像." in out          # full-width brackets and 。 mapped
    assert "当前的 0.x linux 内核" in out
    assert normalize_line(line, case=False, numbers=False, punct=False) == line.strip()
    # control characters go, blank lines vanish
    assert normalize_line("\x0c" + line_of(fr, "3.2.3.")) == "0.0.0. initialisation de l'interface reseau"
    assert list(paragraph_lines("\n \n\t\n", NORM)) == []


def test_pipeline_lang_maps_chinese_variants():
    assert [pipeline_lang(c) for c in ("zh-cn", "zh-tw", "zh-hans", "zh-hant", "en", "ja", None)] == \
        ["zh", "zh", "zh", "zh", "en", "ja", None]


def test_heldout_split_is_seeded_and_near_the_fraction(corpus_docs):
    ids = [d["id"] for d in corpus_docs]
    a = [is_heldout(i, 0.2, 1234) for i in ids]
    assert a == [is_heldout(i, 0.2, 1234) for i in ids]
    assert a != [is_heldout(i, 0.2, 99) for i in ids]
    assert 0.15 < sum(a) / len(a) < 0.25
    assert not any(is_heldout(i, 0.0, 1234) for i in ids)


def test_corpus_texts_excludes_heldout_and_other_labels(corpus_dir, corpus_docs):
    counts: dict = {}
    texts = list(corpus_texts(corpus_dir / "docs.jsonl", "en", ["ref"], 0.2, 1234, counts))
    en_ref = [d for d in corpus_docs if d["lang"] == "en" and d["label"] == "ref"]
    held = [d for d in en_ref if is_heldout(d["id"], 0.2, 1234)]
    assert counts == {"train_docs": len(en_ref) - len(held), "heldout_docs": len(held)}
    assert held and not any(h["text"] in texts for h in held)
    lowq = [d for d in corpus_docs if d["lang"] == "en" and d["label"] == "lowq"]
    assert not any(d["text"] in texts for d in lowq)


def test_lmplz_falls_back_only_when_asked(tmp_path, corpus_docs):
    """Three Tang poems are far too little for Kneser-Ney discounts: lmplz refuses and asks for
    --discount_fallback, which we then use; the fixture's English reference prose needs no fallback."""
    tcfg = {**SCFG["train"], "sp_vocab_size": 200}
    poems = [d["text"] for d in corpus_docs if d["source"] == "fortunes-zh"][:3]
    text = tmp_path / "zh.txt"
    assert write_normalized(poems, text, NORM) > 5
    sp = train_sentencepiece(text, tmp_path / "zh", tcfg, "zh")
    pieces = tmp_path / "zh.pieces"
    assert encode_pieces(sp, text, pieces) > 0
    assert run_lmplz(pieces, tmp_path / "zh.arpa", tcfg, tmp_path, log=lambda m: None) is True
    head = (tmp_path / "zh.arpa").read_text(encoding="utf-8")[:400]
    assert "ngram 5=" in head

    report = json.loads((ROOT / "build/models/lm/report.json").read_text())
    assert report["langs"]["en"]["discount_fallback"] is False
    assert report["langs"]["en"]["order"] == 5


def test_trained_models_load_and_cover_their_language(models_dir, corpus_docs):
    import kenlm
    import sentencepiece as spm

    lm_dir = models_dir / "lm"
    report = json.loads((lm_dir / "report.json").read_text())
    for lang, needle_src in (("en", "dict-devil"), ("zh", "fortunes-zh")):
        info = report["langs"][lang]
        assert info["heldout_docs"] > 0 and info["train_docs"] > info["heldout_docs"]
        assert set(info["ngrams"]) == {"1", "2", "3", "4", "5"}
        sp = spm.SentencePieceProcessor(model_file=str(lm_dir / f"{lang}.sp.model"))
        lm = kenlm.Model(str(lm_dir / f"{lang}.arpa.bin"))
        assert lm.order == 5
        d = next(d for d in corpus_docs if d["source"] == needle_src)
        line = next(paragraph_lines(d["text"], NORM))
        ids = sp.encode(line)
        assert sp.unk_id() not in ids  # trained on this script: no unknown pieces on its own text


def test_build_tools_is_cached(tmp_path):
    dest = ROOT / "build/tools/kenlm"
    assert build_tools.tools_ready(dest), "run `make kenlm-tools`"
    before = {t: os.stat(dest / "bin" / t).st_mtime_ns for t in build_tools.TOOLS}
    assert build_tools.main(["--dest", str(dest)]) == 0
    assert before == {t: os.stat(dest / "bin" / t).st_mtime_ns for t in build_tools.TOOLS}
    assert not build_tools.tools_ready(tmp_path)


def test_train_lm_job_from_a_wiki_dump_is_reproducible(tmp_path, corpus_dir, corpus_docs):
    """`score.train.wiki.<lang>` (JSONL with "text", gzipped) replaces the corpus; two runs give
    byte-identical models (seeded SentencePiece, deterministic lmplz)."""
    import gzip

    from jobs import train_lm

    dump = tmp_path / "zhwiki.jsonl.gz"
    with gzip.open(dump, "wt", encoding="utf-8") as f:
        for d in corpus_docs:
            if d["source"] == "fortunes-zh":
                f.write(json.dumps({"title": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
    outs = []
    out = tmp_path / "lm"
    for _ in range(2):
        report = train_lm.main(["--corpus", str(corpus_dir), "--output", str(out), "--langs", "zh",
                                "--set", f"score.train.wiki.zh={dump}", "--set", "score.train.sp_vocab_size={zh: 3500}"])
        info = report["langs"]["zh"]
        assert info["source"] == f"wiki:{dump}" and "heldout_docs" not in info
        assert info["sp_vocab"] <= 3500 and info["ngrams"]["1"] > 100
        assert json.loads((out / "report.json").read_text())["langs"]["zh"]["lines"] == info["lines"] > 1000
        outs.append([(out / f).read_bytes() for f in ("zh.sp.model", "zh.arpa.bin")])
    assert outs[0] == outs[1]
