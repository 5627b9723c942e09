"""The review sheet: the sample, worst first, with empty `verdict` and `reason` columns for reviewers.

The sheet holds at most `evaluate.review.max_rows` rows, whatever the size of the output: every
`min_per_stratum` row first (their number is bounded by the strata, which do not grow with the input), then the
`share` rows of smallest seeded draw `u`, a uniform subsample of them, so the rate reviewers measure stays
unbiased. metrics.json records how many sampled rows the sheet left out.

Written twice from the same Spark frame, by the executor that holds it, through `dataflow.core.fs` (any
output URI): `review.jsonl` (full text) and `review.csv` (RFC 4180 quoting, text cut at `sheet_text_chars` so
it opens in a spreadsheet). Reviewers fill `verdict` (one of `evaluate.qualified_labels` /
`unqualified_labels`) and optionally `reason`; `read_labels` reads either format back, from any URI.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Mapping

from dataflow.core import fs, fsio
from dataflow.stages.evaluate.metrics import flags_as_list, suspicion

# A spreadsheet takes a cell that begins with one of these for a formula (OWASP "CSV injection"): such cells get
# a leading apostrophe in review.csv, which the spreadsheet shows as text and `read_labels` removes again.
FORMULA_LEADS = "=+-@\t\r"
_NEUTRAL = "'"

SHEET_COLUMNS = ["rank", "suspicion", "id", "source", "source_type", "lang", "quality", "ppl", "lang_score",
                 "rule_flags", "chars", "symbol_ratio", "digit_ratio", "upper_ratio", "lexicon_terms", "near_dup_of",
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


def bounded(scored, max_rows: int):
    """At most `max_rows` rows of the scored sample: the `min_per_stratum` rows first, then the `share` rows,
    each by smallest draw `_u` (then id). A top-k: no partition holds more than `max_rows` rows."""
    from pyspark.sql import functions as F

    first = F.when(F.col("sampled_by") == "min_per_stratum", F.lit(0)).otherwise(F.lit(1))
    return scored.orderBy(first, F.col("_u"), F.col("id")).limit(int(max_rows))


def sheet_frame(scored):
    """Sheet columns in order, ranked worst-first (ties by id), in one partition (one file per format). Bound
    the rows first (`bounded`): the sort runs in one task."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    def col_or_null(name, typ="string"):
        return (F.col(name) if name in scored.columns else F.lit(None)).cast(typ).alias(name)

    flags = F.lit("")
    if "rule_flags" in scored.columns:
        flags = (F.array_join(F.col("rule_flags"), ",") if isinstance(scored.schema["rule_flags"].dataType, ArrayType)
                 else F.coalesce(F.col("rule_flags").cast("string"), F.lit("")))
    # one partition sorted worst-first: the row position is the rank (`bounded` keeps it small)
    ranked = (scored.repartition(1).sortWithinPartitions(F.desc("suspicion"), F.asc("id"))
              .withColumn("rank", F.monotonically_increasing_id() + 1))
    return (ranked
            .select("rank", "suspicion", "id", col_or_null("source"), col_or_null("source_type"),
                    col_or_null("lang"),
                    F.coalesce(col_or_null("quality"), F.lit("unscored")).alias("quality"),
                    col_or_null("ppl", "double"), col_or_null("lang_score", "double"), flags.alias("rule_flags"),
                    "chars", "symbol_ratio", "digit_ratio", "upper_ratio", "lexicon_terms",
                    col_or_null("near_dup_of"), "sampled_by", col_or_null("url"), "text",
                    F.lit("").alias("verdict"), F.lit("").alias("reason")))


def _json_value(v):
    """A cell as JSON: non-finite floats (an unscored perplexity) become null, as JSON has no NaN."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _jsonl(batches, out) -> int:
    rows = 0
    for b in batches:
        for rec in b.to_pylist():
            out.write((json.dumps({k: _json_value(v) for k, v in rec.items()}, ensure_ascii=False) + "\n")
                      .encode("utf-8"))
            rows += 1
    return rows


def _csv(columns: list[str]):
    """RFC 4180 CSV with a header, every cell quoted, null as an empty cell."""
    def encode(batches, out) -> int:
        buf = io.StringIO()
        w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerow(columns)
        rows = 0
        for b in batches:
            for rec in b.to_pylist():
                w.writerow(["" if rec[c] is None else rec[c] for c in columns])
                rows += 1
            out.write(buf.getvalue().encode("utf-8"))
            buf.seek(0)
            buf.truncate()
        out.write(buf.getvalue().encode("utf-8"))
        return rows

    return encode


def write_sheet(sheet, out_dir: str, text_chars: int) -> dict:
    """review.jsonl and review.csv in `out_dir` (any URI), each written from the one-partition `sheet` by the
    executor that holds it; returns their URIs and the rows written."""
    from pyspark.sql import functions as F

    out_dir = str(out_dir)
    tmp = fs.join(out_dir, "_review_tmp")
    fs.delete(tmp)
    jsonl, csv_uri = fs.join(out_dir, "review.jsonl"), fs.join(out_dir, "review.csv")
    rows = fsio.single_file(fsio.write_parts(sheet, fs.join(tmp, "jsonl"), ".jsonl", _jsonl), jsonl)
    cut = neutralized(sheet.withColumn("text", F.substring("text", 1, int(text_chars))))
    csv_rows = fsio.single_file(fsio.write_parts(cut, fs.join(tmp, "csv"), ".csv", _csv(cut.columns)), csv_uri)
    fs.delete(tmp)
    if csv_rows != rows:
        raise RuntimeError(f"review sheet: {jsonl} has {rows} rows but {csv_uri} {csv_rows}")
    return {"jsonl": jsonl, "csv": csv_uri, "rows": rows}


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
    """A reviewed sheet, JSONL or CSV (by extension), from any URI, as a list of dicts."""
    path = str(path)
    if not fs.is_file(path):
        raise FileNotFoundError(f"reviewed sheet {path} does not exist")
    text = fs.read_bytes(path).decode("utf-8-sig")
    if path.lower().endswith(".csv"):
        rows = [{k: unneutralized(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text, newline=""))]
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not JSON ({e})") from None
    if rows and ("verdict" not in rows[0] or "id" not in rows[0]):
        raise ValueError(f"{path}: a reviewed sheet needs `id` and `verdict` columns (has {sorted(rows[0])})")
    return rows


def check_ids(rows: list[dict], sheet_jsonl: str) -> None:
    """Every labelled id must be one of the sheet's: labels for another run are an error, not noise."""
    known = {json.loads(line)["id"] for line in fs.read_text(str(sheet_jsonl)).splitlines() if line.strip()}
    unknown = [r.get("id") for r in rows if r.get("id") not in known]
    if unknown:
        raise ValueError(f"{len(unknown)} labelled id(s) are not in this run's sample {sheet_jsonl}, "
                         f"e.g. {unknown[:3]}: were these labels made for another run?")
