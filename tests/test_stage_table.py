"""The stage contract and its one table (DESIGN §9, #24): a stage that exists only in this test, registered in
the table, runs through the chain in one session and appears in --print-submit with its own section of the
validated configuration; the chain in one session writes what the per-stage jobs write, row for row; a stage's
batch form decides like its transform; every job is a shim."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflow.core.confschema import ConfigError, Count, optional_section
from dataflow.core.contract import Stage
from dataflow.core.stage import StageResult
from dataflow.stages.dedup.fingerprints import CARRIED
from dataflow.pipeline.chain import run_chain
from dataflow.pipeline.conf import load_conf
from dataflow.pipeline.submit import submit_lines
from dataflow.stages import table

ROOT = Path(__file__).resolve().parent.parent
WORD = re.compile(r"\w+")
SMALL = ["evaluate.sample_share=0.2", "spark.conf.spark.sql.shuffle.partitions=4"]


def _wordcount_transform(df, ctx):
    """Keeps documents of at least `wordcount.min_words` words, with `n_words`; the others are rejected."""
    from pyspark.sql import functions as F

    n = F.size(F.expr(r"filter(split(text, '[^\\p{L}\\p{N}_]+'), w -> w != '')"))
    annotated = (df.withColumn("n_words", n)
                 .withColumn("reason", F.when(F.col("n_words") < int(ctx.cfg["min_words"]), F.lit("short")))
                 .withColumn("detail", F.when(F.col("reason").isNotNull(), F.concat(F.lit("words="),
                                                                                      F.col("n_words").cast("string")))))
    return StageResult.from_annotated(annotated)


WORDCOUNT = Stage(name="wordcount", summary="a stage of this test only: documents of at least N words",
                  spec=optional_section({"min_words": Count(0)}, required=("min_words",)),
                  transform=_wordcount_transform)


@pytest.fixture
def with_wordcount(monkeypatch):
    """The table with the test's stage after DP (so AS and the rest move one place down)."""
    monkeypatch.setattr(table, "STAGES", [table.STAGES[0], WORDCOUNT, *table.STAGES[1:]])
    return WORDCOUNT


@pytest.fixture(scope="module")
def small_jsonl(corpus_dir, tmp_path_factory) -> Path:
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    p = tmp_path_factory.mktemp("table_in") / "docs.jsonl"
    p.write_text("\n".join(lines[::15]) + "\n", encoding="utf-8")   # ~80 docs across sources and languages
    return p


def _rows(d: Path) -> list[dict]:
    """Decoded rows of a Parquet folder, read with pyarrow (not the code under test), in a canonical order."""
    files = sorted(p for p in d.rglob("*.parquet") if not any(x.startswith(("_", ".")) for x in p.relative_to(d).parts))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def test_a_stage_of_the_test_runs_in_the_chain_and_print_submit(spark, small_jsonl, models_dir, tmp_path,
                                                                 with_wordcount):
    out = tmp_path / "run"
    sets = ["pipeline.stages=[preprocess, wordcount]", "wordcount.min_words=60", *SMALL]
    assert run_chain(str(ROOT / "conf/pipeline.yaml"), sets, [str(small_jsonl)], str(out), spark=spark) == 0
    assert table.chain_dir(WORDCOUNT) == "20-wordcount"
    dp, wc = out / "10-preprocess", out / "20-wordcount"
    assert (wc / "_SUCCESS").exists()
    # its accounting, against counts made here from DP's kept rows with another word splitter
    dp_kept = _rows(dp / "data")
    short = {r["id"] for r in dp_kept if len(WORD.findall(r["text"])) < 60}
    kept, rejected = _rows(wc / "data"), _rows(wc / "rejected")
    assert short and len(short) < len(dp_kept)
    assert {r["id"] for r in rejected} == short and {r["reason"] for r in rejected} == {"short"}
    assert {r["id"] for r in kept} == {r["id"] for r in dp_kept} - short
    assert all(r["n_words"] >= 60 for r in kept)
    st = json.loads((wc / "stats.json").read_text())
    assert (st["stage"], st["input"], st["kept"], st["rejected"]) == ("wordcount", len(dp_kept), len(kept),
                                                                       {"short": len(short)})
    # a second run finds both current
    assert run_chain(str(ROOT / "conf/pipeline.yaml"), sets, [str(small_jsonl)], str(out), spark=spark) == 0
    assert json.loads((wc / "stats.json").read_text())["wall_s"] == st["wall_s"]

    # --print-submit: the test's stage between DP and AS, fed by DP, through the one generic entry
    lines = [l for l in submit_lines(str(ROOT / "conf/pipeline.yaml"),
                                     ["wordcount.min_words=60", "pipeline.cluster.python=./runtime/bin/python"],
                                     ["s3a://b/in"], "s3a://b/run") if "spark-submit" in l.split(" ")[0]]
    names = [l.split("jobs/stage.py ")[1].split(" ")[0] for l in lines]
    assert names == ["preprocess", "wordcount", "score", "filter", "dedup", "evaluate"]
    assert "jobs/stage.py wordcount --input s3a://b/run/10-preprocess --output s3a://b/run/20-wordcount" in lines[1]
    assert "--output s3a://b/run/30-score" in lines[2]

    # its section is part of the validated configuration, with its own spec
    with pytest.raises(ConfigError, match="wordcount.min_word: unknown key"):
        load_conf(overrides=["wordcount.min_word=3"])
    with pytest.raises(ConfigError, match="wordcount.min_words: expected an integer >= 0"):
        load_conf(overrides=["wordcount.min_words=-1"])


def test_without_the_test_stage_the_table_is_the_factory():
    assert table.names() == ["preprocess", "score", "filter", "dedup", "evaluate"]
    assert [table.chain_dir(s) for s in table.stages()] == ["10-preprocess", "20-score", "30-filter", "40-dedup",
                                                           "50-evaluate"]
    with pytest.raises(ConfigError, match="pipeline.stages"):
        load_conf(overrides=["pipeline.stages=[preprocess, wordcount]"])


def _comparable_stats(d: Path, root: Path) -> dict:
    st = json.loads((d / "stats.json").read_text().replace(str(root), "<run>"))
    for k in ("wall_s", "docs_per_s", "argv", "versions"):
        st.pop(k, None)
    for k in ("seconds",):   # per-step timings of CD
        for v in (st.get("extra") or {}).values():
            if isinstance(v, dict):
                v.pop(k, None)
    return st


def test_chain_in_one_session_equals_the_stage_jobs(spark, small_jsonl, models_dir, tmp_path):
    """The whole factory both ways: every stage its own `python -m jobs.stage NAME` process, and every stage in
    this test's session. Same kept rows, same rejected rows, same stats.json per stage."""
    a, b = tmp_path / "jobs", tmp_path / "session"
    r = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--input", str(small_jsonl), "--output", str(a),
                        "--runner", "python", *[x for s in SMALL for x in ("--set", s)]],
                       cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("-m jobs.stage ") == len(table.names())
    assert run_chain(str(ROOT / "conf/pipeline.yaml"), SMALL, [str(small_jsonl)], str(b), spark=spark) == 0
    for stage in table.stages():
        d = table.chain_dir(stage)
        fused = _comparable_stats(b / d, b).pop("fused", None)
        # in one session DP, AS and RF run fused (#27): only the group's last stage writes data/
        assert (fused is not None) == (stage.name in ("preprocess", "score", "filter")), d
        assert (b / d / "data").exists() == (fused is None or fused["data"].endswith(d)), d
        for part in ("data", "rejected") if (b / d / "data").exists() else ("rejected",):
            ra, rb = _rows(a / d / part), _rows(b / d / part)
            if fused is not None:   # the fused pass adds CD's fingerprints for CD to read (dataflow/core/fused.py)
                rb = sorted(({k: v for k, v in r.items() if k not in CARRIED} for r in rb),
                            key=lambda r: json.dumps(r, sort_keys=True, default=str))
            assert ra == rb, f"{d}/{part}: {len(ra)} rows by the jobs, {len(rb)} in one session"
        sa, sb = _comparable_stats(a / d, a), _comparable_stats(b / d, b)
        sb.pop("fused", None)
        for s in (sa, sb):
            (s.get("extra") or {}).pop("fingerprints", None)   # carried by the fused pass, or computed by CD
        if fused is not None and stage.name != "preprocess":   # fed by the stage before it in the pass, not by a folder
            assert sb.pop("inputs") == [f"<run>/{table.chain_dir(table.STAGES[table.STAGES.index(stage) - 1])}"]
            sa.pop("inputs")
        assert sa == sb, d
        assert json.loads((a / ".pipeline" / f"{d}.json").read_text())["chain_key"] == \
            json.loads((b / ".pipeline" / f"{d}.json").read_text())["chain_key"]
    assert sum(json.loads((b / d / "stats.json").read_text())["rejected_total"]
               for d in ("10-preprocess", "30-filter")) > 0    # the chain really filtered something


def test_filter_batch_form_decides_like_the_transform(spark, corpus_docs, tmp_path):
    """RF's batch form (one Arrow batch, no Spark) keeps, rejects and rewrites exactly what its Spark transform
    (`filter.stage.run`, the library call) does, and counts the units it removed."""
    from dataflow.core.schema import DOC_ARROW_SCHEMA
    from dataflow.stages.filter.stage import STAGE, run

    conf = load_conf()
    docs = [{"id": d["id"], "source": d["source"], "url": d.get("url"), "text": d["text"], "lang": d["lang"],
             "lang_score": 1.0, "meta": [], "source_type": "web"} for d in corpus_docs[::6] if d["lang"] in ("en", "zh")]
    tbl = pa.Table.from_pylist(docs, schema=DOC_ARROW_SCHEMA)
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(tbl, src / "part-0.parquet")
    result = run(spark.read.parquet(str(src)), conf["filter"], conf)
    [batch] = tbl.to_batches()
    res = STAGE.batch(conf)(batch)
    kept = sorted(res.kept.to_pylist(), key=lambda r: r["id"])
    rejected = sorted(res.rejected.to_pylist(), key=lambda r: r["id"])
    assert len(kept) + len(rejected) == len(docs)
    want_kept = sorted((r.asDict() for r in result.kept.collect()), key=lambda r: r["id"])
    want_rej = sorted((r.asDict() for r in result.rejected.collect()), key=lambda r: r["id"])
    assert [(r["id"], r["text"]) for r in kept] == [(r["id"], r["text"]) for r in want_kept]
    assert [(r["id"], r["reason"], r["detail"]) for r in rejected] == \
        [(r["id"], r["reason"], r["detail"]) for r in want_rej]
    assert rejected and kept
    units: dict[str, int] = {}
    for r in want_kept + want_rej:
        for rule, n in (r.get("rule_flags") or {}).items():
            units[rule] = units.get(rule, 0) + n
    assert {k.split(":", 1)[1]: v for k, v in res.counters.items() if k.startswith("units:")} == units and units


def test_every_job_is_a_shim():
    for p in sorted((ROOT / "jobs").glob("*.py")):
        n = len(p.read_text().splitlines())
        assert n <= 20, f"{p.name} has {n} lines: its logic belongs in dataflow/"


def test_every_stage_job_runs_help():
    for name in table.names():
        r = subprocess.run([sys.executable, "-m", "jobs.stage", name, "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and "--input" in r.stdout and "--output" in r.stdout, r.stderr


def test_chain_reruns_when_its_input_changed(spark, corpus_dir, models_dir, tmp_path):
    """The resume key covers what the input files hold (size, modification time), not only their paths: an input
    that grew from 50 to 80 lines is read again; an unchanged one is skipped."""
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    src = tmp_path / "in" / "docs.jsonl"
    src.parent.mkdir()
    src.write_text("\n".join(lines[:50]) + "\n", encoding="utf-8")
    out, sets = tmp_path / "run", ["pipeline.stages=[preprocess]", *SMALL]
    conf = str(ROOT / "conf/pipeline.yaml")

    def dp_input() -> int:
        return json.loads((out / "10-preprocess" / "stats.json").read_text())["input"]

    assert run_chain(conf, sets, [str(src.parent)], str(out), spark=spark) == 0 and dp_input() == 50
    first = (out / "10-preprocess" / "_SUCCESS").read_text()
    assert run_chain(conf, sets, [str(src.parent)], str(out), spark=spark) == 0
    assert (out / "10-preprocess" / "_SUCCESS").read_text() == first          # skipped: nothing changed
    with open(src, "a", encoding="utf-8") as f:
        f.write("\n".join(lines[50:80]) + "\n")
    assert run_chain(conf, sets, [str(src.parent)], str(out), spark=spark) == 0 and dp_input() == 80
