"""Scale run (#13.7): DP -> CD on 10k, 100k and 1M documents, with wall time, CPU, peak driver memory and the
growth per 10x.

  python -m bench.scale --corpus build/corpus/out/bench --work build/bench/scale [--sizes 10000 100000 1000000]

Input: JSONL built from the bench corpus (`make data BENCH=1`; the fixture corpus when that is absent): every
k-th real document, then documents recombined from two real ones (bench.dedup.sample_docs), each recombined one
lightly edited (one paragraph dropped or repeated, seeded), plus planted near-duplicates (bench.dedup.plant,
3%). The file is written in streaming parts, so building 1M documents holds only the real base set in memory.

Each stage runs as its own `python -m jobs.<stage>` process (local[2], spark.driver.memory 2g). Peak driver
memory is the high-water mark (VmHWM) of the job's own processes: the Python driver and its JVM, which in
local mode also hosts the executors' JVM side; the Python workers (pyspark.daemon) are reported apart. Flat
driver memory from 10k to 1M is what shows that no data-sized result reaches the driver.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

from .dedup import LANG, PLANT_SHARE, SEED, plant, sample_docs

SIZES = (10_000, 100_000, 1_000_000)
PARTS = 8                     # JSONL part files (DP lists and reads them as separate tasks)
BASE_MAX = 50_000             # real documents held in memory; beyond that recombined ones are streamed
DRIVER_MEMORY = "2g"          # the machine is shared: helpers start no driver above 2g
POLL_S = 0.5                  # process-tree memory sampling period
STEP_FIELDS = ("seconds", "candidate_pairs", "pairs_checked", "verify_rounds", "unresolved")   # per dedup step
GOAL_GROWTH = 1.15            # #13.7: cost per document may grow at most 1.15x per 10x documents
ROOT = Path(__file__).resolve().parent.parent
PATHS = ["dataflow/stages/preprocess", "dataflow/ingest", "dataflow/stages/dedup", "dataflow/core/text.py", "dataflow/core/hashing.py",
         "dataflow/core/stage.py", "jobs/preprocess.py", "jobs/dedup.py", "bench/scale.py"]   # the code this section measures (stale marking in BENCHMARKS.md)


def edit(text: str, rng: random.Random) -> str:
    """A light, seeded edit of a recombined document: drop one paragraph or repeat one."""
    paras = text.split("\n\n")
    if len(paras) > 2 and rng.random() < 0.5:
        del paras[rng.randrange(len(paras))]
    elif paras:
        i = rng.randrange(len(paras))
        paras.insert(i, paras[i])
    return "\n\n".join(paras)


def build_input(corpus: Path, n: int, out: Path) -> dict:
    """Write n documents (real, recombined+edited, planted copies) as JSONL parts; return counts."""
    out.mkdir(parents=True, exist_ok=True)
    done = out / "_built.json"
    if done.exists() and json.loads(done.read_text()).get("docs") == n:
        return json.loads(done.read_text())
    n_planted = int(n * PLANT_SHARE)
    base = sample_docs(corpus, min(n - n_planted, BASE_MAX))
    real = [d for d in base if not d["id"].startswith("recombined:")]
    base, truth = plant(base, n_planted / max(1, len(base)), SEED)
    rng = random.Random(SEED + n)
    files = [open(out / f"part-{j:05d}.jsonl", "w", encoding="utf-8") for j in range(PARTS)]
    written = 0

    def emit(d: dict) -> None:
        nonlocal written
        url = f"https://{d['source'].replace('/', '.')}.invalid/{quote(d['id'], safe='')}"   # ids hold '#' and '?'
        files[written % PARTS].write(json.dumps({"id": d["id"], "source": d["source"], "url": url,
                                                 "text": d["text"]}, ensure_ascii=False) + "\n")
        written += 1

    for d in base:
        emit(d)
    while written < n:   # stream further recombined documents from the real ones
        a, b = real[rng.randrange(len(real))], real[rng.randrange(len(real))]
        pa, pb = a["text"].split("\n\n"), b["text"].split("\n\n")
        text = edit("\n\n".join(pa[: max(1, len(pa) // 2)] + pb[len(pb) // 2:]), rng)
        emit({"id": f"recombined:{written}", "source": a["source"], "text": text,
              "lang": LANG.get(a["lang"], a["lang"])})
    for f in files:
        f.close()
    info = {"docs": written, "real": len(real), "planted": len(truth), "parts": PARTS,
            "bytes": sum(p.stat().st_size for p in out.glob("part-*.jsonl"))}
    done.write_text(json.dumps(info) + "\n")
    return info


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")   # a JVM forks its Python workers from other threads
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return out


def _probe(pid: int) -> tuple[int, float, str]:
    """(high-water RSS bytes, CPU seconds so far, command line) of one process; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = next((int(l.split()[1]) for l in f if l.startswith("VmHWM")), 0)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        return kb * 1024, cpu, cmd
    except (OSError, IndexError, ValueError):
        return 0, 0.0, ""


def run_job(cmd: list[str], timeout: float | None = None) -> dict:
    """Run one job; sample the high-water memory of the driver (Python + JVM) and of the Python workers.
    A job still running after `timeout` seconds is stopped (its whole tree killed) and recorded as
    `stopped` with the CPU seconds and wall time it had used: a lower bound, not a result."""
    from .harness import _Cgroup
    cg = _Cgroup()   # exact CPU of the whole tree (cgroup), as the harness measures it; sampling is the fallback
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=cg.enter if cg.dirs else None,
                         env=dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable))
    peaks: dict[int, tuple[int, str]] = {}
    cpu: dict[int, float] = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for pid in _tree(p.pid):
                hwm, used, c = _probe(pid)
                if hwm and hwm >= peaks.get(pid, (0, ""))[0]:
                    peaks[pid] = (hwm, c)
                cpu[pid] = max(cpu.get(pid, 0.0), used)
            stop.wait(POLL_S)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stopped = False
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        stopped = True
        for pid in reversed(_tree(p.pid)):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        out = p.communicate()[0]
    stop.set()
    th.join()
    wall = time.time() - t0
    exact = cg.cpu_s()
    method = cg.method if exact is not None else "sampled /proc every 0.5 s"
    cg.close()
    if p.returncode != 0 and not stopped:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-4000:]}")
    py_driver = sum(m for pid, (m, c) in peaks.items() if pid == p.pid)
    jvm = sum(m for pid, (m, c) in peaks.items() if "java" in c.split(" ")[0])
    driver = py_driver + jvm
    workers = max((m for pid, (m, c) in peaks.items() if "pyspark.daemon" in c or "pyspark.worker" in c), default=0)
    return {"wall_s": round(wall, 1), "driver_peak_mb": round(driver / 2**20), "py_driver_peak_mb": round(py_driver / 2**20),
            "jvm_peak_mb": round(jvm / 2**20), "worker_peak_mb": round(workers / 2**20),
            "cpu_s": round(exact if exact is not None else sum(cpu.values()), 1), "cpu_method": method,
            **({"stopped": True} if stopped else {})}


def run_size(corpus: Path, work: Path, n: int, timeout: float | None = None) -> dict:
    d = work / f"n{n}"
    info = build_input(corpus, n, d / "input")
    common = ["--set", "spark.master=local[2]", "--set", f"spark.driver_memory={DRIVER_MEMORY}", "--force"]
    res = {"docs": n, "input": info}
    for stage, inp, out in (("preprocess", d / "input", d / "10-preprocess"), ("dedup", d / "10-preprocess", d / "40-dedup")):
        r = run_job([sys.executable, "-m", f"jobs.{stage}", "--input", str(inp), "--output", str(out), *common],
                    timeout)
        res[stage] = r
        if r.get("stopped"):
            print(f"[scale] {n:,} docs {stage}: STOPPED after {timeout} s: {r}", flush=True)
            break
        st = json.loads((out / "stats.json").read_text())
        r.update({"in": st["input"], "kept": st["kept"], "rejected": st["rejected_total"]})
        if stage == "dedup":   # what each step did: its seconds, and for the fuzzy ones the pairs it checked
            r["steps"] = {k: {f: v[f] for f in STEP_FIELDS if f in v} for k, v in st.get("extra", {}).items()
                          if isinstance(v, dict) and "seconds" in v}
            r["removed"] = st.get("rejected", {})
        print(f"[scale] {n:,} docs {stage}: {r}", flush=True)
    res["commit"] = __import__("bench.harness", fromlist=["git_commit"]).git_commit()
    (d / "result.json").write_text(json.dumps(res, indent=2) + "\n")   # sizes can run in separate invocations
    return res


def render(results: list[dict]) -> str:
    lines = ["## Scale: DP -> CD at 10k / 100k / 1M documents", "",
             "Documents recombined and lightly edited from the real corpus with 3% planted near-duplicates "
             "(bench/scale.py); each stage one `python -m jobs.<stage>` process, local[2], driver memory 2g. "
             "Peaks are high-water RSS: the Python driver (where a `collect()` of data would land), its JVM (in local "
             "mode it also hosts the executors, so it grows up to `-Xmx` plus off-heap buffers whatever the data; "
             "bounded by `spark.driver.memory`), and the largest Python worker.", "",
             "| docs | stage | in | kept | wall s | CPU s | CPU s per 1k docs | growth per 10x (CPU) | "
             "growth per 10x (wall) | Python driver peak MB | JVM peak MB | worker peak MB |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    prev: dict[str, dict] = {}
    for r in results:
        for stage in ("preprocess", "dedup"):
            s = r.get(stage)
            if s is None:
                continue
            if s.get("stopped"):   # a lower bound: the job was stopped (--job-timeout) before it finished
                g = "-"
                if stage in prev:
                    p = prev[stage]
                    steps = max(1e-9, __import__("math").log10(r["docs"] / p["docs"]))
                    g = f">= {((s['cpu_s'] / r['docs']) / (p['cpu_s'] / p['docs'])) ** (1 / steps):.2f}x"
                lines.append(f"| {r['docs']:,} | {stage} | - | - | stopped at {s['wall_s']} | >= {s['cpu_s']} | "
                             f">= {s['cpu_s'] / r['docs'] * 1000:.2f} | **{g}** | - | {s.get('py_driver_peak_mb', '-')} | "
                             f"{s.get('jvm_peak_mb', '-')} | {s['worker_peak_mb']} |")
                continue
            per_cpu, per_wall = s["cpu_s"] / r["docs"] * 1000, s["wall_s"] / r["docs"] * 1000
            g_cpu = g_wall = "-"
            if stage in prev:
                p = prev[stage]
                steps = max(1e-9, __import__("math").log10(r["docs"] / p["docs"]))   # per 10x, geometric
                g_cpu = f"{(per_cpu / (p['cpu_s'] / p['docs'] * 1000)) ** (1 / steps):.2f}x"
                g_wall = f"{(per_wall / (p['wall_s'] / p['docs'] * 1000)) ** (1 / steps):.2f}x"
            lines.append(f"| {r['docs']:,} | {stage} | {s['in']:,} | {s['kept']:,} | {s['wall_s']} | {s['cpu_s']} | "
                         f"{per_cpu:.2f} | {g_cpu} | {g_wall} | {s.get('py_driver_peak_mb', '-')} | "
                         f"{s.get('jvm_peak_mb', '-')} | {s['worker_peak_mb']} |")
            prev[stage] = {**s, "docs": r["docs"]}
    lines += [f"\n{r['docs']:,} documents: {r['note']}" for r in results if r.get("note")]
    lines += _steps_table(results)
    methods = sorted({r[st].get("cpu_method", "sampled /proc every 0.5 s") for r in results for st in ("preprocess", "dedup")
                      if st in r})
    lines += ["", "CPU s: the whole process tree (driver, JVM, Python workers) by " + ", ".join(methods) + ". "
              "Growth per 10x = (cost per document at this size / at the previous size) ^ (1 / decades between them); "
              "CPU is the cost measure (robust to other load), wall is shown beside it."]
    lines += ["", f"Goal (#13.7): cost per document grows at most {GOAL_GROWTH}x per 10x documents, driver peak flat.",
              "", "What reaches the driver (an audit of every `collect()`/`first()` in dataflow/; there is no "
              "`toPandas()`/`toLocalIterator()`): aggregates keyed by reason, rule, language, source, quality bucket, "
              "histogram bin or cluster size; AS's per-language percentiles; RF's audit examples (at most "
              "`examples_per_rule` per rule, texts cut to `example_max_chars`); the vocabulary expansion's character "
              "counts (distinct CJK characters, bounded by Unicode). None grows with the document count. DE's review "
              "sample (1% of the output) and the SentencePiece training sample (`tokenizer.train.max_docs`) are "
              "written by Spark and read from files, not collected."]
    return "\n".join(lines)


def _steps_table(results: list[dict]) -> list[str]:
    """CD per step: wall seconds inside the job, records removed, and the pairs the fuzzy steps checked."""
    rows = [r for r in results if r.get("dedup", {}).get("steps")]
    if not rows:
        return []
    out = ["", "CD by step (seconds of wall time inside the job; removed records; fuzzy steps: candidate pairs, "
           "pairs whose shingle sets were compared, rounds, records left unchecked):", "",
           "| docs | step | seconds | removed | candidate pairs | pairs checked | rounds | unresolved |",
           "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for step, v in r["dedup"]["steps"].items():
            cell = [f"{v[f]:,}" if isinstance(v.get(f), int) else "-" for f in STEP_FIELDS[1:]]
            out.append(f"| {r['docs']:,} | {step} | {v['seconds']} | {r['dedup'].get('removed', {}).get('dedup:' + step, 0):,} | "
                       + " | ".join(cell) + " |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None,
                    help="docs.jsonl folder (default: build/corpus/out/bench, else build/corpus/out/fixture)")
    ap.add_argument("--work", type=Path, default=Path("build/bench/scale"))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--compose-only", action="store_true", help="only render the section from the result.json files")
    ap.add_argument("--job-timeout", type=float, default=None,
                    help="stop a stage job after this many seconds and record it as stopped (a lower bound)")
    ap.add_argument("--section", type=Path, default=Path("docs/bench/scale.md"),
                    help="the BENCHMARKS.md section to write (composed by `python -m bench --compose-only`)")
    a = ap.parse_args(argv)
    corpus = a.corpus or next(c for c in (Path("build/corpus/out/bench"), Path("build/corpus/out/fixture"))
                              if (c / "docs.jsonl").exists())
    from .harness import git_commit, provenance_tag

    t0 = time.time()
    for n in [] if a.compose_only else sorted(a.sizes):
        run_size(corpus, a.work, n, a.job_timeout)
    # the table holds every size measured in this work folder (the 1M run takes hours: it may run on its own)
    results = sorted((json.loads(f.read_text()) for f in a.work.glob("n*/result.json")), key=lambda r: r["docs"])
    load = os.getloadavg()[0]
    body = render(results)
    commits = {r.get("commit") for r in results}
    commit = commits.pop() if len(commits) == 1 and None not in commits else git_commit()   # the measured commit
    how = ("composed from the result.json files (`--compose-only`)" if a.compose_only else
           f"`python -m bench.scale --sizes {' '.join(map(str, sorted(a.sizes)))}` ({time.time() - t0:.0f} s, "
           f"load {load:.1f} at the end on {os.cpu_count()} cores)")
    stamp = f"_Measured at commit `{commit}` from {corpus}; {how}._"
    a.section.parent.mkdir(parents=True, exist_ok=True)
    a.section.write_text(provenance_tag(commit, PATHS) + "\n" + body + "\n\n" + stamp + "\n")
    (a.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(body + "\n\n" + stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
