"""Train a SentencePiece BPE tokenizer the way LLaMA-2 (and so Ziya2) did, from a seeded document sample.

The sample is drawn in Spark (a seeded hash of the text decides, so the same input and seed give the same
sample whatever the partitioning) and written by the executors, one sentence a line, to the output URI through
`dataflow.core.fs` (no disk is shared with the driver). SentencePiece trains on a local file, so the driver
copies those parts, through fs, into a local temporary directory, trains there, and writes the model, the
vocabulary, `train_sentences.txt` and the report to the output URI (a path or s3://, ...): training is a
single-machine step by nature. The vocabulary report is computed back in Spark over the same sample.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from dataflow.core import fs, fsio
from dataflow.core.confschema import Bool, Count, Float, Int, Section, Str
from dataflow.core.spark import load_once
from dataflow.models.tokenizer import pipeline_lang, ship_model

# TrainerSpec keys passed through from conf unchanged (everything else in the section is ours)
_SPM_KEYS = ("model_type", "vocab_size", "character_coverage", "split_digits", "byte_fallback",
             "max_sentence_length", "input_sentence_size", "shuffle_input_sentence", "num_threads",
             "normalization_rule_name", "add_dummy_prefix", "remove_extra_whitespaces",
             "allow_whitespace_only_pieces", "split_by_unicode_script", "split_by_number",
             "max_sentencepiece_length", "unk_id", "bos_id", "eos_id", "pad_id")


def sample_documents(df, tcfg: Mapping):
    """A seeded, partition-independent sample: keep a document when a hash of (seed, text) falls under
    `sample_fraction`, then the `max_docs` smallest hashes."""
    from pyspark.sql import functions as F

    seed, frac = int(tcfg["seed"]), float(tcfg["sample_fraction"])
    scale = int(tcfg["hash_buckets"])
    h = F.xxhash64(F.lit(seed), F.col("text"))
    df = df.filter(F.col("text").isNotNull() & (F.length(F.trim("text")) > 0))
    cols = [F.col("text"), (F.col("lang") if "lang" in df.columns else F.lit(None).cast("string")).alias("lang")]
    out = (df.select(*cols, h.alias("_h"))
             .filter(F.pmod(F.col("_h"), F.lit(scale)) < F.lit(int(frac * scale))))
    return out.orderBy("_h", "text").limit(int(tcfg["max_docs"])).drop("_h")


def _lines(batches, out) -> int:
    rows = 0
    for b in batches:
        for line in b.column("value").to_pylist():
            out.write((line + "\n").encode("utf-8"))
            rows += 1
    return rows


def write_sentences(sample, parts_dir: str) -> list[fsio.Part]:
    """One line per non-empty text line, written by the executors to `parts_dir` (any URI) through fs; no driver
    collect. The parts, in sample order; the sample being empty is an error."""
    from pyspark.sql import functions as F

    lines = (sample.select(F.explode(F.split("text", "\n")).alias("value"))
                   .filter(F.length(F.trim("value")) > 0))
    fs.delete(parts_dir)
    parts = fsio.write_parts(lines, parts_dir, ".txt", _lines, skip_empty=True)
    if not parts:
        raise ValueError("the tokenizer sample is empty: no document has text")
    return parts


def train_model(sentences: Path, out_dir: Path, tcfg: Mapping) -> Path:
    """SentencePiece on a local sentence file into the local directory `out_dir` (the trainer reads and writes
    only local files): `out_dir`/tokenizer.model and tokenizer.vocab."""
    import sentencepiece as spm

    fs.makedirs(str(out_dir))
    spm.set_random_generator_seed(int(tcfg["seed"]))  # input_sentence_size subsampling is seeded
    kwargs = {k: tcfg[k] for k in _SPM_KEYS if k in tcfg}
    spm.SentencePieceTrainer.train(input=str(sentences), model_prefix=str(out_dir / "tokenizer"),
                                   minloglevel=2, **kwargs)
    return out_dir / "tokenizer.model"


# ---------------------------------------------------------------- vocabulary report
def _load_sp(path: str):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=path)
    is_byte = np.array([sp.is_byte(i) for i in range(sp.get_piece_size())], dtype=bool)
    return sp, is_byte


def doc_token_stats(text: str, sp, is_byte: np.ndarray) -> tuple[int, int, int]:
    """(characters, tokens, byte-fallback tokens) of one text."""
    ids = np.asarray(sp.encode(text), dtype=np.int64)
    return len(text), len(ids), int(is_byte[ids].sum()) if len(ids) else 0


def digit_report(sp) -> dict:
    """split_digits check from the model itself: no piece may hold a digit next to anything else."""
    multi = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
             if not sp.is_byte(i) and not sp.is_control(i)
             and any(c.isdigit() for c in sp.id_to_piece(i)) and len(sp.id_to_piece(i).lstrip("▁")) > 1]
    probe = "2023年12月31日 1234567.89"
    return {"pieces_with_digit_and_more": len(multi), "examples": multi[:10],
            "probe": probe, "probe_pieces": sp.encode(probe, out_type=str)}


def vocab_report(spark, sample, model_path: Path, tcfg: Mapping) -> dict:
    """Size, per-language pieces per character and byte-fallback share over the training sample."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    path = ship_model(spark, model_path)

    def stats(batches):
        sp, is_byte = load_once("sentencepiece+bytes", path, _load_sp)
        for b in batches:
            texts, langs = b.column("text").to_pylist(), b.column("lang").to_pylist()
            rows = [doc_token_stats(t, sp, is_byte) for t in texts]
            yield pa.RecordBatch.from_arrays(
                [pa.array([pipeline_lang(l) or "und" for l in langs]),
                 pa.array([r[0] for r in rows], pa.int64()), pa.array([r[1] for r in rows], pa.int64()),
                 pa.array([r[2] for r in rows], pa.int64())], names=["lang", "chars", "tokens", "byte_tokens"])

    agg = (sample.mapInArrow(stats, "lang string, chars long, tokens long, byte_tokens long")
                 .groupBy("lang").agg(F.count(F.lit(1)).alias("docs"), F.sum("chars").alias("chars"),
                                      F.sum("tokens").alias("tokens"), F.sum("byte_tokens").alias("byte_tokens"))
                 .collect())
    per_lang = {}
    for r in sorted(agg, key=lambda r: -r["chars"]):
        per_lang[r["lang"]] = {"docs": r["docs"], "chars": r["chars"], "tokens": r["tokens"],
                               "pieces_per_char": round(r["tokens"] / max(1, r["chars"]), 4),
                               "byte_fallback_share": round(r["byte_tokens"] / max(1, r["tokens"]), 4)}
    sp, _ = _load_sp(str(model_path))
    return {"model": str(model_path), "vocab_size": sp.get_piece_size(),
            "model_type": tcfg.get("model_type"), "character_coverage": tcfg.get("character_coverage"),
            "split_digits": tcfg.get("split_digits"), "byte_fallback": tcfg.get("byte_fallback"),
            "byte_pieces": int(sum(sp.is_byte(i) for i in range(sp.get_piece_size()))),
            "special": {"unk_id": sp.unk_id(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "pad_id": sp.pad_id()},
            "sample_docs": sum(v["docs"] for v in per_lang.values()),
            "languages": per_lang, "digits": digit_report(sp)}


def report_markdown(rep: Mapping) -> str:
    lines = [f"# Tokenizer report: `{rep['model']}`", "",
             f"- vocabulary: {rep['vocab_size']} pieces ({rep['byte_pieces']} byte-fallback pieces), "
             f"{rep['model_type']}, character_coverage {rep['character_coverage']}",
             f"- special ids: {rep['special']}",
             f"- split_digits={rep['split_digits']}: {rep['digits']['pieces_with_digit_and_more']} pieces hold a "
             f"digit together with another character; `{rep['digits']['probe']}` -> "
             f"`{' '.join(rep['digits']['probe_pieces'])}`",
             f"- measured on the {rep['sample_docs']} training-sample documents", "",
             "| lang | docs | chars | tokens | pieces/char | byte-fallback share |", "|---|---|---|---|---|---|"]
    for lang, v in rep["languages"].items():
        lines.append(f"| {lang} | {v['docs']} | {v['chars']} | {v['tokens']} | {v['pieces_per_char']} | "
                     f"{v['byte_fallback_share']} |")
    return "\n".join(lines) + "\n"


def write_report(rep: Mapping, out_dir: str) -> None:
    fs.write_text(fs.join(out_dir, "vocab_report.json"), json.dumps(rep, indent=2, ensure_ascii=False) + "\n")
    fs.write_text(fs.join(out_dir, "vocab_report.md"), report_markdown(rep))


def _publish(work: str, out_dir: str, names) -> None:
    """The files `names` of the local directory `work` streamed to `out_dir` (any URI) through fs."""
    for name in names:
        fsio.from_local(os.path.join(work, name), fs.join(out_dir, name))


def train(spark, df, out_dir: str | os.PathLike, tcfg: Mapping) -> dict:
    """Sample, train, report into `out_dir` (a path or any URI): tokenizer.model, tokenizer.vocab,
    train_sentences.txt, vocab_report.{json,md}. Returns the report."""
    out_dir = fs.normalize(str(out_dir))
    parts_dir = fs.join(out_dir, "_sentences")
    sample = sample_documents(df, tcfg).persist()
    try:
        parts = write_sentences(sample, parts_dir)
        with tempfile.TemporaryDirectory(prefix="ziya2-tokenizer-") as work:
            sentences = os.path.join(work, "train_sentences.txt")
            fsio.to_local([p.uri for p in parts], sentences)
            model = train_model(Path(sentences), Path(work), tcfg)
            rep = vocab_report(spark, sample, model, tcfg)
            _publish(work, out_dir, ("tokenizer.model", "tokenizer.vocab", "train_sentences.txt"))
    finally:
        sample.unpersist()
        fs.delete(parts_dir)
    rep["model"] = fs.join(out_dir, "tokenizer.model")
    write_report(rep, out_dir)
    return rep


# tokenizer.train: SentencePiece TrainerSpec keys pass through (open); the ones the pipeline relies on are typed
TRAIN_SPEC = Section({
    "model_type": Str(["bpe", "unigram", "char", "word"]), "vocab_size": Count(1),
    "character_coverage": Float(0, 1, min_exclusive=True), "split_digits": Bool(), "byte_fallback": Bool(),
    "max_sentence_length": Count(1), "input_sentence_size": Count(0), "shuffle_input_sentence": Bool(),
    "num_threads": Count(1), "sample_fraction": Float(0, 1, min_exclusive=True), "max_docs": Count(1),
    "hash_buckets": Count(1), "seed": Int(),
}, open=True, required=())
