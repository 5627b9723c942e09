"""The stage contract (DESIGN §9): a stage is one `Stage` object, declared in its own module.

A stage declares
- `name`: the job (`jobs/<name>.py`), the directory in a chain (`<nn>-<name>`) and its configuration
  section (`section`, default the name; None: a stage that reads no section of its own);
- `spec`: the schema of that section, written next to the code it configures; the central schema
  (`dataflow.pipeline.conf`) only assembles the stages' specs;
- `files`: the configuration sections whose `File` values (models, lexicons) must exist before a JVM starts;
- `transform(df, ctx) -> StageResult`: the work, over the frame `read(ctx)` gave (by default the Parquet
  documents of the previous stage); every input record is in kept or rejected, and the runner
  (`dataflow.core.runner`) does the rest: attempts, accounting, stats.json, `_SUCCESS`;
- `batch(conf) -> Batched | None`, for a per-document stage: the same decisions over one Arrow batch, without
  Spark (kept + rejected + counters), and its statistics from the counters: what `core.fused` chains to run
  consecutive stages in one pass (None: this configuration needs the whole input first);
- command-line `options` of its own (`Option`), which either set configuration keys or run a driver-only
  `command` (a gate over reviewer labels, a table of rules) instead of the transform.

`dataflow.stages.table.STAGES` lists the factory's stages in pipeline order; the jobs, the chain (in one
session or as subprocesses), `--print-submit`, the demo and the tests iterate it. No stage name is
special-cased anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from dataflow.core.confschema import Spec
from dataflow.core.stage import Attempt, StageResult, read_stage_input


@dataclass
class StageContext:
    """What a stage's transform may use: the session, the whole validated configuration, its paths, the
    attempt its side files go to, and the outputs of the chain's earlier stages (for a funnel)."""
    stage: "Stage"
    spark: Any
    conf: Mapping[str, Any]
    inputs: list[str]
    output: str
    attempt: Attempt
    upstream: list[str] = field(default_factory=list)
    options: Mapping[str, Any] = field(default_factory=dict)
    allow_incomplete: bool = False
    input_paths: list[str] = field(default_factory=list)   # what `read` resolved (stats.json `inputs`)
    # the units the stage's reader saw, counted apart from the frame it returned (the stage's `input`); a
    # reader over raw files sets it (`ingest.Ledger`), else the runner counts the rows the Parquet footers of
    # `input_paths` declare
    seen: Callable[[], int] | None = None
    # how much of the input is done, for the progress line (`core.progress.Work`); the runner measures a Parquet
    # input's records itself, a reader over raw files sets it
    work: Any = None

    @property
    def cfg(self) -> dict:
        """The stage's own configuration section ({} for a stage without one)."""
        return dict(self.conf.get(self.stage.section) or {}) if self.stage.section else {}


@dataclass
class BatchResult:
    """One Arrow batch through a per-document stage: kept rows (the stage's output schema), rejected rows
    (the same plus `reason`, `detail`), counters the stage keeps (name -> a list of ints, summed over batches:
    rule hits, documents per language) and narrow side rows (name -> batch: e.g. audit example candidates),
    which a fused pass writes under the stage's attempt."""
    kept: pa.RecordBatch
    rejected: pa.RecordBatch
    counters: dict = field(default_factory=dict)
    side: dict = field(default_factory=dict)

    @classmethod
    def from_annotated(cls, batch: pa.RecordBatch, counters: dict | None = None, drop=()) -> "BatchResult":
        """Split a batch with a nullable `reason` (and `detail`) column; `drop`: internal columns neither side
        keeps."""
        import pyarrow.compute as pc

        reason = batch.column("reason")
        is_kept = pc.is_null(reason)
        keep_cols = [n for n in batch.schema.names if n not in ("reason", "detail", *drop)]
        kept = batch.filter(is_kept).select(keep_cols)
        rejected = batch.filter(pc.invert(is_kept)).select([n for n in batch.schema.names if n not in drop])
        return cls(kept=kept, rejected=rejected, counters=counters or {})


@dataclass
class FusedStats:
    """What a stage's statistics may read after a fused pass: its summed counters, its side outputs (as
    frames: name -> Spark DataFrame, None when no row was written), the attempt (for side files) and the
    configuration."""
    conf: Mapping[str, Any]
    counters: dict
    side: Mapping[str, Any]
    attempt: Attempt
    spark: Any


@dataclass
class Batched:
    """A per-document stage over Arrow batches.

    `annotate(batch) -> annotated batch` does the per-document work (a nullable `reason` column marks the
    rejected rows); `split(annotated) -> BatchResult` divides it and counts; `stats(FusedStats) -> dict` is
    the stats.json `extra` the stage's own transform would write, from the counters and side rows. `side`
    names the schemas of the side rows `split` returns. `frame(df, side) -> df`, optional: columns computed
    over the whole pass's frame (Spark expressions) before the writes, e.g. buckets from cutoffs computed on
    the input (`side(name)` is the frame of the stage's side rows `name`); `persist`: that step reads the frame
    before the writes do, so the pass caches it."""
    annotate: Callable[[pa.RecordBatch], pa.RecordBatch]
    split: Callable[[pa.RecordBatch], BatchResult]
    stats: Callable[[FusedStats], dict] = lambda st: {}
    side: Mapping[str, pa.Schema] = field(default_factory=dict)
    frame: Callable[[Any, Any], Any] | None = None
    persist: bool = False
    annotated_schema: pa.Schema | None = None    # what `annotate` makes, for a reader that annotates (`read_fused`)
    prepare: Callable[[Any], None] = lambda spark: None   # driver: ship the files the workers load (lexicons, models)

    def __call__(self, batch: pa.RecordBatch) -> BatchResult:
        return self.split(self.annotate(batch))


@dataclass(frozen=True)
class Option:
    """A command-line option of one stage's job. `to_sets(value) -> ["key.path=value", ...]` turns it into
    configuration overrides (so the chain and the config hash see it); `command(args, conf) -> exit code`
    runs instead of the stage when the option is given (no Spark, no --input needed)."""
    flags: tuple[str, ...]
    kwargs: Mapping[str, Any]
    to_sets: Callable[[Any], list[str]] | None = None
    command: Callable[[Any, Mapping], int] | None = None

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


def read_documents(ctx: StageContext):
    """The default reader: the Parquet documents of an earlier stage (refused unless it finished)."""
    return read_stage_input(ctx.spark, ctx.inputs, output=ctx.output, allow_incomplete=ctx.allow_incomplete)


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str                                    # one line: the chain's table, --help, docs/architecture.md
    transform: Callable[[Any, StageContext], StageResult]
    spec: Spec | None = None                        # the schema of conf[section]
    section: str | None = None                      # default: the name
    doc: str = ""                                   # the job's --help text (usage lines, outputs)
    files: Sequence[str] | None = None              # sections whose Files must exist (default: its own section)
    read: Callable[[StageContext], tuple[Any, list[str]]] = read_documents
    input_help: str = "a previous stage's output directory, Parquet files, directories or globs"
    options: Sequence[Option] = ()
    precheck: Callable[[Mapping, list[str], str], None] | None = None   # driver checks before the JVM starts
    side_files: Callable[[dict], Mapping[str, str]] | None = None        # small files derived from stats.json
    versions: Sequence[str] = ()                    # extra library versions recorded in stats.json
    batch: Callable[[Mapping], Batched | None] | None = None
    # the stage's reader with each annotated batch handed to `then` in the worker that made it, the frame of
    # `schema` it returns being the reader's frame (DP: raw bytes never reach the JVM before the fused pass)
    read_fused: Callable[[StageContext, Callable, pa.Schema], tuple[Any, list[str]]] | None = None
    # columns this stage reads that a fused pass right before it computes while the text is in its workers'
    # memory (CD's fingerprints): conf -> (batch -> the batch with them added); the stage must check they were
    # made for its configuration and compute them itself otherwise
    carry: Callable[[Mapping], Callable[[pa.RecordBatch], pa.RecordBatch] | None] | None = None
    report: Callable[[dict], str] | None = None     # one more console line from its stats (after the summary)
    uses_upstream: bool = False                     # reads the outputs of the chain's earlier stages
    driver_writes: bool = False                     # writes products from the driver (a cluster runs it in client mode)

    def __post_init__(self):
        if self.section is None and self.spec is not None:
            object.__setattr__(self, "section", self.name)

    @property
    def required_files(self) -> list[str]:
        if self.files is not None:
            return list(self.files)
        return [self.section] if self.section else []
