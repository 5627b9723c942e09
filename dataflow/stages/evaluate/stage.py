"""DE as a document stage (what jobs/evaluate.py wires onto `cli.run_document_stage`): the evaluation
products (sample/, review sheet, metrics.json, report) are written next to the committed output, and the
stage itself keeps every record (`evaluate.run`)."""
from __future__ import annotations

from typing import Iterable, Mapping

from dataflow.core.config import conf_hash
from dataflow.core.stage import sibling_stage_dirs


def transform(spark, cfg: Mapping, inputs: Iterable[str], output: str, stages: Iterable[str] | None,
              dedup_cfg: Mapping):
    """`transform(df, attempt) -> StageResult` for run_document_stage. The products go to OUT itself (the
    attempt has removed `_SUCCESS`, which is written last): the report links OUT's files by name."""
    from dataflow.stages.evaluate import evaluate, run

    inputs = list(inputs)
    stage_dirs = list(stages) if stages is not None else sibling_stage_dirs(inputs, output)

    def apply(df, attempt):
        m = evaluate(spark, df, cfg, attempt.out, stage_dirs, config_hash=conf_hash(cfg), dedup_cfg=dedup_cfg)
        result = run(df, cfg)
        result.stats = {"sampled": m["sample"]["docs"], "strata": m["sampling"]["strata"],
                        "near_dups": m["near_dups"], "report": m["report"]["html"], "review_sheet": m["sheet"]["csv"]}
        print(f"[evaluate] sample of {m['sample']['docs']} docs in {m['sampling']['strata']} strata; "
              f"review sheet {m['sheet']['csv']}; report {m['report']['html']}", flush=True)
        return result

    return apply
