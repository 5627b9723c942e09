"""RF stage with Spark: the job end to end on the fixture corpus (DP-shaped input built from docs.jsonl),
accounting from stats.json, per-rule statistics against the pure-Python engine, seeded examples, and
independence from the partition count."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dataflow.pipeline.conf import load_conf
from dataflow.stages.filter.stage import _CHARS, _ORIG, FLAGS, run, write_examples
from dataflow.stages.filter.rules import active_rules, all_rules
from dataflow.stages.filter.rules.engine import RuleEngine
from dataflow.core.schema import DOC_DDL

ZH_MAP = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh"}
CFG = load_conf()["filter"]


def dp_rows(corpus_docs):
    """The fixture as DP output: id, source, url, text, lang (pipeline codes), lang_score, meta. The last record
    is a real one whose text went missing (malformed input must be accounted for, not dropped)."""
    rows = [(d["id"], d["source"], None, d["text"], ZH_MAP.get(d["lang"], d["lang"]), 1.0,
             {"license": d.get("license") or "", "label": d["label"]}) for d in corpus_docs]
    first = corpus_docs[0]
    rows.append((first["id"] + ":broken", first["source"], None, None, "en", 1.0, {}))
    return rows


@pytest.fixture(scope="module")
def job_out(spark, corpus_docs, tmp_path_factory):
    from jobs.filter import main

    tmp = tmp_path_factory.mktemp("rf")
    spark.createDataFrame(dp_rows(corpus_docs), DOC_DDL).write.parquet(str(tmp / "in"))
    main(["--input", str(tmp / "in"), "--output", str(tmp / "out")])
    return tmp / "out"


@pytest.fixture(scope="module")
def expected(corpus_docs):
    engine = RuleEngine(CFG)
    return {d["id"]: engine.filter_text(d["text"], ZH_MAP.get(d["lang"], d["lang"])) for d in corpus_docs}


def test_accounting_and_layout(job_out, corpus_docs):
    stats = json.loads((job_out / "stats.json").read_text())
    assert (job_out / "_SUCCESS").exists()
    assert stats["input"] == len(corpus_docs) + 1
    assert stats["input"] == stats["kept"] + stats["rejected_total"]
    assert stats["rejected"]["malformed:text"] == 1
    assert stats["extra"]["malformed"] == {"malformed:text": 1}
    assert set(stats["extra"]["lexicons"]) == {p for r in active_rules(CFG) for p in r.params.get("lexicons", {}).values()}


def test_kept_and_rejected_match_the_engine(spark, job_out, expected):
    kept = spark.read.parquet(str(job_out / "data"))
    rej = spark.read.parquet(str(job_out / "rejected"))
    assert FLAGS in kept.columns and _CHARS not in kept.columns and _ORIG not in kept.columns
    assert {"reason", "detail"} <= set(rej.columns) and "reason" not in kept.columns
    got_kept = {r["id"]: (r["text"], dict(r[FLAGS])) for r in kept.select("id", "text", FLAGS).collect()}
    want_kept = {i: (o.text, o.units) for i, o in expected.items() if o.reason is None}
    assert got_kept == want_kept
    got_rej = {r["id"]: r["reason"] for r in rej.select("id", "reason").collect()}
    assert {i: o.reason for i, o in expected.items() if o.reason} == {i: r for i, r in got_rej.items() if not r.startswith("malformed")}
    assert rej.where("detail is null").count() == 0
    # a rejected document keeps its input text for audit
    one = next(i for i, o in expected.items() if o.reason == "c4.terminal_punct")
    assert rej.where(f"id = '{one}'").first()["text"] != ""


def test_per_rule_stats(job_out, expected):
    stats = json.loads((job_out / "stats.json").read_text())
    per_rule = stats["extra"]["rules"]
    assert set(per_rule) == {r.name for r in all_rules()}
    for r in all_rules():
        docs = sum(1 for o in expected.values() if o.reason == r.name)
        units = sum(o.units.get(r.name, 0) for o in expected.values())
        chars = sum(o.chars.get(r.name, 0) for o in expected.values())
        s = per_rule[r.name]
        assert s["documents"] == docs, r.name
        assert s["chars"] == chars, r.name
        assert s["paragraphs"] == (units if r.level == "paragraph" else 0), r.name
        assert s["sentences"] == (units if r.level == "sentence" else 0), r.name
        assert stats["rejected"].get(r.name, 0) == docs
    # the fixture exercises all three levels
    assert per_rule["c4.terminal_punct"]["paragraphs"] > 0 and per_rule["gopher_quality.word_count"]["documents"] > 0


def test_examples_are_seeded_and_show_before_after(job_out, expected, corpus_docs):
    texts = {d["id"]: d["text"] for d in corpus_docs}
    levels = {r.name: r.level for r in all_rules()}
    ex_dir = job_out / "examples"
    fired = {name for o in expected.values() for name in o.units}
    assert {p.stem for p in ex_dir.glob("*.jsonl")} == fired
    n = CFG["examples_per_rule"]
    for p in ex_dir.glob("*.jsonl"):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        assert 1 <= len(rows) <= n
        for row in rows:
            o = expected[row["id"]]
            assert p.stem in o.units
            if levels[p.stem] in ("document", "final"):
                assert row["removed"] is None
            else:  # the removed units themselves, verbatim from the input, at most example_removed_units
                assert 1 <= len(row["removed"]) <= CFG["example_removed_units"]
                assert all(u in texts[row["id"]] for u in row["removed"])
            if o.reason is None:
                assert row["after"] is not None and row["before"] != row["after"]
            else:
                assert row["rejected_by"] == o.reason and row["after"] is None


def test_result_does_not_depend_on_partitioning(spark, corpus_docs, tmp_path):
    # every third document (all sources, both languages) keeps this test cheap; the job test covers them all
    base = spark.createDataFrame(dp_rows(corpus_docs[::3]), DOC_DDL)
    outs = []
    for parts in (1, 5):
        res = run(base.repartition(parts), CFG)
        write_examples(res.annotated, tmp_path / str(parts), CFG)
        kept = sorted((r["id"], r["text"]) for r in res.kept.select("id", "text").collect())
        rej = sorted((r["id"], r["reason"]) for r in res.rejected.select("id", "reason").collect())
        res.annotated.unpersist()
        exs = {p.name: p.read_text() for p in sorted((tmp_path / str(parts) / "examples").glob("*.jsonl"))}
        outs.append((kept, rej, exs))
    assert outs[0] == outs[1]


def test_list_rules_cli():
    out = subprocess.run([sys.executable, "-m", "jobs.filter", "--list-rules"], capture_output=True, text=True,
                         check=True).stdout
    for r in all_rules():
        assert r.name in out
    lines = [ln for ln in out.splitlines()[1:] if ln.strip()]
    assert len(lines) == len(all_rules()) >= 30
    off = subprocess.run([sys.executable, "-m", "jobs.filter", "--list-rules",
                          "--set", "filter.rules.c4.javascript.enabled=false"], capture_output=True, text=True,
                         check=True).stdout
    assert next(ln for ln in off.splitlines() if "c4.javascript" in ln).split()[4] == "no"
