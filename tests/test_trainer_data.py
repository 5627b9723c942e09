"""Packed-shard loader and collate: labels and positions at document boundaries, the seeded order, rank slicing,
on shards packed (in the mixer's exact format) from real fixture text."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from trainer.data import IGNORE, StageLoader, collate, read_mix, stage_order
from dataflow.trainset.demo import build

SEQ = 512  # long enough for several Q&A examples (~200 tokens each) to share a row


@pytest.fixture(scope="module")
def mix(corpus_dir, tmp_path_factory):
    return build(corpus_dir / "docs.jsonl", tmp_path_factory.mktemp("mix"), seq_len=SEQ, vocab_size=4000,
                 rows_per_stage=24, rows_per_shard=10)


def test_manifests_follow_the_shard_contract(mix):
    stages = read_mix(mix)
    assert [s.stage for s in stages] == [1, 2, 3]
    for s in stages:
        assert s.rows == 24 and len(s.shards) == 3 and s.seq_len == SEQ
        t = pq.read_table(s.shards[0][0])
        assert {"input_ids", "doc_lens", "source", "loss_mask", "num_pad"} <= set(t.column_names)
        for ids, lens, pad in zip(t["input_ids"].to_pylist(), t["doc_lens"].to_pylist(), t["num_pad"].to_pylist()):
            assert len(ids) == SEQ and sum(lens) == SEQ
            if pad:
                assert lens[-1] == pad


def test_collate_labels_and_positions_at_boundaries(mix):
    stage = read_mix(mix)[1]  # supervised Q&A + prose: has loss masks and padding
    sp = spm.SentencePieceProcessor(model_file=stage.tokenizer["path"])
    t = [r for path, _ in stage.shards for r in pq.read_table(path).to_pylist()]
    row = next(r for r in t if r["num_pad"] and r["loss_mask"] is not None and len(r["doc_lens"]) >= 3)
    b = collate([row], SEQ)
    ids, labels, pos = row["input_ids"], b["labels"][0].tolist(), b["position_ids"][0].tolist()
    starts = np.cumsum([0] + row["doc_lens"][:-1])
    for s, n in zip(starts, row["doc_lens"]):
        assert pos[s:s + n] == list(range(n))          # RoPE positions restart in every document
        assert labels[s + n - 1] == IGNORE            # never predict the next document's first token
    first = row["doc_lens"][0]
    # inside the first document, a token whose target is in the answer predicts exactly that token
    mask = row["loss_mask"]
    answer_t = [t for t in range(first - 1) if mask[t + 1] == 1]
    prompt_t = [t for t in range(first - 1) if mask[t + 1] == 0]
    assert answer_t and prompt_t
    assert all(labels[t] == ids[t + 1] for t in answer_t)
    assert all(labels[t] == IGNORE for t in prompt_t)  # prompt tokens are not trained on
    assert "Solution" in sp.decode(ids[:first]) or '"""' in sp.decode(ids[:first])
    assert all(l == IGNORE for l in labels[SEQ - row["num_pad"] - 1:])  # nothing predicts or is padding
    assert b["cu_seqlens"].tolist() == list(np.cumsum([0] + row["doc_lens"]))
    assert b["max_seqlen"] == max(row["doc_lens"])


def test_collate_flattens_cu_seqlens_across_the_batch(mix):
    stage = read_mix(mix)[0]
    rows = pq.read_table(stage.shards[0][0]).to_pylist()[:3]
    b = collate(rows, SEQ)
    expect = [0]
    for r_i, r in enumerate(rows):
        expect += list(r_i * SEQ + np.cumsum(r["doc_lens"]))
    assert b["cu_seqlens"].tolist() == expect
    assert b["input_ids"].shape == (3, SEQ)


def test_order_is_a_seeded_permutation_and_ranks_partition_it(mix):
    stage = read_mix(mix)[2]
    o1, o2 = stage_order(stage, 5), stage_order(stage, 5)
    assert (o1 == o2).all() and sorted(o1.tolist()) == list(range(stage.rows))
    assert not (stage_order(stage, 6) == o1).all()
    assert len(stage_order(stage, 5, epochs=2.5)) == 60
    world = 2
    loaders = [StageLoader(stage, 5, 2, rank=r, world_size=world) for r in range(world)]
    single = StageLoader(stage, 5, 4)
    seen = []
    for consumed in range(0, 24 - 3, 4):
        per_rank = [l.batch(consumed)["input_ids"] for l in loaders]
        together = single.batch(consumed)["input_ids"]
        assert (np.concatenate(per_rank) == together.numpy()).all()
        seen += [tuple(x) for x in together.tolist()]
    assert len(set(seen)) == len(seen)  # no sample twice within an epoch


def test_loader_reads_rows_exactly(mix):
    stage = read_mix(mix)[0]
    loader = StageLoader(stage, 9, 1)
    table = [r for p, _ in stage.shards for r in pq.read_table(p).to_pylist()]
    for k in range(5):
        idx = int(loader.order[k])
        assert loader.batch(k)["input_ids"][0].tolist() == table[idx]["input_ids"]
