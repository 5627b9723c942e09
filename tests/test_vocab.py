"""Chinese vocabulary expansion: old ids unchanged, each added character one piece, init_map from the base."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import sentencepiece as spm

from dataflow.pipeline.conf import load_conf
from dataflow.models.tokenizer.expand import expand


@pytest.fixture(scope="module")
def base_model(corpus_docs, tmp_path_factory):
    """A small BPE base trained on the sample corpus with low character coverage, so that many Chinese
    characters are byte-fallback sequences, as in LLaMA-2."""
    d = tmp_path_factory.mktemp("base")
    lines = [l for doc in corpus_docs for l in doc["text"].split("\n") if l.strip()]
    (d / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(d / "lines.txt"), model_prefix=str(d / "tokenizer"), vocab_size=3000,
                                   model_type="bpe", character_coverage=0.98, byte_fallback=True, split_digits=True,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   num_threads=1, minloglevel=2)
    return d / "tokenizer.model"


@pytest.fixture(scope="module")
def zh_docs(corpus_docs):
    return [d for d in corpus_docs if d["lang"].startswith("zh")]


@pytest.fixture(scope="module")
def expanded(spark, base_model, zh_docs, tmp_path_factory):
    out = tmp_path_factory.mktemp("zh")
    ecfg = dict(load_conf()["tokenizer"]["expand"], num_chars=400)
    df = spark.createDataFrame([(d["id"], d["text"]) for d in zh_docs], "id string, text string")
    rep = expand(spark, df, base_model, out, ecfg)
    return out, rep


def _cjk(ch):
    return 0x4E00 <= ord(ch) <= 0x9FFF or 0x3400 <= ord(ch) <= 0x4DBF


def test_added_chars_are_the_most_frequent_missing(expanded, base_model, zh_docs):
    out, rep = expanded
    base = spm.SentencePieceProcessor(model_file=str(base_model))
    freq = Counter(ch for d in zh_docs for ch in d["text"] if _cjk(ch))
    missing = sorted((ch for ch in freq if base.piece_to_id(ch) == base.unk_id()), key=lambda c: (-freq[c], ord(c)))
    assert len(missing) > 400           # the base really lacks characters (else the test proves nothing)
    new = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    added = [new.id_to_piece(i) for i in range(base.get_piece_size(), new.get_piece_size())]
    assert added == missing[:400] and rep["added"] == 400


def test_old_ids_kept_new_chars_single_pieces(expanded, base_model, zh_docs):
    out, _ = expanded
    base = spm.SentencePieceProcessor(model_file=str(base_model))
    new = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    n = base.get_piece_size()
    assert new.get_piece_size() == n + 400
    assert all(new.id_to_piece(i) == base.id_to_piece(i) for i in range(n))
    init_map = {int(k): v for k, v in json.loads((out / "init_map.json").read_text()).items()}
    assert sorted(init_map) == list(range(n, n + 400))
    for i in range(n, n + 400):
        ch = new.id_to_piece(i)
        ids = new.encode("。" + ch + "。")          # inside running text, not only alone
        assert i in ids and len(ids) == len(new.encode("。。")) + 1
        old = base.encode(ch)
        old = old[1:] if base.id_to_piece(old[0]) == "▁" else old
        assert init_map[i] == old and all(base.is_byte(j) for j in old)   # byte-fallback pieces in the base
        assert base.decode(init_map[i]) == ch
    text = "".join(d["text"] for d in zh_docs[:50])
    assert new.decode(new.encode(text)) == text                 # round-trips exactly
    assert len(new.encode(text)) < len(base.encode(text))       # and is shorter


def test_spark_tokenize_with_base_then_expanded_model(spark, expanded, base_model, zh_docs):
    """Two different models both named tokenizer.model in one session: each run must use its own."""
    from dataflow.trainset import tokenize

    out, _ = expanded
    docs = zh_docs[:30]
    df = spark.createDataFrame([(d["id"], d["source"], d["text"]) for d in docs], "id string, source string, text string")
    for model in (base_model, out / "tokenizer.model"):
        assert model.name == "tokenizer.model"
        cfg = dict(load_conf()["tokenizer"], model=str(model))
        res = tokenize.run(df, cfg)
        got = {r["id"]: r["input_ids"] for r in res.kept.collect()}
        sp = spm.SentencePieceProcessor(model_file=str(model))
        assert got == {d["id"]: [sp.bos_id()] + sp.encode(d["text"]) + [sp.eos_id()] for d in docs}
