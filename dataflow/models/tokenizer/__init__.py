"""SentencePiece tokenizer: training (`train.py`) and Chinese vocabulary expansion (`expand.py`).

`read_documents` is the one reader the tokenizer jobs share: pipeline output (Parquet with `text`) or
JSONL (the corpus `docs.jsonl`, or supervised records with `type`/`prompt`/`response`). `check_model` is the
driver's check of the model tokenize, pack and mix use: it loads and round-trips a smoke sentence per language,
so a cut-off or overwritten file stops the run before any work, naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from dataflow.core import fs
from dataflow.core.spark import ship_file
from dataflow.core.stage import read_stage_input
from dataflow.models.langid.model import SMOKE_SENTENCES

# every field a JSONL input may carry; absent ones read as null. Reading with a fixed schema avoids a
# schema-inference pass over the whole input, `_corrupt_record` catches lines that are not JSON, and
# `_bad_fields` names fields whose value is not a string (`text:dict`): Spark's JSON reader would hand the
# JSON text of an object to a string column, and the tokenizer would encode it.
JSONL_FIELDS = ("id", "source", "url", "text", "lang", "label", "domain", "type", "source_type", "prompt", "response")
ENCODED_FIELDS = ("text", "prompt", "response")     # what the tokenizer encodes: strings only
JSONL_DDL = ", ".join(f"{f} string" for f in JSONL_FIELDS) + ", _corrupt_record string, _bad_fields string"
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".jsonl.bz2", ".ndjson")


def is_jsonl(paths: Iterable[str]) -> bool:
    paths = [str(p) for p in paths]
    return bool(paths) and all(p.endswith(JSONL_SUFFIXES) for p in paths)


def read_documents(spark, paths: Iterable[str], *, allow_incomplete: bool = False, raw_lines: bool = False):
    """(DataFrame, resolved paths). JSONL keeps malformed lines in `_corrupt_record`; Parquet is read as a
    stage output (a stage directory means its `data/`). `raw_lines`: JSONL comes back unparsed (its non-blank
    lines, one `value` column) for a consumer that parses in its own Python pass (`tokenize.run`)."""
    paths = [str(p) for p in paths]
    if is_jsonl(paths):
        for p in paths:
            if not fs.exists(p):
                raise FileNotFoundError(f"input path {p} does not exist")
        from pyspark.sql import functions as F

        lines = spark.read.text([fs.spark_uri(p) for p in paths]).filter(F.trim("value") != "")
        return (lines if raw_lines else lines.mapInArrow(_parse_jsonl, JSONL_DDL)), paths
    return read_stage_input(spark, paths, allow_incomplete=allow_incomplete, require=("text",))


def parse_jsonl_line(line: str) -> dict:
    """One JSONL line -> the JSONL_DDL fields. Not JSON (or not an object): `_corrupt_record` holds the line;
    a non-string field value reads as null and is named in `_bad_fields` (`text:dict`)."""
    out = dict.fromkeys(JSONL_FIELDS)
    out["_corrupt_record"] = out["_bad_fields"] = None
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        out["_corrupt_record"] = line
        return out
    bad = []
    for f in JSONL_FIELDS:
        v = rec.get(f)
        if v is None or isinstance(v, str):
            out[f] = v
        elif f not in ENCODED_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f] = json.dumps(v)      # a numeric id or label is still that id
        else:
            bad.append(f"{f}:{type(v).__name__}")
    out["_bad_fields"] = ",".join(bad) or None
    return out


def _parse_jsonl(batches):
    names = [*JSONL_FIELDS, "_corrupt_record", "_bad_fields"]
    schema = pa.schema([(n, pa.string()) for n in names])
    for b in batches:
        recs = [parse_jsonl_line(x) for x in b.column(0).to_pylist()]
        yield pa.RecordBatch.from_pylist(recs, schema=schema)


def pipeline_lang(lang: str | None) -> str | None:
    """Corpus language codes -> pipeline codes: zh-cn/zh-tw/zh-hans/zh-hant -> zh, others unchanged."""
    if lang is None:
        return None
    return "zh" if lang == "zh" or lang.startswith("zh-") else lang


def load_model(path: str):
    """A SentencePiece model read through the filesystem layer (a local path or a URI)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=fs.read_bytes(str(path)))


def check_model(path: str) -> None:
    """Load the tokenizer at `path` and round-trip every smoke sentence (encode, then decode gives the text as
    the model normalises it); raise ValueError naming the file otherwise."""
    hint = "a truncated or wrong file? Retrain it (jobs.train_tokenizer) or set tokenizer.model"
    try:
        sp = load_model(path)
    except Exception as e:     # sentencepiece: RuntimeError naming the protobuf parse
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"tokenizer model {path} does not load ({first}): {hint}") from None
    for lang, text in SMOKE_SENTENCES.items():
        ids = sp.encode(text)
        want = sp.normalize(text).replace("\u2581", " ").strip()
        if not ids or max(ids) >= sp.get_piece_size() or sp.decode(ids).strip() != want:
            raise ValueError(f"tokenizer model {path} does not round-trip its {lang} smoke sentence "
                             f"({len(ids)} ids decode to {sp.decode(ids)[:60]!r}): {hint}")


def ship_model(spark, path) -> str:
    """Ship a model under a content-addressed name and return the path workers load it by.

    SparkFiles is one flat namespace per session: a second, different `tokenizer.model` (say the expanded one
    after the base one) would clash with the first. A copy named `<sha256[:16]>-<name>` never clashes, and the
    same content maps to the same name, so shipping it again is a no-op."""
    data = fs.read_bytes(str(path))
    sha = hashlib.sha256(data).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "ziya2-shipped-models"   # a driver-local scratch copy, not an output
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"{sha}-{fs.basename(str(path))}"
    if not dest.exists():
        tmp = dest.with_suffix(dest.suffix + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return ship_file(spark, dest)
