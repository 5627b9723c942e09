"""AS benchmark: documents scored per core-second, the Spark stage (`jobs.score`, local[2]) against a bare
single-process Python loop of the same normalisation + SentencePiece + KenLM over the same documents, in
the same run. Also prints our cutoffs next to CCNet's published ones for orientation."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import BenchContext

N_DOCS, N_QUICK = 30000, 3000
PARTS = 8            # input files, as an upstream stage writes several part files
SPARK_CORES = 2


def prepare(ctx: BenchContext, n: int) -> tuple[Path, dict]:
    """Every k-th en/zh document of the bench corpus, in the DP output schema, as PARTS Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..lm.train import pipeline_lang
    from ..schema import DOC_ARROW_SCHEMA

    src = ctx.corpus / "docs.jsonl"
    with open(src, encoding="utf-8") as f:
        total = sum(1 for line in f if '"lang": "en"' in line or '"lang": "zh' in line)
    step = max(1, total // n)
    rows, i, seen = [], 0, set()
    with open(src, encoding="utf-8") as f:
        for line in f:
            if not ('"lang": "en"' in line or '"lang": "zh' in line):
                continue
            i += 1
            if i % step or len(rows) >= n:
                continue
            d = json.loads(line)
            if d["id"] in seen:  # a few poem ids repeat across the simplified/traditional collections
                continue
            seen.add(d["id"])
            rows.append({"id": d["id"], "source": d["source"], "url": None, "text": d["text"],
                         "lang": pipeline_lang(d["lang"]), "lang_score": 1.0, "meta": [("label", d.get("label", ""))]})
    out = ctx.sub("score") / "input"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    for p in range(PARTS):
        part = rows[p::PARTS]
        pq.write_table(pa.Table.from_pylist(part, schema=DOC_ARROW_SCHEMA), out / f"part-{p:05d}.parquet")
    langs = {}
    for r in rows:
        langs[r["lang"]] = langs.get(r["lang"], 0) + 1
    return out, {"docs": len(rows), "bytes": sum(len(r["text"].encode()) for r in rows), "langs": langs}


BARE_LOOP = r'''
import glob, json, sys, time
t0 = time.time()
import kenlm, sentencepiece as spm, pyarrow.parquet as pq
from dataflow.lm.normalize import normalize_line
model_dir, inp = sys.argv[1], sys.argv[2]
models = {l: (spm.SentencePieceProcessor(model_file=f"{model_dir}/{l}.sp.model"), kenlm.Model(f"{model_dir}/{l}.arpa.bin"))
          for l in ("en", "zh")}
t_load = time.time() - t0
out = {}
for f in sorted(glob.glob(f"{inp}/*.parquet")):
    t = pq.read_table(f, columns=["id", "text", "lang"]).to_pydict()
    for i, text, lang in zip(t["id"], t["text"], t["lang"]):
        sp, lm = models[lang]
        lines = [l for l in (normalize_line(x) for x in text.split("\n")) if l]
        if not lines:
            out[i] = None
            continue
        s = n = 0
        for pieces in sp.encode(lines, out_type=str):
            s += lm.score(" ".join(pieces), bos=True, eos=True)
            n += len(pieces) + 1
        out[i] = 10 ** (-s / n)
wall = time.time() - t0
json.dump({"wall_s": wall, "load_s": t_load, "ppl": out}, open(sys.argv[3], "w"))
'''


def run(ctx: BenchContext) -> str:
    import pyarrow.parquet as pq

    from ..config import load_conf

    cfg = load_conf()["score"]
    model_dir = ctx.models / "lm"
    inp, info = prepare(ctx, N_QUICK if ctx.quick else N_DOCS)
    work = ctx.sub("score")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    # bare loop: one process, one core
    (work / "bare.py").write_text(BARE_LOOP)
    subprocess.run([sys.executable, str(work / "bare.py"), str(model_dir), str(inp), str(work / "bare.json")],
                   check=True, env=env)
    bare = json.loads((work / "bare.json").read_text())

    # the Spark stage, end to end through the job (read, score, cutoffs, write, stats)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "jobs.score", "--input", str(inp), "--output", str(work / "out"),
                    "--set", f"spark.master=local[{SPARK_CORES}]", "--set", f"score.model_dir={model_dir}"],
                   check=True, env=env, capture_output=True, text=True)
    total_wall = time.time() - t0
    stats = json.loads((work / "out" / "stats.json").read_text())
    got = pq.read_table(work / "out" / "data", columns=["id", "ppl"]).to_pydict()
    rel = [abs(p - bare["ppl"][i]) / bare["ppl"][i] for i, p in zip(got["id"], got["ppl"])
           if p is not None and bare["ppl"].get(i)]
    n = info["docs"]
    bare_rate = n / bare["wall_s"]
    spark_rate = n / (stats["wall_s"] * SPARK_CORES)
    extra = stats["extra"]
    ccnet = cfg.get("ccnet_cutoffs") or {}
    rows = [
        "| run | wall s | cores | docs / core-s |",
        "|---|---:|---:|---:|",
        f"| bare Python loop (sentencepiece + kenlm, 1 process, incl. model load {bare['load_s']:.1f} s) "
        f"| {bare['wall_s']:.1f} | 1 | {bare_rate:.0f} |",
        f"| Spark `jobs.score` local[{SPARK_CORES}] (stage wall: read, score, approxQuantile, write, stats) "
        f"| {stats['wall_s']:.1f} | {SPARK_CORES} | {spark_rate:.0f} |",
    ]
    cut_rows = ["| lang | docs scored | our p30 | our p60 | CCNet p30 | CCNet p60 | high / medium / low |",
                "|---|---:|---:|---:|---:|---:|---|"]
    for lang, c in sorted(extra["cutoffs"].items()):
        q = extra["quality_by_lang"].get(lang, {})
        m = sum(q.values())
        shares = " / ".join(f"{q.get(b, 0) / m:.1%}" for b in ("high", "medium", "low")) if m else "-"
        cc = ccnet.get(lang, {})
        cut_rows.append(f"| {lang} | {m} | {c['p30']:.0f} | {c['p60']:.0f} | {cc.get('p30', '-')} | "
                        f"{cc.get('p60', '-')} | {shares} |")
    med = statistics.median(p for p in got["ppl"] if p is not None)
    return "\n".join([
        "## AS: perplexity scoring (`score`)",
        "",
        f"Input: {n:,} en/zh documents ({info['bytes'] / 2**20:.1f} MiB of text; {info['langs']}) sampled evenly "
        f"from the bench corpus, as {PARTS} Parquet files in the DP schema. Models: the SentencePiece + 5-gram "
        f"KenLM pairs `make models` trains on the sample corpus (`{model_dir}`).",
        "",
        *rows,
        "",
        f"**Spark / bare loop, per core: {spark_rate / bare_rate:.2f}x** (goal >= 0.8x). The whole job "
        f"including JVM start took {total_wall:.1f} s. Agreement: the max relative ppl difference between the "
        f"two over {len(rel):,} documents is {max(rel) if rel else float('nan'):.1e}; median ppl {med:.0f}.",
        "",
        "Cutoffs on this input next to CCNet's published ones (cc_net, Wikipedia-trained models with 65k "
        "pieces, so orientation only: our models are trained on the small sample corpus and score in their "
        "own units):",
        "",
        *cut_rows,
        "",
        "Reproduce: `.venv/bin/python -m dataflow.bench --corpus build/corpus/out/bench --models build/models "
        "--work build/bench --only score`.",
    ])
