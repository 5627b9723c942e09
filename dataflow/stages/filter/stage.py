"""RF stage: apply the rule engine (dataflow/stages/filter/rules) to every document with Spark.

`run(df, cfg)` annotates every record once (mapInArrow over Arrow batches): the rewritten `text`,
`rule_flags` (rule -> documents/paragraphs/sentences it removed), `reason`/`detail` for rejected rows.
Given the root conf, each record gets only the rules of its `source_type`'s recipe (`recipes.<type>.rules`,
dataflow/core/recipes.py): one engine per distinct recipe, chosen per record inside the batch transform; a type
whose recipe names no rule passes through kept, untouched (it still counts as input and kept).
Kept and rejected are then split by `StageResult.from_annotated`; per-rule statistics are Spark
aggregations over the per-record counters, and `write_examples` writes a few seeded before/after
examples per rule for human audit.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Mapping

import pyarrow as pa

from dataflow.core import fs
from dataflow.core.confschema import Count, Int, optional_section
from dataflow.core.contract import Batched, BatchResult, Option, Stage
from dataflow.core.recipes import SOURCE_TYPES, recipes, with_source_type
from dataflow.core.schema import require_columns
from dataflow.core.spark import ship_file
from dataflow.core.stage import StageResult
from dataflow.stages.filter.rules.engine import RuleEngine
from dataflow.stages.filter.rules.registry import ActiveRule, all_rules, rules_spec, settings_spec
from dataflow.stages.filter.rules.registry import list_rules as rules_table

NAME = "filter"
FLAGS = "rule_flags"          # kept on the output: map<string,int> rule -> units removed
_CHARS = "_rule_chars"        # internal: map<string,long> rule -> characters removed (stats only)
_ORIG = "_orig_text"          # internal: the input text of rewritten documents (examples only)
_REMOVED = "_removed"         # internal: rule -> its first removed paragraphs/sentences (examples only)
_UNKNOWN = object()          # a source_type no recipe exists for
ADDED = [pa.field(FLAGS, pa.map_(pa.string(), pa.int32())), pa.field(_CHARS, pa.map_(pa.string(), pa.int64())),
         pa.field(_ORIG, pa.string()), pa.field(_REMOVED, pa.map_(pa.string(), pa.list_(pa.string()))),
         pa.field("reason", pa.string()), pa.field("detail", pa.string())]
ADDED_NAMES = frozenset(a.name for a in ADDED)


def lexicon_files(rules: list[ActiveRule]) -> list[str]:
    return sorted({p for r in rules for p in (r.params.get("lexicons") or {}).values()})


def recipe_engines(engine: RuleEngine, conf: Mapping) -> dict[str, RuleEngine | None]:
    """source type -> the engine of its recipe's rules (None: the recipe names no enabled rule). Types with the
    same selection share one engine. A recipe naming a rule or family that does not exist fails here."""
    known = {r.name for r in all_rules()}
    families = {n.split(".", 1)[0] for n in known}
    by_sel: dict[tuple[str, ...] | None, RuleEngine | None] = {}
    out = {}
    for t, rec in recipes(conf).items():
        unknown = [x for x in rec.rules or () if x not in known and x not in families]
        if unknown:
            raise ValueError(f"recipes.{t}.rules: unknown rule(s) or famil(ies) {unknown}; "
                             f"see python -m jobs.filter --list-rules")
        if rec.rules not in by_sel:
            rules = [r for r in engine.rules if rec.applies_rule(r.name)]
            if not rules:
                by_sel[rec.rules] = None
            elif len(rules) == len(engine.rules):
                by_sel[rec.rules] = engine
            else:
                sub = copy.copy(engine)
                sub.rules = rules
                by_sel[rec.rules] = sub
        out[t] = by_sel[rec.rules]
    return out


def annotate_batch(batch: pa.RecordBatch, engine, keep_removed: int = 0) -> pa.RecordBatch:
    """Per-record work on one Arrow batch: all input columns (text rewritten) + the annotation columns.
    `engine`: one RuleEngine for every record, or a mapping source type -> engine (None: no rules), chosen by
    the batch's `source_type` column (filled by `recipes.with_source_type`)."""
    texts = batch.column("text").to_pylist()
    langs = batch.column("lang").to_pylist()
    types = [None] * len(texts) if isinstance(engine, RuleEngine) else batch.column("source_type").to_pylist()
    new_text, flags, chars, orig, removed, reasons, details = [], [], [], [], [], [], []
    for text, lang, typ in zip(texts, langs, types):
        eng = engine if isinstance(engine, RuleEngine) else engine.get(typ, _UNKNOWN)
        if text is None or eng is _UNKNOWN or eng is None:     # malformed, or a type whose recipe has no rule
            new_text.append(text), flags.append([]), chars.append([]), orig.append(None), removed.append([])
            if text is None:
                reasons.append("malformed:text"), details.append("text is null")
            elif eng is _UNKNOWN:
                reasons.append("malformed:source_type")
                details.append(f"source_type {typ!r} is not one of {list(SOURCE_TYPES)}")
            else:
                reasons.append(None), details.append(None)
            continue
        o = eng.filter_text(text, lang, keep_removed)
        new_text.append(o.text)
        flags.append(sorted(o.units.items()))
        chars.append(sorted(o.chars.items()))
        orig.append(text if o.changed else None)
        removed.append(sorted(o.removed.items()))
        reasons.append(o.reason)
        details.append(o.detail)
    cols, fields = [], []
    for name, col, fld in zip(batch.schema.names, batch.columns, batch.schema):
        cols.append(pa.array(new_text, pa.string()) if name == "text" else col)
        fields.append(pa.field("text", pa.string()) if name == "text" else fld)
    for fld, values in zip(ADDED, (flags, chars, orig, removed, reasons, details)):
        cols.append(pa.array(values, fld.type))
        fields.append(fld)
    return pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields))


def run(df, cfg: dict, conf: Mapping | None = None):
    """documents -> StageResult(kept, rejected, stats). `cfg` is the `filter` section of the configuration;
    `conf` the root configuration whose `recipes` choose each source type's rules (None: every rule applies
    to every record, the behaviour before source types)."""
    from pyspark.sql import types as T

    require_columns(df, ["id", "text", "lang"], NAME)
    engine = RuleEngine(cfg)          # a bad rule parameter fails here, on the driver
    rules = engine.rules
    engines = recipe_engines(engine, conf) if conf is not None else engine
    if conf is not None:
        df = with_source_type(df, conf)
    spark = df.sparkSession
    for path in lexicon_files(rules):
        ship_file(spark, path)

    out_schema = T.StructType(
        [f for f in df.schema.fields if f.name not in ADDED_NAMES]
        + [T.StructField(FLAGS, T.MapType(T.StringType(), T.IntegerType())),
           T.StructField(_CHARS, T.MapType(T.StringType(), T.LongType())),
           T.StructField(_ORIG, T.StringType()),
           T.StructField(_REMOVED, T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
           T.StructField("reason", T.StringType()),
           T.StructField("detail", T.StringType())])
    src = df.drop(*[a.name for a in ADDED if a.name in df.columns])

    keep_removed = int(cfg["example_removed_units"])

    def transform(batches):
        for b in batches:
            yield annotate_batch(b, engines, keep_removed)

    annotated = src.mapInArrow(transform, out_schema)
    result = StageResult.from_annotated(annotated, drop=[_CHARS, _ORIG, _REMOVED])
    # the config hash covers lexicon paths, not contents: record the contents' hashes for audit
    lexicons = {path: hashlib.sha256(fs.read_bytes(path)).hexdigest()[:16] for path in lexicon_files(rules)}
    extra = {"lexicons": lexicons}
    types = {}
    if conf is not None:
        types = {r.name: sorted(t for t, e in engines.items() if e is not None and r in e.rules) for r in rules}
        extra["recipes"] = {t: "all" if r.rules is None else list(r.rules) for t, r in recipes(conf).items()}
    result.stats = lambda: {**rule_stats(result.annotated, rules, types), **extra}
    return result


def rule_stats(annotated, rules: list[ActiveRule], types: Mapping[str, list[str]] | None = None) -> dict:
    """For every rule: documents rejected, paragraphs/sentences removed, characters removed (aggregations);
    with `types` (rule -> the source types whose recipe applies it), those types too."""
    from pyspark.sql import functions as F

    units = {r["rule"]: r["n"] for r in annotated.select(F.explode(FLAGS).alias("rule", "u"))
             .groupBy("rule").agg(F.sum("u").alias("n")).collect()}
    chars = {r["rule"]: r["n"] for r in annotated.select(F.explode(_CHARS).alias("rule", "c"))
             .groupBy("rule").agg(F.sum("c").alias("n")).collect()}
    docs = {r["reason"]: r["n"] for r in annotated.where(F.col("reason").isNotNull())
            .groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()}
    return _rule_stats(units, chars, docs, rules, types)


def _rule_stats(units: Mapping, chars: Mapping, docs: Mapping, rules: list[ActiveRule],
                types: Mapping[str, list[str]] | None) -> dict:
    """stats.json `extra.rules` and `extra.malformed` from the summed units and characters removed per rule
    and the documents rejected per reason."""
    active = {r.name for r in rules}
    per_rule = {}
    for r in all_rules():
        u = int(units.get(r.name) or 0)
        per_rule[r.name] = {
            "level": r.level,
            "enabled": r.name in active,
            "documents": int(docs.get(r.name, 0)),
            "paragraphs": u if r.level == "paragraph" else 0,
            "sentences": u if r.level == "sentence" else 0,
            "chars": int(chars.get(r.name) or 0),
        }
        if types:
            per_rule[r.name]["source_types"] = types.get(r.name, [])
    return {"rules": per_rule, "malformed": {k: v for k, v in docs.items() if k.startswith("malformed:")}}


def write_examples(annotated, out, cfg: dict) -> dict[str, int]:
    """OUT/examples/<rule>.jsonl: up to `examples_per_rule` documents per rule, the ones with the smallest
    xxhash64(seed, id) (deterministic, independent of partitioning), text before and after."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n, cap, seed = int(cfg["examples_per_rule"]), int(cfg["example_max_chars"]), int(cfg["seed"])
    typed = ["source_type"] if "source_type" in annotated.columns else []
    touched = annotated.select("id", "source", *typed, "lang", "text", _ORIG, _REMOVED, "reason", "detail", FLAGS,
                               F.explode(F.map_keys(FLAGS)).alias("rule"))
    w = Window.partitionBy("rule").orderBy(F.xxhash64(F.lit(seed), F.col("id")), F.col("id"))
    picked = (touched.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n)
              .select("rule", "rank", "id", "source", *typed, "lang",
                      F.element_at(FLAGS, F.col("rule")).alias("units"),
                      F.col("reason").alias("rejected_by"), "detail",
                      F.col(_REMOVED)[F.col("rule")].alias("removed"),
                      F.substring(F.coalesce(_ORIG, "text"), 1, cap).alias("before"),
                      F.when(F.col("reason").isNull(), F.substring("text", 1, cap)).alias("after")))
    # at most examples_per_rule x rules rows, each text cut to example_max_chars
    return _write_example_files(picked.collect(), out)


# ---------------------------------------------------------------- the stage
def spec():
    """The `filter` section: the engine's own keys, the examples, and `rules`, whose schema each rule
    declares (`rules.registry.rules_spec`)."""
    return optional_section({
        "seed": Int(),
        "examples_per_rule": Count(0),
        "example_max_chars": Count(1),
        "example_removed_units": Count(0),
        **settings_spec(),
        "rules": rules_spec(),
    }, required=("rules", *settings_spec()))


def run_with_examples(df, cfg: Mapping, out: str, conf: Mapping | None = None):
    """The RF transform plus its audit examples, written to `out`/examples (the stage's attempt directory,
    committed with the data); the example counts join the stage statistics. `conf`: the root configuration
    (its `recipes` choose each source type's rules; `run`)."""
    result = run(df, cfg, conf)
    examples = write_examples(result.annotated, out, cfg)
    stats_fn = result.stats
    result.stats = lambda: {**(stats_fn() if callable(stats_fn) else stats_fn), "examples": examples}
    return result


def spark_seed_hash(seed: int, key: str) -> int:
    """Spark's `xxhash64(lit(seed), col)` of one string restated (XXH64 of the seed's little-endian int, then of
    the UTF-8 bytes seeded with that, as a signed long): the order `write_examples` ranks documents by."""
    import struct

    import xxhash

    packed = struct.pack("<i", seed) if -2**31 <= seed < 2**31 else struct.pack("<q", seed)
    h = xxhash.xxh64_intdigest(packed, seed=42)
    h = xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass"), seed=h)
    return h - (1 << 64) if h >= 1 << 63 else h


EXAMPLE_SIDE = "_examples"
EXAMPLE_SCHEMA = pa.schema([("rule", pa.string()), ("id", pa.string()), ("source", pa.string()),
                            ("source_type", pa.string()), ("lang", pa.string()), ("units", pa.int32()),
                            ("rejected_by", pa.string()), ("detail", pa.string()), ("removed", pa.list_(pa.string())),
                            ("before", pa.string()), ("after", pa.string())])


def _example_rows(out: pa.RecordBatch, n: int, cap: int, seed: int) -> pa.RecordBatch:
    """Per rule, the batch's `n` documents it touched first in the examples' order (a superset of the run's
    first `n` among them): the narrow rows `write_example_rows` picks from, texts cut to `cap`."""
    by_rule: dict[str, list] = {}
    cols = {c: out.column(c).to_pylist() for c in ("id", "source", "lang", "text", _ORIG, _REMOVED, "reason",
                                                   "detail", FLAGS)}
    types = out.column("source_type").to_pylist() if "source_type" in out.schema.names else [None] * out.num_rows
    for j, flags in enumerate(cols[FLAGS]):
        for rule, _ in flags or []:
            by_rule.setdefault(rule, []).append(j)
    rows = []
    for rule, docs in by_rule.items():
        picked = sorted(docs, key=lambda j: (spark_seed_hash(seed, cols["id"][j]), cols["id"][j]))[:n]
        for j in picked:
            removed = dict(cols[_REMOVED][j] or [])
            before = cols[_ORIG][j] if cols[_ORIG][j] is not None else cols["text"][j]
            rows.append({"rule": rule, "id": cols["id"][j], "source": cols["source"][j], "source_type": types[j],
                         "lang": cols["lang"][j], "units": dict(cols[FLAGS][j])[rule],
                         "rejected_by": cols["reason"][j], "detail": cols["detail"][j], "removed": removed.get(rule),
                         "before": before[:cap] if before is not None else None,
                         "after": cols["text"][j][:cap] if cols["reason"][j] is None and cols["text"][j] is not None
                         else None})
    return pa.RecordBatch.from_pylist(rows, schema=EXAMPLE_SCHEMA)


def write_example_rows(rows, out: str, cfg: Mapping) -> dict[str, int]:
    """OUT/examples/<rule>.jsonl from candidate rows (`EXAMPLE_SCHEMA`): per rule the `examples_per_rule` with the
    smallest xxhash64(seed, id), as `write_examples` picks them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n, seed = int(cfg["examples_per_rule"]), int(cfg["seed"])
    w = Window.partitionBy("rule").orderBy(F.xxhash64(F.lit(seed), F.col("id")), F.col("id"))
    cols = ["rule", "rank", "id", "source", "source_type", "lang", "units", "rejected_by",
            "detail", "removed", "before", "after"]
    picked = rows.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n).select(*cols) \
        if rows is not None else None
    return _write_example_files(picked.collect() if picked is not None else [], out)


def _write_example_files(rows, out) -> dict[str, int]:
    ex_dir = fs.join(str(out), "examples")
    fs.delete(ex_dir)
    fs.makedirs(ex_dir)
    by_rule: dict[str, list] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r.asDict())
    for rule_name, items in sorted(by_rule.items()):
        lines = []
        for item in sorted(items, key=lambda x: x["rank"]):
            item.pop("rule")
            lines.append(json.dumps(item, ensure_ascii=False) + "\n")
        fs.write_text(fs.join(ex_dir, f"{rule_name}.jsonl"), "".join(lines))
    return {k: len(v) for k, v in sorted(by_rule.items())}


def batch_form(conf):
    """RF over Arrow batches (documents, `source_type` set): the rules of each record's recipe; the counters are
    the units and characters each rule removed and the documents rejected per reason, the side rows the
    candidates for the audit examples. Its statistics are the stage's own (`rule_stats`, `write_examples`)."""
    cfg = dict(conf[NAME])
    engine = RuleEngine(cfg)                 # a bad rule parameter fails here, on the driver
    engines = recipe_engines(engine, conf)
    rules = engine.rules
    keep_removed = int(cfg["example_removed_units"])
    n_ex, cap, seed = int(cfg["examples_per_rule"]), int(cfg["example_max_chars"]), int(cfg["seed"])
    internal = [_CHARS, _ORIG, _REMOVED]

    def annotate(batch: pa.RecordBatch) -> pa.RecordBatch:
        for c in ("id", "text", "lang"):
            if c not in batch.schema.names:
                raise ValueError(f"{NAME}: input has no {c!r} column (columns: {batch.schema.names})")
        return annotate_batch(batch.select([n for n in batch.schema.names if n not in ADDED_NAMES]), engines,
                              keep_removed)

    def split(out: pa.RecordBatch) -> BatchResult:
        counters: dict[str, int] = {}
        for col, prefix in ((FLAGS, "units:"), (_CHARS, "chars:")):
            for entries in out.column(col).to_pylist():
                for rule, n in entries or []:
                    counters[prefix + rule] = counters.get(prefix + rule, 0) + n
        for reason in out.column("reason").to_pylist():
            if reason is not None:
                counters["docs:" + reason] = counters.get("docs:" + reason, 0) + 1
        res = BatchResult.from_annotated(out, counters, drop=internal)
        res.side = {EXAMPLE_SIDE: _example_rows(out, n_ex, cap, seed)} if n_ex else {}
        return res

    def prepare(spark) -> None:
        for path in lexicon_files(rules):
            ship_file(spark, path)

    def stats(st) -> dict:
        got = {k.split(":", 1)[0]: {} for k in ("units:", "chars:", "docs:")}
        for key, n in st.counters.items():
            kind, name = key.split(":", 1)
            got[kind][name] = n
        types = {r.name: sorted(t for t, e in engines.items() if e is not None and r in e.rules) for r in rules}
        extra = {**_rule_stats(got["units"], got["chars"], got["docs"], rules, types), **_static_extra(rules, conf)}
        extra["examples"] = write_example_rows(st.side.get(EXAMPLE_SIDE), st.attempt.dir, cfg)
        return extra

    return Batched(annotate=annotate, split=split, stats=stats, side={EXAMPLE_SIDE: EXAMPLE_SCHEMA} if n_ex else {},
                   prepare=prepare)


def _static_extra(rules: list[ActiveRule], conf: Mapping) -> dict:
    """The lexicons' content hashes (the config hash covers paths, not contents) and each type's rule selection."""
    lexicons = {path: hashlib.sha256(fs.read_bytes(path)).hexdigest()[:16] for path in lexicon_files(rules)}
    return {"lexicons": lexicons,
            "recipes": {t: "all" if r.rules is None else list(r.rules) for t, r in recipes(conf).items()}}


def _list_rules(args, conf) -> int:
    print(rules_table(conf[NAME], markdown=bool(getattr(args, "markdown", False))))
    return 0


STAGE = Stage(
    name=NAME,
    summary="RF: 30+ rules at document, paragraph and sentence level (quality, repetition, zh, content lexicons)",
    spec=spec(),
    transform=lambda df, ctx: run_with_examples(df, ctx.cfg, ctx.attempt.dir, ctx.conf),
    batch=batch_form,
    options=(
        Option(("--list-rules",), {"action": "store_true", "default": False,
                                   "help": "print every rule (application order, level, languages, enabled in this "
                                           "conf) and exit"}, command=_list_rules),
        Option(("--markdown",), {"action": "store_true", "default": False,
                                 "help": "with --list-rules: a Markdown table with each rule's thresholds (the table "
                                         "in docs/filter.md)"}),
    ),
    doc="""RF job: rule-based filtering (document, then paragraph, then sentence rules; see docs/filter.md).

  python -m jobs.filter --input RUN/20-score --output RUN/30-filter [--conf conf/pipeline.yaml] [--set ...]
  spark-submit jobs/filter.py --input ... --output ...
  python -m jobs.filter --list-rules [--markdown]   # every rule: level, languages, enabled, description

Writes OUT/data (kept, with `rule_flags`), OUT/rejected (+ reason = rule name, detail), OUT/stats.json
(extra.rules: documents/paragraphs/sentences/chars removed per rule) and OUT/examples/<rule>.jsonl.
Disable a rule with --set filter.rules.<group>.<check>.enabled=false; each source_type gets the rules its
recipe names (--set 'recipes.web.rules=[gopher_quality,c4]').""",
)
