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
- `batch(conf) -> (RecordBatch -> BatchResult)`, for a per-document stage: the same decisions over one
  Arrow batch, without Spark (kept + rejected + counters), for running stages fused in one pass;
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
    (the same plus `reason`, `detail`) and counters the stage keeps (e.g. rule hits)."""
    kept: pa.RecordBatch
    rejected: pa.RecordBatch
    counters: dict = field(default_factory=dict)

    @classmethod
    def from_annotated(cls, batch: pa.RecordBatch, counters: dict | None = None) -> "BatchResult":
        """Split a batch with a nullable `reason` (and `detail`) column."""
        import pyarrow.compute as pc

        reason = batch.column("reason")
        is_kept = pc.is_null(reason)
        keep_cols = [n for n in batch.schema.names if n not in ("reason", "detail")]
        kept = batch.filter(is_kept).select(keep_cols)
        return cls(kept=kept, rejected=batch.filter(pc.invert(is_kept)), counters=counters or {})


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
    batch: Callable[[Mapping], Callable[[pa.RecordBatch], BatchResult]] | None = None
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
