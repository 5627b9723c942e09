"""#27: the factory's per-document stages fused into one pass (dataflow/core/fused.py).

DP -> AS -> RF fused (the default chain in one session) against the same chain one stage at a time
(`pipeline.fuse=false`), on the fixture and on a hostile mix (malformed JSON lines and WARC members, empty and
null texts, every source type, a type that does not exist): the same kept rows, the same rejected rows (reason,
detail) per stage and the same stats.json counts per stage. The group is the resume unit; a batch form that
loses a row fails the accounting before anything is committed. Counts are the test's own (lines written, rows
read back with pyarrow).
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflow.core.contract import Batched, BatchResult, Stage
from dataflow.pipeline.chain import run_chain
from dataflow.stages import table

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "conf/pipeline.yaml")
GROUP = ["10-preprocess", "20-score", "30-filter"]
SETS = ["spark.conf.spark.sql.shuffle.partitions=4", "preprocess.batch_rows=16"]


def _rows(d: Path) -> list[dict]:
    """Decoded rows of a Parquet folder, read with pyarrow (not the code under test), in a canonical order."""
    files = sorted(p for p in d.rglob("*.parquet") if not any(x.startswith(("_", ".")) for x in p.relative_to(d).parts))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _counts(d: Path) -> dict:
    st = json.loads((d / "stats.json").read_text())
    extra = st.get("extra") or {}
    for k in ("single_pass", "fingerprints"):   # how the work was done, not what it decided
        extra.pop(k, None)
    for v in extra.values():
        if isinstance(v, dict):
            v.pop("seconds", None)
    return {k: st[k] for k in ("stage", "input", "kept", "rejected_total", "rejected", "chars", "bytes", "by_type")
            if k in st} | {"extra": json.loads(json.dumps(extra).replace(str(d.parent), "<run>"))}


@pytest.fixture(scope="module")
def hostile(corpus_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A folder of real documents and broken records of every kind the readers meet, with the test's own count
    of the records a reader sees in it."""
    d = tmp_path_factory.mktemp("hostile")
    docs = [json.loads(l) for l in (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()][::9]
    lines = [json.dumps({"id": x["id"], "text": x["text"], "url": x.get("url")}, ensure_ascii=False) for x in docs]
    types = ["web", "code", "paper", "qa", "wiki", "book", "supervised"]
    lines += [json.dumps({"id": f"typed-{t}", "text": docs[i]["text"], "source_type": t}, ensure_ascii=False)
              for i, t in enumerate(types)]
    lines += [
        '{"id": "broken", "text": "unterminated',            # not JSON
        '["a", "list", "not", "an", "object"]',              # JSON, not an object
        '{"id": "no-text"}',                                  # no text field
        '{"id": "null-text", "text": null}',
        '{"id": "empty", "text": ""}',
        '{"id": "blank", "text": "   \\n\\t  "}',
        json.dumps({"id": "bogus-type", "text": docs[0]["text"], "source_type": "bogus"}),
        json.dumps({"id": "short", "text": "ok."}),
    ]
    (d / "mix.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # the fixture's WARC files, and one cut inside its last gzip member (a truncated download)
    for w in sorted((corpus_dir / "warc").glob("*.warc.gz")):
        shutil.copy(w, d / w.name)
    cut = (corpus_dir / "warc" / "fixture-00000.warc.gz").read_bytes()
    (d / "cut.warc.gz").write_bytes(cut[: len(cut) - 700])
    return d, {"jsonl_lines": len(lines)}


def _chain(inputs: list[Path], out: Path, spark, *sets: str) -> None:
    assert run_chain(CONF, [*SETS, *sets], [str(i) for i in inputs], str(out), spark=spark) == 0


@pytest.mark.parametrize("which", ["fixture", "hostile"])
def test_fused_pass_equals_the_stages_one_by_one(which, spark, corpus_dir, hostile, models_dir, tmp_path):
    inputs = [corpus_dir / "warc", corpus_dir / "docs.jsonl"] if which == "fixture" else [hostile[0]]
    fused, alone = tmp_path / "fused", tmp_path / "alone"
    stages = "pipeline.stages=[preprocess, score, filter, dedup]"
    _chain(inputs, fused, spark, stages)
    _chain(inputs, alone, spark, stages, "pipeline.fuse=false")
    for d in GROUP:
        st = json.loads((fused / d / "stats.json").read_text())
        assert st["fused"]["stages"] == ["preprocess", "score", "filter"]
        # only the group's last stage keeps its rows; the others hold none for anyone to read by mistake
        assert (fused / d / "data").exists() == (d == GROUP[-1])
        assert (alone / d / "data").exists()
        assert _rows(fused / d / "rejected") == _rows(alone / d / "rejected"), d
        assert _counts(fused / d) == _counts(alone / d), d
    # the fused pass computed CD's fingerprints while it held the text: CD used them, and wrote what it writes
    # when it shingles the text itself
    carried = set(_rows(fused / GROUP[-1] / "data")[0]) - set(_rows(alone / GROUP[-1] / "data")[0])
    assert carried == {"_text_hash", "_exact", "_simhash", "_mh_sig", "_mh_bands", "_mh_set", "_sh_set", "_fp_plan"}
    stripped = [{k: v for k, v in r.items() if k not in carried} for r in _rows(fused / GROUP[-1] / "data")]
    assert sorted(stripped, key=lambda r: json.dumps(r, sort_keys=True, default=str)) == _rows(alone / GROUP[-1] / "data")
    assert _rows(fused / "40-dedup" / "data") == _rows(alone / "40-dedup" / "data")
    assert _rows(fused / "40-dedup" / "rejected") == _rows(alone / "40-dedup" / "rejected")
    assert _counts(fused / "40-dedup") == _counts(alone / "40-dedup")
    how = {k: json.loads((k / "40-dedup" / "stats.json").read_text())["extra"]["fingerprints"] for k in (fused, alone)}
    assert how == {fused: "carried", alone: "computed"}
    # the accounting, from rows read here: each stage's rejected rows plus the next stage's input
    seen = json.loads((alone / GROUP[0] / "stats.json").read_text())["input"]
    for d, nxt in zip(GROUP, GROUP[1:] + [None]):
        rej = len(_rows(fused / d / "rejected"))
        kept = len(_rows(fused / d / "data")) if nxt is None else json.loads((fused / nxt / "stats.json").read_text())["input"]
        assert seen == rej + kept, d
        seen = kept
    if which == "hostile":
        dp = {r["reason"] for r in _rows(fused / GROUP[0] / "rejected")}
        assert {"malformed:json", "malformed:json_not_object", "malformed:missing_text", "malformed:empty_text",
                "malformed:source_type"} <= dp, dp
        cut = [r for r in _rows(fused / GROUP[0] / "rejected") if "cut.warc.gz" in (r["detail"] or "")]
        assert cut and all(r["reason"].startswith("malformed:") for r in cut), dp
        types = {r["source_type"] for r in _rows(fused / GROUP[-1] / "data")}
        assert {"web", "code", "supervised"} <= types, types


def test_the_group_is_the_resume_unit(spark, corpus_dir, models_dir, tmp_path):
    out = tmp_path / "run"
    stages = "pipeline.stages=[preprocess, score, filter, dedup]"
    _chain([corpus_dir / "docs.jsonl"], out, spark, stages)
    marks = {d: (out / d / "_SUCCESS").read_text() for d in [*GROUP, "40-dedup"]}
    assert json.loads((out / "40-dedup" / "stats.json").read_text())["extra"]["fingerprints"] == "carried"
    # a change to CD alone: the fused group stays done, and CD does not trust fingerprints made for other settings
    _chain([corpus_dir / "docs.jsonl"], out, spark, stages, "dedup.minhash.jaccard=0.75")
    assert all((out / d / "_SUCCESS").read_text() == marks[d] for d in GROUP)
    assert (out / "40-dedup" / "_SUCCESS").read_text() != marks["40-dedup"]
    assert json.loads((out / "40-dedup" / "stats.json").read_text())["extra"]["fingerprints"] == "computed"
    # a change to RF, the group's last stage: AS kept no data/ of its own, so the whole group runs again
    _chain([corpus_dir / "docs.jsonl"], out, spark, stages, "filter.rules.gopher_quality.word_count.min_words=80")
    assert all((out / d / "_SUCCESS").read_text() != marks[d] for d in GROUP)
    # a stage run alone from inside a fused group is refused, naming the directory
    from dataflow.core.stage import IncompleteInputError, stage_input_paths

    with pytest.raises(IncompleteInputError, match="20-score holds no data/"):
        stage_input_paths([str(out / "20-score")])


def _losing_form(conf):
    """A per-document stage that drops the last row of every batch: neither kept nor rejected."""
    def annotate(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.append_column("reason", pa.nulls(batch.num_rows, pa.string())).append_column(
            "detail", pa.nulls(batch.num_rows, pa.string()))

    def split(annotated: pa.RecordBatch) -> BatchResult:
        res = BatchResult.from_annotated(annotated)
        res.kept = res.kept.slice(0, max(0, res.kept.num_rows - 1))
        return res

    return Batched(annotate=annotate, split=split)


LOSSY = Stage(name="lossy", summary="a stage of this test only: loses a row per batch", transform=None,
              batch=_losing_form)


def test_a_batch_form_that_loses_rows_commits_nothing(spark, corpus_dir, models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(table, "STAGES", [table.STAGES[0], LOSSY, *table.STAGES[1:]])
    out = tmp_path / "run"
    rc = run_chain(CONF, [*SETS, "pipeline.stages=[preprocess, lossy, score]"], [str(corpus_dir / "docs.jsonl")],
                   str(out), spark=spark)
    assert rc == 1
    for d in ("10-preprocess", "20-lossy", "30-score"):
        assert not (out / d / "_SUCCESS").exists(), d
        assert not (out / ".pipeline" / f"{d}.json").exists(), d


def test_example_order_restates_spark(spark, corpus_docs):
    """RF prunes its audit-example candidates per batch with Spark's xxhash64(seed, id) restated in Python."""
    from pyspark.sql import functions as F

    from dataflow.stages.filter.stage import spark_seed_hash

    ids = [d["id"] for d in corpus_docs] + ["", "ü-ñ-中文", "x" * 300]
    got = {r["id"]: r["h"] for r in spark.createDataFrame([(i,) for i in ids], "id string")
           .select("id", F.xxhash64(F.lit(1234), F.col("id")).alias("h")).collect()}
    assert got == {i: spark_seed_hash(1234, i) for i in ids}


def test_drop_with_computed_cutoffs_keeps_as_out_of_the_pass(spark, corpus_dir, models_dir, tmp_path):
    """`score.drop` needs every perplexity before any bucket is known; fused, RF would see rows AS drops. AS then
    runs alone (its two-pass transform) and DP and RF each run as a pass of their own."""
    small = tmp_path / "in.jsonl"
    small.write_text("\n".join((corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()[::10]) + "\n",
                     encoding="utf-8")
    out = tmp_path / "run"
    _chain([small], out, spark, "pipeline.stages=[preprocess, score, filter]", "score.drop=[low]")
    stats = {d: json.loads((out / d / "stats.json").read_text()) for d in GROUP}
    assert all("fused" not in st and (out / d / "data").exists() for d, st in stats.items())
    assert stats["20-score"]["extra"]["single_pass"] == "scratch"
    low = stats["20-score"]["rejected"].get("quality:low", 0)
    assert low > 0 and low == sum(q.get("low", 0) for q in stats["20-score"]["extra"]["quality_by_lang"].values())
    assert stats["30-filter"]["input"] == stats["20-score"]["kept"] == len(_rows(out / "20-score" / "data"))
