"""The review sheet: the sample, worst first, with empty `verdict` and `reason` columns for reviewers.

Written twice from the same Spark frame: `review.jsonl` (full text) and `review.csv` (RFC 4180 quoting,
text cut at `sheet_text_chars` so it opens in a spreadsheet). Reviewers fill `verdict` (one of
`evaluate.qualified_labels` / `unqualified_labels`) and optionally `reason`; `read_labels` reads either
format back.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Mapping

from dataflow.stages.evaluate.metrics import flags_as_list, suspicion

# A spreadsheet takes a cell that begins with one of these for a formula (OWASP "CSV injection"): such cells get
# a leading apostrophe in review.csv, which the spreadsheet shows as text and `read_labels` removes again.
FORMULA_LEADS = "=+-@\t\r"
_NEUTRAL = "'"

SHEET_COLUMNS = ["rank", "suspicion", "id", "source", "lang", "quality", "ppl", "lang_score", "rule_flags",
                 "chars", "symbol_ratio", "digit_ratio", "upper_ratio", "lexicon_terms", "near_dup_of",
                 "sampled_by", "url", "text", "verdict", "reason"]


def with_suspicion(sample, cfg: Mapping):
    """Append `suspicion` (metrics.suspicion over each row) and `n_rule_flags`, over Arrow batches."""
    import pyarrow as pa
    from pyspark.sql.types import DoubleType, StructField, StructType

    out_schema = StructType(sample.schema.fields + [StructField("suspicion", DoubleType())])
    ecfg = {"suspicion": cfg["suspicion"]}

    def apply(batches):
        for b in batches:
            scores = []
            for rec in b.to_pylist():
                rec["n_rule_flags"] = len(flags_as_list(rec.get("rule_flags")))
                scores.append(suspicion(rec, ecfg))
            yield pa.RecordBatch.from_arrays(list(b.columns) + [pa.array(scores, type=pa.float64())],
                                             names=list(b.schema.names) + ["suspicion"])

    return sample.mapInArrow(apply, out_schema)


def sheet_frame(scored):
    """Sheet columns in order, ranked worst-first (ties by id), in one partition (one file per format)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    def col_or_null(name, typ="string"):
        return (F.col(name) if name in scored.columns else F.lit(None)).cast(typ).alias(name)

    flags = F.lit("")
    if "rule_flags" in scored.columns:
        flags = (F.array_join(F.col("rule_flags"), ",") if isinstance(scored.schema["rule_flags"].dataType, ArrayType)
                 else F.coalesce(F.col("rule_flags").cast("string"), F.lit("")))
    # one partition sorted worst-first: the row position is the rank (the sample is small by design)
    ranked = (scored.repartition(1).sortWithinPartitions(F.desc("suspicion"), F.asc("id"))
              .withColumn("rank", F.monotonically_increasing_id() + 1))
    return (ranked
            .select("rank", "suspicion", "id", col_or_null("source"), col_or_null("lang"),
                    F.coalesce(col_or_null("quality"), F.lit("unscored")).alias("quality"),
                    col_or_null("ppl", "double"), col_or_null("lang_score", "double"), flags.alias("rule_flags"),
                    "chars", "symbol_ratio", "digit_ratio", "upper_ratio", "lexicon_terms",
                    col_or_null("near_dup_of"), "sampled_by", col_or_null("url"), "text",
                    F.lit("").alias("verdict"), F.lit("").alias("reason")))


def _single_file(tmp: Path, dest: Path, suffix: str) -> None:
    parts = sorted(p for p in tmp.iterdir() if p.name.startswith("part-") and p.name.endswith(suffix))
    if len(parts) != 1:
        raise RuntimeError(f"expected one {suffix} part in {tmp}, found {len(parts)}")
    os.replace(parts[0], dest)
    shutil.rmtree(tmp)


def write_sheet(sheet, out_dir: str | os.PathLike, text_chars: int) -> dict:
    """review.jsonl and review.csv in `out_dir` (a local path: the driver renames the single part)."""
    from pyspark.sql import functions as F

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "_review_tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    sheet.write.mode("overwrite").option("ignoreNullFields", "false").json(str(tmp / "jsonl"))
    _single_file(tmp / "jsonl", out_dir / "review.jsonl", ".json")
    cut = neutralized(sheet.withColumn("text", F.substring("text", 1, int(text_chars))))
    (cut.write.mode("overwrite").option("header", "true").option("escape", '"').option("quoteAll", "true")
     .option("emptyValue", "").option("nullValue", "").option("ignoreLeadingWhiteSpace", "false")
     .option("ignoreTrailingWhiteSpace", "false").csv(str(tmp / "csv")))
    _single_file(tmp / "csv", out_dir / "review.csv", ".csv")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"jsonl": str(out_dir / "review.jsonl"), "csv": str(out_dir / "review.csv")}


def neutralized(frame):
    """Every string cell that a spreadsheet would evaluate (it begins with = + - @, a tab or a carriage return)
    gets a leading apostrophe; numbers are left alone (they are written as numbers)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    leads = "^[" + "".join("\\" + c if c in "-\\^]" else c for c in FORMULA_LEADS) + "]"
    cols = []
    for f in frame.schema.fields:
        c = F.col(f.name)
        if isinstance(f.dataType, StringType):
            c = F.when(c.rlike(leads), F.concat(F.lit(_NEUTRAL), c)).otherwise(c).alias(f.name)
        cols.append(c)
    return frame.select(*cols)


def unneutralized(value):
    """A CSV cell as it was before `neutralized` (the apostrophe before a formula lead removed)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == _NEUTRAL and value[1] in FORMULA_LEADS:
        return value[1:]
    return value


def read_labels(path: str | os.PathLike) -> list[dict]:
    """A reviewed sheet, JSONL or CSV (by extension), as a list of dicts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"reviewed sheet {path} does not exist")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [{k: unneutralized(v) for k, v in r.items()} for r in csv.DictReader(f)]
    else:
        rows = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{i}: not JSON ({e})") from None
    if rows and ("verdict" not in rows[0] or "id" not in rows[0]):
        raise ValueError(f"{path}: a reviewed sheet needs `id` and `verdict` columns (has {sorted(rows[0])})")
    return rows


def check_ids(rows: list[dict], sheet_jsonl: str | os.PathLike) -> None:
    """Every labelled id must be one of the sample's: labels for another run are an error, not noise."""
    known = set()
    with open(sheet_jsonl, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                known.add(json.loads(line)["id"])
    unknown = [r.get("id") for r in rows if r.get("id") not in known]
    if unknown:
        raise ValueError(f"{len(unknown)} labelled id(s) are not in this run's sample {sheet_jsonl}, "
                         f"e.g. {unknown[:3]}: were these labels made for another run?")
