"""AS benchmark: documents scored per CPU-second, the Spark stage (`jobs.score`, local[2]) against a bare
single-process loop doing the same work (read Parquet, normalise + SentencePiece + KenLM, cutoffs, buckets,
write Parquet), interleaved, exact process-tree CPU (bench/harness.py)."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from . import BenchContext
from .harness import Side, compare, git_commit

PATHS = ["dataflow/stages/score/stage.py", "dataflow/models/lm", "dataflow/core/stage.py", "dataflow/core/spark.py", "dataflow/core/cli.py", "jobs/score.py"]

N_DOCS, N_QUICK = 100000, 5000
REPS = 3
PARTS = 8            # input files, as an upstream stage writes several part files
SPARK_CORES = 2


def prepare(ctx: BenchContext, n: int) -> tuple[Path, dict]:
    """Every k-th en/zh document of the bench corpus, in the DP output schema, as PARTS Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflow.models.lm.train import pipeline_lang
    from dataflow.core.schema import DOC_ARROW_SCHEMA

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


BARE_LOOP = r"""
# The same work as jobs.score, in one plain process: read the Parquet input, normalise + SentencePiece + KenLM
# per paragraph (length-weighted), per-language p30/p60 cutoffs, a quality bucket, write Parquet (zstd).
import glob, sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
import kenlm, sentencepiece as spm
from dataflow.models.lm.normalize import normalize_line
model_dir, inp, out = sys.argv[1], sys.argv[2], sys.argv[3]
models = {l: (spm.SentencePieceProcessor(model_file=f"{model_dir}/{l}.sp.model"), kenlm.Model(f"{model_dir}/{l}.arpa.bin"))
          for l in ("en", "zh")}
t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(f"{inp}/*.parquet"))])
ppl = []
for text, lang in zip(t.column("text").to_pylist(), t.column("lang").to_pylist()):
    sp, lm = models[lang]
    lines = [l for l in (normalize_line(x) for x in text.split("\n")) if l]
    s = n = 0
    for pieces in sp.encode(lines, out_type=str):
        s += lm.score(" ".join(pieces), bos=True, eos=True)
        n += len(pieces) + 1
    ppl.append(10 ** (-s / n) if n else None)
langs = t.column("lang").to_pylist()
quality = [None] * len(ppl)
for lang in set(langs):
    idx = [i for i, l in enumerate(langs) if l == lang and ppl[i] is not None]
    p30, p60 = np.quantile([ppl[i] for i in idx], [0.3, 0.6])
    for i in idx:
        quality[i] = "high" if ppl[i] < p30 else "medium" if ppl[i] < p60 else "low"
t = t.append_column("ppl", pa.array(ppl, pa.float64())).append_column("quality", pa.array(quality, pa.string()))
pq.write_table(t, out, compression="zstd")
"""


def run(ctx: BenchContext) -> str:
    import pyarrow.parquet as pq

    n_docs = N_QUICK if ctx.quick else N_DOCS
    reps = 1 if ctx.quick else REPS
    model_dir = (ctx.models / "lm").resolve()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(root)}
    inp, info = prepare(ctx, n_docs)
    work = ctx.sub("score").absolute()
    (work / "bare.py").write_text(BARE_LOOP)
    spark_out, bare_out = work / "out", work / "bare.parquet"

    def rm(p):
        return lambda rep: shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    sides = [Side("ours", lambda rep: [sys.executable, "-m", "jobs.score", "--input", str(inp), "--output",
                                       str(spark_out), "--set", f"spark.master=local[{SPARK_CORES}]",
                                       "--set", f"score.model_dir={model_dir}",
                                       # the bare loop has no reference classifier: leave ref_score out (null)
                                       "--set", "score.ref_model=null", "--set", "score.ref_required=false"],
                  env=env, cwd=root, before=rm(spark_out)),
             Side("bare", lambda rep: [sys.executable, str(work / "bare.py"), str(model_dir), str(inp), str(bare_out)],
                  env=env, cwd=root, before=rm(bare_out))]
    comp = compare(sides, reps=reps)
    ours = pq.read_table(spark_out / "data", columns=["id", "ppl"]).to_pydict()
    bare = dict(zip(*pq.read_table(bare_out, columns=["id", "ppl"]).to_pydict().values()))
    rel = [abs(p - bare[i]) / bare[i] for i, p in zip(ours["id"], ours["ppl"]) if p is not None and bare.get(i)]
    n = info["docs"]
    ratio = comp.median("bare", "cpu_s") / comp.median("ours", "cpu_s")
    verdict = "met" if ratio >= 0.8 else f"**missed**: ours needs {1 / ratio:.2f}x the bare loop's CPU"
    return "\n".join([
        "## AS: perplexity scoring (`score`) vs a bare loop doing the same work",
        "",
        f"Input: {n:,} en/zh documents ({info['bytes'] / 2**20:.1f} MiB of text; {info['langs']}) sampled evenly from "
        f"the bench corpus, as {PARTS} Parquet files in the DP schema. Models: the SentencePiece + 5-gram KenLM pairs "
        f"`make models` trains (`{model_dir}`). Both sides read the Parquet input, score every paragraph, compute "
        f"per-language p30/p60 cutoffs, assign the bucket and write Parquet (zstd); ours is `jobs.score` on Spark "
        f"local[{SPARK_CORES}] (it also writes rejected/ and stats.json), the bare loop one Python process. "
        f"Whole processes, JVM start included; per core = per CPU-second of the process tree.",
        "",
        *comp.table(n),
        "",
        f"**Ours / bare loop: {ratio:.2f}x per core** (goal >= 0.8x): {verdict}. Agreement: max relative ppl "
        f"difference over {len(rel):,} documents {max(rel) if rel else float('nan'):.1e}.",
        "",
        comp.load_line(),
        "",
        f"Commit `{git_commit()}`. Command: `make bench ONLY=score`",
    ])
