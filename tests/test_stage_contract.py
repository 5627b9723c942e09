"""The stage contract (DESIGN §2, §8; #11.4): atomic outputs committed with `_SUCCESS` last, inputs without
`_SUCCESS` refused, no output inside its input, files of different schemas read safely, URIs for outputs,
and a stage killed with SIGKILL mid-write that reruns to the same rows while the next stage refuses its
unfinished output."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import train_test_tokenizer
from dataflow.core.stage import (AccountingError, IncompleteInputError, StageResult, read_stage_input, write_stage)

ROOT = Path(__file__).resolve().parent.parent
DOC_DDL = "id string, source string, url string, text string, lang string"


def _docs(corpus_docs, n):
    return [(d["id"], d["source"], d.get("url") or "", d["text"], d["lang"]) for d in corpus_docs[:n]]


def _finished_stage(spark, corpus_docs, out: Path, n: int) -> Path:
    """A finished stage directory holding the first n corpus documents, all kept."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame(_docs(corpus_docs, n), DOC_DDL)
    ann = df.withColumn("reason", F.lit(None).cast("string")).withColumn("detail", F.lit(None).cast("string"))
    write_stage(StageResult.from_annotated(ann), out, stage="input", input_count=n)
    return out


def _rows(d: Path) -> list[dict]:
    """Decoded rows of a Parquet folder, read with pyarrow (not the code under test), sorted by id."""
    files = sorted(p for p in d.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.relative_to(d).parts))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def test_commit_writes_success_last_and_leaves_no_attempt(spark, corpus_docs, tmp_path):
    out = _finished_stage(spark, corpus_docs, tmp_path / "s", 30)
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "data", "rejected", "stats.json"]
    assert (out / "_SUCCESS").stat().st_mtime_ns >= (out / "stats.json").stat().st_mtime_ns
    assert sorted(r["id"] for r in _rows(out / "data")) == sorted(d["id"] for d in corpus_docs[:30])


def test_failed_accounting_commits_nothing_and_readers_refuse(spark, corpus_docs, tmp_path):
    from pyspark.sql import functions as F

    out = _finished_stage(spark, corpus_docs, tmp_path / "s", 30)      # an earlier, good output
    df = spark.createDataFrame(_docs(corpus_docs, 40), DOC_DDL)
    lossy = (df.filter(F.length("text") > 300).withColumn("reason", F.lit(None).cast("string"))
             .withColumn("detail", F.lit(None).cast("string")))
    with pytest.raises(AccountingError):
        write_stage(StageResult.from_annotated(lossy), out, stage="lossy", input_count=40)
    assert not (out / "_SUCCESS").exists()
    assert not [p for p in out.iterdir() if p.name.startswith("_attempt-")]
    assert len(_rows(out / "data")) == 30          # the earlier data was never overwritten
    with pytest.raises(IncompleteInputError, match=f"{out}.*_SUCCESS"):
        read_stage_input(spark, [str(out)])
    df, paths = read_stage_input(spark, [str(out)], allow_incomplete=True)
    assert df.count() == 30 and paths == [str(out / "data")]


def test_output_inside_input_and_input_inside_output_are_refused(spark, corpus_docs, tmp_path):
    src = _finished_stage(spark, corpus_docs, tmp_path / "run" / "a", 10)
    with pytest.raises(IncompleteInputError, match="inside input"):
        read_stage_input(spark, [str(src)], output=str(src / "again"))
    with pytest.raises(IncompleteInputError, match="inside input"):
        read_stage_input(spark, [str(src)], output=str(src))
    with pytest.raises(IncompleteInputError, match="inside output"):
        read_stage_input(spark, [str(src)], output=str(tmp_path / "run"))
    read_stage_input(spark, [str(src)], output=str(tmp_path / "run" / "b"))   # a sibling is fine


def test_files_with_different_schemas(spark, corpus_docs, tmp_path):
    """A folder whose files differ: an extra column is merged (read, not dropped); a missing `lang` would
    read as null (score: silently no_model), so it is an error naming the file."""
    docs = corpus_docs[:20]
    full = pa.table({"id": [d["id"] for d in docs[:10]], "text": [d["text"] for d in docs[:10]],
                     "lang": [d["lang"] for d in docs[:10]]})
    extra = full.append_column("quality", pa.array(["high"] * 10))
    d1 = tmp_path / "merge"
    d1.mkdir()
    pq.write_table(full, d1 / "part-0.parquet")
    pq.write_table(extra.slice(0, 5), d1 / "part-1.parquet")
    df, _ = read_stage_input(spark, [str(d1)])
    assert "quality" in df.columns and df.count() == 15
    assert df.filter("quality = 'high'").count() == 5
    d2 = tmp_path / "lacking"
    d2.mkdir()
    pq.write_table(full, d2 / "part-0.parquet")
    pq.write_table(full.drop(["lang"]), d2 / "part-1.parquet")
    with pytest.raises(ValueError, match="lack column 'lang'.*part-1.parquet"):
        read_stage_input(spark, [str(d2)])


def test_file_uri_output_lands_at_its_path(spark, corpus_docs, tmp_path):
    from pyspark.sql import functions as F

    df = spark.createDataFrame(_docs(corpus_docs, 12), DOC_DDL)
    ann = df.withColumn("reason", F.lit(None).cast("string")).withColumn("detail", F.lit(None).cast("string"))
    write_stage(StageResult.from_annotated(ann), f"file://{tmp_path}/uri-out", stage="uri", input_count=12,
                side_files=lambda st: {"note.json": json.dumps({"kept": st["kept"]})})
    assert (tmp_path / "uri-out" / "_SUCCESS").exists()
    assert json.loads((tmp_path / "uri-out" / "note.json").read_text()) == {"kept": 12}
    assert not Path("file:").exists()


def test_tokenize_rejects_non_string_text(spark, corpus_docs, tmp_path):
    from dataflow.pipeline.conf import load_conf
    from dataflow.trainset.tokenize import run
    from dataflow.models.tokenizer import read_documents

    good = [{"id": d["id"], "source": d["source"], "text": d["text"]} for d in corpus_docs[:8]]
    bad = [{"id": "obj", "source": "x", "text": {"body": corpus_docs[0]["text"]}},
           {"id": "list", "source": "x", "text": [corpus_docs[1]["text"]]},
           {"id": "num", "source": "x", "text": 12345},
           {"id": "resp", "source": "x", "type": "qa", "prompt": "Q?", "response": {"a": 1}}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in good + bad), encoding="utf-8")
    tok = tmp_path / "tok"
    tok.mkdir()
    tcfg = dict(load_conf()["tokenizer"], model=str(train_test_tokenizer(corpus_docs, tok)))
    df, _ = read_documents(spark, [str(path)])
    stats = write_stage(run(df, tcfg), tmp_path / "out", stage="tokenize", input_count=len(good) + len(bad), cfg=tcfg)
    assert stats["kept"] == len(good)
    assert stats["rejected"] == {"malformed:type": len(bad)}
    rej = {r["id"]: r["detail"] for r in _rows(tmp_path / "out" / "rejected")}
    assert "text:dict" in rej["obj"] and "text:list" in rej["list"] and "text:int" in rej["num"]
    assert "response:dict" in rej["resp"]


def _wait_for(pred, proc, limit_s):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if pred() or proc.poll() is not None:
            return pred()
        time.sleep(0.05)   # polling a subprocess's progress, not waiting for a result
    return False


def test_sigkill_mid_write_then_rerun_gives_the_same_rows(spark, corpus_docs, tmp_path):
    import jobs.filter

    src = _finished_stage(spark, corpus_docs, tmp_path / "10-in", 300)
    ref, out = tmp_path / "ref", tmp_path / "30-filter"
    jobs.filter.main(["--input", str(src), "--output", str(ref)])          # uninterrupted, in this process
    cmd = [sys.executable, "-m", "jobs.filter", "--input", str(src), "--output", str(out),
           "--set", "spark.driver_memory=1g", "--set", "spark.master=local[1]"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        writing = _wait_for(lambda: out.exists() and any(p.name.startswith("_attempt-") and any(p.iterdir())
                                                         for p in out.iterdir()), proc, 600)
        assert writing, "the job ended before it began writing"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "_SUCCESS").exists()

    t0 = time.time()
    down = subprocess.run([sys.executable, "-m", "jobs.dedup", "--input", str(out), "--output", str(tmp_path / "40")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert down.returncode == 2 and f"input {out} is an unfinished stage output" in down.stderr, down.stderr[-2000:]
    assert time.time() - t0 < 15 and not (tmp_path / "40").exists()

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (out / "_SUCCESS").exists()
    assert not [p for p in out.iterdir() if p.name.startswith("_attempt-")]
    assert _rows(out / "data") == _rows(ref / "data")
    assert _rows(out / "rejected") == _rows(ref / "rejected")
    assert len(_rows(out / "data")) + len(_rows(out / "rejected")) == 300
    st = json.loads((out / "stats.json").read_text())
    assert (st["input"], st["kept"], st["rejected"]) == (300, len(_rows(ref / "data")),
                                                         json.loads((ref / "stats.json").read_text())["rejected"])
    assert sorted(p.name for p in (out / "examples").iterdir()) == sorted(p.name for p in (ref / "examples").iterdir())


def test_progress_line_from_the_status_store(spark, corpus_docs):
    """One progress line per stage, read from Spark's status store while a real job runs."""
    import io

    from pyspark.sql import functions as F

    from dataflow.core.progress import line, snapshot, stage_progress

    assert snapshot(spark) == {"tasks": 0, "done": 0, "records": 0, "bytes": 0}   # idle: nothing running
    assert spark.sparkContext._jsc.sc().statusStore().activeStages().size() == 0    # the JVM path, not the fallback
    # 41,220 records in 13 s, 2 of 8 tasks done, the first seen at 1 s: (13 - 1) x 6/8 / (2/8) = 36 s left
    assert line("filter", {"tasks": 8, "done": 2, "records": 41220, "bytes": 96_400_000}, 13.0, {"t": 1.0}) == \
        "[filter]  2/8 tasks  41,220 records  96.4 MB read  3,171 rec/s  elapsed 0:13  ETA 0:36"
    stream = io.StringIO()
    slow_len = F.udf(lambda t: len(t or ""), "int")
    df = spark.createDataFrame(_docs(corpus_docs, 400), DOC_DDL).repartition(8)
    with stage_progress(spark, "t", stream=stream, interval=0.05, log_every=0):
        total = df.select(slow_len("text").alias("n")).agg(F.sum("n")).first()[0]
    assert total == sum(len(d["text"]) for d in corpus_docs[:400])
    lines = stream.getvalue().splitlines()
    assert lines and all(ln.startswith("[t]  ") and " tasks  " in ln for ln in lines), lines
