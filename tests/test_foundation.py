"""The shared contract every stage relies on: configuration overrides, the config hash, and the one
place that does the accounting (write_stage)."""
from __future__ import annotations

import gzip
import json

import pytest

from conftest import gzip_members
from dataflow.core.config import apply_overrides, conf_hash
from dataflow.pipeline.conf import load_conf
from tools.corpus.warc import write_warc, write_wet
from dataflow.core.stage import AccountingError, StageResult, write_stage


def test_overrides_keep_types_and_create_sections():
    cfg = {"filter": {"min_chars": 200, "langs": ["zh", "en"]}}
    out = apply_overrides(cfg, ["filter.min_chars=50", "filter.langs=[en]", "dedup.steps=[url, exact]",
                                "filter.enabled=true"])
    assert out["filter"]["min_chars"] == 50
    assert out["filter"]["langs"] == ["en"]
    assert out["dedup"]["steps"] == ["url", "exact"]
    assert out["filter"]["enabled"] is True
    assert cfg["filter"]["min_chars"] == 200  # the original is untouched


@pytest.mark.parametrize("bad", ["filter.min_chars", "=3", "a..b=1"])
def test_malformed_override_is_a_clear_error(bad):
    with pytest.raises(ValueError):
        apply_overrides({}, [bad])


def test_override_cannot_replace_a_value_with_a_section():
    with pytest.raises(ValueError, match="is a value"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_conf_hash_ignores_key_order_but_not_values():
    assert conf_hash({"a": 1, "b": [1, 2]}) == conf_hash({"b": [1, 2], "a": 1})
    assert conf_hash({"a": 1}) != conf_hash({"a": 2})


def test_pipeline_conf_has_every_stage_section():
    cfg = load_conf()
    for name in ("spark", "preprocess", "score", "filter", "dedup", "evaluate"):
        assert name in cfg, name


def _docs_frame(spark, corpus_docs, n=60):
    rows = [(d["id"], d["source"], "", d["text"], d["lang"]) for d in corpus_docs[:n]]
    return spark.createDataFrame(rows, "id string, source string, url string, text string, lang string")


def test_write_stage_accounts_for_every_record(spark, corpus_docs, tmp_path):
    from pyspark.sql import functions as F

    df = _docs_frame(spark, corpus_docs)
    annotated = df.withColumn("reason", F.when(F.length("text") < 300, F.lit("too_short")))
    annotated = annotated.withColumn("detail", F.when(F.col("reason").isNotNull(), F.length("text").cast("string")))
    stats = write_stage(StageResult.from_annotated(annotated), tmp_path / "out", stage="t", input_count=60,
                        input_paths=["mem"], cfg={"x": 1})
    n_short = sum(1 for d in corpus_docs[:60] if len(d["text"]) < 300)
    assert stats["kept"] == 60 - n_short
    assert stats["rejected"] == ({"too_short": n_short} if n_short else {})
    written = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert written["input"] == written["kept"] + written["rejected_total"]
    assert written["chars"]["input"] == sum(len(d["text"]) for d in corpus_docs[:60])
    assert (tmp_path / "out" / "_SUCCESS").exists()
    kept = spark.read.parquet(str(tmp_path / "out" / "data"))
    assert "reason" not in kept.columns
    rej = spark.read.parquet(str(tmp_path / "out" / "rejected"))
    assert {"reason", "detail"} <= set(rej.columns)


def test_write_stage_refuses_to_mark_a_lossy_stage_done(spark, corpus_docs, tmp_path):
    from pyspark.sql import functions as F

    df = _docs_frame(spark, corpus_docs, 40)
    lossy = df.filter(F.length("text") > 300).withColumn("reason", F.lit(None).cast("string")) \
              .withColumn("detail", F.lit(None).cast("string"))
    with pytest.raises(AccountingError, match="input 40"):
        write_stage(StageResult.from_annotated(lossy), tmp_path / "out", stage="lossy", input_count=40)
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_warc_writer_output_reads_back_with_digests(corpus_dir, tmp_path):
    """The WARC/WET files `make data` builds are valid: gzip per record, parseable headers, right lengths."""
    man = [json.loads(line) for line in open(corpus_dir / "html_manifest.jsonl")][:3]
    pages = [{"url": m["url"], "body": (corpus_dir / m["path"]).read_bytes(), "content_type": "text/html",
              "date": "2024-01-01T00:00:00Z"} for m in man]
    path = tmp_path / "x.warc.gz"
    assert write_warc(str(path), pages) == 3
    raw = path.read_bytes()
    offs = gzip_members(path) + [len(raw)]  # every record is its own gzip member
    members = [gzip.decompress(raw[a:b]) for a, b in zip(offs, offs[1:])]
    assert len(members) == 1 + 2 * 3
    for m in members:
        head, _, rest = m.partition(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length:")).split(b":")[1])
        assert len(rest) == length + 4 and rest.endswith(b"\r\n\r\n")
    responses = [m for m in members if b"WARC-Type: response" in m]
    assert all(pages[i]["body"] in responses[i] for i in range(3))
    assert all(f"WARC-Target-URI: {p['url']}".encode() in r for p, r in zip(pages, responses))
    wet = tmp_path / "x.warc.wet.gz"
    assert write_wet(str(wet), [{"url": pages[0]["url"], "text": "第一章 概述", "date": "2024-01-01T00:00:00Z"}]) == 1
    assert "第一章 概述".encode() in gzip.decompress(wet.read_bytes())
    # rebuilding gives the same bytes (ids and gzip headers are deterministic)
    (tmp_path / "again").mkdir()
    write_warc(str(tmp_path / "again" / "x.warc.gz"), pages)
    assert (tmp_path / "again" / "x.warc.gz").read_bytes() == raw
