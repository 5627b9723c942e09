"""#25: a stage's `input` is what its readers saw, counted apart from what they yielded, and one bad record
costs that record alone.

Counts here are the test's own: rows it wrote into Parquet files, lines into JSONL, files into a folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import write_docs
from dataflow import ingest
from dataflow.core.stage import AccountingError, parquet_rows, read_stage_input

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cfg(models_dir):
    c = yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))["preprocess"]
    c["langid_model"] = str(models_dir / "langid.bin")
    return c


def run_dp(inputs, out, *sets):
    from dataflow.pipeline.job import run

    argv = ["--input", *map(str, inputs), "--output", str(out)]
    for s in sets:
        argv += ["--set", s]
    return run("preprocess", argv)


def rows_of(out: Path) -> list[dict]:
    return ds.dataset(out / "data").to_table().to_pylist() + ds.dataset(out / "rejected").to_table().to_pylist()


def test_odd_meta_rows_cost_nothing_and_input_is_the_footer_count(corpus_docs, tmp_path):
    """The issue's Parquet: 2,000 rows, one whose `meta` entries are not key/value pairs. Every
    row leaves as a row of its own (the odd `meta` kept whole), none is lost with its row group."""
    texts = [d["text"] for d in corpus_docs][:2000]
    texts = (texts * (2000 // len(texts) + 1))[:2000]
    meta = [[["k", str(i)]] for i in range(2000)]
    meta[7] = [["1", "2", "3"]]    # not a pair: used to raise inside the row group's loop and drop 989 rows
    meta[1500] = [["4"], ["5"]]
    p = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"text": texts, "meta": meta}), p, row_group_size=1000)
    counter: dict = {}
    cfg = yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))["preprocess"]
    rows = list(ingest.iter_file(str(p), "parquet", cfg, counter=counter))
    assert len(rows) == 2000 == counter["seen"] == counter["rows"]
    assert sorted(r["offset"] for r in rows) == list(range(2000))
    assert all(r["reason"] is None for r in rows)
    assert json.loads(rows[7]["meta"]["meta"]) == [["1", "2", "3"]] and rows[8]["meta"]["k"] == "8"


def test_a_record_that_breaks_the_per_record_code_is_one_row(spark, corpus_docs, cfg, tmp_path):
    """A JSONL field lands in `meta`; `member_record: "x"` used to raise in DP's id code and kill the task. Now
    it is one `malformed:record_error` row naming file and offset; its neighbours are kept."""
    docs = [d for d in corpus_docs if d["source"] == "fortunes-zh"][:20]
    lines = [json.dumps({"text": d["text"]}, ensure_ascii=False) for d in docs]
    lines[5] = json.dumps({"text": docs[5]["text"], "member_record": "not-a-number"}, ensure_ascii=False)
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    st = run_dp([d], out, f"preprocess.langid_model={cfg['langid_model']}")
    assert st["input"] == 20 == st["kept"] + st["rejected_total"]
    bad = [r for r in rows_of(out) if r.get("reason") == "malformed:record_error"]
    assert len(bad) == 1 and "a.jsonl" in bad[0]["detail"] and "ValueError" in bad[0]["detail"]
    assert dict(bad[0]["meta"])["offset"] == str(len("\n".join(lines[:5]).encode("utf-8")) + 1)


def test_per_record_time_limit_is_a_reason_of_its_own(cfg, pages):
    """`preprocess.max_record_seconds`: a record over it is `limit:time`; without the limit it is kept."""
    from dataflow.stages.preprocess.stage import Preprocessor

    en = next(p for p in pages if p["lang"] == "en")
    big = en["body"].replace(b"</body>", b"".join([b"<p>" + en["body"][-3000:] + b"</p>"] * 300) + b"</body>")
    raw = {"source": "t", "url": en["url"], "file": "/x/t.warc.gz", "offset": 0, "content": big, "text": None,
           "content_type": "text/html; charset=utf-8", "meta": {}, "reason": None, "detail": None,
           "source_type": None}
    limited = Preprocessor(dict(cfg, max_record_seconds=1e-6))(dict(raw))
    assert limited["reason"] == "limit:time" and "max_record_seconds" in limited["detail"]
    free = Preprocessor(dict(cfg, max_record_seconds=0))(dict(raw))
    assert free["reason"] is None and len(free["text"]) > 1000


def test_partition_folders_are_folders(spark, corpus_docs, tmp_path):
    """A later stage's input under `lang=zh/`: Spark's partition discovery used to set lang=zh on English
    documents. The documents keep their own `lang`, and `input` is the footers' row count."""
    en = [d for d in corpus_docs if d["lang"] == "en"][:40]
    rows = [{"id": f"e{i}", "source": d["source"], "url": None, "text": d["text"], "lang": "en", "lang_score": 0.9,
             "meta": {}, "source_type": "web"} for i, d in enumerate(en)]
    write_docs(spark, rows, tmp_path / "in" / "lang=zh")
    df, _ = read_stage_input(spark, [str(tmp_path / "in")])
    got = {r["lang"] for r in df.select("lang").collect()}
    assert got == {"en"} and df.columns.count("lang") == 1
    assert parquet_rows([str(tmp_path / "in")]) == 40 == df.count()


def test_spark_temporaries_are_not_stage_input(spark, corpus_docs, tmp_path):
    """`_temporary/` and `.trash/` copies under an input folder are neither read nor counted."""
    rows = [{"id": f"d{i}", "source": "s", "url": None, "text": d["text"], "lang": d["lang"], "lang_score": 0.9,
             "meta": {}, "source_type": "web"} for i, d in enumerate(corpus_docs[:30])]
    write_docs(spark, rows, tmp_path / "in")
    write_docs(spark, rows, tmp_path / "in" / "_temporary" / "0")
    write_docs(spark, rows, tmp_path / "in" / "sub" / ".trash")
    df, _ = read_stage_input(spark, [str(tmp_path / "in")])
    assert df.count() == 30 == parquet_rows([str(tmp_path / "in")])


def test_ledger_refuses_a_reader_that_yielded_less_than_it_saw(tmp_path):
    """The runner's check of the readers: a unit whose reader framed more than it yielded fails the stage,
    naming the file; a read task that left no count does too."""
    led = ingest.Ledger(str(tmp_path / "_seen"))
    led.record([{"path": "/in/a.jsonl", "lo": 0, "hi": 10, "seen": 5, "rows": 5}])
    assert led.seen(expected_units=1) == 5
    with pytest.raises(AccountingError, match="1 read units, the listing had 2"):
        led.seen(expected_units=2)
    led.record([{"path": "/in/b.parquet", "lo": 0, "hi": 10, "seen": 2000, "rows": 1011}])
    with pytest.raises(AccountingError, match=r"b\.parquet.*saw 2000, yielded 1011"):
        led.seen()
    # a task that runs again writes the same file: counted once
    led.record([{"path": "/in/a.jsonl", "lo": 0, "hi": 10, "seen": 5, "rows": 5}])
    assert len(led.units()) == 2


def test_a_file_no_reader_takes_is_a_row_not_a_silence(tmp_path, corpus_docs):
    """A folder holding files of formats no reader takes: each one is a `skipped:unknown_format` row naming
    it, counted as seen, beside the records of the files that are read."""
    cfg = yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))["preprocess"]
    lines = [json.dumps({"text": d["text"]}, ensure_ascii=False) for d in corpus_docs[:7]]
    (tmp_path / "docs.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "notes.html").write_text("<p>not an input format</p>", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dump.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    rows, seen = [], 0
    for f in ingest.list_inputs([str(tmp_path)]):
        counter: dict = {}
        rows += list(ingest.iter_file(f.path, f.fmt, cfg, counter=counter, rel=f.rel))
        seen += counter["seen"]
    assert len(rows) == seen == 7 + 2
    skipped = sorted(r["meta"]["rel_path"] for r in rows if r["reason"] == "skipped:unknown_format")
    assert skipped == ["notes.html", "sub/dump.csv"]


def test_progress_measures_the_whole_stage(spark, corpus_docs, tmp_path):
    """#26: the progress line counts the stage's input, not Spark's sub-stages: DP by the bytes of the read units
    its ledger recorded, a Parquet stage by the records read out of its footers' rows, with an ETA from that share."""
    from dataflow.core.progress import read_work, work_line

    led = ingest.Ledger(str(tmp_path / "_seen"))
    files = [ingest.InputFile(str(tmp_path / f"f{i}.warc.gz"), "warc", 1000, str(tmp_path)) for i in range(4)]
    w = led.work(files)
    assert w.done() == (0, 0) and work_line("preprocess", w, 10.0) is None
    led.record([{"path": files[0].path, "lo": 0, "hi": 1000, "seen": 30, "rows": 30}])
    text = work_line("preprocess", w, 10.0)
    assert w.done() == (1000, 30) and "30 records" in text and "1.0 kB of 4.0 kB" in text
    assert "3 rec/s" in text and "ETA 0:30" in text          # a quarter done in 10 s: 30 s to go
    rows = [{"id": f"d{i}", "source": "s", "url": None, "text": d["text"], "lang": d["lang"], "lang_score": 0.9,
             "meta": {}, "source_type": "web"} for i, d in enumerate(corpus_docs[:50])]
    write_docs(spark, rows, tmp_path / "in")
    rw = read_work(spark, parquet_rows([str(tmp_path / "in")]))
    spark.read.parquet(str(tmp_path / "in")).count()     # Spark reads the input once...
    spark.read.parquet(str(tmp_path / "in")).collect()   # ...and again: the share never passes the input
    assert rw.total == 50 and rw.done()[0] == 50 and "50 of 50 records" in work_line("score", rw, 5.0)
