"""No work that changes nothing (#27.5): AS keeps no scratch copy of the text and scores each record once;
`write_stage` writes data/ and rejected/ in one pass and counts rows, characters and bytes as it writes, never
reading an output back. Every count compared here is made by the test from its own rows."""
from __future__ import annotations

import random
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrameReader

from dataflow.core.schema import DOC_ARROW_SCHEMA
from dataflow.core.stage import Attempt, StageResult, write_stage
from dataflow.models.lm.train import pipeline_lang
from dataflow.pipeline.conf import load_conf
from dataflow.stages.score.stage import bucket, run

CONF = load_conf()


def _parquet_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*.parquet") if not any(x.startswith(("_", ".")) for x in p.relative_to(d).parts))


def _rows(d: Path) -> list[dict]:
    """An output folder's rows, read with pyarrow (not the code under test)."""
    return [r for f in _parquet_files(d) for r in pq.read_table(f).to_pylist()]


def _plan(df) -> str:
    return df._jdf.queryExecution().optimizedPlan().toString()


@contextmanager
def no_reads():
    """Inside it, any DataFrameReader load in this process raises: what runs under it reads nothing back."""
    def refuse(self, *paths, **kw):
        raise AssertionError(f"read back {paths}")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("parquet", "load", "json", "text", "orc", "csv", "table"):
            mp.setattr(DataFrameReader, name, refuse)
        yield


def _jobs(spark, group: str, fn):
    """fn() run in its own job group; (its result, the Spark jobs it ran)."""
    sc = spark.sparkContext
    sc.setJobGroup(group, group)
    try:
        out = fn()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return out, len(sc.statusTracker().getJobIdsForGroup(group))


# ------------------------------------------------------------------ write_stage: one pass, counted while writing
def _annotated_input(spark, corpus_docs, tmp_path, n=160):
    """n corpus documents as a Parquet input; the test's own decision: texts under 400 characters are `short`,
    those of source `wamerican` are `words`, the rest kept. Returns (frame, {id: reason or None}, docs)."""
    from pyspark.sql import functions as F

    docs = corpus_docs[::7][:n]
    src = tmp_path / "in.parquet"
    types = ("web", "book", None)
    pq.write_table(pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs],
                             "source": [d["source"] for d in docs],
                             "source_type": [types[i % 3] for i in range(len(docs))]}), src)
    df = spark.read.parquet(str(src))
    reason = (F.when(F.length("text") < 400, F.lit("short")).when(F.col("source") == "wamerican", F.lit("words")))
    ann = df.withColumn("reason", reason).withColumn("detail", F.when(reason.isNotNull(), F.col("source")))
    want = {d["id"]: ("short" if len(d["text"]) < 400 else "words" if d["source"] == "wamerican" else None)
            for d in docs}
    return ann, want, [dict(d, source_type=types[i % 3]) for i, d in enumerate(docs)]


@pytest.mark.parametrize("persist", [True, False])
def test_write_stage_writes_both_outputs_in_one_pass_and_reads_nothing_back(spark, corpus_docs, tmp_path, persist):
    ann, want, docs = _annotated_input(spark, corpus_docs, tmp_path)
    reasons = Counter(r for r in want.values() if r)
    assert reasons["short"] and reasons["words"] and sum(1 for r in want.values() if r is None)
    result = StageResult.from_annotated(ann, persist=persist)
    out = tmp_path / "out"
    with no_reads():
        stats, jobs = _jobs(spark, f"write-{persist}", lambda: write_stage(result, out, stage="t", input_count=len(docs)))
    assert jobs == 1          # data/ and rejected/ in one pass: no second write, no read-back, no count job

    by_id = {d["id"]: d for d in docs}
    kept, rej = _rows(out / "data"), _rows(out / "rejected")
    assert sorted(r["id"] for r in kept) == sorted(i for i, r in want.items() if r is None)
    assert sorted((r["id"], r["reason"]) for r in rej) == sorted((i, r) for i, r in want.items() if r)
    assert "reason" not in kept[0] and rej[0]["detail"] == by_id[rej[0]["id"]]["source"]
    # every count from the test's own documents
    kept_docs = [by_id[i] for i, r in want.items() if r is None]
    assert stats["input"] == len(docs) and stats["kept"] == len(kept_docs)
    assert stats["rejected"] == dict(sorted(reasons.items())) and stats["rejected_total"] == sum(reasons.values())
    assert stats["chars"]["kept"] == sum(len(d["text"]) for d in kept_docs)
    assert stats["bytes"]["kept"] == sum(len(d["text"].encode()) for d in kept_docs)
    for reason in reasons:
        mine = [by_id[i] for i, r in want.items() if r == reason]
        assert stats["chars"]["rejected"][reason] == sum(len(d["text"]) for d in mine)
        assert stats["bytes"]["rejected"][reason] == sum(len(d["text"].encode()) for d in mine)
    assert stats["chars"]["input"] == sum(len(d["text"]) for d in docs)
    for t, counts in stats["by_type"].items():
        mine = [d for d in docs if (d["source_type"] or "none") == t]
        assert counts["input"] == len(mine)
        assert counts["kept"] == sum(1 for d in mine if want[d["id"]] is None)
        assert counts["rejected_by_reason"] == dict(sorted(Counter(want[d["id"]] for d in mine if want[d["id"]]).items()))
    assert sum(c["input"] for c in stats["by_type"].values()) == len(docs)


def test_an_output_no_row_reaches_is_a_readable_empty_folder(spark, corpus_docs, tmp_path):
    """All kept: rejected/ still holds a Parquet file with the rejected columns (reason, detail) and no rows."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame([(d["id"], d["text"]) for d in corpus_docs[:20]], "id string, text string")
    ann = df.withColumn("reason", F.lit(None).cast("string")).withColumn("detail", F.lit(None).cast("string"))
    stats = write_stage(StageResult.from_annotated(ann, persist=False), tmp_path / "out", stage="t", input_count=20)
    assert stats["kept"] == 20 and stats["rejected"] == {} and stats["chars"]["rejected"] == {}
    files = _parquet_files(tmp_path / "out/rejected")
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 0
    assert pq.read_schema(files[0]).names == ["id", "text", "reason", "detail"]
    assert spark.read.parquet(str(tmp_path / "out/rejected")).columns == ["id", "text", "reason", "detail"]


# ------------------------------------------------------------------ AS: no text copy, one scoring per record
@pytest.fixture(scope="module")
def scfg(models_dir):
    return {**CONF["score"], "model_dir": str(models_dir / "lm"), "relative_error": 0.0}


def test_score_keeps_no_copy_of_the_text_and_scores_each_record_once(spark, corpus_docs, scfg, tmp_path):
    """Computed cutoffs and --drop low (the two-pass mode): after pass 1 the attempt holds only narrow scores,
    one row per record; the frames written in pass 2 look those up and never run the scorer; the outputs are
    what the cutoffs imply, and nothing but data/, rejected/ and the side files is left."""
    docs = [d for d in corpus_docs if pipeline_lang(d["lang"]) in ("en", "zh")][::4] + \
        [d for d in corpus_docs if d["lang"] == "de"][:3]
    rows = [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": pipeline_lang(d["lang"]),
             "lang_score": 1.0, "meta": [("label", d["label"])]} for d in docs]
    df = spark.createDataFrame(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA)).repartition(3)
    cfg = {**scfg, "drop": ["low"]}
    out = tmp_path / "out"
    attempt = Attempt(out).begin()
    res = run(df, cfg, conf=CONF, attempt=attempt)

    # pass 1 is done: every Parquet file in the attempt is narrow, and together they hold each record once
    files = sorted(Path(attempt.dir).rglob("*.parquet"))
    assert files
    for f in files:
        assert "text" not in pq.read_schema(f).names, f
    scored = [r for f in files for r in pq.read_table(f, columns=["id", "ppl"]).to_pylist()]
    assert sorted(r["id"] for r in scored) == sorted(d["id"] for d in docs)
    text_bytes = sum(len(d["text"].encode()) for d in docs)
    assert sum(f.stat().st_size for f in files) < text_bytes / 10
    # pass 2 looks the scores up; the scorer (an Arrow UDF over the text) is in no plan that writes
    for frame in (res.annotated, res.kept, res.rejected):
        plan = _plan(frame)
        assert "scores_of(" in plan and "score_text(" not in plan, plan

    stats = write_stage(res, out, stage="score", input_count=len(docs), cfg=cfg, attempt=attempt)
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "data", "rejected", "stats.json"]
    ppl = {r["id"]: r["ppl"] for r in scored}
    cuts = stats["extra"]["cutoffs"]
    want = {d["id"]: bucket(ppl[d["id"]], cuts.get(pipeline_lang(d["lang"]))) for d in docs}
    kept, rej = _rows(out / "data"), _rows(out / "rejected")
    assert {r["id"]: r["quality"] for r in kept} == {i: q for i, q in want.items() if q != "low"}
    assert {r["id"]: (r["quality"], r["reason"]) for r in rej} == \
        {i: (q, "quality:low") for i, q in want.items() if q == "low"}
    assert all(r["ppl"] == ppl[r["id"]] for r in kept + rej)
    by_id = {d["id"]: d for d in docs}
    assert stats["rejected"] == {"quality:low": sum(1 for q in want.values() if q == "low")} and stats["kept"] == len(kept)
    assert stats["chars"]["kept"] == sum(len(by_id[r["id"]]["text"]) for r in kept)
    assert stats["chars"]["rejected"]["quality:low"] == sum(len(by_id[r["id"]]["text"]) for r in rej)
    assert stats["extra"]["quality_by_lang"]["de"] == {"unscored": 3}
    q = Counter((pipeline_lang(d["lang"]), want[d["id"]]) for d in docs)
    assert {(l, b): n for l, qs in stats["extra"]["quality_by_lang"].items() for b, n in qs.items()} == dict(q)


def test_score_rejects_an_input_that_gives_other_rows_the_second_time(spark, corpus_docs, scfg, tmp_path):
    """Pass 2 finds each record's scores by partition and fingerprint: an input frame whose rows change between
    the passes fails loudly instead of giving a record another's scores."""
    from pyspark.sql import functions as F

    docs = [d for d in corpus_docs if pipeline_lang(d["lang"]) == "en"][:60]
    rows = [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": "en", "lang_score": 1.0,
             "meta": []} for d in docs]
    src = spark.createDataFrame(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA)).coalesce(1)
    # each computation of the frame appends a space to a random half of the texts: the two passes see other rows
    # (all 60 choices alike in both passes: a chance of 2^-60)
    jitter = F.udf(lambda t: t + " " * random.randint(0, 1), "string").asNondeterministic()
    df = src.withColumn("text", jitter("text"))
    res = run(df, scfg, conf=CONF)
    with pytest.raises(Exception, match="no scores from pass 1"):
        write_stage(res, tmp_path / "out", stage="score", input_count=len(docs), cfg=scfg)
    assert not (tmp_path / "out/_SUCCESS").exists()
