"""Shared test fixtures: one session-scoped local[2] SparkSession and the real sample corpus.

The corpus and models come from `make data` and `make models` (`make test` runs both when missing);
tests never download anything and never use synthetic stand-ins for the corpus text.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
FIXTURE = BUILD / "corpus" / "out" / "fixture"
MODELS = BUILD / "models"

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(BUILD / "torch_extensions"))


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    s = (SparkSession.builder.master("local[2]").appName("ziya2-tests")
         .config("spark.sql.shuffle.partitions", "4")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "3g")
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (FIXTURE / "docs.jsonl").exists():
        pytest.exit(f"the sample corpus is missing at {FIXTURE}: run `make data` first", returncode=2)
    return FIXTURE


@pytest.fixture(scope="session")
def corpus_docs(corpus_dir) -> list[dict]:
    with open(corpus_dir / "docs.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS / "langid.bin").exists():
        pytest.exit(f"models are missing at {MODELS}: run `make models` first", returncode=2)
    return MODELS


@pytest.fixture(scope="session")
def pages(corpus_dir) -> list[dict]:
    """The corpus's real HTML pages as WARC writer input (url, body, lang, content type, a fixed crawl date)."""
    out = []
    for line in open(corpus_dir / "html_manifest.jsonl", encoding="utf-8"):
        m = json.loads(line)
        out.append({"url": m["url"], "body": (corpus_dir / m["path"]).read_bytes(), "lang": m["lang"],
                    "content_type": "text/html; charset=utf-8", "date": "2024-01-01T00:00:00Z"})
    return out


def write_docs(spark, rows: list[dict], path) -> None:
    """Document rows (dicts of the DP record, `source_type` included) as a 3-partition Parquet stage input."""
    import pyarrow as pa

    from dataflow.core.schema import DOC_ARROW_SCHEMA

    spark.createDataFrame(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA)).repartition(3).write.parquet(str(path))


def tiny_train_config(mix, out: Path, *overrides):
    """conf/train/tiny.yaml shrunk further for trainer tests: data from `mix`, checkpoints and metrics under `out`,
    no progress bar, TensorBoard or plots; `overrides` (dotted key=value) come last and win."""
    from trainer.config import load_config

    return load_config(ROOT / "conf/train/tiny.yaml", [
        f"data.root={mix}", f"checkpoint.dir={out / 'ckpt'}", f"metrics.dir={out}", "metrics.progress_bar=false",
        "metrics.tensorboard=false", "metrics.plot=false", "model.dim=64", "model.ffn_dim=176", *overrides])


def gzip_members(path: Path) -> list[int]:
    """Start offsets of the gzip members of a file (independent of the WARC reader under test)."""
    import zlib

    data, offs, i = path.read_bytes(), [], 0
    while i < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[i:])
        offs.append(i)
        i = len(data) - len(d.unused_data)
    return offs


def train_test_tokenizer(corpus_docs: list[dict], d: Path, vocab_size: int = 3000) -> Path:
    """A small LLaMA-style BPE (digits split, byte fallback) trained on every non-blank corpus line."""
    import sentencepiece as spm

    lines = [line for doc in corpus_docs for line in doc["text"].split("\n") if line.strip()]
    (d / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(d / "lines.txt"), model_prefix=str(d / "tok"), vocab_size=vocab_size,
                                   model_type="bpe", byte_fallback=True, split_digits=True, num_threads=1,
                                   character_coverage=0.98, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, minloglevel=2)
    return d / "tok.model"
