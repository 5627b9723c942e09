"""A sample of CD's removals for the report (#28): each removed record, the record its `dup_of` names and their
similarity measured again here by the removing step's own definition, so a reviewer sees at a glance that a
removal passed its check against the record it names, and can open both.

The measure per step (`MEASURES`): the fuzzy steps' shingle Jaccard on the shingle strings with the step's
configured n-grams (`minhash`, `book`: `jaccard`; `simhash`: `verify_jaccard`), the exact step's equality of the
fingerprint forms, the URL step's equality of the normalized URLs and the id step's equality of the texts. The
sample is the `k` removals with the smallest seeded hash of their id (a top-k: `k` rows reach the driver, plus
the `k` records they name, whatever the size of the output).
"""
from __future__ import annotations

import os
from typing import Mapping

from dataflow.core import fs

SNIPPET = 80   # characters of each text shown in the report


def _measure(step: str, a: Mapping, b: Mapping, dedup_cfg: Mapping) -> tuple[str, float | None, float | None]:
    """(measure, value, threshold) of one removal `a` against the record `b` it names."""
    from dataflow.core.text import fingerprint_form, jaccard, shingles
    from dataflow.stages.dedup.url import normalize_url

    zh, share = tuple(dedup_cfg.get("zh_fold") or ()), float(dedup_cfg["char_script_share"])
    if step in ("minhash", "book", "simhash") and step in dedup_cfg:
        c = dedup_cfg[step]
        thr = c.get("verify_jaccard") if step == "simhash" else c.get("jaccard")
        n = (int(c["char_ngram"]), int(c["word_ngram"]))
        j = jaccard(shingles(a["text"], *n, zh, share), shingles(b["text"], *n, zh, share))
        return f"shingle Jaccard ({n[0]} chars / {n[1]} words)", round(j, 4), thr
    if step == "exact":
        return "fingerprint forms equal", float(fingerprint_form(a["text"], zh) == fingerprint_form(b["text"], zh)), 1.0
    if step == "url":
        u = dedup_cfg.get("url") or {}
        norm = [normalize_url(x.get("url"), u.get("tracking_params") or (), bool(u.get("sort_query", True))) for x in (a, b)]
        return "normalized URLs equal", float(norm[0] is not None and norm[0] == norm[1]), 1.0
    if step == "id":
        return "texts equal", float(a["text"] == b["text"]), 1.0
    return "-", None, None


def removal_audit(spark, dedup_dir: str | os.PathLike | None, dedup_cfg: Mapping, k: int, seed: int) -> list[dict]:
    """Up to `k` sampled removals of the CD stage at `dedup_dir`, each with the record its `dup_of` names and
    their similarity by the step's own measure: dicts of id, reason, dup_of, measure, similarity, threshold,
    passed (None where no measure applies or the named record is not in the stage's output) and snippets."""
    from pyspark.sql import functions as F

    if not dedup_dir or k <= 0:
        return []
    rej_dir, data_dir = fs.join(str(dedup_dir), "rejected"), fs.join(str(dedup_dir), "data")
    if not fs.is_dir(rej_dir):
        return []
    rej = spark.read.parquet(fs.spark_uri(rej_dir))
    if "dup_of" not in rej.columns:
        return []
    cols = ["id", "text", *(["url"] if "url" in rej.columns else [])]
    picked = (rej.where(F.col("reason").startswith("dedup:") & F.col("dup_of").isNotNull())
              .select(*cols, "reason", "dup_of")
              .orderBy(F.xxhash64("id", F.lit(int(seed))), "id").limit(int(k)).collect())
    if not picked:
        return []
    named = sorted({r["dup_of"] for r in picked})
    frames = [rej.select(*cols)]
    if fs.is_dir(data_dir):
        frames.append(spark.read.parquet(fs.spark_uri(data_dir)).select(*cols))
    found = {}
    for frame in frames:
        for r in frame.where(F.col("id").isin(named)).collect():
            found.setdefault(r["id"], r.asDict())
    out = []
    for r in picked:
        a, step = r.asDict(), r["reason"].split(":", 1)[1]
        b = found.get(r["dup_of"])
        measure, value, thr = _measure(step, a, b, dedup_cfg) if b is not None else ("record not found", None, None)
        out.append({"id": r["id"], "reason": r["reason"], "dup_of": r["dup_of"], "measure": measure,
                    "similarity": value, "threshold": thr,
                    "passed": None if value is None or thr is None else value >= thr,
                    "text": (a["text"] or "")[:SNIPPET], "dup_of_text": ((b or {}).get("text") or "")[:SNIPPET]})
    return out
