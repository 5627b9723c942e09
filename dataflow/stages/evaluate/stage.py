"""DE, data evaluation (Ziya2 §3.1): a seeded stratified 1% sample, automatic metrics over the output
and the sample, a review sheet sorted worst-first, the Clopper-Pearson gate on reviewer labels, and the
HTML/Markdown report with the Figure-2 funnel.

`run(df, cfg)` is the stage transform: DE keeps every record (input == kept). `evaluate(...)` writes the
evaluation products next to it: sample/, review.jsonl, review.csv, metrics.json, report.html, report.md.
`gate(...)` reads a reviewed sheet back and decides. Every product is written, and every earlier stage's
output read, through `dataflow.core.fs`: OUT may be a local path or any URI (s3://, ...); the sample and the
sheet are written by the executors that hold them, never through the driver's disk.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

from dataflow.core import fs, fsio
from dataflow.core.confschema import Count, Dir, Float, Int, List, Map, OneOf, Str, optional_section
from dataflow.core.config import conf_hash
from dataflow.core.contract import Option, Stage
from dataflow.core.recipes import with_source_type
from dataflow.core.stage import StageResult, sibling_stage_dirs
from dataflow.stages.evaluate.removals import removal_audit
from dataflow.stages.evaluate import gate as gate_mod
from dataflow.stages.evaluate.metrics import load_lexicons, log_histogram, near_dup_pairs, summarize, with_metrics
from dataflow.stages.evaluate.report import find_extra, funnel, load_stage_stats, write_report
from dataflow.stages.evaluate.review import bounded, check_ids, read_labels, sheet_frame, with_suspicion, write_sheet
from dataflow.stages.evaluate.sample import draw_sample


def run(df, cfg: Mapping) -> StageResult:
    """DE removes nothing: every input record is kept unchanged; the rejected frame is empty."""
    from pyspark.sql import functions as F

    rejected = df.limit(0).withColumn("reason", F.lit(None).cast("string")).withColumn("detail", F.lit(None).cast("string"))
    return StageResult(kept=df, rejected=rejected)


def dup_cluster_sizes(spark, dedup_dir: str | os.PathLike | None) -> dict[str, int]:
    """Cluster size -> number of clusters, from the dedup stage's rejected rows (grouped by the kept record)."""
    from pyspark.sql import functions as F

    if not dedup_dir or not fs.is_dir(fs.join(str(dedup_dir), "rejected")):
        return {}
    rej = spark.read.parquet(fs.spark_uri(fs.join(str(dedup_dir), "rejected")))
    if "dup_of" not in rej.columns:
        return {}
    # a removal's `dup_of` is the record it was checked against, which may itself have been removed: its
    # cluster is the record kept in its place (CD's detail names it then)
    mark = "; kept in its place: "
    kept = F.when(F.col("detail").contains(mark), F.substring_index("detail", mark, -1)).otherwise(F.col("dup_of"))
    sizes = (rej.filter(F.col("dup_of").isNotNull()).groupBy(kept.alias("_kept"))
             .agg((F.count(F.lit(1)) + 1).alias("size")).groupBy("size").count().orderBy("size").collect())
    return {str(r["size"]): r["count"] for r in sizes}


def write_sample(sample, out_dir: str) -> int:
    """OUT/sample/part-*.parquet, written by the executors through fs (any URI); the rows written."""
    from pyspark.sql.pandas.types import to_arrow_schema

    frame = sample.drop("_u")
    sample_dir = fs.join(out_dir, "sample")
    fs.delete(sample_dir)
    encode = fsio.parquet_encoder(to_arrow_schema(frame.schema))
    parts = fsio.write_parts(frame, sample_dir, ".zstd.parquet", encode, skip_empty=True)
    if not parts:   # an empty sample is still a readable Parquet folder with its columns
        parts = fsio.write_parts(frame.limit(0).coalesce(1), sample_dir, ".zstd.parquet", encode)
    return sum(p.rows for p in parts)


def evaluate(spark, df, cfg: Mapping, out_dir: str | os.PathLike, stage_dirs: Iterable[str | os.PathLike] = (),
             config_hash: str = "", *, dedup_cfg: Mapping, scratch: str | None = None) -> dict:
    """Sample, metrics, sheet and report for the frame `df` (the pipeline's final output) into `out_dir` (a
    path or any URI). `cfg` is the `evaluate` section; `dedup_cfg` the `dedup` section, whose SimHash settings
    define a near-duplicate. `scratch`: a directory on the output's filesystem for the near-duplicate
    fingerprints' checkpoint (the stage passes its attempt's; see `dedup.components.checkpoint`)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    out_dir = fs.normalize(str(out_dir))
    lexicons = load_lexicons(cfg.get("lexicons"), cfg.get("lexicon_glob", "*.txt"))
    measured = with_metrics(df, lexicons).persist(StorageLevel.MEMORY_AND_DISK)
    sample = draw_sample(measured, cfg).persist(StorageLevel.MEMORY_AND_DISK)

    # near-duplicates left: pairs inside the sample; both ends of a pair are in it with probability share^2
    hamming = int(dedup_cfg["simhash"]["max_distance"])
    pairs = near_dup_pairs(sample, dedup_cfg, scratch)
    partner = (pairs.select(F.col("id_a").alias("id"), F.col("id_b").alias("p"))
               .unionByName(pairs.select(F.col("id_b").alias("id"), F.col("id_a").alias("p")))
               .groupBy("id").agg(F.min("p").alias("near_dup_of"), F.count(F.lit(1)).alias("_partners"),
                                  F.collect_set("p").alias("_partner_ids")))
    scored = with_suspicion(sample.join(partner, "id", "left"), cfg).persist(StorageLevel.MEMORY_AND_DISK)
    # one pass over the scored sample for the sampling and near-duplicate counts
    share_ids = scored.filter(F.col("sampled_by") == "share").select("id")
    row = scored.agg(
        F.sum(F.when(F.col("sampled_by") == "share", 1).otherwise(0)).alias("by_share"),
        F.sum(F.when(F.col("sampled_by") == "min_per_stratum", 1).otherwise(0)).alias("by_min"),
        F.sum(F.coalesce(F.col("_partners"), F.lit(0))).alias("pair_ends"),
        F.sum(F.when(F.col("near_dup_of").isNotNull(), 1).otherwise(0)).alias("with_partner")).collect()[0]
    share_pair_ends = (scored.filter(F.col("sampled_by") == "share")
                       .select(F.explode_outer("_partner_ids").alias("p")).join(share_ids.withColumnRenamed("id", "p"), "p")
                       .count())
    share = float(cfg["sample_share"])
    share_pairs = share_pair_ends // 2
    near = {"hamming": hamming, "pairs_in_sample": (row["pair_ends"] or 0) // 2,
            "docs_with_partner": row["with_partner"] or 0, "pairs_between_share_sampled": share_pairs,
            "estimated_pairs_in_output": round(share_pairs / (share * share), 1) if share > 0 else None}
    counts = {"share": row["by_share"] or 0, "min_per_stratum": row["by_min"] or 0}

    max_rows = int(cfg["review"]["max_rows"])
    sheet = write_sheet(sheet_frame(bounded(scored, max_rows)), out_dir, int(cfg["sheet_text_chars"]))
    sampled = write_sample(sample, out_dir)
    sheet.update(max_rows=max_rows, sampled=sampled, left_out=sampled - sheet["rows"])

    stage_stats = load_stage_stats(stage_dirs)
    filter_stats = next((s for s in stage_stats if s.get("stage") == "filter"), None)
    dedup_stats = next((s for s in stage_stats if s.get("stage") == "dedup"), None)
    per_decade = int(cfg["hist_bins_per_decade"])
    output = summarize(measured, cfg)
    m = {
        "run_dir": fs.parent(out_dir),
        "config_hash": config_hash,
        "sampling": {"seed": cfg["seed"], "share": share, "min_per_stratum": cfg.get("min_per_stratum"),
                     "strata_keys": list(cfg["strata"]),
                     "strata": output["strata"],
                     "by_share": counts.get("share", 0), "by_min_per_stratum": counts.get("min_per_stratum", 0)},
        "output": output,
        "sample": summarize(scored, cfg),
        "near_dups": near,
        "hist": {"per_decade": per_decade, "chars": log_histogram(measured, "chars", per_decade),
                 "ppl": log_histogram(measured, "ppl", per_decade)},
        "lexicons": {name: len(terms) for name, terms in lexicons.items()},
        "rule_hits": (find_extra(filter_stats, "hit") or (filter_stats or {}).get("rejected") or {}),
        "dup_cluster_sizes": dup_cluster_sizes(spark, dedup_stats["dir_path"] if dedup_stats else None),
        "removals": removal_audit(spark, dedup_stats["dir_path"] if dedup_stats else None, dedup_cfg,
                                  int(cfg.get("removal_sample", 20)), int(cfg["seed"])),
        "stage_stats": stage_stats,
        "funnel": funnel(stage_stats),
        "sheet": sheet,
    }
    scored.unpersist()
    sample.unpersist()
    measured.unpersist()
    fs.write_text(fs.join(out_dir, "metrics.json"), json.dumps(m, indent=2, ensure_ascii=False, default=str) + "\n")
    m["report"] = write_report(m, out_dir)
    return m


def gate(out_dir: str | os.PathLike, labels_path: str | os.PathLike, cfg: Mapping) -> dict:
    """Read a reviewed sheet, decide, write gate.json and re-render the report with the decision (all through
    fs: the evaluate output and the sheet may be any URI)."""
    out_dir = fs.normalize(str(out_dir))
    metrics_path = fs.join(out_dir, "metrics.json")
    if not fs.is_file(metrics_path):
        raise FileNotFoundError(f"{metrics_path} is missing: run the evaluate stage into {out_dir} first")
    rows = read_labels(labels_path)
    check_ids(rows, fs.join(out_dir, "review.jsonl"))
    decision = gate_mod.evaluate_labels(rows, cfg)
    decision["labels"] = str(labels_path)
    fs.write_text(fs.join(out_dir, "gate.json"), json.dumps(decision, indent=2, ensure_ascii=False) + "\n")
    m = json.loads(fs.read_text(metrics_path))
    decision["report"] = write_report(m, out_dir, decision)
    return decision


# ---------------------------------------------------------------- the stage
_WEIGHT = optional_section({"limit": Float(0, min_exclusive=True), "weight": Float(0)})
SPEC = optional_section({
    "seed": Int(),
    "removal_sample": Count(0),
    "sample_share": Float(0, 1, min_exclusive=True),
    "min_per_stratum": Count(0),
    "strata": List(Str(non_empty=True), min_len=1),
    "gate_threshold": Float(0, 1),
    "gate_on": Str(["upper", "point"]),
    "confidence": Float(0, 1, min_exclusive=True),
    "qualified_labels": List(Str(non_empty=True)),
    "unqualified_labels": List(Str(non_empty=True)),
    "lexicons": Dir(nullable=True),
    "lexicon_glob": Str(non_empty=True),
    "sheet_text_chars": Count(1),
    "quantiles": List(Float(0, 1)),
    "quantile_accuracy": Count(1),
    "hist_bins_per_decade": Count(1),
    "suspicion": Map(OneOf(Float(0), _WEIGHT, Map(Float(0)))),
    "review": optional_section({"max_rows": Count(1)}, required=("max_rows",)),
})


def _transform(df, ctx):
    """The products go to OUT itself (the attempt has removed `_SUCCESS`, which is written last): the report
    links OUT's files by name. The funnel is the chain's earlier stages, else the input's sibling stages."""
    cfg = ctx.cfg
    stage_dirs = list(ctx.upstream) or sibling_stage_dirs(ctx.inputs, ctx.output)
    # strata use the source type; an input written before the column existed gets the configured default
    scratch = ctx.attempt.path("_scratch")
    m = evaluate(ctx.spark, with_source_type(df, ctx.conf), cfg, ctx.attempt.out, stage_dirs,
                 config_hash=conf_hash(cfg), dedup_cfg=ctx.conf["dedup"], scratch=scratch)
    fs.delete(scratch)   # everything read from it is computed and written by now
    result = run(df, cfg)
    result.stats = {"sampled": m["sample"]["docs"], "strata": m["sampling"]["strata"],
                    "near_dups": m["near_dups"], "report": m["report"]["html"], "review_sheet": m["sheet"]["csv"],
                    "review_rows": m["sheet"]["rows"], "review_left_out": m["sheet"]["left_out"]}
    print(f"[evaluate] sample of {m['sample']['docs']} docs in {m['sampling']['strata']} strata; "
          f"review sheet {m['sheet']['csv']}; report {m['report']['html']}", flush=True)
    return result


def _gate(args, conf) -> int:
    if not args.output:
        raise ValueError("--labels needs --output: the evaluate stage's output directory")
    decision = gate(args.output, args.labels, conf["evaluate"])
    print(decision["message"], flush=True)
    print(f"[evaluate] gate written to {args.output}/gate.json; report {decision['report']['html']}")
    return 0 if decision["passed"] else 1


STAGE = Stage(
    name="evaluate",
    summary="DE: 1% stratified sample, automatic metrics, review sheet, the <0.1% gate, the report and funnel",
    spec=SPEC,
    transform=_transform,
    uses_upstream=True,
    driver_writes=True,
    options=(
        Option(("--labels",), {"metavar": "SHEET", "default": None,
                               "help": "a reviewed review.csv / review.jsonl: compute the unqualified rate and its "
                                       "Clopper-Pearson bound, write OUT/gate.json, re-render the report; exit 1 if "
                                       "the gate fails"}, command=_gate),
    ),
    doc="""DE job: evaluate the pipeline's output (sample, metrics, review sheet, report) or gate reviewer labels.

  python -m jobs.evaluate --input RUN/40-dedup --output RUN/50-evaluate [--conf conf/pipeline.yaml]
  python -m jobs.evaluate --output RUN/50-evaluate --labels reviewed.csv     # the gate; exit 1 on FAIL

The funnel covers --upstream DIR ... (the chain passes its earlier stages), else the input's sibling stage
directories that hold a stats.json, by name.""",
)
