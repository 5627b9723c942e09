"""The three-stage mixer on the sample corpus with the shipped demo mixture (conf/mixer.yaml): the trainer
contract, mixture proportions, whole supervised examples, accounting and byte-identical reruns."""
from __future__ import annotations

import functools
import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from conftest import train_test_tokenizer
from dataflow.trainset import tokenize
from dataflow.pipeline.conf import load_conf
from dataflow.trainset.mix import (check_where, load_mixer, mix, present_values, select, where_absent,
                                   with_source_type)
from dataflow.core.recipes import default_type
from dataflow.core.stage import write_stage

ROOT = Path(__file__).resolve().parent.parent
SEQ_LEN = 512


@pytest.fixture(scope="module")
def setup(spark, corpus_dir, corpus_docs, tmp_path_factory):
    d = tmp_path_factory.mktemp("mix")
    tcfg = dict(load_conf()["tokenizer"], model=str(train_test_tokenizer(corpus_docs, d)))
    write_stage(tokenize.run(spark.read.json(str(corpus_dir / "docs.jsonl")), tcfg), d / "tok", stage="tokenize",
                input_count=len(corpus_docs), cfg=tcfg)
    mcfg = load_mixer(ROOT / "conf" / "mixer.yaml", [f"tokenizer={d / 'tok.model'}",
                                                    f"inputs.pretrain={d / 'tok'}", f"inputs.supervised={d / 'tok'}"])
    pcfg = dict(load_conf()["pack"], rows_per_shard=64, seq_len=SEQ_LEN)
    mix(spark, mcfg, pcfg, d / "out", default_type=default_type(load_conf()))
    tokens = {r["id"]: r for r in spark.read.parquet(str(d / "tok" / "data")).collect()}
    return d, mcfg, pcfg, tokens


def _stage_rows(out: Path, n: int):
    m = json.loads((out / f"stage{n}" / "manifest.json").read_text())
    rows = []
    for s in m["shards"]:
        assert not Path(s["path"]).is_absolute()
        t = pq.read_table(out / f"stage{n}" / s["path"])
        assert t.num_rows == s["rows"]
        rows += t.to_pylist()
    return m, rows


def test_manifests_and_rows_follow_the_trainer_contract(setup):
    d, mcfg, _, _ = setup
    out = d / "out"
    top = json.loads((out / "manifest.json").read_text())
    assert top["stages"] == ["stage1/manifest.json", "stage2/manifest.json", "stage3/manifest.json"]
    for n in (1, 2, 3):
        m, rows = _stage_rows(out, n)
        assert m["stage"] == n and m["seq_len"] == SEQ_LEN and m["seed"] == mcfg["seed"]
        assert set(m["tokenizer"]) >= {"path", "sha256", "vocab_size", "bos_id", "eos_id", "pad_id"}
        assert m["rows"] == len(rows) == sum(s["rows"] for s in m["shards"]) > 0
        pad = 0
        for r in rows:
            assert len(r["input_ids"]) == SEQ_LEN and sum(r["doc_lens"]) == SEQ_LEN
            assert all(0 <= i < m["tokenizer"]["vocab_size"] for i in r["input_ids"])
            if r["num_pad"]:
                assert r["doc_lens"][-1] == r["num_pad"]
                assert r["input_ids"][-r["num_pad"]:] == [m["tokenizer"]["pad_id"]] * r["num_pad"]
            if r["loss_mask"] is not None:
                assert len(r["loss_mask"]) == SEQ_LEN and set(r["loss_mask"]) <= {0, 1}
                assert r["loss_mask"][SEQ_LEN - r["num_pad"]:] == [0] * r["num_pad"]
            else:
                assert n == 1 and r["num_pad"] == 0
            pad += r["num_pad"]
        assert m["padding_tokens"] == pad
        assert abs(m["efficiency"] - (1 - pad / (len(rows) * SEQ_LEN))) < 1e-6
        assert sum(m["tokens"].values()) + pad == len(rows) * SEQ_LEN
        stats = json.loads((out / f"stage{n}" / "stats.json").read_text())
        assert stats["input"] == stats["kept"] + stats["rejected_total"] and (out / f"stage{n}" / "_SUCCESS").exists()


@functools.cache
def _default_type() -> str:
    """The pipeline conf's sources.default_type, read once (load_conf parses and validates the YAML: ~50 ms, which
    per token row made the proportion test take minutes)."""
    return default_type(load_conf())


def _type_of(t) -> str:
    """This test's own typing of a token row: a (prompt, response) example is supervised; the fixture's documents
    carry no source_type, so they are the pipeline conf's default type."""
    return "supervised" if t["type"] is not None else _default_type()


def test_stage1_proportions_match_the_conf(setup):
    d, mcfg, _, tokens = setup
    m, rows = _stage_rows(d / "out", 1)
    target, biggest = {}, {}
    for src in mcfg["stages"][0]["sources"]:
        docs = [t for t in tokens.values() if _type_of(t) in src["where"]["source_type"]]
        target[src["name"]] = src["sample"] * src["epochs"] * sum(t["n_tokens"] for t in docs)
        biggest[src["name"]] = max((t["n_tokens"] for t in docs), default=0)
    assert target["web"] > 0 and all(v == 0 for k, v in target.items() if k != "web")   # the fixture is all web
    total_t, total_m = sum(target.values()), sum(m["tokens"].values())
    for name, t in target.items():
        got = m["tokens"].get(name, 0)
        assert abs(got / total_m - t / total_t) <= 0.01, name
        assert abs(got - t) <= biggest[name] / 2 + 1       # the cut is exact to half a document
    # no supervised example reaches the unsupervised stage (selected by source_type, not by source names)
    placed = {i.split("#e")[0] for r in rows for i in r["doc_ids"] if i}
    assert placed <= set(tokens) and not any(tokens[i]["type"] is not None for i in placed)


def test_where_selects_on_source_type(spark, setup):
    """`select` on source_type over the tokenized fixture: supervised = exactly the encoded examples, the rest is
    the default type; a frame written before the column existed gets the same types; a misspelt type fails."""
    d, mcfg, _, tokens = setup
    raw = spark.read.parquet(str(d / "tok" / "data"))
    web = default_type(load_conf())
    for frame in (raw, raw.drop("source_type")):
        typed = with_source_type(frame, web)
        sup = {r["id"] for r in select(typed, {"source_type": ["supervised"]}).select("id").collect()}
        assert sup == {i for i, t in tokens.items() if t["type"] is not None} and len(sup) == 284
        rest = {r["id"] for r in select(typed, {"source_type": web}).select("id").collect()}
        assert rest == set(tokens) - sup
        both = select(typed, {"source_type": ["supervised"], "type": ["math"]}).count()
        assert both == sum(1 for t in tokens.values() if t["type"] == "math") == 120
    bad = {"inputs": {"pretrain": "p"},
           "stages": [{"stage": 1, "sources": [{"name": "w", "input": "pretrain", "where": {"source_type": ["wikipedia"]}}]}]}
    with pytest.raises(ValueError, match=r"mixer stage 1 source w: where.source_type \['wikipedia'\] is not one of"):
        check_where(bad)


def test_where_that_can_never_match_fails_at_load(tmp_path):
    """A closed vocabulary (source types), a column a token row does not have, an input nobody named: one line at
    load, before any data is read."""
    def stage(where, inp="pretrain"):
        return {"inputs": {"pretrain": "p"}, "stages": [{"stage": 1, "sources": [{"name": "x", "input": inp, "where": where}]}]}

    with pytest.raises(ValueError, match=r"where.lang is not a column a source selects on"):
        check_where(stage({"lang": ["en"]}))
    with pytest.raises(ValueError, match=r"input 'pretrian' is not one of the named inputs \['pretrain'\]"):
        check_where(stage({"source_type": ["web"]}, "pretrian"))
    check_where(stage({"source_type": ["web", None], "type": ["anything"]}))     # open values: checked on the data
    yaml = (ROOT / "conf" / "mixer.yaml").read_text().replace("where: {source_type: [code]}", "where: {source_type: [kode]}")
    assert "[kode]" in yaml
    (tmp_path / "mixer.yaml").write_text(yaml.replace("pipeline_conf: conf/pipeline.yaml",
                                                      f"pipeline_conf: {ROOT / 'conf' / 'pipeline.yaml'}"))
    with pytest.raises(ValueError, match=r"mixer stage 1 source code: where.source_type \['kode'\]"):
        load_mixer(tmp_path / "mixer.yaml")


def test_a_typo_in_an_open_vocabulary_is_an_error_before_any_stage_is_written(spark, setup, tmp_path):
    """`type: [maths]` (the supervised kind is `math`): no input holds it and nothing configures it, so the mix
    stops naming the value and the types its input has; no stage directory is written."""
    import copy

    d, mcfg, pcfg, tokens = setup
    bad = copy.deepcopy(mcfg)
    bad["stages"][2]["supervised"][0]["where"]["type"] = ["maths"]
    kinds = sorted({t["type"] for t in tokens.values() if t["type"] is not None})
    assert kinds == ["code", "math"]
    with pytest.raises(ValueError, match=rf"mixer stage 3 source math-sft: where.type 'maths' matches no row of input "
                                         rf"supervised, and no input or setting knows it \(a typo\?\); type values "
                                         rf"there: \{kinds}".replace("'", "\'")):
        mix(spark, bad, pcfg, tmp_path / "out", default_type=default_type(load_conf()))
    assert not (tmp_path / "out").exists()
    # a type the pipeline configuration knows is only absent here: a warning, not an error
    warned = []
    frame = with_source_type(spark.read.parquet(str(d / "tok" / "data")), default_type(load_conf()))
    present = {"pretrain": present_values(frame), "supervised": present_values(frame)}
    absent = where_absent(bad, present, known_types=["maths"], warn=warned.append)
    assert absent[(3, "math-sft")] == {"type": ["maths"]}
    assert any("stage 3 source math-sft: where.type 'maths' matches no row" in w for w in warned)


def test_a_valid_value_absent_from_the_input_warns_and_records_zero(spark, setup):
    """The shipped mixture over the all-web fixture: wiki, book, paper, qa and code are valid types this input
    lacks. Each such source selects 0 tokens, its manifest entry names the absent value, and one warning line is
    given per absent value; web records nothing absent."""
    d, mcfg, _, tokens = setup
    types = {_type_of(t) for t in tokens.values()}
    m = json.loads((d / "out" / "stage1" / "manifest.json").read_text())
    entries = {e["name"]: e for e in m["sources"]}
    for src in mcfg["stages"][0]["sources"]:
        want = [v for v in src["where"]["source_type"] if v not in types]
        e = entries[src["name"]]
        assert e["absent"] == ({"source_type": want} if want else {})
        assert (e["selected_tokens"] == 0) == bool(want)
    assert entries["web"]["selected_tokens"] > 0 and len([e for e in entries.values() if e["absent"]]) == 5
    warned = []
    frame = with_source_type(spark.read.parquet(str(d / "tok" / "data")), default_type(load_conf()))
    present = {"pretrain": present_values(frame), "supervised": present_values(frame)}
    absent = where_absent(mcfg, present, stages=[1], warn=warned.append)
    assert len(warned) == 5 == len(absent) and all(k[0] == 1 for k in absent)


def test_stages_2_3_whole_examples_and_one_to_one(setup, corpus_docs):
    d, mcfg, _, tokens = setup
    text = {c["id"]: c["text"] for c in corpus_docs}
    sp = spm.SentencePieceProcessor(model_file=mcfg["tokenizer"])
    for n, typ, name in ((2, "code", "code-sft"), (3, "math", "math-sft")):
        m, rows = _stage_rows(d / "out", n)
        fits = {i for i, t in tokens.items() if t["type"] == typ and t["n_tokens"] <= SEQ_LEN}
        seen = defaultdict(int)
        for r in rows:
            off = 0
            for doc, start, ln, src in zip(r["doc_ids"], r["seg_starts"], r["doc_lens"], r["doc_sources"]):
                if src == name:
                    ex = tokens[doc]
                    assert start == 0 and ln == ex["n_tokens"]
                    # decode the example out of the row and find the whole original problem + solution
                    assert sp.decode(r["input_ids"][off + 1:off + ln - 1]) == text[doc]
                    assert r["loss_mask"][off:off + ln] == ex["loss_mask"]
                    seen[doc] += 1
                off += ln
        assert set(seen) == fits and set(seen.values()) == {1}
        sup = m["tokens"][name]
        unsup = sum(v for k, v in m["tokens"].items() if k != name)
        assert sup == sum(tokens[i]["n_tokens"] for i in fits)
        # the unsupervised pool is every unsupervised type; whole documents are taken in a seeded order and, at the
        # cut, documents longer than the tokens still needed are passed over (mix.take_tokens): the cut is exact to
        # half of the largest pool document that fits the target (the pool holds whole books, which would not)
        pool = [t["n_tokens"] for t in tokens.values() if t["type"] is None]
        want = mcfg["stages"][n - 1]["unsupervised_ratio"] * sup
        assert max(pool) > want                             # a book larger than the whole target is in the pool
        assert abs(unsup - want) <= max(x for x in pool if x <= want) / 2 + 1
        stats = json.loads((d / "out" / f"stage{n}" / "stats.json").read_text())
        too_long = sum(1 for t in tokens.values() if t["type"] == typ and t["n_tokens"] > SEQ_LEN)
        assert stats["rejected"].get("too_long", 0) == too_long
        assert m["packing"]["supervised"]["efficiency"] > 0.9


def test_rerun_is_byte_identical_with_other_partitioning(spark, setup, tmp_path):
    d, mcfg, pcfg, _ = setup
    old = {k: spark.conf.get(k) for k in ("spark.sql.shuffle.partitions", "spark.sql.files.maxPartitionBytes")}
    spark.conf.set("spark.sql.shuffle.partitions", "3")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "65536")
    try:
        mix(spark, mcfg, pcfg, tmp_path / "again", stages=[2], default_type=default_type(load_conf()))
    finally:
        for k, v in old.items():
            spark.conf.set(k, v)
    a = json.loads((d / "out" / "stage2" / "manifest.json").read_text())
    b = json.loads((tmp_path / "again" / "stage2" / "manifest.json").read_text())
    assert a["shards"] == b["shards"] and len(a["shards"]) > 1
    for s in a["shards"]:
        assert (d / "out" / "stage2" / s["path"]).read_bytes() == (tmp_path / "again" / "stage2" / s["path"]).read_bytes()
