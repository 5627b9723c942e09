"""CD benchmark: scaling of the dedup stage and a MinHash head-to-head with datatrove 0.10, on the same
documents, same machine, same run.

Input: a stride sample of the bench corpus (docs.jsonl; every k-th document, so all sources appear) plus
planted near-duplicates of 3% of the documents longer than 300 characters (realistic edits: full-width
punctuation, emoji, a few words swapped within the document, a header line taken from another document),
written under the work directory, never committed. Measured:
  * our stage (local[2]) with the default steps url, exact, simhash at each size: wall time of the stage
    (transform + write + stats, session already up), docs per core-second, growth per 10x;
  * our MinHash step alone vs datatrove's four MinHash stages (signatures, buckets, clusters, filter;
    2 workers, its defaults 14x8 and 5-grams) on the same Parquet/JSONL documents;
  * recall on the planted set: a planted copy counts as found when it is removed (ours: rejected with
    dup_of = its original or the original's representative; datatrove: removed);
  * precision of our fuzzy rejections: the exact 5-gram Jaccard of (record, dup_of) on a sample.
"""
from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path

from . import BenchContext, run_cmd

SEED = 7
# sized for the 8-minute budget on the shared 2-core machine (see the report for the extrapolation)
SIZES, SIZES_QUICK = (5_000, 50_000), (1_000, 10_000)
PEER_SIZES, PEER_SIZES_QUICK = (5_000,), (1_000,)
WARMUP = 500             # a first small run starts the Python workers and JIT-compiles the plans
PLANT_SHARE = 0.03
LANG = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh"}

PEER = r'''
import json, shutil, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
inp, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
cfg = MinhashConfig()          # 5-grams, 14 buckets x 8 hashes, seed 1 (its defaults)
t0 = time.time()
LocalPipelineExecutor(pipeline=[JsonlReader(inp, id_key="id"), MinhashDedupSignature(f"{work}/sigs", config=cfg)],
                      tasks=2, workers=2, logging_dir=f"{work}/logs1").run()
LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
                      tasks=cfg.num_buckets, workers=2, logging_dir=f"{work}/logs2").run()
LocalPipelineExecutor(pipeline=[MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)],
                      tasks=1, workers=1, logging_dir=f"{work}/logs3").run()
LocalPipelineExecutor(pipeline=[JsonlReader(inp, id_key="id"),
                                MinhashDedupFilter(f"{work}/remove",
                                                   exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
                                JsonlWriter(f"{work}/kept", compression=None)],
                      tasks=2, workers=2, logging_dir=f"{work}/logs4").run()
wall = time.time() - t0
import glob
removed = [json.loads(l)["id"] for f in glob.glob(f"{work}/removed/*.jsonl") for l in open(f)]
json.dump({"wall_s": wall, "removed": removed}, open(f"{work}/result.json", "w"))
'''


def sample_docs(corpus: Path, n: int) -> list[dict]:
    """Every k-th document of docs.jsonl (k = total // n), so every source is represented."""
    path = corpus / "docs.jsonl"
    total = sum(1 for _ in open(path, "rb"))
    k = max(1, total // n)
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % k == 0:
                d = json.loads(line)
                out.append({"id": d["id"], "source": d["source"], "text": d["text"],
                            "lang": LANG.get(d.get("lang"), d.get("lang") or "und")})
                if len(out) == n:
                    break
    return out


def plant(docs: list[dict], share: float, seed: int) -> tuple[list[dict], dict]:
    """Append edited copies of a seeded share of the longer documents; return (docs, copy id -> original)."""
    rng = random.Random(seed)
    cands = [d for d in docs if len(d["text"]) > 300]
    picked = rng.sample(cands, min(len(cands), int(len(docs) * share)))
    truth, extra = {}, []
    for i, d in enumerate(picked):
        t = d["text"]
        kind = i % 4
        if kind == 0:
            t = t.translate(str.maketrans(",.;:!?", "，。；：！？"))
        elif kind == 1:
            t = re.sub(r"([.!?。！？])(\s)", r"\1 👍\2", t, count=5) + " 😀"
        elif kind == 2:
            w = t.split(" ")
            for _ in range(3):
                w[rng.randrange(len(w))] = w[rng.randrange(len(w))]
            t = " ".join(w)
        else:
            other = rng.choice(docs)["text"].strip().split("\n")[0][:200]
            t = other + "\n" + t
        cid = f"planted:{i}:{d['id']}"
        extra.append({**d, "id": cid, "text": t})
        truth[cid] = d["id"]
    return docs + extra, truth


def write_inputs(docs: list[dict], work: Path) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflow.schema import DOC_ARROW_SCHEMA

    from urllib.parse import quote

    rows = [{"id": d["id"], "source": d["source"],
             "url": f"https://{d['source'].replace('/', '.')}.invalid/{quote(d['id'], safe='')}",
             "text": d["text"], "lang": d["lang"], "lang_score": 1.0, "meta": []} for d in docs]
    pq_path = work / "input.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA), pq_path, row_group_size=5000)
    jdir = work / "jsonl"
    jdir.mkdir(exist_ok=True)
    half = (len(docs) + 1) // 2
    for j, part in enumerate((docs[:half], docs[half:])):
        with open(jdir / f"part{j}.jsonl", "w", encoding="utf-8") as f:
            for d in part:
                f.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
    return pq_path, jdir


def ours(spark, pq_path: Path, out: Path, cfg: dict, steps: list[str]):
    from dataflow.dedup import run as dedup_run
    from dataflow.stage import remove_output, write_stage

    c = {**cfg, "steps": steps}
    df = spark.read.parquet(str(pq_path))
    n = df.count()
    remove_output(out)
    t0 = time.time()
    stats = write_stage(dedup_run(df, c), out, stage="dedup", input_count=n, cfg=c, t0=t0)
    wall = time.time() - t0
    rej = {r["id"]: (r["reason"], r["dup_of"]) for r in
           spark.read.parquet(str(out / "rejected")).select("id", "reason", "dup_of").collect()}
    return wall, stats, rej


def precision_sample(rej: dict, texts: dict, langs: dict, reasons: tuple, k: int = 300) -> tuple[float, int]:
    from dataflow.dedup.normalize import shingles

    pairs = sorted((i, d) for i, (r, d) in rej.items() if r in reasons)
    random.Random(SEED).shuffle(pairs)
    ok = 0
    for i, d in pairs[:k]:
        a = set(shingles(texts[i], langs[i], 5, ["zh", "ja", "ko"], {"zh"}))
        b = set(shingles(texts[d], langs[d], 5, ["zh", "ja", "ko"], {"zh"}))
        ok += len(a & b) / max(1, len(a | b)) >= 0.7
    n = min(k, len(pairs))
    return (ok / n if n else float("nan")), n


def run(ctx: BenchContext) -> str:
    from dataflow.config import load_conf
    from dataflow.spark import get_session

    cfg = load_conf()["dedup"]
    sizes = SIZES_QUICK if ctx.quick else SIZES
    peer_sizes = PEER_SIZES_QUICK if ctx.quick else PEER_SIZES
    work = ctx.sub("dedup")
    spark = get_session({"spark": {"master": "local[2]", "driver_memory": "4g", "log_level": "ERROR",
                                   "conf": {"spark.sql.shuffle.partitions": 8, "spark.ui.enabled": "false",
                                            "spark.sql.files.maxPartitionBytes": 16 * 2**20}}}, "bench-dedup")
    cores = int(spark.sparkContext.defaultParallelism)
    base = sample_docs(ctx.corpus, max(sizes))
    rows, peer_rows = [], []
    walls = {}
    warm, _ = plant(base[:WARMUP], PLANT_SHARE, SEED)
    (work / "warmup").mkdir(exist_ok=True)
    ours(spark, write_inputs(warm, work / "warmup")[0], work / "warmup" / "out", cfg, ["url", "exact", "simhash", "minhash"])
    for n in sizes:
        docs, truth = plant(base[:n], PLANT_SHARE, SEED)
        wdir = work / f"n{n}"
        wdir.mkdir(exist_ok=True)
        pq_path, jdir = write_inputs(docs, wdir)
        texts = {d["id"]: d["text"] for d in docs}
        langs = {d["id"]: d["lang"] for d in docs}
        wall, stats, rej = ours(spark, pq_path, wdir / "ours_default", cfg, ["url", "exact", "simhash"])
        walls[n] = wall
        found = sum(1 for c in truth if c in rej)
        prec, k = precision_sample(rej, texts, langs, ("dedup:simhash",))
        rows.append((len(docs), wall, stats["rejected"], found / len(truth), prec, k))
        if n in peer_sizes:
            mw, mstats, mrej = ours(spark, pq_path, wdir / "ours_minhash", cfg, ["minhash"])
            run_cmd([str(ctx.peer_python), "-c", PEER, str(jdir), str(wdir / "peer")], timeout=900)
            peer = json.loads((wdir / "peer" / "result.json").read_text())
            removed = set(peer["removed"])
            mprec, mk = precision_sample(mrej, texts, langs, ("dedup:minhash",))
            peer_rows.append((len(docs), mw, sum(1 for c in truth if c in mrej) / len(truth), len(mrej), mprec, mk,
                              peer["wall_s"], sum(1 for c in truth if c in removed) / len(truth), len(removed)))
    spark.stop()
    load = os.getloadavg()

    lines = ["## CD: content de-duplication", "",
             f"Input: a stride sample of the bench corpus ({', '.join(f'{n:,}' for n in sizes)} documents, all "
             f"sources) plus {PLANT_SHARE:.0%} planted edited copies (full-width punctuation, emoji, 3 swapped "
             "words, a foreign header line). Our stage runs on Spark local[2] "
             f"({cores} cores); wall time covers transform, Parquet writes and stats (session already up). "
             f"The machine was shared with other jobs: load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             "(1/5/15 min) at the end of the run on 2 cores, so absolute times are pessimistic; ratios within "
             "the run compare like with like.", "",
             "### Scaling, default steps (url, exact, simhash)", "",
             "| docs | wall s | docs/core-s | rejected by step | planted recall | simhash precision (sample) |",
             "|---:|---:|---:|---|---:|---:|"]
    for n, wall, rejd, rec, prec, k in rows:
        by_step = ", ".join(f"{r.split(':', 1)[-1]} {c}" for r, c in sorted(rejd.items())) or "-"
        lines.append(f"| {n:,} | {wall:.1f} | {n / wall / cores:.0f} | {by_step} | {rec:.3f} | {prec:.3f} (n={k}) |")
    if len(sizes) >= 2:
        (n1, t1), (n2, t2) = [(r[0], r[1]) for r in rows[:2]]
        g = (t2 / t1) / (n2 / n1)
        marginal = (n2 - n1) / max(1e-9, t2 - t1)
        lines += ["", f"Growth per 10x: wall({n2:,}) / wall({n1:,}) / 10 = **{g:.2f}x** of linear (goal <= 1.15x). "
                      f"Below 1 means fixed per-job Spark costs (a few dozen short jobs per step) still dominate the "
                      f"smaller run. Marginal throughput between the two sizes: {marginal:.0f} docs/s "
                      f"({marginal / cores:.0f} per core). 1M documents do not fit the 8-minute budget on this shared "
                      f"2-core machine; extrapolating linearly from the larger run at the marginal rate, 1M would take "
                      f"about {(t2 + (1_000_000 - n2) / marginal) / 60:.0f} min here (an estimate, not a measurement)."]
    if peer_rows:
        lines += ["", "### MinHash vs datatrove 0.10 (same documents, 14x8 bands, 5-grams)", "",
                  "| docs | ours wall s | ours recall | ours removed | ours precision (sample) | datatrove wall s | "
                  "datatrove recall | datatrove removed | speed ratio (datatrove / ours) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, mw, mrec, mrem, mprec, mk, pw, prec_, prem in peer_rows:
            lines.append(f"| {n:,} | {mw:.1f} | {mrec:.3f} | {mrem} | {mprec:.3f} (n={mk}) | {pw:.1f} | "
                         f"{prec_:.3f} | {prem} | {pw / mw:.2f}x |")
        lines += ["", "Ours verifies candidate pairs by signature agreement (estimated Jaccard >= 0.8) and shingles "
                      "zh/ja/ko by characters after OpenCC t2s; datatrove links every band collision and tokenizes "
                      "all text with its default English word tokenizer, so on Chinese poems its 5-grams are "
                      "5-line windows. datatrove wall time includes its four executor stages (2 workers); ours is "
                      "one Spark stage on 2 cores. Precision: share of sampled (record, dup_of) pairs whose exact "
                      "5-gram Jaccard is >= 0.7."]
    lines += ["", "Reproduce: `.venv/bin/python -m bench --corpus build/corpus/out/bench --models "
                  "build/models --work build/bench --only dedup`"]
    return "\n".join(lines)
