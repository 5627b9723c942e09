"""Where the factory's CPU goes: the per-document work of each stage measured in one process on one core (no
Spark), the floor's two steps on the same pages, and the fused chain under Spark on the same pages (whole process
tree), so the factory section's verdicts against datatrove and the floor can say why, from measurements.

- In process, one core, `time.process_time` around each call, the very functions the fused pass runs per batch:
  the WARC reader (`ingest.iter_file`), DP's annotator and split, AS's and RF's batch forms, and the fingerprint
  columns CD's `carry` adds. The floor's steps (resiliparse main text, fastText on the whitespace-joined text)
  run on the same records. Models and lexicons are loaded first, on FIXED_PAGES pages, as a worker that has run
  a while has them. Then the same pass again under cProfile for the functions that take the time.
- Under Spark (`jobs.pipeline`, local[2], whole process tree, interleaved): DP -> AS -> RF -> CD (MinHash) and
  DP -> AS -> RF on the pages, and DP -> AS -> RF on FIXED_PAGES of them (the fixed cost: JVM, session, model
  loads). The group's Spark overhead per page is its CPU above the fixed cost, less the in-process work; CD's
  cost is the full chain's CPU less the group's.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import sys
import time
from pathlib import Path

from . import BenchContext
from .harness import Side, compare, git_commit, spark_env
from .preprocess import _pages, _wrap
from .scale import DRIVER_MEMORY

PATHS = ["dataflow/ingest", "dataflow/stages", "dataflow/core", "dataflow/models/langid", "dataflow/models/lm",
         "dataflow/models/refclass.py", "jobs/pipeline.py", "conf/pipeline.yaml"]
PAGES = 5_000          # the first pages of the factory bench's input order (bench.preprocess._pages)
QUICK_PAGES = 200
FIXED_PAGES = 30
CORES = 2
REPS = 2
TOP = 14               # functions listed from the profile


def _conf(models: Path, extra=()) -> tuple[dict, list[str]]:
    from dataflow.pipeline.conf import load_conf

    sets = [f"preprocess.langid_model={models / 'langid.bin'}", f"score.model_dir={models / 'lm'}",
            f"score.ref_model={models / 'refclass.bin'}", "dedup.steps=[minhash]", *extra]
    return load_conf(None, sets), sets


class _Clock:
    """CPU seconds per component, summed over calls."""

    def __init__(self):
        self.s: dict[str, float] = {}

    def __call__(self, name: str, fn, *a):
        t0 = time.process_time()
        out = fn(*a)
        self.s[name] = self.s.get(name, 0.0) + time.process_time() - t0
        return out


def in_process(warc_dir: Path, conf: dict, clock: _Clock) -> dict:
    """The fused pass's per-document work over every record of warc_dir, one batch at a time: {counts}."""
    from dataflow import ingest
    from dataflow.ingest import _chunks
    from dataflow.stages.dedup.stage import carry_form
    from dataflow.stages.filter import stage as rf
    from dataflow.stages.preprocess import stage as dp
    from dataflow.stages.score import stage as sc

    pre = dict(conf["preprocess"])
    annotate = dp.annotator(pre, dp._types_conf(conf))
    dp_form, as_form, rf_form, carry = dp.batch_form(conf), sc.batch_form(conf), rf.batch_form(conf), carry_form(conf)
    n = {"pages": 0, "dp_kept": 0, "as_kept": 0, "rf_kept": 0}
    for path in sorted(warc_dir.glob("*.warc.gz")):
        rows = clock("read WARC (fastwarc)", lambda: list(ingest.iter_file(str(path), "warc", pre, rel=path.name)))
        for chunk in _chunks(iter(rows), int(pre["batch_rows"]), int(pre["batch_bytes"])):
            n["pages"] += len(chunk)
            batch = clock("DP (decode, extract, normalise, LID)", lambda: dp_form.split(annotate(chunk)).kept)
            n["dp_kept"] += batch.num_rows
            batch = clock("AS (SentencePiece + KenLM, reference classifier)",
                          lambda: as_form.split(as_form.annotate(batch)).kept)
            n["as_kept"] += batch.num_rows
            batch = clock("RF (all rules)", lambda: rf_form.split(rf_form.annotate(batch)).kept)
            n["rf_kept"] += batch.num_rows
            clock("CD fingerprints carried (MinHash)", carry, batch)
    return n


def floor_steps(warc_dir: Path, conf: dict, clock: _Clock) -> int:
    """The floor's two steps on the same records (bench/factory.py FLOOR): main text, then fastText."""
    import fasttext
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    pre = conf["preprocess"]
    fasttext.FastText.eprint = lambda *a, **k: None
    model = fasttext.load_model(str(pre["langid_model"]))
    n = 0
    for path in sorted(warc_dir.glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                html = rec.reader.read().decode("utf-8", "replace")
                text = clock("floor: resiliparse main text", lambda: extract_plain_text(
                    HTMLTree.parse(html), main_content=bool(pre["html_main_content"]), preserve_formatting=True,
                    list_bullets=bool(pre["html_list_bullets"]), alt_texts=False))
                clock("floor: fastText", model.predict, " ".join(text.split()))
                n += 1
    return n


def _top(prof: cProfile.Profile, total: float) -> list[str]:
    st = pstats.Stats(prof, stream=io.StringIO())
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:TOP]   # (cc, nc, tottime, cumtime, callers)
    root = str(Path(__file__).resolve().parents[1]) + "/"
    out = ["| function | calls | own CPU s | share of the profiled pass |", "|---|---:|---:|---:|"]
    for (file, line, name), (_, nc, tt, _, _) in rows:
        where = "" if file == "~" else file.replace(root, "").split("site-packages/")[-1] + f":{line} "
        out.append(f"| `{where}{name}` | {nc:,} | {tt:.2f} | {tt / total:.1%} |")
    return out


def run(ctx: BenchContext) -> str:
    n_pages = QUICK_PAGES if ctx.quick else PAGES
    reps = 1 if ctx.quick else REPS
    work = ctx.sub("profile").absolute()
    models = ctx.models.resolve()
    rows = _pages(ctx.corpus, n_pages)
    warc, warc_fixed = work / "warc", work / "warc_fixed"
    n, html_bytes, n_files = _wrap(ctx.corpus, rows, warc)
    _wrap(ctx.corpus, rows[:FIXED_PAGES], warc_fixed)
    conf, sets = _conf(models)

    in_process(warc_fixed, conf, _Clock())   # models and lexicons loaded once, as a long-running worker has them
    floor_steps(warc_fixed, conf, _Clock())
    clock = _Clock()
    counts = in_process(warc, conf, clock)
    if counts["pages"] != n:
        raise RuntimeError(f"the in-process pass read {counts['pages']} pages of {n}")
    if floor_steps(warc, conf, clock) != n:
        raise RuntimeError("the floor's steps did not read every page")
    prof = cProfile.Profile()
    t0 = time.process_time()
    prof.enable()
    in_process(warc, conf, _Clock())
    prof.disable()
    profiled = time.process_time() - t0

    root = Path(__file__).resolve().parents[1]

    def chain(src: Path, out: Path, stages: str) -> list[str]:
        return [sys.executable, "-m", "jobs.pipeline", "--input", str(src), "--output", str(out),
                "--set", f"spark.master=local[{CORES}]", "--set", f"spark.driver_memory={DRIVER_MEMORY}",
                "--set", f"pipeline.stages={stages}", *(x for s in sets for x in ("--set", s))]

    runs = {"full": (warc, "[preprocess,score,filter,dedup]"), "group": (warc, "[preprocess,score,filter]"),
            "fixed": (warc_fixed, "[preprocess,score,filter]")}
    sides = [Side(name, (lambda rep, s=src, st=stages, o=work / f"out_{name}": chain(s, o, st)), env=spark_env(),
                  cwd=root, before=lambda rep, o=work / f"out_{name}": shutil.rmtree(o, ignore_errors=True))
             for name, (src, stages) in runs.items()]
    comp = compare(sides, reps=reps)
    return "\n".join(_section(comp, clock.s, counts, n, n_files, html_bytes, profiled, _top(prof, profiled)))


def _section(comp, s: dict, counts: dict, n: int, n_files: int, html_bytes: int, profiled: float, top) -> list[str]:
    per = {k: v / n * 1e3 for k, v in s.items()}   # CPU ms per input page
    work_keys = ["read WARC (fastwarc)", "DP (decode, extract, normalise, LID)",
                 "AS (SentencePiece + KenLM, reference classifier)", "RF (all rules)", "CD fingerprints carried (MinHash)"]
    in_proc = sum(per[k] for k in work_keys)
    group, full, fixed = (comp.median(x, "cpu_s") for x in ("group", "full", "fixed"))
    group_var = (group - fixed) / (n - FIXED_PAGES) * 1e3
    overhead = group_var - sum(per[k] for k in work_keys[:4])
    cd = (full - group) / n * 1e3
    floor = per["floor: resiliparse main text"] + per["floor: fastText"]
    full_pp = full / n * 1e3
    lines = ["## Factory profile: where ours' CPU goes", "",
             f"{n:,} pages (the first of the factory bench's input order, {html_bytes / 2**20:.0f} MiB of HTML in "
             f"{n_files} WARC files), the factory's configuration (DP, AS on, RF, CD MinHash). In one process on one "
             f"core, no Spark: the functions the fused pass runs per batch, timed one by one "
             f"({counts['dp_kept']:,} pages left DP, {counts['as_kept']:,} AS, {counts['rf_kept']:,} RF). Under "
             f"Spark, whole process tree, local[{CORES}], median of {len(comp.of('full'))} interleaved runs.", "",
             "| component | CPU ms per input page | where measured |", "|---|---:|---|"]
    for k in work_keys:
        lines.append(f"| {k} | {per[k]:.2f} | in process |")
    lines += [f"| *of DP: the floor's two steps (main text {per['floor: resiliparse main text']:.2f} + fastText "
              f"{per['floor: fastText']:.2f})* | *{floor:.2f}* | in process, same records |",
              f"| Spark in the fused group (Arrow hand-offs, cache, Parquet writes, task set-up) | {overhead:.2f} | "
              f"group's CPU above its fixed cost, less the in-process work |",
              f"| CD (the stage, with the carried fingerprints above computed in the pass) | {cd:.2f} | full chain "
              f"less the group |",
              f"| fixed cost (JVM, session, models; {fixed:.1f} CPU-s per run) | {fixed / n * 1e3:.2f} | "
              f"DP -> AS -> RF on {FIXED_PAGES} pages |",
              f"| **ours, DP -> AS -> RF -> CD under Spark** | **{full_pp:.2f}** | whole process tree "
              f"({comp.spread('full', 'cpu_s')} CPU-s) |", "",
              f"In-process work: {in_proc:.2f} ms per page, {in_proc / floor:.2f}x the floor's two steps "
              f"({floor:.2f} ms). The whole chain under Spark: {full_pp / floor:.2f}x them. Without AS (datatrove has "
              f"no such step) the in-process work would be "
              f"{in_proc - per['AS (SentencePiece + KenLM, reference classifier)']:.2f} ms per page.", "",
              f"The in-process pass again under cProfile ({profiled:.1f} CPU-s profiled; the profiler's own cost "
              f"inflates small calls): the {TOP} functions with the most own time.", "", *top, "",
              comp.load_line(), "", f"Commit `{git_commit()}`. Command: `make bench ONLY=profile`"]
    return lines
