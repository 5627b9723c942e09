"""Per-document stages fused into one pass (#27, DESIGN §9).

A *group* is a run of consecutive stages that each have a batch form for this configuration (`Stage.batch(conf)`
is not None). The group is one Spark job:

- the first stage's reader makes its annotated batches (DP in the worker that read the raw files, through its
  `read_fused`; a stage over Parquet documents by a `mapInArrow` over them);
- in that same Python worker every batch goes through each stage in turn: stage i's kept rows are stage i+1's
  input, its rejected rows are tagged for stage i's `rejected/`, its side rows for its side outputs, and its
  counters (plus the rows, characters and bytes it kept) ride along as one row per batch;
- one write (`fsio.write_split`) routes every row once: each stage's `rejected/` and side outputs, the last
  stage's `data/`; the counters are summed over the task attempts that won, never read back;
- each stage then gets its own stats.json, from the same counts its run alone would give, and the commits run
  in order. Only the last stage of a group writes `data/`: the group is the resume unit (the chain records
  it current only once every stage in it committed), and a stage inside it has no `data/` for anyone to read
  (a reader pointed at it fails naming it; its stats.json says where the group's rows went).

A stage run alone is a group of one: `core.runner.run_stage` uses this path for every stage with a batch
form, so a stage's own run and its run fused with others share their decisions by construction.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable, Mapping

import pyarrow as pa

from dataflow.core import fs, fsio
from dataflow.core.contract import Batched, FusedStats, Stage, StageContext
from dataflow.core.progress import read_work
from dataflow.core.stage import (AccountingError, Attempt, check_overlap, commit_stage, parquet_rows,
                                 tally_rows)

ROUTE = "_route"          # the output a row of the pass's frame goes to
COUNTERS = "_counters"    # one row per batch: the batch's counters as JSON
DATA = "data"
COUNTED = "counters"


def rejected_route(i: int) -> str:
    return f"rejected:{i}"


def side_route(i: int, name: str) -> str:
    return f"side:{i}:{name}"


def _side_col(i: int, name: str, col: str) -> str:
    return f"__{i}_{name}__{col}"   # side columns live apart from the documents' in the pass's frame


def forms(stages: Iterable[Stage], conf: Mapping) -> list[Batched | None]:
    return [s.batch(conf) if s.batch is not None else None for s in stages]


def groups(stages: list[Stage], conf: Mapping, *, fuse: bool = True) -> list[list[Stage]]:
    """The stages cut into groups: consecutive stages with a batch form for `conf` form one group (with
    `fuse` off, each stage is its own group); a stage without one is a group of its own, run by its transform."""
    out: list[list[Stage]] = []
    fusable = [f is not None for f in forms(stages, conf)] if fuse else [False] * len(stages)
    for i, s in enumerate(stages):
        if fuse and out and fusable[i] and fusable[i - 1] and not s.uses_upstream:
            out[-1].append(s)
        else:
            out.append([s])
    return out


class _Plan:
    """The driver's picture of the pass: each route's Arrow schema, worked out by running an empty batch of
    the input's schema through every stage (configuration checks of the forms fire here, before any task)."""

    def __init__(self, stages: list[Stage], forms_: list[Batched], first_schema: pa.Schema, annotated: bool,
                 carry=None):
        self.stages, self.forms = stages, forms_
        self.routes: dict[str, pa.Schema] = {}
        self.kept_cols: list[list[str]] = []
        self.rejected_cols: list[list[str]] = []
        batch = pa.RecordBatch.from_pylist([], schema=first_schema)
        for i, form in enumerate(forms_):
            res = form.split(batch if (annotated and i == 0) else form.annotate(batch))
            self.routes[rejected_route(i)] = res.rejected.schema
            self.rejected_cols.append(res.rejected.schema.names)
            self.kept_cols.append(res.kept.schema.names)
            for name, schema in form.side.items():
                self.routes[side_route(i, name)] = schema
            batch = res.kept
        self.routes[DATA] = (carry(batch) if carry is not None else batch).schema
        fields: dict[str, pa.Field] = {}
        for route, schema in self.routes.items():
            for f in schema:
                name = _side_col(*_side_of(route), f.name) if route.startswith("side:") else f.name
                if name in fields and fields[name].type != f.type:
                    raise TypeError(f"fused pass: column {name!r} is {fields[name].type} in one stage and {f.type} "
                                    f"in another ({route})")
                fields.setdefault(name, pa.field(name, f.type))
        self.schema = pa.schema([*fields.values(), pa.field(ROUTE, pa.string()), pa.field(COUNTERS, pa.string())])


def _side_of(route: str) -> tuple[int, str]:
    _, i, name = route.split(":", 2)
    return int(i), name


def _widen(batch: pa.RecordBatch, schema: pa.Schema, route: str, rename=None) -> pa.RecordBatch:
    """`batch` in the pass's schema: its own columns (renamed for a side output), nulls elsewhere, the route."""
    n = batch.num_rows
    have = {(rename(c) if rename else c): batch.column(c) for c in batch.schema.names}
    cols = []
    for f in schema:
        if f.name == ROUTE:
            cols.append(pa.array([route] * n, pa.string()))
        elif f.name in have:
            col = have[f.name]
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _counters_row(counters: dict, schema: pa.Schema) -> pa.RecordBatch:
    cols = [pa.array([COUNTED], pa.string()) if f.name == ROUTE else
            pa.array([json.dumps(counters)], pa.string()) if f.name == COUNTERS else pa.nulls(1, f.type)
            for f in schema]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _as_lists(counters: Mapping) -> dict[str, list[int]]:
    return {str(k): (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in counters.items()}


def chain_batches(forms_: list[Batched], schema: pa.Schema, *, annotated: bool, carry=None):
    """batch -> the pass's frame for it: every stage's rejected and side rows, the last stage's kept rows and
    one counters row. `annotated`: the first stage's reader already did its per-document work; `carry`: the
    columns the stage after the pass wants added to the kept rows (`Stage.carry`)."""
    def run(batch: pa.RecordBatch) -> pa.RecordBatch:
        out, counters = [], {}
        for i, form in enumerate(forms_):
            counters[f"{i}|in"] = [batch.num_rows]
            res = form.split(batch if (annotated and i == 0) else form.annotate(batch))
            if res.rejected.num_rows:
                out.append(_widen(res.rejected, schema, rejected_route(i)))
            for name, side in res.side.items():
                if side.num_rows:
                    out.append(_widen(side, schema, side_route(i, name), rename=lambda c, i=i, n=name: _side_col(i, n, c)))
            for key, vals in _as_lists(res.counters).items():
                counters[f"{i}|c|{key}"] = vals
            for key, vals in tally_rows(DATA, res.kept).items():
                counters[f"{i}|kept|{key}"] = vals
            batch = res.kept
        if batch.num_rows:
            out.append(_widen(carry(batch) if carry is not None else batch, schema, DATA))
        out.append(_counters_row(counters, schema))
        return pa.concat_batches(out)

    return run


def _route_fn(plan: _Plan):
    routes = plan.routes

    def route(batch):
        import pyarrow.compute as pc

        where = batch.column(ROUTE)
        out = {}
        for name in pc.unique(where).to_pylist():
            rows = batch.filter(pc.equal(where, name))
            if name == COUNTED:
                out[name] = rows.select([COUNTERS])
            elif name.startswith("side:"):
                i, side = _side_of(name)
                cols = routes[name].names
                out[name] = rows.select([_side_col(i, side, c) for c in cols]).rename_columns(cols)
            else:
                out[name] = rows.select(routes[name].names)
        return out

    return route


def _tally(name: str, batch) -> dict[str, list[int]]:
    if name == COUNTED:
        summed: dict[str, list[int]] = {}
        for text in batch.column(COUNTERS).to_pylist():
            fsio._add(summed, json.loads(text))
        return summed
    if name.startswith("side:"):
        return {}
    return tally_rows(name, batch)


def _count(tally: Mapping[str, list[int]]) -> int:
    return sum(v[0] for v in tally.values())


def _stage_counters(counted: Mapping[str, list[int]], i: int) -> tuple[int, dict, dict]:
    """(rows that entered stage i, its kept tally in `tally_rows` form, its own counters) from the summed ones."""
    n_in, kept, own = 0, {}, {}
    for key, vals in counted.items():
        idx, kind, rest = (key.split("|", 2) + [""])[:3]
        if int(idx) != i:
            continue
        if kind == "in":
            n_in = vals[0]
        elif kind == "kept":
            kept[rest] = vals
        elif kind == "c":
            own[rest] = vals if len(vals) > 1 else vals[0]
    return n_in, kept, own


def run_group(stages: list[Stage], spark, conf: Mapping[str, Any], inputs: Iterable[str], outputs: list[str], *,
              upstream: Iterable[str] = (), allow_incomplete: bool = False, partitions: int | None = None,
              progress_ctx: dict | None = None, carry=None) -> list[dict]:
    """Run `stages` (consecutive, each with a batch form) in one pass from `inputs`; stage i writes
    `outputs[i]` (its rejected/, side files and stats.json; the last one also data/, with the columns `carry`
    adds for the stage after the pass). Returns their stats."""
    t0 = time.time()
    inputs = [str(i) for i in inputs]
    forms_ = forms(stages, conf)
    if any(f is None for f in forms_):
        raise ValueError(f"fused pass: {[s.name for s, f in zip(stages, forms_) if f is None]} have no batch form "
                         f"for this configuration")
    for out in outputs:
        check_overlap(inputs, out)
    attempts = [Attempt(out).begin() for out in outputs]
    first = stages[0]
    ctx = StageContext(stage=first, spark=spark, conf=conf, inputs=inputs, output=attempts[0].out,
                       attempt=attempts[0], upstream=[str(u) for u in upstream], allow_incomplete=allow_incomplete)
    if progress_ctx is not None:
        progress_ctx["ctx"] = ctx
    try:
        for form in forms_:
            form.prepare(spark)
        frame, plan = _pass_frame(stages, forms_, ctx, carry)
        cached = None
        for i, form in enumerate(forms_):
            if form.frame is not None:
                if form.persist and cached is None:
                    from pyspark import StorageLevel

                    frame = cached = frame.persist(StorageLevel.MEMORY_AND_DISK)
                frame = form.frame(frame, lambda name, df=frame, i=i: _side_frame(df, plan, i, name))
        if partitions:
            frame = frame.coalesce(partitions)
        dirs = {rejected_route(i): attempts[i].path("rejected") for i in range(len(stages))}
        dirs[DATA] = attempts[-1].path("data")
        for route in plan.routes:
            if route.startswith("side:"):
                i, name = _side_of(route)
                dirs[route] = attempts[i].path(name)
        outs = {r: (dirs[r], plan.routes[r]) for r in plan.routes}
        outs[COUNTED] = (None, pa.schema([(COUNTERS, pa.string())]))
        split = fsio.write_split(frame, outs, _route_fn(plan), _tally)
        if cached is not None:
            cached.unpersist()
        seen = ctx.seen() if ctx.seen is not None else None
        return _commit_all(stages, forms_, spark, conf, attempts, plan, split, seen, ctx.input_paths, t0,
                           getattr(carry, "key", None))
    except BaseException:
        for a in attempts:
            if not a.committed:
                a.abort()
        raise


def _side_frame(df, plan: "_Plan", i: int, name: str):
    """Stage i's side rows `name` in the pass's frame, under their own column names."""
    from pyspark.sql import functions as F

    route = side_route(i, name)
    return df.filter(F.col(ROUTE) == route).select(*[F.col(_side_col(i, name, c)).alias(c)
                                                     for c in plan.routes[route].names])


def _pass_frame(stages, forms_, ctx, carry=None):
    """The pass's frame: the first stage's reader, then the chain of stages per batch."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from dataflow.core.schema import spark_schema

    first = stages[0]
    if first.read_fused is not None and forms_[0].annotated_schema is not None:
        # the reader's annotated batches enter the chain in the worker that made them
        plan = _Plan(stages, forms_, forms_[0].annotated_schema, annotated=True, carry=carry)
        run = chain_batches(forms_, plan.schema, annotated=True, carry=carry)
        frame, paths = first.read_fused(ctx, run, plan.schema)
        ctx.input_paths = [str(p) for p in paths]
        return frame, plan
    from dataflow.core.recipes import with_source_type

    df, paths = first.read(ctx)
    ctx.input_paths = [str(p) for p in paths]
    if "text" in df.columns:   # every stage after DP reads records typed (a null or missing type: the default)
        df = with_source_type(df, ctx.conf)
    rows = parquet_rows(ctx.input_paths)
    ctx.seen = lambda: rows
    ctx.work = ctx.work or read_work(ctx.spark, rows)
    plan = _Plan(stages, forms_, to_arrow_schema(df.schema), annotated=False, carry=carry)
    run = chain_batches(forms_, plan.schema, annotated=False, carry=carry)
    return df.mapInArrow(lambda batches: (run(b) for b in batches), spark_schema(plan.schema)), plan


def _commit_all(stages, forms_, spark, conf, attempts, plan, split, seen, input_paths, t0, carried) -> list[dict]:
    """Every stage's stats.json from the pass's counts; the accounting of each stage and between stages is
    checked for all of them before the first commit."""
    counted = split.tally.get(COUNTED, {})
    rows = []
    expected = seen   # what entered stage i: what its reader saw, then what the stage before it kept
    for i, (stage, form) in enumerate(zip(stages, forms_)):
        n_in, kept_tally, own = _stage_counters(counted, i)
        # the last stage's kept rows are the ones written to data/; the others' are counted as they left
        data_tally = split.tally.get(DATA, {}) if i == len(stages) - 1 else kept_tally
        kept, written = _count(kept_tally), _count(data_tally)
        rejected = _count(split.tally.get(rejected_route(i), {}))
        if (expected is not None and n_in != expected) or n_in != kept + rejected or written != kept:
            raise AccountingError(
                f"{stage.name}: {n_in} records entered the stage in the fused pass "
                f"({'its reader saw' if i == 0 else 'the stage before kept'} {expected}); it kept {kept} "
                f"({written} written) and rejected {rejected}; no stage of the pass is marked _SUCCESS")
        expected = kept
        side = {}
        for name in form.side:
            parts = split.parts.get(side_route(i, name)) or []
            side[name] = spark.read.parquet(*[fs.spark_uri(p.uri) for p in parts]) if parts else None
        extra = form.stats(FusedStats(conf=conf, counters=own, side=side, attempt=attempts[i], spark=spark))
        for name in form.side:
            fs.delete(attempts[i].path(name))   # side rows feed the statistics only
        rows.append((n_in, data_tally, extra))
    stats = []
    names = [s.name for s in stages]
    for i, (stage, (n_in, data_tally, extra)) in enumerate(zip(stages, rows)):
        fused = {"stages": names, "data": attempts[-1].out} if len(stages) > 1 else None
        if fused is not None and carried is not None and i == len(stages) - 1:
            fused["carried"] = carried   # the key of the columns computed for the stage after the pass
        cfg = conf.get(stage.section) if stage.section else {}
        stats.append(commit_stage(
            attempts[i], stage=stage.name, tally={"data": data_tally, "rejected": split.tally.get(rejected_route(i), {})},
            kept_cols=plan.kept_cols[i], rejected_cols=plan.rejected_cols[i],
            input_count=n_in if i else (seen if seen is not None else n_in),
            input_paths=input_paths if i == 0 else [attempts[i - 1].out], cfg=cfg or {}, t0=t0, extra=extra,
            extra_versions=tuple(stage.versions), side_files=stage.side_files, fused=fused))
    return stats
