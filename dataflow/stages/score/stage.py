"""AS: automatic scoring (Ziya2 §3.1, CCNet's perplexity buckets).

Every document of a scored language gets `ppl`: the perplexity of a per-language 5-gram KenLM over
SentencePiece pieces of its cc_net-normalised text, computed per paragraph line with sentence boundaries
(`<s> ... </s>`) and length-weighted over the document, exactly cc_net's DocLM:

    ppl(doc) = 10 ** (-sum_lines log10 P(line) / sum_lines (n_pieces(line) + 1))

Documents are then bucketed per language at the p30/p60 cutoffs (`approxQuantile`, or fixed cutoffs from
an earlier batch): `high` below p30, `medium` below p60, `low` the rest (cc_net PerplexityBucket(30, 60),
the Ziya2 split). Annotate first: every record is kept with `ppl`, `quality` and `score_note`, unless its
bucket is listed in `score.drop`, which moves it to rejected/ with reason `quality:<bucket>`.

`quality` is `unscored` (and `ppl` null) for a language without a model (`score_note=no_model`), for
a document with no text left after normalisation (`score_note=empty`) and for a record whose source type's
recipe says `score: none` (`score_note=recipe`; never dropped by `score.drop`, never in the cutoffs); a
paragraph longer than `max_paragraph_chars` / `max_paragraph_pieces` is scored on its head and counted
(`truncated:<n>`). Records whose recipe has `ref_score: true` also get `ref_score`, the reference
classifier's P(reference) (dataflow/models/refclass.py); `score.ref_min` moves those below it to rejected/ with
reason `ref_score`.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa

from dataflow.core import fs, fsio
from dataflow.core.confschema import (Bool, Count, Dir, File, Float, Langs, List, Map, Path, Section, Str,
                                      optional_section)
from dataflow.core.contract import Batched, BatchResult, Option, Stage
from dataflow.core.recipes import recipes, with_source_type
from dataflow.core.schema import require_columns
from dataflow.core.spark import load_once, ship_file
from dataflow.core.stage import StageResult
from dataflow.models import refclass
from dataflow.models.lm.model import check_pair, load_kenlm, load_sp
from dataflow.models.lm.train import TRAIN_SPEC as LM_TRAIN_SPEC
from dataflow.models.lm.normalize import normalize_line, normalize_settings

NAME = "score"
QUALITIES = ("high", "medium", "low", "unscored")
NOTE_NO_MODEL = "no_model"
NOTE_EMPTY = "empty"
NOTE_TRUNCATED = "truncated"   # written as truncated:<paragraphs>
NOTE_RECIPE = "recipe"         # the record's source-type recipe says score: none
NOTE_UNKNOWN_TYPE = "unknown_type"   # a source_type no recipe names (RF rejects these; AS keeps them unscored)
REASON_REF = "ref_score"       # ref_score below score.ref_min


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
SCORES = pa.struct([("ppl", pa.float64()), ("score_note", pa.string()), ("ref_score", pa.float64())])
_ROW_FP = "_fp"        # a fingerprint of the whole row: the key pass 2 finds its scores by
_PART = "_part"        # the input partition a row was scored in


def scorer(paths: dict, ref_path: str | None, kinds: Mapping[str, tuple[bool, bool]], norm: dict, max_chars: int,
           max_pieces: int, ref_chunk_chars: int, ref_max_chunks: int):
    """score(text, lang, source_type) -> struct<ppl, score_note, ref_score> over Arrow arrays: one pass over
    the text computes everything the stage needs from it. `kinds` maps a source type to (lm, ref_score) from
    its recipe; a type not in it is `unknown_type`. The models are loaded once per Python worker (load_once)."""
    def score(text: pa.Array, lang: pa.Array, stype: pa.Array) -> pa.Array:
        models = {l: (load_once("sentencepiece", sp, load_sp), load_once("kenlm", lm, load_kenlm))
                  for l, (sp, lm) in paths.items()}
        ref = load_once("fasttext-refclass", ref_path, refclass.load_model) if ref_path else None
        ppl, note, rs = [], [], []
        for t, l, st in zip(text.to_pylist(), lang.to_pylist(), stype.to_pylist()):
            kind = kinds.get(st)
            if kind is None:
                p, n = None, NOTE_UNKNOWN_TYPE
            elif kind[0]:
                p, n = score_record(t, l, models, norm, max_chars, max_pieces)
            else:
                p, n = None, NOTE_RECIPE
            ppl.append(p)
            note.append(n)
            rs.append(refclass.ref_score(ref, t, ref_chunk_chars, ref_max_chunks) if ref is not None and kind
                      and kind[1] else None)
        return pa.StructArray.from_arrays([pa.array(ppl, pa.float64()), pa.array(note, pa.string()),
                                           pa.array(rs, pa.float64())], fields=list(SCORES))

    return score


def score_udf(score):
    """The scorer as an Arrow UDF (text, lang, source_type) -> struct: only the three input columns travel to
    Python and three small ones come back (the streaming pass)."""
    from pyspark.sql.functions import arrow_udf

    def score_text(text: pa.Array, lang: pa.Array, stype: pa.Array) -> pa.Array:
        return score(text, lang, stype)

    return arrow_udf(score_text, "ppl double, score_note string, ref_score double")  # scalar, from the type hints


def _fingerprinted(df):
    """`df` with the partition each row is read in and a 64-bit fingerprint of the row. Both passes compute them
    over the same input frame, which gives the same partitions holding the same rows (a Parquet scan; a
    round-robin `repartition` too, as long as both passes read the same columns below it: the fingerprint
    covers every column, so none is pruned away in either pass)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    cols = [F.map_entries(c.name) if isinstance(c.dataType, MapType) else F.col(c.name) for c in df.schema.fields]
    return df.withColumn(_PART, F.spark_partition_id()).withColumn(_ROW_FP, F.xxhash64(*cols))


_NARROW = pa.schema([(_ROW_FP, pa.int64()), ("id", pa.string()), ("lang", pa.string()),
                     ("source_type", pa.string()), *SCORES])


def write_scores(df, score, scratch: str) -> None:
    """Pass 1: every record scored once, into `scratch/part-NNNNN.parquet` per input partition, holding only
    the narrow columns (fingerprint, id, lang, source_type, ppl, score_note, ref_score): no text is copied."""
    def encode(batches, out) -> int:
        import pyarrow.parquet as pq

        rows = 0
        with pq.ParquetWriter(out, _NARROW, compression="zstd") as w:
            for b in batches:
                s = score(b.column("text"), b.column("lang"), b.column("source_type"))
                w.write_batch(pa.RecordBatch.from_arrays(
                    [b.column(_ROW_FP), *(b.column(c).cast(pa.string()) for c in ("id", "lang", "source_type")),
                     *s.flatten()], schema=_NARROW))
                rows += b.num_rows
        return rows

    keyed = _fingerprinted(df).select(_ROW_FP, "id", "text", "lang", "source_type")
    fsio.write_parts(keyed, scratch, ".parquet", encode, skip_empty=True)


_PART_CACHE: dict = {}   # the scores of the partition a Python worker looked up last (one at a time)


def _part_scores(scratch: str, part: int):
    """(pandas index of fingerprints, ids, scores) of one input partition's scratch file, cached per worker."""
    import pandas as pd
    import pyarrow.parquet as pq

    uri = fs.join(scratch, f"part-{part:05d}.parquet")
    if uri not in _PART_CACHE:
        _PART_CACHE.clear()
        if not fs.exists(uri):
            raise RuntimeError(f"score: input partition {part} has no scores from pass 1 ({uri}: the input frame "
                               f"gave other partitions the second time; read it from Parquet)")
        with fs.open_input(uri) as fh:
            t = pq.read_table(fh)
        fps = pd.Index(t.column(_ROW_FP).to_numpy())
        first = ~fps.duplicated()   # a repeated fingerprint is the same record: the same scores
        keep = pa.array(first.nonzero()[0])
        _PART_CACHE[uri] = (fps[first], t.column("id").take(keep), pa.StructArray.from_arrays(
            [t.column(f.name).combine_chunks().take(keep) for f in SCORES], fields=list(SCORES)))
    return _PART_CACHE[uri]


def lookup(scratch: str, part: pa.Array, fp: pa.Array, ids: pa.Array) -> pa.Array:
    """The scores pass 1 wrote for the records (partition, fingerprint, id). A record missing from its
    partition's scores, or found under another id, means the input frame did not give the same rows twice: an
    error, never a record with another's scores."""
    import numpy as np
    import pyarrow.compute as pc

    parts, fps = part.to_numpy(zero_copy_only=False), fp.to_numpy(zero_copy_only=False)
    where, found = [], []
    for p in np.unique(parts):      # a batch holds one partition's rows (after a coalesce, several)
        index, known_ids, scores = _part_scores(scratch, int(p))
        rows = np.nonzero(parts == p)[0]
        at = index.get_indexer(fps[rows])
        if (at < 0).any() or not pc.all(pc.equal(known_ids.take(pa.array(at.clip(0))),
                                                 ids.take(pa.array(rows)).cast(pa.string()))).as_py():
            raise RuntimeError(f"score: records of input partition {p} have no scores from pass 1 (the input "
                               f"frame gave other rows the second time; read it from Parquet)")
        where.append(rows)
        found.append(scores.take(pa.array(at)))
    if not found:
        return pa.array([], SCORES)
    return pa.concat_arrays(found).take(pa.array(np.argsort(np.concatenate(where), kind="stable")))


def lookup_udf(scratch: str):
    """Pass 2 as an Arrow UDF (partition, fingerprint, id) -> struct<ppl, score_note, ref_score> (`lookup`):
    only those three small columns travel to Python."""
    from pyspark.sql.functions import arrow_udf

    def scores_of(part: pa.Array, fp: pa.Array, ids: pa.Array) -> pa.Array:
        return lookup(scratch, part, fp, ids)

    return arrow_udf(scores_of, "ppl double, score_note string, ref_score double")


def compute_cutoffs(scored, langs: Iterable[str], cfg: Mapping) -> dict[str, dict]:
    """Per-language p30/p60 over scored documents in one aggregate over the (lang, ppl) pairs only:
    `percentile_approx`, the aggregate form of DataFrame.approxQuantile (the same Greenwald-Khanna sketch,
    accuracy = 1 / relative error). With relative_error 0 the sketch keeps every value, so the cutoffs are
    exact sample quantiles and do not depend on the partitioning."""
    from pyspark.sql import functions as F

    langs = list(langs)
    if not langs:
        return {}
    probs = [float(cfg["percentile_high"]), float(cfg["percentile_low"])]
    rel = float(cfg["relative_error"])
    accuracy = min(2**31 - 1, round(1 / rel)) if rel > 0 else 2**31 - 1
    rows = (scored.select("lang", "ppl").filter(F.col("lang").isin(langs) & F.col("ppl").isNotNull())
            .groupBy("lang").agg(F.percentile_approx("ppl", probs, accuracy).alias("q")).collect())
    return {r["lang"]: {"p30": float(r["q"][0]), "p60": float(r["q"][1])} for r in rows}


def score_kinds(conf: Mapping) -> dict[str, tuple[bool, bool]]:
    """source type -> (perplexity-scored, ref_score written), from the recipes (dataflow/core/recipes.py)."""

    return {t: (r.score == "lm", bool(r.ref_score)) for t, r in recipes(conf).items()}


def run(df, cfg: Mapping, cutoffs: Mapping | None = None, *, conf: Mapping, attempt=None):
    """Score `df` (the document schema) and bucket it. `cutoffs` (lang -> {p30, p60}) fixes the buckets
    for those languages; the others get cutoffs computed on this input. `conf` is the root configuration
    (recipes, sources); `attempt` the stage's output attempt (jobs.score).

    The scorer runs once per record. When every language's cutoffs are fixed and no bucket or threshold can
    reject (the CCNet setting), the scored rows stream straight into the writer: one pass, and the statistics
    read back the small columns of what was written. Otherwise the cutoffs need every perplexity before any
    bucket is known: pass 1 scores each record into a narrow scratch (`_scores`, in the attempt, or a local
    temporary directory for a library call) of fingerprints and scores, never the text; cutoffs and statistics
    read it, and pass 2 reads the input again and finds each record's scores there by its partition and
    fingerprint (`lookup_udf`: ids, not text, go to Python). The scratch is removed after the statistics."""
    from pyspark.sql import functions as F

    require_columns(df, ["id", "text", "lang"], NAME)
    for col in ("ppl", "quality", "score_note", "ref_score", "reason", "detail", _PART, _ROW_FP):
        if col in df.columns:
            raise ValueError(f"{NAME}: input already has a {col!r} column (scored twice?)")
    drop = [str(q) for q in (cfg.get("drop") or [])]
    unknown = [q for q in drop if q not in QUALITIES]
    if unknown:
        raise ValueError(f"score.drop has unknown bucket(s) {unknown}; use {list(QUALITIES)}")
    ref_min = cfg.get("ref_min")
    paths = model_paths(cfg)
    ref_path = refclass.model_path(cfg)        # driver checks: before any task
    kinds = score_kinds(conf)
    df = with_source_type(df, conf)
    spark = df.sparkSession
    for sp, lm in paths.values():
        ship_file(spark, sp)
        ship_file(spark, lm)
    if ref_path:
        ship_file(spark, ref_path)
    score = scorer(paths, ref_path, kinds, normalize_settings(cfg), int(cfg["max_paragraph_chars"]),
                   int(cfg["max_paragraph_pieces"]), int(cfg["ref_train"]["chunk_chars"]), int(cfg["ref_max_chunks"]))

    fixed = {k: dict(v) for k, v in (cutoffs or {}).items()}
    to_compute = [l for l in paths if l not in fixed]
    streaming = attempt is not None and not to_compute and not drop and ref_min is None
    scratch = narrow = None
    if streaming:
        found = score_udf(score)(F.col("text"), F.col("lang"), F.col("source_type"))
    else:
        scratch = attempt.path("_scores") if attempt is not None else tempfile.mkdtemp(prefix="ziya2-scores-")
        write_scores(df, score, scratch)
        narrow = spark.read.parquet(fs.spark_uri(scratch))
        keyed = _fingerprinted(df)
        found = lookup_udf(scratch)(F.col(_PART), F.col(_ROW_FP), F.col("id"))
        df = keyed
    scored = (df.withColumn("_score", found)
              .select(*[c for c in df.columns if c not in (_PART, _ROW_FP)], F.col("_score.ppl").alias("ppl"),
                      F.col("_score.score_note").alias("score_note"), F.col("_score.ref_score").alias("ref_score")))
    computed = compute_cutoffs(narrow if narrow is not None else scored, to_compute, cfg)
    cuts = {**{k: {**v, "source": "fixed"} for k, v in fixed.items()},
            **{k: {**v, "source": "computed"} for k, v in computed.items()}}

    narrow = narrow.withColumn("quality", quality_column(cuts)) if narrow is not None else None
    # the record's bucket and rejection, decided as the batch form decides them (`decider`)
    decision = decided_udf(decider(cuts, drop, ref_min))(*(F.col(c) for c in ("ppl", "lang", "score_note",
                                                                              "ref_score")))
    annotated = (scored.withColumn("_decided", decision)
                 .select(*scored.columns, *(F.col(f"_decided.{k}").alias(k) for k in DECIDED.names)))

    def stats() -> dict:
        if streaming:   # what was written: its small columns only (nothing is rejected in this mode)
            frame = spark.read.parquet(fs.spark_uri(attempt.path("data")))
        else:           # the narrow scores of pass 1, bucketed as the outputs are
            frame = narrow
        out = score_stats(frame, cuts, drop, ref_min, ref_path, paths, cfg, "streamed" if streaming else "scratch")
        if scratch is not None:
            fs.delete(scratch)
        return out

    # nothing is cached: write_stage writes data/ and rejected/ in one pass over `annotated`
    return StageResult.from_annotated(annotated, stats, persist=False)


def quality_column(cuts: Mapping):
    """The `quality` bucket as a Spark expression over `lang` and `ppl` (`bucket`, per language's cutoffs)."""
    from pyspark.sql import functions as F

    quality = F.lit("unscored")
    for lang in sorted(cuts):
        c = cuts[lang]
        in_lang = (F.col("lang") == lang) & F.col("ppl").isNotNull()
        quality = (F.when(in_lang & (F.col("ppl") < F.lit(c["p30"])), F.lit("high"))
                   .when(in_lang & (F.col("ppl") < F.lit(c["p60"])), F.lit("medium"))
                   .when(in_lang, F.lit("low"))
                   .otherwise(quality))
    return quality


def _number(x: float, digits: int) -> str:
    """Spark's `format_number(x, digits)`: grouped thousands, half-even at `digits` decimals."""
    return f"{x:,.{digits}f}"


def decider(cuts: Mapping | None, drop: list, ref_min):
    """decide(ppl, lang, score_note, ref_score) -> (quality, reason, detail) of one record: its bucket under
    `cuts` (None: not known yet; `quality_column` adds it once they are), `quality:<bucket>` for a bucket in
    `drop` (never for a record its recipe leaves unscored: it has no bucket), else `ref_score` below `ref_min`
    (a record without a reference score is never below). The one definition of AS's rejections: the batch form
    applies it in the worker that scored the record, `run` once its cutoffs are computed."""
    cut_text = {lang: f"p30={c['p30']:.1f} p60={c['p60']:.1f}" for lang, c in (cuts or {}).items()}

    def decide(ppl, lang, note, rs) -> tuple[str | None, str | None, str | None]:
        quality = None if cuts is None else bucket(ppl, cuts.get(lang))
        if quality is not None and quality in drop and note != NOTE_RECIPE:
            detail = note if ppl is None or lang is None else \
                f"ppl={_number(ppl, 1)} lang={lang} {cut_text.get(lang, '')}"
            return quality, f"quality:{quality}", detail
        if ref_min is not None and rs is not None and rs < float(ref_min):
            return quality, REASON_REF, f"ref_score={_number(rs, 4)} < ref_min={ref_min}"
        return quality, None, None

    return decide


DECIDED = pa.struct([("quality", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def decided(decide, ppl: pa.Array, lang: pa.Array, note: pa.Array, rs: pa.Array) -> pa.StructArray:
    """`decide` over Arrow columns: struct<quality, reason, detail>."""
    rows = [decide(*x) for x in zip(ppl.to_pylist(), lang.to_pylist(), note.to_pylist(), rs.to_pylist())]
    return pa.StructArray.from_arrays([pa.array([r[k] for r in rows], pa.string()) for k in range(3)],
                                      fields=list(DECIDED))


def decided_udf(decide):
    """`decided` as an Arrow UDF over (ppl, lang, score_note, ref_score): four small columns to Python."""
    from pyspark.sql.functions import arrow_udf

    def decisions(ppl: pa.Array, lang: pa.Array, note: pa.Array, rs: pa.Array) -> pa.Array:
        return decided(decide, ppl, lang, note, rs)

    return arrow_udf(decisions, "quality string, reason string, detail string")


def score_stats(frame, cuts: Mapping, drop: list, ref_min, ref_path, paths: Mapping, cfg: Mapping, mode: str) -> dict:
    """stats.json `extra` from the scored records' small columns (source_type, lang, quality, score_note,
    ref_score): buckets per language and type, the unscored notes, the reference scores."""
    from pyspark.sql import functions as F

    note = F.col("score_note")
    rows = (frame.groupBy("source_type", "lang", "quality")
            .agg(F.count(F.lit(1)).alias("n"),
                 F.sum(F.when(note == NOTE_EMPTY, 1).otherwise(0)).alias("empty"),
                 F.sum(F.when(note == NOTE_NO_MODEL, 1).otherwise(0)).alias("no_model"),
                 F.sum(F.when(note.startswith(NOTE_TRUNCATED), 1).otherwise(0)).alias("truncated"),
                 F.sum(F.when(note == NOTE_RECIPE, 1).otherwise(0)).alias("recipe"),
                 F.sum(F.when(note == NOTE_UNKNOWN_TYPE, 1).otherwise(0)).alias("unknown_type"),
                 F.count("ref_score").alias("ref_n"), F.sum("ref_score").alias("ref_sum"),
                 F.sum(F.when(F.col("ref_score") < F.lit(float(ref_min) if ref_min is not None else -1.0), 1)
                       .otherwise(0)).alias("ref_below"))
            .collect())
    by_lang: dict = {}
    by_type: dict = {}
    notes = {"empty": 0, "no_model": 0, "truncated_docs": 0}
    by_recipe = {"recipe": 0, "unknown_type": 0}
    ref_n = ref_below = 0
    ref_sum = 0.0
    for r in rows:
        lang_q = by_lang.setdefault(r["lang"] or "null", {})
        lang_q[r["quality"]] = lang_q.get(r["quality"], 0) + r["n"]
        type_q = by_type.setdefault(r["source_type"] or "null", {})
        type_q[r["quality"]] = type_q.get(r["quality"], 0) + r["n"]
        notes["empty"] += r["empty"]
        notes["no_model"] += r["no_model"]
        notes["truncated_docs"] += r["truncated"]
        by_recipe["recipe"] += r["recipe"]
        by_recipe["unknown_type"] += r["unknown_type"]
        ref_n += r["ref_n"]
        ref_sum += r["ref_sum"] or 0.0
        ref_below += r["ref_below"]
    return {"cutoffs": cuts, "quality_by_lang": by_lang, "quality_by_type": by_type, "unscored": notes,
            "unscored_by_recipe": by_recipe, "drop": drop,
            "ref_score": {"model": ref_path, "scored": ref_n, "mean": round(ref_sum / ref_n, 4) if ref_n else None,
                          "ref_min": ref_min, "below_min": ref_below if ref_min is not None else None},
            "single_pass": mode,
            "models": {k: {"sp": v[0], "lm": v[1]} for k, v in paths.items()},
            "ccnet_cutoffs": cfg.get("ccnet_cutoffs") or {}}


# ---------------------------------------------------------------- the batch form (a fused pass)
_SIDE = "_scores"
_SIDE_SCHEMA = pa.schema([("source_type", pa.string()), ("lang", pa.string()), ("ppl", pa.float64()),
                          ("score_note", pa.string()), ("ref_score", pa.float64())])
_ADDED = ("ppl", "score_note", "ref_score", "quality", "reason", "detail")


def batch_form(conf):
    """AS over Arrow batches: each record scored once (ppl, score_note, ref_score) in the worker, `ref_min` and,
    with every language's cutoffs fixed, `drop` decided there too. Cutoffs computed on the input need every
    perplexity first: the pass's frame is then cached, the cutoffs are computed from the scored records' side
    rows and `quality` is added by Spark before the writes; `drop` with computed cutoffs has no batch form (its
    rejections would reach the stages after it), and the stage runs alone (`run`)."""
    cfg = conf[NAME]
    drop = [str(q) for q in (cfg.get("drop") or [])]
    ref_min = cfg.get("ref_min")
    paths = model_paths(cfg)
    ref_path = refclass.model_path(cfg)
    fixed = {k: dict(v) for k, v in (read_cutoffs(cfg["cutoffs_file"]) if cfg.get("cutoffs_file") else {}).items()}
    to_compute = [lang for lang in paths if lang not in fixed]
    if drop and to_compute:
        return None
    score = scorer(paths, ref_path, score_kinds(conf), normalize_settings(cfg), int(cfg["max_paragraph_chars"]),
                   int(cfg["max_paragraph_pieces"]), int(cfg["ref_train"]["chunk_chars"]), int(cfg["ref_max_chunks"]))
    state = {"cuts": {k: {**v, "source": "fixed"} for k, v in fixed.items()}}
    decide = decider(None if to_compute else fixed, drop, ref_min)

    def annotate(batch: pa.RecordBatch) -> pa.RecordBatch:
        names = batch.schema.names
        for col in ("id", "text", "lang"):
            if col not in names:
                raise ValueError(f"{NAME}: input has no {col!r} column (columns: {names})")
        for col in (*_ADDED, "_part", "_fp"):
            if col in names:
                raise ValueError(f"{NAME}: input already has a {col!r} column (scored twice?)")
        if batch.num_rows:
            s = score(batch.column("text"), batch.column("lang"), batch.column("source_type"))
            cols = [s.field(k) for k in ("ppl", "score_note", "ref_score")]
        else:                      # the driver's schema check: no model is loaded
            cols = [pa.array([], f.type) for f in SCORES]
        d = decided(decide, cols[0], batch.column("lang"), cols[1], cols[2])
        return pa.RecordBatch.from_arrays([*batch.columns, *cols, *(d.field(k) for k in DECIDED.names)],
                                          names=[*names, *_ADDED])

    def split(out: pa.RecordBatch) -> BatchResult:
        res = BatchResult.from_annotated(out)
        res.side = {_SIDE: out.select(_SIDE_SCHEMA.names)}
        return res

    def frame(df, side):
        computed = compute_cutoffs(side(_SIDE), to_compute, cfg)
        state["cuts"].update({k: {**v, "source": "computed"} for k, v in computed.items()})
        return df.withColumn("quality", quality_column(state["cuts"]))

    def prepare(spark) -> None:
        for sp, lm in paths.values():
            ship_file(spark, sp)
            ship_file(spark, lm)
        if ref_path:
            ship_file(spark, ref_path)

    def stats(st) -> dict:
        side = st.side.get(_SIDE)
        if side is None:
            from dataflow.core.schema import spark_schema

            side = st.spark.createDataFrame([], spark_schema(_SIDE_SCHEMA))
        frame_ = side.withColumn("quality", quality_column(state["cuts"]))
        return score_stats(frame_, state["cuts"], drop, ref_min, ref_path, paths, cfg,
                           "cached" if to_compute else "streamed")

    return Batched(annotate=annotate, split=split, stats=stats, side={_SIDE: _SIDE_SCHEMA},
                   frame=frame if to_compute else None, persist=bool(to_compute), prepare=prepare)


# ---------------------------------------------------------------- the stage
def _p_order(v: dict, key: str) -> list[str]:
    hi, lo = v.get("percentile_high"), v.get("percentile_low")
    if isinstance(hi, (int, float)) and isinstance(lo, (int, float)) and hi > lo:
        return [f"{key}.percentile_high: expected <= percentile_low ({lo}), got {hi}"]
    return []


CUTOFF = Section({"p30": Float(0), "p60": Float(0)})
SPEC = optional_section({
    "langs": Langs(),
    "model_dir": Dir(),
    "models": Map(optional_section({"sp": File(), "lm": File()}), nullable=True),
    "percentile_high": Float(0, 1),
    "percentile_low": Float(0, 1),
    "relative_error": Float(0, 1),
    "drop": List(Str(list(QUALITIES)), unique=True),
    "cutoffs_file": File(nullable=True),
    "max_paragraph_chars": Count(1),
    "max_paragraph_pieces": Count(1),
    "normalize": optional_section({"accent": Bool(), "case": Bool(), "numbers": Bool(), "punct": Bool()}),
    "ccnet_cutoffs": Map(CUTOFF, nullable=True),
    "ref_model": Path(nullable=True),   # not File: optional unless ref_required (refclass.model_path)
    "ref_required": Bool(),
    "ref_min": Float(0, 1, nullable=True),
    "ref_max_chunks": Count(1),
    "ref_train": refclass.TRAIN_SPEC,
    "train": LM_TRAIN_SPEC,
}, required=("langs", "model_dir"), extra=_p_order)


def _precheck(conf, inputs, output) -> None:
    """Every model the transform loads, loaded and tried on the driver before a JVM starts: each language's
    SentencePiece + KenLM pair scores a smoke sentence, and the reference classifier (when score uses one:
    a required one that is missing fails here too) tells two texts apart."""
    cfg = conf[NAME]
    for lang, (sp, lm) in model_paths(cfg).items():
        check_pair(lang, sp, lm, normalize_settings(cfg))
    ref = refclass.model_path(cfg)
    if ref:
        refclass.check_model(ref)


def _transform(df, ctx):
    scfg = ctx.cfg
    cutoffs = read_cutoffs(scfg["cutoffs_file"]) if scfg.get("cutoffs_file") else None
    return run(df, scfg, cutoffs=cutoffs, conf=ctx.conf, attempt=ctx.attempt)


STAGE = Stage(
    name=NAME,
    summary="AS: KenLM perplexity over SentencePiece pieces, per-language p30/p60 quality buckets, reference score",
    spec=SPEC,
    transform=_transform,
    batch=batch_form,
    precheck=_precheck,
    versions=("kenlm", "sentencepiece", "fasttext"),
    side_files=lambda st: {"cutoffs.json": cutoffs_json(st["extra"]["cutoffs"])},
    options=(
        Option(("--cutoffs",), {"metavar": "JSON", "default": None,
                                "help": 'fixed cutoffs {"<lang>": {"p30": x, "p60": y}} (e.g. an earlier OUT/cutoffs.json); '
                                        "languages not in the file get cutoffs computed on this input; sets "
                                        "score.cutoffs_file"},
               to_sets=lambda v: [f"score.cutoffs_file={json.dumps(v)}"]),
        Option(("--drop",), {"nargs": "*", "metavar": "BUCKET", "default": None,
                             "help": "buckets to move to rejected/ (high, medium, low, unscored); sets score.drop"},
               to_sets=lambda v: [f"score.drop={json.dumps(v)}"]),
    ),
    doc="""AS job: perplexity scoring and per-language quality buckets (see docs/score.md).

  python -m jobs.score --input RUN/10-preprocess --output RUN/20-score [--cutoffs cutoffs.json] [--drop low]
  spark-submit --files build/models/lm/zh.sp.model,... jobs/score.py --input ... --output ...

Adds `ppl` (cc_net document perplexity, SentencePiece + 5-gram KenLM), `quality` (high < p30 <= medium <
p60 <= low per language; `unscored` without a model, text or a recipe that scores), `score_note` and
`ref_score` (reference classifier). Cutoffs are computed on this input unless --cutoffs fixes them; --drop
/ score.drop buckets and score.ref_min go to rejected/ (quality:<bucket>, ref_score). Writes OUT/data,
OUT/rejected, OUT/stats.json, OUT/cutoffs.json (reusable with --cutoffs) and OUT/_SUCCESS.""",
)
