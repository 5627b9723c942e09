"""SentencePiece tokenizer: training (`train.py`) and Chinese vocabulary expansion (`expand.py`).

`read_documents` is the one reader the tokenizer jobs share: pipeline output (Parquet with `text`) or
JSONL (the corpus `docs.jsonl`, or supervised records with `type`/`prompt`/`response`).
"""
from __future__ import annotations

import os
from typing import Iterable

# every field a JSONL input may carry; absent ones read as null. Reading with a fixed schema avoids a
# schema-inference pass over the whole input, and `_corrupt_record` catches lines that are not JSON.
JSONL_DDL = ("id string, source string, url string, text string, lang string, label string, domain string, "
             "type string, prompt string, response string, _corrupt_record string")
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".jsonl.bz2", ".ndjson")


def is_jsonl(paths: Iterable[str]) -> bool:
    paths = [str(p) for p in paths]
    return bool(paths) and all(p.endswith(JSONL_SUFFIXES) for p in paths)


def read_documents(spark, paths: Iterable[str]):
    """(DataFrame, resolved paths). JSONL keeps malformed lines in `_corrupt_record`; Parquet is read as a
    stage output (a stage directory means its `data/`)."""
    from ..stage import read_stage_input

    paths = [str(p) for p in paths]
    if is_jsonl(paths):
        for p in paths:
            if not os.path.exists(p):
                raise FileNotFoundError(f"input path {p} does not exist")
        df = (spark.read.schema(JSONL_DDL).option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", "_corrupt_record").json(paths))
        return df, paths
    return read_stage_input(spark, paths)


def pipeline_lang(lang: str | None) -> str | None:
    """Corpus language codes -> pipeline codes: zh-cn/zh-tw/zh-hans/zh-hant -> zh, others unchanged."""
    if lang is None:
        return None
    return "zh" if lang == "zh" or lang.startswith("zh-") else lang


def ship_model(spark, path) -> str:
    """Ship a model under a content-addressed name and return the path workers load it by.

    SparkFiles is one flat namespace per session: a second, different `tokenizer.model` (say the expanded one
    after the base one) would clash with the first. A copy named `<sha256[:16]>-<name>` never clashes, and the
    same content maps to the same name, so shipping it again is a no-op."""
    import hashlib
    import shutil
    import tempfile
    from pathlib import Path

    from ..spark import ship_file

    src = Path(path).resolve()
    sha = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "ziya2-shipped-models"
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"{sha}-{src.name}"
    if not dest.exists():
        tmp = dest.with_suffix(dest.suffix + f".{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
    return ship_file(spark, dest)
