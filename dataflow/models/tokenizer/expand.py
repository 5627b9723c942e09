"""Chinese vocabulary expansion (Ziya2 §3: 7,400 Chinese characters added to LLaMA-2's vocabulary).

Count CJK characters in a Chinese corpus (Spark), take the N most frequent that the base model does not
hold as a piece, append them to the model proto as NORMAL pieces, and write `init_map.json`: each new id
-> the base ids that character used to split into (byte-fallback pieces for LLaMA-2), which the trainer
averages to initialise the new embedding rows. Old ids keep their pieces, so old checkpoints stay valid.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Mapping, Sequence

from dataflow.core import fs
from dataflow.core.text import HAN_RE
from dataflow.core.confschema import Count, Float, optional_section


def han_counts(text: str) -> Counter:
    """Occurrences of each Chinese character (`dataflow.core.text.HAN_RANGES`, the one home of the ranges) in `text`."""
    return Counter(HAN_RE.findall(text or ""))


def count_chars(df, ecfg: Mapping) -> list[tuple[str, int]]:
    """(char, count) over the corpus, most frequent first (ties by code point). Per-batch counters are
    combined in Spark; only the per-character totals (a few tens of thousands at most) reach the driver."""
    import pyarrow as pa
    from pyspark.sql import functions as F


    def count(batches):
        for b in batches:
            c = Counter()
            for t in b.column("text").to_pylist():
                c.update(han_counts(t))
            if c:
                yield pa.RecordBatch.from_arrays([pa.array(list(c.keys()), pa.string()),
                                                  pa.array(list(c.values()), pa.int64())], names=["ch", "n"])

    rows = (df.select("text").filter(F.col("text").isNotNull())
              .mapInArrow(count, "ch string, n long").groupBy("ch").agg(F.sum("n").alias("n"))
              .filter(F.col("n") >= int(ecfg["min_count"])).collect())
    return sorted(((r["ch"], int(r["n"])) for r in rows), key=lambda kv: (-kv[1], ord(kv[0])))


def select_new_chars(counts: Iterable[tuple[str, int]], sp, n: int) -> list[str]:
    """The `n` most frequent characters that are not already a single piece of the base model."""
    out = []
    for ch, _ in counts:
        if len(out) >= n:
            break
        if sp.piece_to_id(ch) == sp.unk_id() and ch != sp.id_to_piece(sp.unk_id()):
            out.append(ch)
    return out


def base_ids(sp, ch: str) -> list[int]:
    """The ids `ch` encodes to under the base model, without the dummy-prefix '▁' piece."""
    ids = sp.encode(ch)
    if ids and sp.id_to_piece(ids[0]) == "▁":
        ids = ids[1:]
    return ids


def expand_model(base: bytes, chars: Sequence[str], score: float) -> tuple[bytes, dict[int, list[int]]]:
    """Append `chars` as NORMAL pieces to the serialized base model; return the new serialized model and the
    init map."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    sp = spm.SentencePieceProcessor(model_proto=base)
    proto = pb.ModelProto()
    proto.ParseFromString(base)
    first = len(proto.pieces)
    init_map = {}
    for i, ch in enumerate(chars):
        p = proto.pieces.add()
        p.piece, p.score, p.type = ch, score, pb.ModelProto.SentencePiece.NORMAL
        init_map[first + i] = base_ids(sp, ch)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return proto.SerializeToString(), init_map


def check_expansion(base_model: bytes, new_model: bytes, chars: Sequence[str]) -> None:
    """The promises the trainer relies on; a violation stops the job before anything is written."""
    import sentencepiece as spm

    base = spm.SentencePieceProcessor(model_proto=base_model)
    new = spm.SentencePieceProcessor(model_proto=new_model)
    n = base.get_piece_size()
    for i in range(n):
        if new.id_to_piece(i) != base.id_to_piece(i):
            raise AssertionError(f"expansion changed old id {i}: {base.id_to_piece(i)!r} -> {new.id_to_piece(i)!r}")
    for k, ch in enumerate(chars):
        if new.piece_to_id(ch) != n + k or base_ids(new, ch) != [n + k]:
            raise AssertionError(f"added character {ch!r} does not encode as the single id {n + k}")


def expand(spark, df, base_model: str | os.PathLike, out_dir: str | os.PathLike, ecfg: Mapping) -> dict:
    """Count, select, append, check, write `tokenizer.model`, `init_map.json` and `expand_report.json`. The base
    model is read and the products are written by URI (paths or s3://, ...) through fs: the model proto is
    edited in memory, so no local file is needed."""
    import sentencepiece as spm

    base_uri, out_dir = fs.normalize(str(base_model)), fs.normalize(str(out_dir))
    data = fs.read_bytes(base_uri)
    base = spm.SentencePieceProcessor(model_proto=data)
    counts = count_chars(df, ecfg)
    chars = select_new_chars(counts, base, int(ecfg["num_chars"]))
    model, init_map = expand_model(data, chars, float(ecfg["new_piece_score"]))
    check_expansion(data, model, chars)
    fs.write_bytes(fs.join(out_dir, "tokenizer.model"), model)
    fs.write_text(fs.join(out_dir, "init_map.json"), json.dumps({str(k): v for k, v in init_map.items()}) + "\n")
    freq = dict(counts)
    total = sum(freq.values())
    covered_before = sum(v for ch, v in counts if base.piece_to_id(ch) != base.unk_id())
    report = {"base_model": base_uri, "base_vocab_size": base.get_piece_size(),
              "new_vocab_size": base.get_piece_size() + len(chars), "added": len(chars),
              "requested": int(ecfg["num_chars"]), "distinct_cjk_chars": len(counts), "cjk_char_occurrences": total,
              "occurrence_share_single_piece_before": round(covered_before / max(1, total), 6),
              "occurrence_share_single_piece_after": round((covered_before + sum(freq[c] for c in chars)) / max(1, total), 6),
              "first_added": chars[:20]}
    fs.write_text(fs.join(out_dir, "expand_report.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


# tokenizer.expand
EXPAND_SPEC = optional_section({"num_chars": Count(1), "min_count": Count(1), "new_piece_score": Float()})
