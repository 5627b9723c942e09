"""Automatic metrics for data evaluation: pure per-record functions, then the Spark aggregations.

Per record (plain Python over str): length, symbol / digit / uppercase ratios, CJK share (dataflow.core.text) and
content-lexicon hits. The near-duplicate estimate inside the sample uses CD's own SimHash and settings
(`dedup.simhash`, dataflow.stages.dedup.simhash), so DE measures what CD removes. The suspicion score that orders
the review sheet combines the signals with the weights in `evaluate.suspicion`.
Over the whole output and the sample (Spark aggregations, only small aggregates reach the driver):
quantiles of length, perplexity and language score, rule-flag hit rates, and log10 histograms.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping

from dataflow.core.text import cjk_count

_WORD = re.compile(r"\w+", re.UNICODE)

# columns computed per record by `text_metrics`, with their Arrow/Spark types
METRIC_DDL = ("chars long, words long, symbol_ratio double, digit_ratio double, upper_ratio double, "
              "cjk_ratio double, lexicon_hits int, lexicon_terms string")


def load_lexicons(directory: str | None, pattern: str) -> dict[str, list[str]]:
    """RF's content lexicons: one term per line, `#` starts a comment; the list's name is the file stem."""
    out: dict[str, list[str]] = {}
    if not directory or not Path(directory).is_dir():
        return out
    for f in sorted(Path(directory).rglob(pattern)):
        terms = []
        for line in f.read_text(encoding="utf-8").splitlines():
            term = line.split("#", 1)[0].strip()
            if term:
                terms.append(term)
        if terms:
            out[str(f.relative_to(directory).with_suffix(""))] = sorted(set(terms))
    return out


def lexicon_matcher(lexicons: Mapping[str, list[str]]):
    """RF's compiled patterns (dataflow.stages.filter.rules.lexicon.compile_terms), one per list: `<category>.en` lists match
    case-insensitively on word boundaries, the others (zh) as substrings. Returns (patterns, None)."""
    from dataflow.stages.filter.rules.lexicon import compile_terms

    pats = [(name, compile_terms(terms, "en" if name.endswith(".en") else name.rsplit(".", 1)[-1]))
            for name, terms in sorted(lexicons.items())]
    return (pats or None), None


def text_metrics(text: str | None, matcher=None, term_list=None) -> dict:
    text = text or ""
    n = len(text)
    space = sum(map(str.isspace, text))
    alnum = sum(map(str.isalnum, text))
    digit = sum(map(str.isdigit, text))
    upper = sum(map(str.isupper, text))
    lower = sum(map(str.islower, text))
    non_space = n - space
    cjk = cjk_count(text)
    hits, terms = 0, set()
    for name, pat in matcher or ():
        for m in pat.finditer(text):
            hits += 1
            terms.add(f"{name}:{m.group(0).lower()}")
    return {
        "chars": n,
        "words": len(_WORD.findall(text)),
        # symbols: neither letter/digit nor whitespace (digits are alnum, so they are not counted twice)
        "symbol_ratio": (non_space - alnum) / non_space if non_space else 0.0,
        "digit_ratio": digit / non_space if non_space else 0.0,
        "upper_ratio": upper / (upper + lower) if upper + lower else 0.0,
        "cjk_ratio": cjk / non_space if non_space else 0.0,
        "lexicon_hits": hits,
        "lexicon_terms": ",".join(sorted(terms)),
    }


def suspicion(rec: Mapping, cfg: Mapping) -> float:
    """Review priority: sum of weight * min(value / limit, cap) over the signals in `evaluate.suspicion`."""
    s = cfg["suspicion"]
    cap = float(s["cap"])

    def term(name: str, value: float) -> float:
        p = s[name]
        return float(p["weight"]) * min(max(value, 0.0) / float(p["limit"]), cap)

    score = term("symbol_ratio", rec.get("symbol_ratio") or 0.0)
    score += term("digit_ratio", rec.get("digit_ratio") or 0.0)
    score += term("upper_ratio", rec.get("upper_ratio") or 0.0)
    ls = rec.get("lang_score")
    score += term("low_lang_score", 1.0 - float(ls) if ls is not None and not math.isnan(ls) else 0.0)
    chars = rec.get("chars") or 0
    score += term("short_chars", float(s["short_chars"]["limit"]) / chars if chars else cap * float(s["short_chars"]["limit"]))
    score += term("lexicon_hits", float(rec.get("lexicon_hits") or 0))
    score += term("rule_flags", float(rec.get("n_rule_flags") or 0))
    score += term("near_dup", 1.0 if rec.get("near_dup_of") else 0.0)
    score += float(s["quality"].get(rec.get("quality") or "unscored", s["quality"]["unscored"]))
    return round(score, 6)


def metric_columns() -> list[str]:
    return [c.split()[0] for c in METRIC_DDL.split(",")]


def flags_as_list(value) -> list[str]:
    """rule_flags may be an array column or a comma-joined string, depending on the RF version."""
    if value is None:
        return []
    if isinstance(value, str):
        return [f.strip() for f in value.split(",") if f.strip()]
    return [str(v) for v in value if v is not None and str(v)]


# ---------------------------------------------------------------- Spark side

_MATCHERS: dict = {}


def _matcher_for(lexicons: Mapping[str, list[str]]):
    """Compile the lexicon regex once per Python worker (keyed by content, not by object identity)."""
    from dataflow.core.config import conf_hash

    key = conf_hash(lexicons)
    if key not in _MATCHERS:
        _MATCHERS[key] = lexicon_matcher(lexicons)
    return _MATCHERS[key]


def with_metrics(df, lexicons: Mapping[str, list[str]]):
    """Append the `METRIC_DDL` columns, computed per record over Arrow batches."""
    import pyarrow as pa
    from pyspark.sql.types import StructType

    metric_schema = StructType.fromDDL(METRIC_DDL)
    out_schema = StructType(df.schema.fields + metric_schema.fields)
    names = metric_columns()
    types = {"chars": pa.int64(), "words": pa.int64(), "lexicon_hits": pa.int32(), "lexicon_terms": pa.string()}
    lex = dict(lexicons)

    def apply(batches):
        matcher, term_list = _matcher_for(lex)  # compiled once per Python worker
        for b in batches:
            rows = [text_metrics(t, matcher, term_list) for t in b.column("text").to_pylist()]
            cols = list(b.columns) + [pa.array([r[n] for r in rows], type=types.get(n, pa.float64())) for n in names]
            yield pa.RecordBatch.from_arrays(cols, names=list(b.schema.names) + names)

    return df.mapInArrow(apply, out_schema)


def near_dup_pairs(sample, dedup_cfg: Mapping, scratch: str | None = None):
    """Pairs (id_a < id_b) of sample documents that CD's SimHash step would link: within
    `dedup.simhash.max_distance` bits (pigeonhole blocks) and, when CD verifies, overlapping enough.
    The fingerprints are computed once and checkpointed to `scratch` on the output's filesystem
    (`dedup.components.checkpoint`), never `localCheckpoint`: an executor lost later costs time, not the job
    (DESIGN §9)."""
    from pyspark.sql import functions as F

    from dataflow.stages.dedup.components import Context, checkpoint
    from dataflow.stages.dedup.simhash import similar_pairs, with_simhash

    scfg, ctx = dedup_cfg["simhash"], Context.from_conf(dedup_cfg, scratch=scratch)
    fp = checkpoint(with_simhash(sample.select("id", "text"), scfg, ctx), scratch)
    _, pairs = similar_pairs(fp, "id", scfg, ctx)
    h = fp.select("id", "simhash")
    return (pairs.join(h.select(F.col("id").alias("a"), F.col("simhash").alias("_ha")), "a")
            .join(h.select(F.col("id").alias("b"), F.col("simhash").alias("_hb")), "b")
            .select(F.col("a").alias("id_a"), F.col("b").alias("id_b"),
                    F.bit_count(F.col("_ha").bitwiseXOR(F.col("_hb"))).alias("hamming")))


def summarize(df, cfg: Mapping) -> dict:
    """Distribution summaries of one frame (whole output or sample); only aggregates are collected."""
    from pyspark.sql import functions as F

    qs = [float(q) for q in cfg["quantiles"]]
    acc = int(cfg["quantile_accuracy"])
    numeric = [c for c in ("chars", "words", "ppl", "lang_score", "symbol_ratio", "digit_ratio", "upper_ratio",
                           "cjk_ratio", "lexicon_hits") if c in df.columns]
    aggs = [F.count(F.lit(1)).alias("docs"), F.sum("chars").alias("chars_total"),
            F.sum(F.when(F.col("lexicon_hits") > 0, 1).otherwise(0)).alias("docs_with_lexicon_hits")]
    for c in numeric:
        x = F.col(c).cast("double")
        aggs += [F.avg(x).alias(f"{c}__mean"), F.percentile_approx(x, qs, acc).alias(f"{c}__q")]
    row = df.agg(*aggs).collect()[0].asDict()
    docs = row["docs"] or 0
    out = {"docs": docs, "chars": row["chars_total"] or 0,
           "lexicon_hit_rate": (row["docs_with_lexicon_hits"] or 0) / docs if docs else 0.0,
           "distributions": {}}
    for c in numeric:
        q = row[f"{c}__q"]
        out["distributions"][c] = {"mean": row[f"{c}__mean"],
                                   **({f"p{int(round(p * 100))}": v for p, v in zip(qs, q)} if q else {})}
    # one grouping at the finest level, rolled up here: the cell table is small (source types x langs x buckets),
    # and does not grow with the input files (`source`, often the file name, would)
    strata = list(cfg["strata"])
    keys = [k for k in dict.fromkeys(["lang", "source_type", "quality", *strata]) if k in df.columns]
    out["strata"] = 1
    if keys:
        cells = (df.groupBy(*[F.coalesce(F.col(k).cast("string"), F.lit("unknown")).alias(k) for k in keys])
                 .agg(F.count(F.lit(1)).alias("docs"), F.sum("chars").alias("chars")).collect())
        out["strata"] = len({tuple(r[k] for k in strata if k in keys) for r in cells})
        for k in keys:
            agg: dict = {}
            for r in cells:
                a = agg.setdefault(r[k], {"docs": 0, "chars": 0})
                a["docs"] += r["docs"]
                a["chars"] += r["chars"] or 0
            out[f"by_{k}"] = dict(sorted(agg.items()))
    if "rule_flags" in df.columns:
        out["rule_flags"] = rule_flag_counts(df)
    return out


def rule_flag_counts(df) -> dict:
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    col = F.col("rule_flags")
    if not isinstance(df.schema["rule_flags"].dataType, ArrayType):
        col = F.split(F.coalesce(col.cast("string"), F.lit("")), r"\s*,\s*")
    ex = df.select(F.explode(col).alias("flag")).filter(F.col("flag").isNotNull() & (F.col("flag") != ""))
    return {r["flag"]: r["count"] for r in ex.groupBy("flag").count().orderBy(F.desc("count"), "flag").collect()}


def log_histogram(df, column: str, per_decade: int, by: str | None = "lang") -> list[dict]:
    """Counts per log10 bin (bin = floor(log10(x) * per_decade) / per_decade), optionally per `by`."""
    from pyspark.sql import functions as F

    if column not in df.columns:
        return []
    x = F.col(column).cast("double")
    b = (F.floor(F.log10(x) * per_decade) / per_decade).alias("bin")
    keys = [F.coalesce(F.col(by).cast("string"), F.lit("unknown")).alias("group")] if by and by in df.columns \
        else [F.lit("all").alias("group")]
    rows = (df.filter(x.isNotNull() & (x > 0) & ~F.isnan(x)).select(*keys, b)
            .groupBy("group", "bin").count().orderBy("group", "bin").collect())
    return [{"group": r["group"], "bin": r["bin"], "count": r["count"]} for r in rows]
