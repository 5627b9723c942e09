"""The three-stage mixer (Ziya2 §4): per stage, pick tokens from each source by `sample` x `epochs`, pack
them, and write `OUT/stage{N}/` (manifest.json + shards/part-XXXXX.parquet), plus `OUT/manifest.json`.

- Stage 1 (unsupervised): every source's documents are shuffled together (seeded) and concatenated into
  seq_len rows (`pack.pack_pretrain`).
- Stages 2 and 3 (supervised; 3 is math): examples of one `type` are bin-packed whole (`pack.pack_supervised`);
  unsupervised documents are added at `unsupervised_ratio` tokens per supervised token (Ziya2: the same
  proportion, 1:1), split across the `unsupervised` sources by `weight`, and packed as in stage 1.

Selection is by tokens and exact up to half a document: a source yields `target = sample x epochs x its
tokens` (stages 2/3 unsupervised: its weight's share of the supervised tokens); each epoch is a fresh seeded
order over the source, and the last, partial epoch is cut where the running token sum crosses the target,
passing over, from the cut on, documents longer than the tokens still needed (so a whole book at the cut does
not decide the mixture: the error is at most half of the largest document that fits the need).
The cut is found with a per-bucket token histogram (aggregated in Spark), then a window over one bucket only,
so no step needs all of a source in one task. Repeated documents get ids `<id>#e<epoch>`.

`where` selects rows by column values, `source_type` included (dataflow/core/recipes.py): tokenize carries it, a
supervised example is `supervised`, and a document without one (written before source types) is the
pipeline conf's `sources.default_type`.
"""
from __future__ import annotations

import json
import math
import sys
import time
from functools import reduce
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from dataflow.core import fs
from dataflow.core.config import load_with_spec
from dataflow.core.confschema import Count, Dir, File, Float, Int, List, Map, OneOf, Section, Str
from dataflow.core.recipes import SOURCE_TYPES
from dataflow.core.stage import read_stage_input
from dataflow.models.tokenizer import check_model
from dataflow.trainset import pack as packing
from dataflow.trainset.tokenize import tokenizer_info

TOKEN_COLUMNS = ["id", "source", "type", "source_type", "input_ids", "loss_mask", "n_tokens"]


def load_mixer(path: str | Path, overrides=()) -> dict:
    """conf/mixer.yaml plus overrides, validated (`MIXER_SPEC`), paths resolved like the pipeline conf's.
    seq_len is not a mixer key: it is the pipeline conf's `pack.seq_len` (one home)."""
    cfg = load_with_spec(MIXER_SPEC, str(path), overrides)
    check_where(cfg)
    return cfg


WHERE_COLUMNS = ("source", "type", "source_type")   # the string columns of a token row a `where` selects on


def _picks(mcfg: Mapping, stages=None):
    """(stage number, source spec) of every source of every stage (or only of `stages`)."""
    for st in mcfg["stages"]:
        if stages and int(st["stage"]) not in stages:
            continue
        for key in ("sources", "supervised", "unsupervised"):
            for src in st.get(key) or []:
                yield int(st["stage"]), src


def _listed(allowed) -> list:
    return allowed if isinstance(allowed, list) else [allowed]


def check_where(mcfg: Mapping) -> None:
    """At config load, one line: a source reads a named input, its `where` names a column of WHERE_COLUMNS, and a
    `source_type` value is one of recipes.SOURCE_TYPES (a closed vocabulary: anything else, a typo, would
    silently select nothing). Values of the open columns (`type`, `source`) are checked against the data by
    `where_absent`."""
    for stage, src in _picks(mcfg):
        at = f"mixer stage {stage} source {src['name']}"
        if src["input"] not in mcfg["inputs"]:
            raise ValueError(f"{at}: input {src['input']!r} is not one of the named inputs {sorted(mcfg['inputs'])}")
        for col, allowed in (src.get("where") or {}).items():
            if col not in WHERE_COLUMNS:
                raise ValueError(f"{at}: where.{col} is not a column a source selects on; use {list(WHERE_COLUMNS)}")
            bad = [v for v in _listed(allowed) if col == "source_type" and v is not None and v not in SOURCE_TYPES]
            if bad:
                raise ValueError(f"{at}: where.source_type {bad} is not one of {list(SOURCE_TYPES)}")


def present_values(df) -> dict[str, set]:
    """The values of WHERE_COLUMNS in a token frame (None when a null occurs): one small aggregation."""
    from pyspark.sql import functions as F

    aggs = [F.collect_set(c).alias(c) for c in WHERE_COLUMNS]
    aggs += [F.max(F.col(c).isNull().cast("int")).alias(f"_null_{c}") for c in WHERE_COLUMNS]
    row = df.agg(*aggs).first()
    return {c: set(row[c] or []) | ({None} if row[f"_null_{c}"] else set()) for c in WHERE_COLUMNS}


def where_absent(mcfg: Mapping, present: Mapping[str, Mapping[str, set]], stages=None, known_types=(),
                 warn=print) -> dict[tuple[int, str], dict[str, list]]:
    """Every `where` value that matches no row of its input, before any stage is written. A value nothing knows
    (not a source type, not a `type` or `source` of any input, nor one of `known_types`, the pipeline conf's
    supervised types) is a typo such as `maths`: a ValueError naming it and the values the input holds. A known
    value this input lacks (the demo input has no wiki) is a warning line and is returned, {(stage, source name):
    {column: [values]}}, for the stage manifest (`absent`), where that source's selected tokens are 0."""
    vocab = {"source_type": set(SOURCE_TYPES), "type": set(known_types), "source": set()}
    for have in present.values():
        vocab["type"] |= have["type"]
        vocab["source"] |= have["source"]
    absent: dict = {}
    for stage, src in _picks(mcfg, stages):
        have = present[src["input"]]
        for col, allowed in (src.get("where") or {}).items():
            for v in _listed(allowed):
                if v in have[col]:
                    continue
                at = f"mixer stage {stage} source {src['name']}: where.{col} {v!r} matches no row of input {src['input']}"
                if v is not None and v not in vocab[col]:
                    raise ValueError(f"{at}, and no input or setting knows it (a typo?); {col} values there: "
                                     f"{sorted(x for x in have[col] if x is not None)}")
                warn(f"[mix] warning: {at}; it selects nothing there (recorded in the stage manifest)")
                absent.setdefault((stage, src["name"]), {}).setdefault(col, []).append(v)
    return absent


def with_source_type(df, default: str | None):
    """`source_type` on every token row: the column as tokenize wrote it, else `supervised` for an example
    (`type` set), else `default` (the pipeline conf's sources.default_type)."""
    from pyspark.sql import functions as F

    st = F.col("source_type") if "source_type" in df.columns else F.lit(None).cast("string")
    return df.withColumn("source_type", F.coalesce(st, F.when(F.col("type").isNotNull(), F.lit("supervised")),
                                                   F.lit(default).cast("string")))


def load_all(conf: str, overrides=(), inputs=(), tokenizer: str | None = None, pipeline_conf: str | None = None, *,
             load_pipeline: Callable[[str, Iterable[str]], dict]):
    """jobs.mix's configuration: (mixer conf, pipeline conf). `pack.*`/`spark.*` overrides go to the pipeline
    conf (its `pack.seq_len` is the one seq_len); `--input NAME=PATH` and `--tokenizer` to the mixer's.
    `load_pipeline(path, overrides)` loads and validates the pipeline conf (`dataflow.pipeline.conf.load_conf`):
    its path is `pipeline_conf`, else the one the mixer conf names."""
    mix_over = [o for o in overrides if not o.startswith(("pack.", "spark."))]
    pipe_over = [o for o in overrides if o.startswith(("pack.", "spark."))]
    for item in inputs:
        if "=" not in item:
            raise ValueError(f"--input {item!r} is not NAME=PATH")
        name, path = item.split("=", 1)
        mix_over.append(f"inputs.{name}={path}")
    if tokenizer:
        mix_over.append(f"tokenizer={tokenizer}")
    mcfg = load_mixer(conf, mix_over)
    cfg = load_pipeline(pipeline_conf or mcfg["pipeline_conf"], pipe_over)
    for name, path in mcfg["inputs"].items():
        if not fs.exists(path):
            raise FileNotFoundError(f"mixer input {name}: {path} does not exist (run jobs.encode first)")
    if not fs.exists(mcfg["tokenizer"]):
        raise FileNotFoundError(f"mixer tokenizer = {mcfg['tokenizer']} does not exist")
    check_model(mcfg["tokenizer"])    # loaded and tried before a JVM starts
    return mcfg, cfg


def select(df, where: Mapping[str, Any] | None):
    """Rows whose columns take one of the listed values (`null` in a list matches null)."""
    from pyspark.sql import functions as F

    for col, allowed in (where or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        conds = [F.col(col).isNull() if v is None else F.col(col) == F.lit(v) for v in allowed]
        df = df.filter(reduce(lambda a, b: a | b, conds))
    return df


def source_tokens(df) -> int:
    from pyspark.sql import functions as F

    return int(df.agg(F.sum("n_tokens")).first()[0] or 0)


def _cut_bucket(d, target: float) -> tuple[int | None, int]:
    """(the bucket `_b` where the running token sum of whole buckets, in bucket order, reaches `target`, the
    tokens of the buckets before it); bucket None when all of them together stay below. One aggregation: a
    per-bucket histogram reaches the driver, never the rows."""
    from pyspark.sql import functions as F

    hist = sorted((r["_b"], int(r["n"])) for r in d.groupBy("_b").agg(F.sum("n_tokens").alias("n")).collect())
    before = 0
    for b, n in hist:
        if before + n >= target:
            return b, before
        before += n
    return None, before


def take_tokens(df, target: float, seed: int, name: str, buckets: int, avail: int | None = None):
    """(rows, available tokens): `target` tokens of `df` in whole documents, epoch by epoch."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    avail = source_tokens(df) if avail is None else avail
    empty = df.limit(0)
    if avail == 0 or target <= 0:
        return empty, avail
    cycles = math.ceil(target / avail)
    last_target = target - (cycles - 1) * avail

    def replica(d, cycle):
        """Epoch 0 keeps the id; repeat k becomes `<id>#e<k>` (cycle: an int or a column)."""
        if isinstance(cycle, int):
            return d if cycle == 0 else d.withColumn("id", F.concat(F.col("id"), F.lit(f"#e{cycle}")))
        return d.withColumn("id", F.when(cycle == 0, F.col("id"))
                            .otherwise(F.concat(F.col("id"), F.lit("#e"), cycle.cast("string"))))

    parts = []
    if cycles > 1:
        full = df.withColumn("_cycle", F.explode(F.sequence(F.lit(0), F.lit(cycles - 2))))
        parts.append(replica(full, F.col("_cycle")).drop("_cycle"))
    c = cycles - 1
    if last_target >= avail:
        parts.append(replica(df, c))
    else:
        key = F.xxhash64(F.lit(int(seed)), F.lit(name), F.lit(c), F.col("id"))
        d = df.withColumn("_key", key).withColumn("_b", F.pmod(F.col("_key"), F.lit(int(buckets))))
        cut_b, before = _cut_bucket(d, last_target)
        need = last_target - before
        # from the cut on, a document longer than what is still needed is passed over (a whole book would
        # overshoot by more than it fills): a second histogram over the fitting documents of the buckets from the
        # cut on finds where they cover the need, and a window over that one bucket makes the cut exact to half of
        # the largest fitting document
        fits = d.filter((F.col("_b") >= cut_b) & (F.col("n_tokens") <= F.lit(float(need))))
        cut2, acc = _cut_bucket(fits, need)
        if cut2 is None:       # the fitting documents do not cover the need: all of them
            inside = fits
        else:
            w = Window.partitionBy("_b").orderBy("_key", "id").rowsBetween(Window.unboundedPreceding, Window.currentRow)
            edge = (fits.filter(F.col("_b") == cut2).withColumn("_cum", F.sum("n_tokens").over(w))
                    .filter(F.col("_cum") - F.col("n_tokens") / 2 < F.lit(float(need - acc))).drop("_cum"))
            inside = fits.filter(F.col("_b") < cut2).unionByName(edge)
        last = d.filter(F.col("_b") < cut_b).unionByName(inside).drop("_key", "_b")
        parts.append(replica(last, c))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out, avail


def _with_name(df, name: str):
    """The mixer source name replaces `source`, so manifests count tokens per mixer source."""
    from pyspark.sql import functions as F

    return df.withColumn("source", F.lit(name))


def check_tokenizer(inputs: Mapping[str, str], sha: str) -> None:
    """A tokenized input made with another tokenizer would silently train on wrong ids."""
    for name, path in inputs.items():
        stats = fs.join(str(path), "stats.json")
        if fs.exists(stats):
            got = (json.loads(fs.read_text(stats)).get("extra") or {}).get("tokenizer", {}).get("sha256")
            if got and got != sha:
                raise ValueError(f"input {name} ({path}) was tokenized with sha256 {got[:12]}…, "
                                 f"the mixer's tokenizer is {sha[:12]}…")


def build_stage(frames: Mapping[str, Any], scfg: Mapping, mcfg: Mapping, pcfg: Mapping, pad_id: int):
    """(rows, placed, rejected, selected, sources report) for one stage."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    seed, seq_len, buckets = int(mcfg["seed"]), int(pcfg["seq_len"]), int(mcfg["cut_buckets"])
    names = [s["name"] for key in ("sources", "supervised", "unsupervised") for s in scfg.get(key) or []]
    if len(names) != len(set(names)):
        raise ValueError(f"stage {scfg['stage']}: source names must be unique within a stage, got {names}")
    report, chosen = [], []

    def pick(src, target_of):
        d = _with_name(select(frames[src["input"]], src.get("where")), src["name"])
        avail = source_tokens(d)
        got, _ = take_tokens(d, target_of(avail), seed, f"{scfg['stage']}:{src['name']}", buckets, avail)
        got = got.persist(StorageLevel.MEMORY_AND_DISK)
        return got, avail

    def sampled(src):
        return lambda avail: float(src.get("sample", 1.0)) * float(src.get("epochs", 1)) * avail

    sup_rows = rejected = None
    if int(scfg["stage"]) == 1 or not scfg.get("supervised"):
        unsup_specs = [(s, sampled(s)) for s in scfg["sources"]]
    else:
        sup = []
        for s in scfg["supervised"]:
            got, avail = pick(s, sampled(s))
            sup.append(got)
            chosen.append(got)
            report.append({"name": s["name"], "kind": "supervised", "available_tokens": avail})
        sup_df = sup[0]
        for d in sup[1:]:
            sup_df = sup_df.unionByName(d)
        sup_rows, rejected = packing.pack_supervised(sup_df, seq_len, seed, int(pcfg["supervised_buckets"]), pad_id)
        sup_tokens = int(sup_df.filter(F.col("n_tokens") <= seq_len).agg(F.sum("n_tokens")).first()[0] or 0)
        budget = float(scfg.get("unsupervised_ratio", 1.0)) * sup_tokens
        wsum = sum(float(u.get("weight", 1.0)) for u in scfg.get("unsupervised", []))
        unsup_specs = [(u, (lambda avail, u=u: budget * float(u.get("weight", 1.0)) / wsum))
                       for u in scfg.get("unsupervised", [])]
    unsup = []
    for s, target in unsup_specs:
        got, avail = pick(s, target)
        unsup.append(got)
        chosen.append(got)
        report.append({"name": s["name"], "kind": "unsupervised", "available_tokens": avail})
    parts = []
    if unsup:
        u = unsup[0]
        for d in unsup[1:]:
            u = u.unionByName(d)
        parts.append(packing.pack_pretrain(u, seq_len, seed, int(pcfg["group_tokens"]), pad_id, label="u",
                                           explicit_mask=int(scfg["stage"]) != 1))
    if sup_rows is not None:
        parts.append(sup_rows)
    if not parts:
        raise ValueError(f"stage {scfg['stage']} selects no data")
    rows = parts[0]
    for p in parts[1:]:
        rows = rows.unionByName(p)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    selected = chosen[0]
    for d in chosen[1:]:
        selected = selected.unionByName(d)
    if rejected is None:
        rejected = selected.limit(0).withColumn("reason", F.lit(None).cast("string")).withColumn("detail", F.lit(None).cast("string"))
    got = {r["source"]: r for r in selected.groupBy("source").agg(F.count(F.lit(1)).alias("n"),
                                                                 F.sum("n_tokens").alias("t")).collect()}
    for r in report:   # one aggregation for every source of the stage
        g = got.get(r["name"])
        r.update({"selected_docs": int(g["n"]) if g else 0, "selected_tokens": int(g["t"] or 0) if g else 0})
    return rows, packing.placements(rows), rejected, selected, report, chosen


def write_stage_dir(spark, frames, scfg, mcfg, pcfg, tok: Mapping, out: str, absent: Mapping | None = None) -> dict:
    """One stage: build, pack and write it; each source's manifest entry lists its `where` values that matched
    nothing in its input (`absent`, from `where_absent`)."""
    t0 = time.time()
    stage, seq_len, seed = int(scfg["stage"]), int(pcfg["seq_len"]), int(mcfg["seed"])
    rows, placed, rejected, selected, report, chosen = build_stage(frames, scfg, mcfg, pcfg, int(tok["pad_id"]))
    for r in report:
        r["absent"] = dict((absent or {}).get((stage, r["name"]), {}))
    n_in = selected.count()
    manifest, _stats = packing.write_packed(
        packing.Packed(rows=rows, placed=placed, rejected=rejected), out, stage_no=stage, seq_len=seq_len, seed=seed,
        rows_per_shard=int(pcfg["rows_per_shard"]), tokenizer=tok, stage=f"mix-stage{stage}", input_count=n_in,
        input_paths=sorted(set(str(v) for v in mcfg["inputs"].values())),
        cfg={"stage": dict(scfg), "seq_len": seq_len, "seed": seed, "pack": dict(pcfg)}, t0=t0,
        manifest_extra={"sources": report})
    for d in chosen:
        d.unpersist()
    return manifest


def mix(spark, mcfg: Mapping, pcfg: Mapping, out: str | Path, stages=None, *, default_type: str | None,
        known_types: Iterable[str] = ()) -> dict:
    """Write every configured stage (or only `stages`) and the top-level manifest. `default_type`: the source
    type of a document that has none (the pipeline conf's sources.default_type; required, because a caller
    that forgot it would silently select no untyped document; None leaves such rows null). `known_types`:
    supervised `type` values the configuration knows (a `where.type` value no input holds is a typo unless
    listed here). Every `where` value is checked against the inputs before any stage is written."""
    out = str(out)
    tok = tokenizer_info(mcfg["tokenizer"], pcfg.get("pad_id"))
    check_tokenizer(mcfg["inputs"], tok["sha256"])
    frames = {}
    for name, path in mcfg["inputs"].items():
        df, _ = read_stage_input(spark, [path], output=out, require=("id", "input_ids", "n_tokens"))
        frames[name] = with_source_type(df, default_type).select(*TOKEN_COLUMNS).cache()
    absent = where_absent(mcfg, {n: present_values(df) for n, df in frames.items()}, stages, known_types,
                          warn=lambda line: print(line, file=sys.stderr, flush=True))
    written = {}
    for scfg in mcfg["stages"]:
        if stages and int(scfg["stage"]) not in stages:
            continue
        written[int(scfg["stage"])] = write_stage_dir(spark, frames, scfg, mcfg, pcfg, tok,
                                                      fs.join(out, f"stage{scfg['stage']}"), absent)
    for df in frames.values():
        df.unpersist()
    # committed stages only (`_SUCCESS`): a killed stage's old manifest.json is not listed
    present = sorted(int(s["stage"]) for s in mcfg["stages"] if fs.exists(fs.join(out, f"stage{s['stage']}", "_SUCCESS")))
    top = {"stages": [f"stage{n}/manifest.json" for n in present], "seq_len": int(pcfg["seq_len"]),
           "seed": int(mcfg["seed"]), "tokenizer": tok}
    fs.write_text(fs.join(out, "manifest.json"), json.dumps(top, indent=2) + "\n")
    return {"top": top, "stages": written}


# conf/mixer.yaml
_VALUE = Str(nullable=True)     # `where` values: WHERE_COLUMNS are strings; null matches null
_PICK = {"name": Str(non_empty=True), "input": Str(non_empty=True),
         "where": Map(OneOf(List(_VALUE), _VALUE, nullable=True), nullable=True)}
_SOURCE = Section({**_PICK, "sample": Float(0, min_exclusive=True), "epochs": Float(0, min_exclusive=True)},
                  required=("name", "input"))
_UNSUPERVISED = Section({**_PICK, "weight": Float(0, min_exclusive=True)}, required=("name", "input", "weight"))
_STAGE = Section({
    "stage": Int(1),
    "sources": List(_SOURCE, nullable=True),
    "supervised": List(_SOURCE, nullable=True),
    "unsupervised_ratio": Float(0, nullable=True),
    "unsupervised": List(_UNSUPERVISED, nullable=True),
}, required=("stage",))
MIXER_SPEC = Section({
    "seed": Int(),
    "cut_buckets": Count(1),
    "pipeline_conf": File(),          # its `pack` section (seq_len, group_tokens, ...) applies: one seq_len
    "tokenizer": File(),
    "inputs": Map(Dir()),
    "stages": List(_STAGE, min_len=1),
}, required=("seed", "pipeline_conf", "inputs", "stages"))
