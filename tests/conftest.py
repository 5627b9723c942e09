"""Shared test fixtures: one session-scoped local[2] SparkSession and the real sample corpus; the test tiers.

The corpus and models come from `make data` and `make models` (`make test` runs both when missing);
tests never download anything and never use synthetic stand-ins for the corpus text.

Tiers. `make test` runs `pytest -m "not e2e"` (under 8 minutes on 2 cores); `make test-all` (and CI, .ci/run)
runs everything. Nobody marks a test `e2e` by hand: `pytest_collection_modifyitems` below derives it from what
the test uses, that is its own code, the fixtures it requests (and theirs) and the helper functions of the test
modules those call, followed transitively (library code is not followed). A test is `e2e` when that code

  1. requests a fixture that starts a service: `cluster` (a Spark standalone master and workers, `make
     cluster-up`) or `s3` (a moto S3 server);
  2. runs `subprocess.Popen`: a child process it drives while it runs, i.e. a job killed mid-write and
     resumed, a server, the ranks of a distributed (gloo) DeepSpeed run;
  3. runs the whole chain `jobs.pipeline` in a child process (its own JVM per run or per stage): a function
     of it names `jobs.pipeline` and not `--print-submit` (which only prints lines and starts no Spark);
  4. or carries an explicit `slow` mark, for a cost none of the above shows.

Everything else (the local[2] session, in-process stage runs, single-process DeepSpeed steps, `python -m jobs.X`
children that fail on the driver or print help) is the default tier. `pytest -m e2e --collect-only -q` lists
the tier; each mark carries its reason (`item.get_closest_marker("e2e").kwargs["reason"]`). Tests that skip
without CUDA (a skipif whose reason names CUDA, or a skipif on a test whose own code uses `cuda`) are also marked
`gpu` (`pytest -m gpu` runs them on a GPU machine); on CPU they skip, in either tier.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import types
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

TESTS = Path(__file__).resolve().parent
E2E_FIXTURES = {"cluster": "a Spark standalone cluster", "s3": "a moto S3 server"}


def _names_and_strings(code: types.CodeType, names: set, strings: set) -> None:
    """Global and attribute names a code object (and its lambdas, comprehensions, inner functions) refers to,
    and its string constants."""
    names.update(code.co_names)
    for c in code.co_consts:
        if isinstance(c, str):
            strings.add(c)
        elif isinstance(c, types.CodeType):
            _names_and_strings(c, names, strings)


def _is_test_code(fn) -> bool:
    try:
        return Path(inspect.getsourcefile(fn)).resolve().is_relative_to(TESTS)
    except (TypeError, OSError):
        return False


def _what_it_uses(item) -> tuple[set, list[set]]:
    """Names, and string constants per function, of the test function, its fixtures' functions and,
    transitively, every function of the test modules (conftest included) that those refer to by a global name."""
    todo = [item.function]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        todo += [d.func for d in defs]
    names, strings, seen = set(), [], set()
    while todo:
        fn = inspect.unwrap(todo.pop())
        code = getattr(fn, "__code__", None)
        if code is None or code in seen or not _is_test_code(fn):
            continue
        seen.add(code)
        found, consts = set(), set()
        _names_and_strings(code, found, consts)
        names |= found
        strings.append(consts)
        glb = getattr(fn, "__globals__", {})
        todo += [glb[n] for n in found if isinstance(glb.get(n), types.FunctionType)]
    return names, strings


def e2e_reason(item) -> str | None:
    """Why a collected test belongs to the e2e tier (the rule in this module's docstring), or None."""
    services = [f"fixture {f!r}: {E2E_FIXTURES[f]}" for f in getattr(item, "fixturenames", ())
                if f in E2E_FIXTURES]
    if services:
        return "; ".join(services)
    if not hasattr(item, "function"):
        return None
    names, strings = _what_it_uses(item)
    if "Popen" in names:
        return "drives a child process while it runs (subprocess.Popen)"
    if any("jobs.pipeline" in c and "--print-submit" not in c for c in strings):
        return "runs the whole chain (jobs.pipeline) in a child process"
    if item.get_closest_marker("slow"):
        return "marked slow"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = e2e_reason(item)
        if reason:
            item.add_marker(pytest.mark.e2e(reason=reason))
        if needs_cuda(item):
            item.add_marker(pytest.mark.gpu)


def needs_cuda(item) -> bool:
    """A test with a skipif whose reason names CUDA, or a skipif on a test whose own code uses `cuda`."""
    skips = list(item.iter_markers("skipif"))
    if not skips:
        return False
    if any("cuda" in str(m.kwargs.get("reason", "")).lower() for m in skips):
        return True
    if not hasattr(item, "function"):
        return False
    names, strings = set(), set()
    _names_and_strings(inspect.unwrap(item.function).__code__, names, strings)
    return "cuda" in names or "cuda" in strings


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
