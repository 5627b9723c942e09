"""The CD stage: run the configured dedup steps in their fixed order and account for every record.

Every step declares itself in its module (`STEP = step.Step(...)`: name, `mark(df, cfg, ctx) -> (annotated,
stats)`, its configuration spec, whether it reads the text), and `STEP_TABLE` lists them in the order they run. Each step gets the
records the earlier steps kept, returns them annotated with `_dup_of` (the id of a record the removed one passed the
step's check against directly) and `_detail`, and is materialized once (components.checkpoint: Parquet under the attempt's `_scratch`, on the
output's filesystem) so the next step, the rejected output and the statistics all read the same decisions;
`_scratch` is removed once the outputs are written (the stage's statistics callable, which the runner calls
after the writes), so it is never committed.

The text is read by Python once: fingerprints.py computes every key the steps need in one pass, and the
steps that do not read the text themselves (all but those whose `Step.reads_text`) work on that narrow frame, so what they
checkpoint and shuffle carries no text. The full rows are materialized once with a row key `_row`; the
decisions are joined back onto them at the end (and before the first text step, for the live records). Rejected rows carry `reason = dedup:<step>`, `detail` (naming
the step's representative, the chain of checks when `dup_of` is not it, and the record finally kept in
their place when that is not `dup_of`) and `dup_of` (a record they passed the step's check against). Kept rows gain `simhash` when that step ran and `lines_removed` when the line step ran.

Before any step, ids are checked: ids are unique for distinct records (DESIGN §8), so records that share
an id and the same text are one record ingested twice (`dedup:id`, the first by (date, id) is kept),
while records that share an id but not the text are a data error, never duplicates: all of them are
quarantined as `malformed:id_conflict` with the locations (meta file@offset) of every record of that id.

Source types (given the root conf): a step runs over the records whose `source_type`'s recipe lists it
(`recipes.<type>.dedup`, dataflow/core/recipes.py); the others pass through that step untouched. Two records are
compared in a step only if both take part in it, so a web page and a wiki article meet in MinHash when both
recipes list it, while supervised data (exact only) is never merged by a fuzzy step. The steps that run are
those the recipes of the types present in the input name, in the fixed order. A record whose type has no
recipe is quarantined as `malformed:source_type`.
"""
from __future__ import annotations

import time
from typing import Mapping

from dataflow.core import fs
from dataflow.core.confschema import Count, List, Prob, Str, optional_section
from dataflow.core.hashing import SHINGLE_HASHES
from dataflow.core.contract import Stage
from dataflow.core.recipes import SOURCE_TYPES, recipes, with_source_type
from dataflow.core.schema import DOC_COLUMNS, require_columns
from dataflow.core.stage import StageResult
from dataflow.stages.dedup import book, exact, lines, minhash, simhash, url
from dataflow.stages.dedup.components import ORDER, Context, checkpoint, with_order
from dataflow.stages.dedup.fingerprints import (CARRIED, COLUMNS, PLAN_KEY, SETS, TEXT_HASH, Plan, carry,
                                                plan_key, with_fingerprints)
from dataflow.stages.dedup.step import Step

# The step table. The order is part of the method: cheap exact steps shrink the input of the fuzzy ones.
STEP_TABLE: list[Step] = [url.STEP, exact.STEP, simhash.STEP, minhash.STEP, book.STEP, lines.STEP]
STEPS: dict[str, Step] = {s.name: s for s in STEP_TABLE}
STEP_ORDER = list(STEPS)
ROW = "_row"     # a row's key inside one run (the full rows are materialized once with it)
SCRATCH = "_scratch"   # the checkpoints' directory inside the attempt (removed before the commit)
ID_CONFLICT_LOCATIONS = 5   # locations named in a conflict's detail (the count is always given in full)


def _steps(cfg: dict) -> list[str]:
    steps = list(cfg.get("steps") or [])
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"dedup.steps: unknown step(s) {unknown}; known: {STEP_ORDER}")
    return [s for s in STEP_ORDER if s in steps]


def _malformed(df):
    """Records without id or text cannot be compared or represented (nor a type without a recipe):
    quarantined, not dropped."""
    from pyspark.sql import functions as F

    bad = (F.when(F.col("id").isNull(), F.lit("malformed:id"))
           .when(F.col("text").isNull(), F.lit("malformed:text")))
    if "source_type" in df.columns:
        bad = bad.when(~F.col("source_type").isin(list(SOURCE_TYPES)), F.lit("malformed:source_type"))
    return bad


def step_types(conf: Mapping, present: list[str]) -> dict[str, list[str]]:
    """step -> the present source types whose recipe lists it, for the steps any of them lists (fixed order).
    A recipe naming an unknown step fails here, before any Spark work."""
    recs = recipes(conf)
    for t, r in recs.items():
        unknown = [s for s in r.dedup if s not in STEPS]
        if unknown:
            raise ValueError(f"recipes.{t}.dedup: unknown step(s) {unknown}; known: {STEP_ORDER}")
    out = {s: [t for t in present if s in recs[t].dedup] for s in STEP_ORDER}
    return {s: ts for s, ts in out.items() if ts}


def _run_step(step: str, live, cfg: dict, ctx: Context, types: list[str] | None, **kw):
    """One step over the records of `types` (None: every record); the others pass through unmarked.
    Returns (annotated, stats of the participants only)."""
    from pyspark.sql import functions as F

    if types is None:
        return STEPS[step].mark(live, cfg, ctx, **kw)
    inside = F.col("source_type").isin(types)
    out, stats = STEPS[step].mark(live.where(inside), cfg, ctx, **kw)
    rest = (live.where(~inside).withColumn("_dup_of", F.lit(None).cast("string"))
            .withColumn("_detail", F.lit(None).cast("string")))
    return out.unionByName(rest, allowMissingColumns=True), lambda annotated: stats(annotated.where(inside))


def _location(F):
    """Where a record came from: meta file@offset as the readers set it, else source and url."""
    m = F.col("meta")
    return F.coalesce(F.concat(m["file"], F.lit("@"), F.coalesce(m["offset"], F.lit("?"))),
                      F.concat(F.lit("source="), F.coalesce(F.col("source"), F.lit("?")),
                               F.lit(" url="), F.coalesce(F.col("url"), F.lit("?"))))


def _split_ids(live, scratch: str | None):
    """(conflicts, duplicates, unique) of the narrow frame (fingerprints.py, with `_loc`): decisions for
    the rows whose id is shared with a different text and for later copies of an id with the same text,
    and the rest (every id once). Texts are compared by their 128-bit hash."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_id = Window.partitionBy("id")
    live = (live.withColumn("_texts_differ", F.min(TEXT_HASH).over(by_id) != F.max(TEXT_HASH).over(by_id))
                .withColumn("_copies", F.count(F.lit(1)).over(by_id)))
    live = checkpoint(live, scratch)
    bad = live.where("_texts_differ")
    locs = F.array_sort(F.collect_list("_loc").over(by_id))
    conflicts = bad.select(
        ROW, "id", F.lit("malformed:id_conflict").alias("reason"),
        F.concat(F.lit("id_conflict: "), F.col("_copies").cast("string"),
                 F.lit(" records with different texts share this id; at "),
                 F.array_join(F.slice(locs, 1, ID_CONFLICT_LOCATIONS), "; "),
                 F.when(F.col("_copies") > ID_CONFLICT_LOCATIONS, F.lit("; ...")).otherwise(F.lit(""))).alias("detail"),
        F.lit(None).cast("string").alias("dup_of"))
    same = live.where(~F.col("_texts_differ"))
    # ties (one id, one text, one date: a file ingested twice) are broken by the row key, which the checkpoint
    # fixed: a recomputation (a lost executor) must pick the same copy to keep
    same = same.withColumn("_n", F.row_number().over(by_id.orderBy(ORDER, ROW)))
    dups = (same.where(F.col("_n") > 1)
            .select(ROW, "id", F.lit("dedup:id").alias("reason"),
                    F.lit("id: an earlier record has the same id and the same text").alias("detail"),
                    F.col("id").alias("dup_of")))
    unique = same.where(F.col("_n") == 1).drop("_n", "_texts_differ", "_copies", "_loc", TEXT_HASH)
    return conflicts, dups, unique


def _resolve_representatives(rej, steps: list[str], scratch: str | None):
    """`dup_of` names the record a removal was checked against (DESIGN §9), which may itself have been
    removed: by a chain of checks inside a step (A ~ B ~ C, only A kept) or by a later step (exact keeps A
    for X, then MinHash keeps B for A). The record finally kept in its place is found by following `dup_of`
    through the step rejections, and `detail` names it where it is not `dup_of`, so every removal leads a
    reviewer to a kept record along checked links. Each round follows one link; the rounds stop when no
    removal points at a removed record (ids are unique among step rejections)."""
    from pyspark.sql import functions as F

    if not steps:
        return rej
    links = checkpoint(rej.where(F.col("reason").isin([f"dedup:{s}" for s in steps]))
                       .select(F.col("id").alias("_via"), F.col("dup_of").alias("_next")), scratch)
    rej = rej.withColumn("_kept", F.col("dup_of"))
    while rej.join(links, rej["_kept"] == links["_via"], "left_semi").limit(1).count():
        rej = checkpoint(rej.join(links, rej["_kept"] == links["_via"], "left")
                         .withColumn("_kept", F.coalesce("_next", "_kept")).drop("_via", "_next"), scratch)
    moved = F.col("_kept") != F.col("dup_of")
    return checkpoint(rej.withColumn("detail", F.when(moved, F.concat(F.col("detail"), F.lit("; kept in its place: "),
                                                                      F.col("_kept"))).otherwise(F.col("detail")))
                      .drop("_kept"), scratch)


def run(df, cfg: dict, conf: Mapping | None = None, scratch: str | None = None,
        carried_keys: set | None = None) -> StageResult:
    """cfg = the `dedup` section of conf/pipeline.yaml; conf = the root configuration, whose `recipes` say
    which records take part in which step (None: every record in every step of `dedup.steps`); scratch = a
    directory on the output's filesystem for the intermediate results (components.checkpoint), removed by
    the result's statistics callable once the outputs are written (None: components.local_scratch);
    carried_keys = the fingerprint keys the input's stage directories record (a fused pass before CD computed
    them, `fingerprints.carry`): only fingerprint columns under such a key are used, never columns an input
    merely has."""
    from pyspark.sql import functions as F

    require_columns(df, DOC_COLUMNS, "dedup")
    steps = _steps(cfg)
    members: dict[str, list[str] | None] = {s: None for s in steps}
    if conf is not None:
        df = with_source_type(df, conf)
        present = sorted(r[0] for r in df.select("source_type").distinct().collect() if r[0] in SOURCE_TYPES)
        members = step_types({**conf, "dedup": cfg}, present)
        # a step every present type takes part in runs over all records, unsplit
        members = {s: (None if len(ts) == len(present) else ts) for s, ts in members.items()}
        steps = list(members)
    spark = df.sparkSession
    parts = int(cfg.get("shuffle_partitions") or spark.conf.get("spark.sql.shuffle.partitions"))
    ctx = Context.from_conf(cfg, parts, scratch)
    plan = Plan.for_steps(steps, cfg)
    carried = _carried(df, plan, cfg, carried_keys or set())
    df = df.select(*[c for c in df.columns if c not in CARRIED or carried])
    in_cols = [c for c in df.columns if c not in CARRIED]   # the records' own columns: what CD writes

    base = with_order(df, cfg.get("date_keys"))
    base = base.withColumn("_bad", _malformed(base))
    malformed = (base.where(F.col("_bad").isNotNull())
                 .select(*in_cols, F.col("_bad").alias("reason"),
                         F.concat(F.lit("dedup input without "), F.substring_index("_bad", ":", -1)).alias("detail"),
                         F.lit(None).cast("string").alias("dup_of")))
    # the full rows, materialized once with a row key: the steps below never carry the text, and their
    # decisions are joined back onto these rows by `_row` at the end
    good = checkpoint(base.where(F.col("_bad").isNull()).drop("_bad").withColumn(ROW, F.monotonically_increasing_id()),
                      scratch)
    narrow = [ROW, ORDER, "id", *[c for c in ("source_type", "url") if c in df.columns]]
    if carried:   # the fused pass before CD computed them while it held the text (#27); `good` holds them
        # already materialized, and Parquet reads only the selected columns: no second copy
        fp = good.select(*narrow, _location(F).alias("_loc"), *COLUMNS)
    else:
        fp = checkpoint(with_fingerprints(good.select(*narrow, _location(F).alias("_loc"), "text"), plan, ctx),
                        scratch)
    sets = fp.select(ORDER, *SETS)   # verification joins the shingle sets of its candidate pairs only
    conflicts, id_dups, live = _split_ids(fp.drop(*SETS), scratch)
    decisions = [conflicts, id_dups]
    step_stats: dict = {"id": {"conflicting_records": conflicts.count(), "same_text_copies": id_dups.count()}}
    added: list[str] = []     # columns the steps add to kept rows
    wide = False              # does `live` carry the full rows (from the first step that reads the text on)?

    for step in steps:
        t0 = time.time()
        kw = {}
        if STEPS[step].reads_text and not wide:
            live, wide = _widen(live, good, in_cols), True
        elif STEPS[step].verifies and not wide:
            kw = {"sets": sets}
        out, stats = _run_step(step, live, cfg, ctx, members[step], **kw)
        for c in STEPS[step].adds:
            if c in out.columns and c not in added:
                added.append(c)
        out = checkpoint(out, scratch)
        keep_cols = list(dict.fromkeys([*live.columns, *added]))
        decisions.append(out.where(F.col("_dup_of").isNotNull())
                         .select(ROW, "id", *added, F.lit(f"dedup:{step}").alias("reason"),
                                 F.col("_detail").alias("detail"), F.col("_dup_of").alias("dup_of")))
        live = out.where(F.col("_dup_of").isNull()).select(*keep_cols)
        step_stats[step] = {**stats(out), "seconds": round(time.time() - t0, 2)}
        if conf is not None:
            step_stats[step]["source_types"] = members[step] or present

    cols = [*in_cols, *added]
    kept = (live if wide else _widen(live, good, in_cols)).select(*cols)
    rej = None
    for r in decisions:
        r = r.select(ROW, "id", *[c if c in r.columns else F.lit(None).alias(c) for c in added],
                     "reason", "detail", "dup_of")
        rej = r if rej is None else rej.unionByName(r)
    rej = _resolve_representatives(rej, steps, scratch)
    # a rejected row is its input row (a step rejects a record before changing its text)
    rej = (rej.drop("id").join(good.select(ROW, *in_cols), ROW)
           .select(*cols, "reason", "detail", "dup_of"))
    rej = rej.unionByName(malformed.select(*[c if c in malformed.columns else F.lit(None).alias(c) for c in cols],
                                           "reason", "detail", "dup_of"))
    # column types of the placeholders follow the kept schema
    for f in kept.schema.fields:
        if f.name in added:
            rej = rej.withColumn(f.name, F.col(f.name).cast(f.dataType))
    return StageResult(kept=kept, rejected=rej, stats=_stats_then_clear(
        {"steps": steps, "fingerprints": "carried" if carried else "computed", **step_stats}, scratch))


def _carried(df, plan: Plan, cfg: dict, keys: set) -> bool:
    """Whether every record carries fingerprints made with this plan and these settings by a fused pass whose
    stats.json records their key; otherwise they are computed here from the text, whatever columns the input has."""
    from pyspark.sql import functions as F

    key = plan_key(plan, cfg)
    if not set(CARRIED) <= set(df.columns) or keys != {key}:
        return False
    return not df.where(F.col(PLAN_KEY).isNull() | (F.col(PLAN_KEY) != key)).select(PLAN_KEY).limit(1).collect()


def _input_keys(ctx) -> set:
    """The fingerprint keys the input stage directories' stats.json record (None for an input without one)."""
    import json

    from dataflow.core import fs

    keys = set()
    for p in ctx.inputs:
        st = fs.join(str(p), "stats.json")
        keys.add(json.loads(fs.read_text(st)).get("fused", {}).get("carried") if fs.exists(st) else None)
    return keys


def carry_form(conf):
    """The fingerprint columns, for the fused pass that runs right before CD (`Stage.carry`)."""
    cfg = conf["dedup"]
    return carry(Plan.for_steps(_steps(cfg), cfg), cfg, Context.from_conf(cfg))


def _stats_then_clear(stats: dict, scratch: str | None):
    """With a scratch directory, the statistics as a callable: the runner asks for it after the outputs are
    written and read back, when no frame needs the checkpoints any more, so the directory goes then (before
    the commit). Without one, the statistics themselves."""
    if scratch is None:
        return stats

    def done() -> dict:
        fs.delete(scratch)
        return stats
    return done


def _widen(live, good, columns):
    """The narrow `live` frame with the rest of its records' columns (text, meta, ...) joined back by `_row`."""
    missing = [c for c in columns if c not in live.columns]
    return live.join(good.select(ROW, *missing), ROW) if missing else live


# ---------------------------------------------------------------- the stage
SPEC = optional_section({
    "steps": List(Str(STEP_ORDER), unique=True),
    "date_keys": List(Str(non_empty=True)),
    "shuffle_partitions": Count(1, nullable=True),
    "zh_fold": List(Str(non_empty=True)),
    "char_script_share": Prob(),
    "shingle_hash": Str(list(SHINGLE_HASHES)),
    "one_task_edges": Count(0),
    **{s.name: s.spec for s in STEP_TABLE},
}, required=("steps",))

STAGE = Stage(
    name="dedup",
    summary="CD: URL Bloom filter, exact, SimHash, MinHash, book and line dedup; `dup_of` names a record checked directly",
    spec=SPEC,
    transform=lambda df, ctx: run(df, ctx.cfg, ctx.conf, scratch=ctx.attempt.path(SCRATCH),
                                  carried_keys=_input_keys(ctx)),
    carry=carry_form,
    doc="""CD job: content de-duplication (see docs/dedup.md).

  python -m jobs.dedup --input RUN/30-filter --output RUN/40-dedup [--conf conf/pipeline.yaml] [--set ...]
  spark-submit jobs/dedup.py --input ... --output ...

Steps run in this fixed order, each only over the records the earlier ones kept (choose them with
--set 'dedup.steps=[url,exact,simhash,minhash,book,lines]'; a step runs over the records whose
source_type's recipe lists it, recipes.<type>.dedup, and compares only those):
""" + "\n".join(f"  {s.name:<8} {s.summary:<78} reason dedup:{s.name}" for s in STEP_TABLE) + """

Writes OUT/data (kept; + simhash, lines_removed when those steps ran), OUT/rejected (+ reason, detail,
dup_of = a record it was checked against directly;
detail = the step's representative, the chain of checks and the record kept in its place), OUT/stats.json (extra: per-step counters such as the Bloom
filter's estimated and measured false positives) and OUT/_SUCCESS.""",
)
