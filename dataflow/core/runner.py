"""The runner: one stage (a `contract.Stage`) over one input, in a given SparkSession.

`run_stage` is the only code that reads a stage's input, begins its attempt, applies its transform and writes
its outputs (`core.stage.write_stage`: accounting, stats.json, the atomic commit, `_SUCCESS` last). The job
entry (`dataflow.pipeline.job`), the chain in one session (`dataflow.pipeline.chain`) and the tests all call
it, so the guarantees hold for every stage alike.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Mapping

from dataflow.core.contract import Stage, StageContext
from dataflow.core.fused import run_group
from dataflow.core.progress import read_work, stage_progress
from dataflow.core.stage import Attempt, check_overlap, parquet_rows, stage_input_paths, write_stage


def check_inputs(stage: Stage, conf: Mapping[str, Any], inputs: Iterable[str], output: str, *,
                 allow_incomplete: bool = False) -> None:
    """The driver's checks of one run, before any Spark work: input and output apart, every input there (an
    earlier stage's only once it finished), then the stage's own `precheck`. A job and the chain both call it."""
    inputs = [str(i) for i in inputs]
    check_overlap(inputs, output)
    stage_input_paths(inputs, allow_incomplete=allow_incomplete)
    if stage.precheck is not None:
        stage.precheck(conf, inputs, output)


def run_stage(stage: Stage, spark, conf: Mapping[str, Any], inputs: Iterable[str], output: str, *,
              upstream: Iterable[str] = (), options: Mapping[str, Any] | None = None,
              allow_incomplete: bool = False, partitions: int | None = None, progress: bool = False) -> dict:
    """Run `stage` from `inputs` into `output` and return its stats.json. `conf` is the whole validated
    configuration; `upstream` the outputs of the chain's earlier stages (the funnel of a stage that uses it).
    A stage with a batch form for `conf` runs as a fused pass of one (`core.fused`): the same code a chain
    fusing it with its neighbours runs."""
    if stage.batch is not None and stage.batch(conf) is not None:
        return run_fused([stage], spark, conf, inputs, [output], upstream=upstream, allow_incomplete=allow_incomplete,
                         partitions=partitions, progress=progress)[0]
    t0 = time.time()
    inputs = [str(i) for i in inputs]
    check_overlap(inputs, output)
    attempt = Attempt(output).begin()
    ctx = StageContext(stage=stage, spark=spark, conf=conf, inputs=inputs, output=attempt.out, attempt=attempt,
                       upstream=[str(u) for u in upstream], options=dict(options or {}),
                       allow_incomplete=allow_incomplete)
    with stage_progress(spark, stage.name, enabled=progress, work=lambda: ctx.work):
        df, paths = stage.read(ctx)
        ctx.input_paths = [str(p) for p in paths]
        if ctx.seen is None:
            # `input` is what the reader saw, never a count of the frame it returned: the raw readers' ledger,
            # or the rows the input's Parquet footers declare (the very files the frame is read from)
            rows = parquet_rows(ctx.input_paths)
            ctx.seen = lambda: rows
            ctx.work = ctx.work or read_work(spark, rows)
        result = stage.transform(df, ctx)
        return write_stage(result, attempt.out, stage=stage.name, input_count=ctx.seen, input_paths=ctx.input_paths,
                           cfg=ctx.cfg, t0=t0, partitions=partitions, attempt=attempt,
                           extra_versions=tuple(stage.versions), side_files=stage.side_files)


def run_fused(stages: list[Stage], spark, conf: Mapping[str, Any], inputs: Iterable[str], outputs: list[str], *,
              upstream: Iterable[str] = (), allow_incomplete: bool = False, partitions: int | None = None,
              progress: bool = False, carry=None) -> list[dict]:
    """Consecutive per-document stages in one pass (`core.fused.run_group`), under one progress line."""
    holder: dict = {}
    name = "+".join(s.name for s in stages)
    with stage_progress(spark, name, enabled=progress, work=lambda: getattr(holder.get("ctx"), "work", None)):
        return run_group(stages, spark, conf, inputs, outputs, upstream=upstream, allow_incomplete=allow_incomplete,
                         partitions=partitions, progress_ctx=holder, carry=carry)


def print_summary(stats: dict, out, stream=None, stage: Stage | None = None) -> None:
    """One line per stage: in, kept, rejected, the top reasons, speed and where it went (plus the stage's own
    `report` line, when it declares one)."""
    stream = stream or sys.stdout
    top = sorted(stats.get("rejected", {}).items(), key=lambda kv: -kv[1])[:3]
    reasons = ", ".join(f"{r}={n}" for r, n in top) or "-"
    print(f"[{stats['stage']}] in={stats['input']} kept={stats['kept']} rejected={stats['rejected_total']} "
          f"({reasons}) {stats.get('docs_per_s')} docs/s in {stats.get('wall_s')} s -> {out}", file=stream, flush=True)
    if len(stats.get("by_type") or {}) > 1:   # one type alone says nothing the line above does not
        print(f"[{stats['stage']}] by type: " + ", ".join(f"{t} {c['kept']}/{c['input']}" for t, c in stats["by_type"].items())
              + " (kept/in)", file=stream, flush=True)
    if stage is not None and stage.report is not None:
        print(f"[{stats['stage']}] {stage.report(stats)}", file=stream, flush=True)
