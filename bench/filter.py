"""RF benchmark: our rule engine vs datatrove 0.10's GopherRepetitionFilter + GopherQualityFilter +
C4QualityFilter + FineWebQualityFilter (the FineWeb recipe order), on the same English documents, same
machine, same run.

Input: a seeded sample of English documents from the bench corpus (docs.jsonl, smallest xxh64(seed:id)),
plus English HTML pages extracted with resiliparse (main content, as DP does). Measured:
  * per-record throughput on one core (process CPU time): datatrove (its own venv) vs ours, all rules and
    the datatrove-equivalent subset (gopher_quality, gopher_repetition, c4, fineweb, length groups);
  * our Spark stage end to end (local[2], annotate + write data/rejected + stats), docs per core-second
    from wall time x 2 cores (the machine is shared, so this is a lower bound);
  * agreement: documents both keep / both reject / only one rejects, with the top reasons.
"""
from __future__ import annotations

import heapq
import json
import os
import time
from collections import Counter
from pathlib import Path

from . import BenchContext, run_cmd

SEED = 42
N_DOCS, N_QUICK = 6000, 2000
HTML_SHARE = 0.2          # a fifth of the sample is real HTML pages (web-like text for the C4/FineWeb rules)
SUBSET_GROUPS = ("length", "gopher_quality", "gopher_repetition", "c4", "fineweb")

PEER = r'''
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)
docs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
filters[0].filter(Document(text="warm up the tokenizer. " * 20, id="w"))
out = []
t0, c0 = time.time(), time.process_time()
for d in docs:
    doc = Document(text=d["text"], id=d["id"])
    reason = None
    for f in filters:
        r = f.filter(doc)
        if r is not True:
            reason = r[1] if isinstance(r, tuple) else f.name
            break
    out.append({"id": d["id"], "reason": reason})
cpu, wall = time.process_time() - c0, time.time() - t0
with open(sys.argv[2], "w") as f:
    json.dump({"cpu_s": cpu, "wall_s": wall, "decisions": out}, f)
'''


def _hash(s: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(f"{SEED}:{s}".encode())


def _smallest(items, n):
    return heapq.nsmallest(n, items, key=lambda x: x[0])


def sample_docs(corpus: Path, n: int) -> list[dict]:
    """n English documents: (1 - HTML_SHARE) from docs.jsonl, HTML_SHARE from html/ (resiliparse text)."""
    from resiliparse.extract.html2text import extract_plain_text

    n_html = int(n * HTML_SHARE) if (corpus / "html_manifest.jsonl").exists() else 0
    heap: list = []
    with open(corpus / "docs.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["lang"] != "en" or not d["text"].strip():
                continue
            item = (-_hash(d["id"]), d["id"], d["source"], d["text"])
            if len(heap) < n - n_html:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
    docs = [{"id": i, "source": s, "text": t} for _, i, s, t in sorted(heap, key=lambda x: -x[0])]
    if n_html:
        pages = [json.loads(line) for line in open(corpus / "html_manifest.jsonl", encoding="utf-8")]
        pages = [p for p in pages if p["lang"].split("-")[0] == "en"]
        for _, p in _smallest([(_hash(p["path"]), p) for p in pages], n_html):
            html = (corpus / p["path"]).read_text(encoding="utf-8", errors="replace")
            text = extract_plain_text(html, main_content=True, alt_texts=False)
            if text.strip():
                docs.append({"id": p["url"], "source": p["source"] + "-html", "text": text})
    return docs


def _ours_single_core(docs, rules):
    from dataflow.rules.engine import filter_text

    c0 = time.process_time()
    reasons = {d["id"]: filter_text(d["text"], "en", rules).reason for d in docs}
    return time.process_time() - c0, reasons


def _tree_cpu_s() -> float:
    """CPU seconds (user + sys, with reaped children) of every live descendant of this process: the Spark JVM
    and its Python workers. Unlike wall time, this does not grow when other jobs share the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()   # state ppid ... utime(11) stime(12) cutime(13) cstime(14)
        procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        total += procs[pid][1]
        stack.extend(children.get(pid, []))
    return total / tick


def _spark_stage(docs, cfg, work: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflow.filter import run as filter_run
    from dataflow.schema import DOC_ARROW_SCHEMA
    from dataflow.spark import get_session
    from dataflow.stage import remove_output, write_stage

    inp = work / "input.parquet"
    rows = [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": "en",
             "lang_score": 1.0, "meta": []} for d in docs]
    pq.write_table(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA), inp, row_group_size=2000)
    spark = get_session({"spark": {"master": "local[2]", "driver_memory": "3g", "log_level": "ERROR",
                                   "conf": {"spark.sql.shuffle.partitions": 4, "spark.ui.enabled": "false",
                                            "spark.sql.files.maxPartitionBytes": 8 * 2**20}}}, "bench-filter")
    df = spark.read.parquet(str(inp))
    n = df.count()
    out = work / "spark_out"
    remove_output(out)
    t0, cpu0, tree0 = time.time(), time.process_time(), _tree_cpu_s()
    stats = write_stage(filter_run(df, cfg), out, stage="filter", input_count=n, cfg=cfg, t0=t0)
    wall = time.time() - t0
    cpu = time.process_time() - cpu0 + _tree_cpu_s() - tree0
    cores = int(spark.sparkContext.defaultParallelism)
    spark.stop()
    return wall, cpu, cores, stats


def run(ctx: BenchContext) -> str:
    from dataflow.config import load_conf
    from dataflow.rules import active_rules

    work = ctx.sub("filter")
    n = N_QUICK if ctx.quick else N_DOCS
    t0 = time.time()
    docs = sample_docs(ctx.corpus, n)
    prep_s = time.time() - t0
    chars = sum(len(d["text"]) for d in docs)
    inp = work / "input.jsonl"
    with open(inp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")

    # datatrove, one core, its own venv (0.10 tokenizes English with spaCy, which datatrove[processing] lacks)
    try:
        run_cmd([str(ctx.peer_python), "-c", "import spacy, datatrove"])
    except Exception as e:
        raise RuntimeError(f"{ctx.peer_python} needs datatrove and spacy: {ctx.peer_python.parent}/pip install "
                           "'datatrove[processing]==0.10.1' spacy==3.8.18") from e
    (work / "peer_filter.py").write_text(PEER)
    run_cmd([str(ctx.peer_python), str(work / "peer_filter.py"), str(inp), str(work / "peer.json")])
    peer = json.loads((work / "peer.json").read_text())
    peer_reason = {d["id"]: d["reason"] for d in peer["decisions"]}

    cfg = load_conf()["filter"]
    rules = active_rules(cfg)
    subset = [r for r in rules if r.name.split(".")[0] in SUBSET_GROUPS]
    ours_cpu, ours_reason = _ours_single_core(docs, rules)
    sub_cpu, sub_reason = _ours_single_core(docs, subset)
    spark_wall, spark_cpu, cores, stats = _spark_stage(docs, cfg, work)

    nd = len(docs)
    peer_rate = nd / peer["cpu_s"]
    rows = [("datatrove 0.10.1: GopherRepetition + GopherQuality + C4Quality + FineWebQuality", 1, peer["cpu_s"], peer_rate),
            (f"ours, datatrove-equivalent rules ({len(subset)}: {', '.join(SUBSET_GROUPS)})", 1, sub_cpu, nd / sub_cpu),
            (f"ours, all {len(rules)} rules (adds zh-only, boilerplate, garbled, content lexicons)", 1, ours_cpu, nd / ours_cpu),
            (f"ours, Spark stage local[{cores}] end to end (annotate, write data/rejected/stats), CPU of driver + JVM + "
             "Python workers", cores, spark_cpu, nd / spark_cpu),
            (f"ours, the same Spark run, wall {spark_wall:.0f} s x {cores} cores (lower bound on a shared machine)", cores,
             spark_wall * cores, nd / (spark_wall * cores))]
    lines = ["## RF: rule-based filtering vs datatrove", "",
             f"Input: {nd:,} English documents ({chars / 1e6:.1f} M characters): a seeded sample (smallest "
             f"xxh64(\"{SEED}:id\")) of the bench corpus docs.jsonl plus {sum(d['source'].endswith('-html') for d in docs):,} "
             f"English HTML pages extracted with resiliparse (prepared in {prep_s:.0f} s, not timed). "
             "Single-core rows are process CPU time around the per-document loop (datatrove in `.venv-peer`, "
             "spaCy word tokenizer as datatrove 0.10 uses for English; ours: regex words). The Spark stage is "
             "measured twice: CPU seconds of the driver, the JVM and the Python workers (robust to other jobs on "
             "the machine), and wall time x cores (a lower bound here: the machine is shared).", "",
             "| system | cores | core-seconds | docs per core-second | vs datatrove |",
             "|---|---:|---:|---:|---:|"]
    for name, c, cs, rate in rows:
        lines.append(f"| {name} | {c} | {cs:.1f} | {rate:,.0f} | {rate / peer_rate:.2f}x |")

    # agreement on keep/reject
    both_keep = both_rej = only_ours = only_peer = 0
    ours_only_reasons, peer_only_reasons = Counter(), Counter()
    for d in docs:
        o, p = ours_reason[d["id"]], peer_reason.get(d["id"])
        if o is None and p is None:
            both_keep += 1
        elif o and p:
            both_rej += 1
        elif o:
            only_ours += 1
            ours_only_reasons[o] += 1
        else:
            only_peer += 1
            peer_only_reasons[p] += 1
    sub_agree = sum((sub_reason[d["id"]] is None) == (peer_reason.get(d["id"]) is None) for d in docs)
    top = lambda c: ", ".join(f"{k} {v}" for k, v in c.most_common(4)) or "-"
    lines += ["", "Agreement (keep/reject per document, ours with all rules vs datatrove):", "",
              "| | datatrove keeps | datatrove rejects |", "|---|---:|---:|",
              f"| ours keeps | {both_keep:,} | {only_peer:,} |",
              f"| ours rejects | {only_ours:,} | {both_rej:,} |", "",
              f"Ours with the datatrove-equivalent subset agrees on {sub_agree / nd:.1%} of documents. "
              f"Only ours rejects, top reasons: {top(ours_only_reasons)}. "
              f"Only datatrove rejects: {top(peer_only_reasons)}.", "",
              "Where they differ by design: datatrove's C4 filter rejects a document with fewer than 5 sentences "
              "after line filtering (`too_few_sentences`) and rewrites the text before FineWeb sees it, while ours "
              "applies every document rule (FineWeb included) to the input text first, then removes lines "
              "(paragraph level) and rejects only what falls under `length.min_chars`: hence our extra "
              "`fineweb.char_dup_ratio` rejections (duplicate lines that datatrove's C4 had already dropped). "
              "datatrove counts spaCy tokens, ours regex words (punctuation runs are one token), hence the "
              "alpha-words differences in both directions; our `c4.curly_bracket` only looks at prose-like lines. "
              f"Spark stage: kept {stats['kept']:,}, rejected {stats['rejected_total']:,}.", "",
              "Command: `.venv/bin/python -m bench --corpus build/corpus/out/bench --models build/models "
              "--work build/bench --only filter`"]
    return "\n".join(lines)
