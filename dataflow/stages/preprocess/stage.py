"""DP stage: raw records (dataflow.ingest) -> document records (DESIGN §3), annotated then split.

Per record: payload -> text (HTML main content, or strict decoding of plain text), normalization,
fastText language and score, optional OpenCC t2s for zh. Every record leaves as exactly one row:
kept (reason null) or rejected with `reason`:
  malformed:<what>  from ingest (corrupt_gzip, truncated_record, too_large, json, missing_text, ...)
                    or here: binary (PNG/PDF/... body), invalid_utf8 (plain-text payload)
  content_type      a payload that is neither HTML nor text (declared media type in detail)
  empty             nothing left after extraction and normalization
  lang              language not in keep_langs
  lang_low_score    language kept but the fastText score is below lang_threshold
  malformed:source_type  the record declares a `source_type` that does not exist
  <type>.<why>      a record a dump reader produced, dropped by its type's processor (dataflow.ingest.sources
                    PROCESSORS: code.license with the licence in detail, paper.no_section, qa.post_type, ...)

Every row carries `source_type` (dataflow/core/recipes.py `TypeResolver`). Per type, the recipe decides whether
the language filters (`lid: filter`) or is only recorded (`lid: label`), and whether normalization collapses
whitespace (`whitespace: keep` for code). A dump reader's record first goes through its type's processor
(on the raw TeX / wikitext / source file), then normalization and LID like any other.
"""
from __future__ import annotations

import json
import os
import signal
import threading

import pyarrow as pa
import xxhash

from dataflow import ingest
from dataflow.core import fs
from dataflow.core.confschema import Bool, Count, File, Float, Langs, List, Map, Prob, Str, optional_section
from dataflow.core.contract import Batched, BatchResult, FusedStats, Stage
from dataflow.core.schema import DOC_ARROW_SCHEMA, spark_schema, with_reject_fields
from dataflow.core.stage import StageResult
from dataflow.ingest.records import too_large
from dataflow.ingest.sources import PROCESSORS
from dataflow.models.langid.train import TRAIN_SPEC as LANGID_TRAIN_SPEC
from dataflow.stages.preprocess.html import binary_reason, decode, html_to_text, looks_like_html, media_type
from dataflow.models.langid.model import check_model, load_model, predict
from dataflow.core.normalize import normalize

OUT_SCHEMA = with_reject_fields(DOC_ARROW_SCHEMA)


def doc_id(source: str, rel: str, offset: int, index: int = 0, record_id: str | None = None) -> str:
    """Stable, unique id that does not depend on where the data lives (DESIGN §9): xxh3-128 of the record's
    `WARC-Record-ID` when it has one, else of its source name, its file's path relative to the input root
    (`meta.rel_path`) and its offset (byte offset of its gzip member / line / WARC record, or Parquet row),
    plus its index inside a multi-record gzip member. The same corpus under another directory or on an
    object store gives the same ids; `a/train-0.parquet` and `b/train-0.parquet` under one root give
    different ones. An input's own `id` field is kept in `meta.id`."""
    if record_id:
        key = f"warc\x1f{record_id}"
    else:
        key = f"{source}\x1f{rel}\x1f{offset}" + (f"\x1f{index}" if index else "")
    return xxhash.xxh3_128_hexdigest(key.encode("utf-8", "surrogatepass"))


def record_id(r: dict, meta: dict) -> str:
    """`doc_id` of a raw record (its provenance in `meta`; a record read without a listing root, e.g. by a test
    calling a reader directly, falls back to its file name)."""
    rel = meta.get("rel_path") or fs.basename(str(r["file"]))
    return doc_id(r["source"], rel, r["offset"], int(meta.get("member_record") or 0), meta.get("warc_record_id"))


class RecordLimit(Exception):
    """A per-record limit of the configuration was reached (`reason` = `limit:<what>`)."""

    def __init__(self, what: str, message: str):
        super().__init__(message)
        self.what = what


class _TimeLimit:
    """`preprocess.max_record_seconds` of wall time for one record, by a real-time interval timer (in the main
    thread of the process, as in a Spark Python worker; elsewhere no timer is set). Pure-Python loops are
    stopped; a single call into C code is stopped when it returns."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds or 0)
        self.usable = self.seconds > 0 and threading.current_thread() is threading.main_thread() \
            and hasattr(signal, "setitimer")

    def _fire(self, signum, frame):
        raise RecordLimit("time", f"over preprocess.max_record_seconds={self.seconds:g}")

    def __enter__(self):
        if self.usable:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.usable:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


_OPENCC: dict = {}


def _opencc_converter(name: str):
    """OpenCC converters ship with the package (not a file to send): one per worker and config name."""
    if name not in _OPENCC:
        import opencc

        _OPENCC[name] = opencc.OpenCC(name)
    return _OPENCC[name]


class Preprocessor:
    """The per-record logic with its configuration and models bound (plain Python; no Spark needed)."""

    def __init__(self, cfg: dict, model=None, opencc=None, conf: dict | None = None):
        """`cfg`: the `preprocess` section; `conf`: the root configuration (its `sources` and `recipes`
        sections; without it every record is `web`, the defaults of dataflow/core/recipes.py)."""
        from dataflow.core.recipes import TypeResolver, recipes, source_settings

        self.cfg = cfg
        conf = conf or {}
        self.types = TypeResolver(conf)
        self.recipes = recipes(conf)
        self.type_cfg = {t: source_settings(conf, t) for t in self.recipes}
        self.prefix = int(cfg.get("quarantine_prefix_chars") or 0)
        self.html_types = {t.lower() for t in cfg["html_content_types"]}
        self.keep = set(cfg["keep_langs"])
        self.threshold = float(cfg["lang_threshold"])
        self.lang_map = dict(cfg.get("lang_map") or {})
        self.form = cfg.get("unicode_form") or None
        self.min_chars = int(cfg["min_chars"])
        self.sniff = int(cfg["binary_sniff_bytes"])
        self.max_bytes = int(cfg["max_doc_bytes"])
        self.time_limit = _TimeLimit(cfg.get("max_record_seconds") or 0)
        self.model = model if model is not None else load_model(cfg["langid_model"])
        self.opencc_name = cfg.get("opencc") or None
        if opencc is None and self.opencc_name:
            opencc = _opencc_converter(self.opencc_name)
        self.opencc = opencc

    # the raw record's text, or (reason, detail) when the payload cannot become text; `meta` gets the
    # charset used (and where it came from) and a sniffed content type
    def _text(self, r: dict, meta: dict):
        body = r["content"]
        if body is None:
            return r["text"] or "", None
        where = f"{r['file']} @ offset {r['offset']}"
        ctype = r.get("content_type")
        why = binary_reason(body, self.sniff)
        if why:
            return None, ("malformed:binary", f"{where}: binary payload ({why}), declared {ctype or 'no type'}")
        mt = media_type(ctype)
        if not mt and looks_like_html(body, self.sniff):
            mt = "text/html"
            meta["content_type_sniffed"] = mt
        charset = meta.get("http_charset")
        if mt in self.html_types:
            info: dict = {}
            text = html_to_text(body, charset=charset, main_content=bool(self.cfg["html_main_content"]),
                                list_bullets=bool(self.cfg["html_list_bullets"]), info=info)
            meta.update(info)
            return text, None
        if mt.startswith("text/") or not mt:
            # WET conversion records are UTF-8 by definition (Common Crawl's WET format): no detector
            text, info = decode(body, charset, html=False, detect=meta.get("warc_type") != "conversion")
            if text is None:
                return None, (f"malformed:{info['what']}", f"{where}: {info['error']}")
            meta.update(info)
            return text, None
        return None, ("content_type", f"{where}: payload type {mt!r} is neither HTML nor text")

    def __call__(self, r: dict) -> dict:
        """One raw record -> one annotated document row. Any exception in the per-record code costs that record
        alone: a `malformed:record_error` row naming the file, offset and exception; a limit of the
        configuration reached is `limit:<what>` (time, recursion)."""
        try:
            with self.time_limit:
                return self._annotate(r)
        except RecordLimit as e:
            return self._failed(r, f"limit:{e.what}", str(e))
        except RecursionError as e:
            return self._failed(r, "limit:recursion", f"nesting deeper than the interpreter allows: {e}")
        except Exception as e:  # noqa: BLE001 - one record must never take its batch, its task or the job
            return self._failed(r, "malformed:record_error", f"{type(e).__name__}: {e}")

    def _failed(self, r: dict, reason: str, why: str) -> dict:
        meta = dict(r["meta"] or {})
        try:
            rid = record_id(r, meta)
        except Exception:  # noqa: BLE001 - provenance itself unusable: an id from what is left
            rid = doc_id(str(r.get("source")), str(r.get("file")), int(r.get("offset") or 0))
        text = r.get("text")
        return {"id": rid, "source": r.get("source"), "url": r.get("url"),
                "text": text[:self.prefix] if isinstance(text, str) and self.prefix else None,
                "lang": None, "lang_score": None, "meta": meta, "source_type": r.get("source_type"),
                "reason": reason, "detail": f"{r.get('file')} @ offset {r.get('offset')}: {why}"[:2000]}

    def _annotate(self, r: dict) -> dict:
        meta = dict(r["meta"] or {})
        declared = r.get("source_type")
        if declared is None and "source_type" in meta:   # a raw frame made before the column existed
            declared = meta.pop("source_type")
        stype, bad_type = self.types(declared, r["source"], r["file"])
        out = {"id": record_id(r, meta), "source": r["source"],
               "url": r["url"], "text": None, "lang": None, "lang_score": None, "meta": meta,
               "source_type": stype, "reason": r["reason"], "detail": r["detail"]}
        if r["reason"]:  # quarantined by the reader: keep its bounded prefix for audit
            out["text"] = r["text"]
            return out
        if bad_type:
            meta["declared_source_type"] = declared
            out["reason"] = "malformed:source_type"
            out["detail"] = f"{r['file']} @ offset {r['offset']}: {bad_type}"
            out["text"] = (r["text"] or "")[:self.prefix] or None
            return out
        text, bad = self._text(r, meta)
        if bad:
            out["reason"], out["detail"] = bad
            return out
        recipe = self.recipes[stype]
        process = _processor(stype) if meta.get("reader") else None
        if process is not None:
            text, why = process(text, meta, self.type_cfg[stype])
            if why is not None:
                reason, _, detail = why.partition(":")
                out["reason"] = reason
                out["detail"] = f"{r['file']} @ offset {r['offset']}" + (f": {detail}" if detail else "")
                out["text"] = r["text"]   # the record as read, for audit (bounded by max_doc_bytes)
                return out
            if too_large(text, self.max_bytes):   # a processor's output is bounded like the input
                out["reason"] = "limit:too_large"
                out["detail"] = (f"{r['file']} @ offset {r['offset']}: the {stype} processor's output exceeds "
                                 f"preprocess.max_doc_bytes={self.max_bytes}")
                out["text"] = text[:self.prefix] or None
                return out
        text = normalize(text, form=self.form, keep_whitespace=recipe.whitespace == "keep")
        out["text"] = text
        if len(text) < self.min_chars:
            out["reason"], out["detail"] = "empty", f"{len(text)} chars after extraction and normalization"
            return out
        lang, score = predict(self.model, text, self.lang_map)
        out["lang"], out["lang_score"] = lang, score
        if recipe.lid == "label":   # recorded, never a rejection; no script conversion of code or examples
            return out
        if lang not in self.keep:
            out["reason"], out["detail"] = "lang", f"label={lang} score={score:.3f}"
        elif score < self.threshold:
            out["reason"], out["detail"] = "lang_low_score", f"label={lang} score={score:.3f} < {self.threshold}"
        elif self.opencc is not None and lang == "zh":
            out["text"] = self.opencc.convert(text)
            meta["opencc"] = self.opencc_name
        return out


def _processor(source_type: str):
    return PROCESSORS.get(source_type)


def annotator(cfg: dict, tconf: dict):
    """raw records (dicts) -> DP's annotated batch, with one Preprocessor per Python worker, built there on first
    use (the model is never pickled). Every DP path (the batch form, its reader, `run`) annotates through it."""
    state: dict = {}

    def annotate(rows: list[dict]) -> pa.RecordBatch:
        pre = state.get("pre") or state.setdefault("pre", Preprocessor(cfg, conf=tconf))
        return to_batch([pre(r) for r in rows])

    return annotate


def _rows(batch: pa.RecordBatch) -> list[dict]:
    rows = batch.to_pylist()
    for r in rows:
        if isinstance(r["meta"], list):
            r["meta"] = dict(r["meta"])
    return rows


def to_batch(rows: list[dict]) -> pa.RecordBatch:
    cols = {name: [r[name] for r in rows] for name in OUT_SCHEMA.names}
    cols["meta"] = [list(m.items()) for m in cols["meta"]]
    return pa.RecordBatch.from_pydict(cols, schema=OUT_SCHEMA)


def _ship_model(spark, path: str) -> None:
    """Ship the model from the driver; a path the driver cannot see must come with `--files`
    (workers resolve it by name through SparkFiles, and fail naming it if it is not there)."""
    from dataflow.core.spark import ship_file

    if os.path.exists(path):
        ship_file(spark, path)


def _result(annotated):
    from pyspark.sql import functions as F

    result = StageResult.from_annotated(annotated)

    def stats():
        langs = (result.annotated.groupBy("lang")
                 .agg(F.count(F.lit(1)).alias("n"), F.sum(F.when(F.col("reason").isNull(), 1).otherwise(0)).alias("kept"))
                 .collect())
        return {"langs": {(r["lang"] or "none"): {"input": r["n"], "kept": r["kept"]}
                          for r in sorted(langs, key=lambda r: r["lang"] or "")}}

    result.stats = stats
    return result


def _types_conf(root: dict | None) -> dict:
    """The parts of the root configuration the per-type logic reads (sent to every worker)."""
    root = root or {}
    return {k: root[k] for k in ("sources", "recipes", "dedup") if k in root}


def run(raw_df, cfg: dict, root: dict | None = None):
    """raw records (dataflow.ingest.read) -> StageResult(kept, rejected). `cfg` is the `preprocess`
    section; the langid model is shipped to executors and loaded once per Python worker."""

    spark = raw_df.sparkSession
    _ship_model(spark, cfg["langid_model"])
    annotate = annotator(dict(cfg), _types_conf(root))

    def transform(batches):
        for b in batches:
            yield annotate(_rows(b))

    return _result(raw_df.mapInArrow(transform, spark_schema(OUT_SCHEMA)))


# ---------------------------------------------------------------- the stage
SPEC = optional_section({
    "source": Str(nullable=True),
    "max_doc_bytes": Count(1),
    "max_record_seconds": Float(0, 86400),
    "quarantine_prefix_chars": Count(0),
    "files_per_task": Count(1),
    "split_bytes": Count(1),
    "batch_rows": Count(1),
    "batch_bytes": Count(1),
    "warc_record_types": List(Str(["response", "resource", "conversion", "request", "metadata", "revisit",
                                   "warcinfo"]), min_len=1),
    "html_content_types": List(Str(non_empty=True)),
    "binary_sniff_bytes": Count(0),
    "html_main_content": Bool(),
    "html_list_bullets": Bool(),
    "unicode_form": Str(["NFC", "NFKC", "NFD", "NFKD"], nullable=True),
    "opencc": Str(non_empty=True, nullable=True),
    "langid_model": File(),
    "lang_threshold": Prob(),
    "keep_langs": Langs(min_len=1),
    "lang_map": Map(Str(non_empty=True), nullable=True),
    "min_chars": Count(0),
    "langid_train": LANGID_TRAIN_SPEC,
}, required=("langid_model", "lang_threshold", "keep_langs", "max_doc_bytes"))


def _precheck(conf, inputs: list[str], output: str) -> None:
    ingest.check_ids_apart(ingest.list_inputs(inputs, conf))   # a missing path, ids that would collide: here
    cfg = conf["preprocess"]           # ... and a language-ID model that cannot tell the kept languages apart
    check_model(cfg["langid_model"], dict(cfg.get("lang_map") or {}), set(cfg["keep_langs"]))


def _read(ctx):
    """Raw files -> the annotated document frame, in the Python worker that read each batch (HTML bytes never
    cross to the JVM): the records this stage saw are the rows of that frame. The fused reader, handing each
    batch on as it is."""
    return _read_fused(ctx, lambda batch: batch, OUT_SCHEMA)


def _split(annotated: pa.RecordBatch) -> BatchResult:
    """An annotated batch -> kept and rejected, counting input and kept documents per language (`lang:<json>`)."""
    import pyarrow.compute as pc

    res = BatchResult.from_annotated(annotated)
    counters: dict[str, list[int]] = {}
    for lang, kept in zip(annotated.column("lang").to_pylist(), pc.is_null(annotated.column("reason")).to_pylist()):
        c = counters.setdefault(f"lang:{json.dumps(lang)}", [0, 0])
        c[0] += 1
        c[1] += int(kept)
    res.counters = counters
    return res


def _lang_stats(st: FusedStats) -> dict:
    """stats.json `extra.langs`: {lang or "none": {input, kept}}, from the pass's counters."""
    langs = {json.loads(k.split(":", 1)[1]): v for k, v in st.counters.items() if k.startswith("lang:")}
    return {"langs": {(lang or "none"): {"input": v[0], "kept": v[1]}
                      for lang, v in sorted(langs.items(), key=lambda kv: kv[0] or "")}}


def batch_form(conf):
    """DP over Arrow batches: raw records (ingest RAW_SCHEMA) -> annotated documents, one Preprocessor per
    Python worker (built there, on first use: the model is never pickled)."""
    annotate = annotator(dict(conf["preprocess"]), _types_conf(conf))
    return Batched(annotate=lambda batch: annotate(_rows(batch)), split=_split, stats=_lang_stats, annotated_schema=OUT_SCHEMA)


def _read_fused(ctx, then, schema: pa.Schema):
    """The DP reader with each annotated batch handed to `then` (the fused pass's chain) in the worker that read
    it: raw bytes and DP's documents never travel to the JVM before the pass's write."""
    ledger = ingest.Ledger(ctx.attempt.path("_seen"))
    _ship_model(ctx.spark, ctx.cfg["langid_model"])
    tconf = _types_conf(ctx.conf)
    annotate = annotator(dict(ctx.cfg), tconf)
    frame, files = ingest.read(ctx.spark, ctx.inputs, ctx.cfg, transform=lambda rows: then(annotate(rows)),
                               schema=schema, conf=tconf, ledger=ledger)
    _ledger_seen(ctx, ledger, files)
    return frame, [f.path for f in files]


def _ledger_seen(ctx, ledger, files) -> None:
    """The stage's `input`: what the readers' ledger counts (then the ledger is removed), and its progress."""
    units = len(ingest.splits(files, int(ctx.cfg.get("split_bytes") or 0) or 1 << 62))

    def seen() -> int:
        n = ledger.seen(expected_units=units)
        ledger.remove()
        return n

    ctx.seen = seen
    ctx.work = ledger.work(files)


STAGE = Stage(
    name="preprocess",
    summary="DP: WARC/WET/JSONL/Parquet and source dumps -> documents (HTML to text, normalization, language ID)",
    spec=SPEC,
    read=_read,
    transform=lambda annotated, ctx: _result(annotated),
    precheck=_precheck,
    input_help="WARC/WET/JSONL/Parquet files, source dumps, directories (recursive) or globs",
    versions=("fastwarc", "resiliparse", "ftfy", "fasttext-numpy2-wheel"),
    batch=batch_form,
    read_fused=_read_fused,
    doc="""DP (preprocessing): WARC/WET/JSONL/Parquet -> document records (HTML to text, normalization, language).

    python -m jobs.preprocess --input build/corpus/out/fixture/warc --output build/runs/dp
    spark-submit jobs/preprocess.py --input 's3a://.../*.warc.gz' --output OUT --set preprocess.keep_langs=[zh]

Inputs: files, directories (walked recursively) and globs of `.warc(.gz)`, `.warc.wet(.gz)`,
`.jsonl(.gz|.zst)` and `.parquet`, and the dumps `sources.inputs` names (docs/sources.md). A path that does not
exist stops the job (exit 2) naming it. Malformed records are quarantined in OUT/rejected with reason
`malformed:<what>` and the file + offset. Options live in the `preprocess` section of conf/pipeline.yaml
(see docs/preprocess.md).""",
)
