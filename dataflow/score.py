"""AS: automatic scoring (Ziya2 §3.1, CCNet's perplexity buckets).

Every document of a scored language gets `ppl`: the perplexity of a per-language 5-gram KenLM over
SentencePiece pieces of its cc_net-normalised text, computed per paragraph line with sentence boundaries
(`<s> ... </s>`) and length-weighted over the document, exactly cc_net's DocLM:

    ppl(doc) = 10 ** (-sum_lines log10 P(line) / sum_lines (n_pieces(line) + 1))

Documents are then bucketed per language at the p30/p60 cutoffs (`approxQuantile`, or fixed cutoffs from
an earlier batch): `high` below p30, `medium` below p60, `low` the rest (cc_net PerplexityBucket(30, 60),
the Ziya2 split). Annotate first: every record is kept with `ppl`, `quality` and `score_note`, unless its
bucket is listed in `score.drop`, which moves it to rejected/ with reason `quality:<bucket>`.

`quality` is `unscored` (and `ppl` null) for a language without a model (`score_note=no_model`) and for
a document with no text left after normalisation (`score_note=empty`); a paragraph longer than
`max_paragraph_chars` / `max_paragraph_pieces` is scored on its head and counted (`truncated:<n>`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa

from . import fs
from .lm.normalize import normalize_line, normalize_settings

STAGE = "score"
QUALITIES = ("high", "medium", "low", "unscored")
NOTE_NO_MODEL = "no_model"
NOTE_EMPTY = "empty"
NOTE_TRUNCATED = "truncated"   # written as truncated:<paragraphs>


# ------------------------------------------------------------------ models
def model_paths(cfg: Mapping) -> dict[str, tuple[str, str]]:
    """lang -> (sentencepiece model, KenLM binary) for every language of `score.langs`; a configured
    language whose files are missing is a configuration error, not a silent `unscored`."""
    out = {}
    overrides = cfg.get("models") or {}
    for lang in cfg["langs"]:
        o = overrides.get(lang) or {}
        sp = o.get("sp") or fs.join(cfg["model_dir"], f"{lang}.sp.model")
        lm = o.get("lm") or fs.join(cfg["model_dir"], f"{lang}.arpa.bin")
        for p in (sp, lm):
            if not fs.exists(p):
                raise FileNotFoundError(f"score: model file {p} for {lang!r} does not exist (run `make models`, "
                                        f"or set score.models.{lang} / remove {lang!r} from score.langs)")
        out[lang] = (sp, lm)
    return out


def load_sp(path: str):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=path)


def load_kenlm(path: str):
    import kenlm

    return kenlm.Model(path)


# ------------------------------------------------------------------ per-record logic (no Spark)
def doc_perplexity(text: str | None, sp, lm, norm: Mapping, max_chars: int, max_pieces: int
                   ) -> tuple[float | None, int, int]:
    """(ppl or None when nothing is left to score, scored paragraphs, truncated paragraphs)."""
    lines, cut = [], []
    for raw in (text or "").split("\n"):
        long = len(raw) > max_chars
        line = normalize_line(raw[:max_chars] if long else raw, **norm)
        if line:
            lines.append(line)
            cut.append(long)
    if not lines:
        return None, 0, 0
    log_sum, length = 0.0, 0
    for i, pieces in enumerate(sp.encode(lines, out_type=str)):
        if len(pieces) > max_pieces:
            pieces, cut[i] = pieces[:max_pieces], True
        log_sum += lm.score(" ".join(pieces), bos=True, eos=True)
        length += len(pieces) + 1
    return 10.0 ** (-log_sum / length), len(lines), sum(cut)


def score_record(text: str | None, lang: str | None, models: Mapping, norm: Mapping, max_chars: int,
                 max_pieces: int) -> tuple[float | None, str | None]:
    """(ppl, score_note) for one document; `models` maps lang -> (sp, lm) loaded objects."""
    pair = models.get(lang) if lang else None
    if pair is None:
        return None, NOTE_NO_MODEL
    ppl, _, truncated = doc_perplexity(text, pair[0], pair[1], norm, max_chars, max_pieces)
    if ppl is None:
        return None, NOTE_EMPTY
    return ppl, (f"{NOTE_TRUNCATED}:{truncated}" if truncated else None)


def bucket(ppl: float | None, cut: Mapping | None) -> str:
    """cc_net PerplexityBucket: strictly below p30 is high, strictly below p60 medium, else low."""
    if ppl is None or not cut:
        return "unscored"
    if ppl < cut["p30"]:
        return "high"
    if ppl < cut["p60"]:
        return "medium"
    return "low"


def read_cutoffs(path: str | Path) -> dict[str, dict[str, float]]:
    """Fixed cutoffs, JSON {lang: {"p30": x, "p60": y}} (what a previous run wrote to cutoffs.json)."""
    data = json.loads(fs.read_text(str(path)))
    out = {}
    for lang, c in data.items():
        if not isinstance(c, dict) or "p30" not in c or "p60" not in c:
            raise ValueError(f"cutoffs file {path}: {lang!r} needs p30 and p60, got {c!r}")
        if not float(c["p30"]) <= float(c["p60"]):
            raise ValueError(f"cutoffs file {path}: {lang!r} has p30 > p60")
        out[lang] = {"p30": float(c["p30"]), "p60": float(c["p60"])}
    return out


def cutoffs_json(cuts: Mapping) -> str:
    """OUT/cutoffs.json: the cutoffs of this run, readable back by `read_cutoffs` (--cutoffs)."""
    return json.dumps({lang: {"p30": c["p30"], "p60": c["p60"]} for lang, c in cuts.items()}, indent=2) + "\n"


# ------------------------------------------------------------------ Spark
def score_udf(paths: dict, norm: dict, max_chars: int, max_pieces: int):
    """An Arrow UDF (text, lang) -> struct<ppl, score_note>. Only the two input columns travel to Python
    and two small ones come back (mapInArrow would ship every column, text included, both ways); the
    models are loaded once per Python worker (load_once)."""
    from pyspark.sql.functions import arrow_udf

    def score(text: pa.Array, lang: pa.Array) -> pa.Array:
        from .spark import load_once

        models = {l: (load_once("sentencepiece", sp, load_sp), load_once("kenlm", lm, load_kenlm))
                  for l, (sp, lm) in paths.items()}
        ppl, note = [], []
        for t, l in zip(text.to_pylist(), lang.to_pylist()):
            p, n = score_record(t, l, models, norm, max_chars, max_pieces)
            ppl.append(p)
            note.append(n)
        return pa.StructArray.from_arrays([pa.array(ppl, pa.float64()), pa.array(note, pa.string())],
                                          names=["ppl", "score_note"])

    return arrow_udf(score, "ppl double, score_note string")  # scalar, from the type hints


def compute_cutoffs(scored, langs: Iterable[str], cfg: Mapping) -> dict[str, dict]:
    """Per-language p30/p60 over scored documents in one pass: `percentile_approx`, the aggregate form of
    DataFrame.approxQuantile (the same Greenwald-Khanna sketch, accuracy = 1 / relative error). With
    relative_error 0 the sketch keeps every value, so the cutoffs are exact sample quantiles and do not
    depend on the partitioning."""
    from pyspark.sql import functions as F

    langs = list(langs)
    if not langs:
        return {}
    probs = [float(cfg["percentile_high"]), float(cfg["percentile_low"])]
    rel = float(cfg["relative_error"])
    accuracy = min(2**31 - 1, round(1 / rel)) if rel > 0 else 2**31 - 1
    rows = (scored.filter(F.col("lang").isin(langs) & F.col("ppl").isNotNull())
            .groupBy("lang").agg(F.percentile_approx("ppl", probs, accuracy).alias("q")).collect())
    return {r["lang"]: {"p30": float(r["q"][0]), "p60": float(r["q"][1])} for r in rows}


def run(df, cfg: Mapping, cutoffs: Mapping | None = None):
    """Score `df` (the document schema) and bucket it. `cutoffs` (lang -> {p30, p60}) fixes the buckets
    for those languages; the others get cutoffs computed on this input."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from .schema import require_columns
    from .spark import ship_file
    from .stage import StageResult

    require_columns(df, ["id", "text", "lang"], STAGE)
    for col in ("ppl", "quality", "score_note", "reason", "detail"):
        if col in df.columns:
            raise ValueError(f"{STAGE}: input already has a {col!r} column (scored twice?)")
    paths = model_paths(cfg)
    spark = df.sparkSession
    for sp, lm in paths.values():
        ship_file(spark, sp)
        ship_file(spark, lm)
    udf = score_udf(paths, normalize_settings(cfg), int(cfg["max_paragraph_chars"]),
                    int(cfg["max_paragraph_pieces"]))
    scored = (df.withColumn("_score", udf(F.col("text"), F.col("lang")))
              .select(*df.columns, F.col("_score.ppl").alias("ppl"), F.col("_score.score_note").alias("score_note"))
              .persist(StorageLevel.MEMORY_AND_DISK))

    fixed = {k: dict(v) for k, v in (cutoffs or {}).items()}
    computed = compute_cutoffs(scored, [l for l in paths if l not in fixed], cfg)
    cuts = {**{k: {**v, "source": "fixed"} for k, v in fixed.items()},
            **{k: {**v, "source": "computed"} for k, v in computed.items()}}

    quality = F.lit("unscored")
    for lang in sorted(cuts):
        c = cuts[lang]
        in_lang = (F.col("lang") == lang) & F.col("ppl").isNotNull()
        quality = (F.when(in_lang & (F.col("ppl") < F.lit(c["p30"])), F.lit("high"))
                   .when(in_lang & (F.col("ppl") < F.lit(c["p60"])), F.lit("medium"))
                   .when(in_lang, F.lit("low"))
                   .otherwise(quality))
    drop = [str(q) for q in (cfg.get("drop") or [])]
    unknown = [q for q in drop if q not in QUALITIES]
    if unknown:
        raise ValueError(f"score.drop has unknown bucket(s) {unknown}; use {list(QUALITIES)}")
    annotated = scored.withColumn("quality", quality)
    cut_str = F.create_map(*[x for lang in sorted(cuts) for x in
                             (F.lit(lang), F.lit(f"p30={cuts[lang]['p30']:.1f} p60={cuts[lang]['p60']:.1f}"))]) \
        if cuts else None
    detail = F.concat(F.lit("ppl="), F.format_number(F.col("ppl"), 1), F.lit(" lang="), F.col("lang"),
                      F.lit(" "), F.coalesce(F.element_at(cut_str, F.col("lang")), F.lit("")) if cut_str is not None
                      else F.lit(""))
    dropped = F.col("quality").isin(drop) if drop else F.lit(False)
    annotated = (annotated
                 .withColumn("reason", F.when(dropped, F.concat(F.lit("quality:"), F.col("quality"))))
                 .withColumn("detail", F.when(dropped, F.coalesce(detail, F.col("score_note")))))

    def stats() -> dict:
        rows = (annotated.groupBy("lang", "quality")
                .agg(F.count(F.lit(1)).alias("n"),
                     F.sum(F.when(F.col("score_note") == NOTE_EMPTY, 1).otherwise(0)).alias("empty"),
                     F.sum(F.when(F.col("score_note") == NOTE_NO_MODEL, 1).otherwise(0)).alias("no_model"),
                     F.sum(F.when(F.col("score_note").startswith(NOTE_TRUNCATED), 1).otherwise(0)).alias("truncated"))
                .collect())
        by_lang: dict = {}
        notes = {"empty": 0, "no_model": 0, "truncated_docs": 0}
        for r in rows:
            by_lang.setdefault(r["lang"] or "null", {})[r["quality"]] = r["n"]
            notes["empty"] += r["empty"]
            notes["no_model"] += r["no_model"]
            notes["truncated_docs"] += r["truncated"]
        return {"cutoffs": cuts, "quality_by_lang": by_lang, "unscored": notes, "drop": drop,
                "models": {k: {"sp": v[0], "lm": v[1]} for k, v in paths.items()},
                "ccnet_cutoffs": cfg.get("ccnet_cutoffs") or {}}

    # Not from_annotated: it would cache `annotated` a second time. The bucket and reason columns are
    # cheap expressions over the one cached scored frame, which write_stage unpersists after the stats.
    kept = annotated.filter(F.col("reason").isNull()).drop("reason", "detail")
    rejected = annotated.filter(F.col("reason").isNotNull())
    return StageResult(kept=kept, rejected=rejected, stats=stats, annotated=scored)
