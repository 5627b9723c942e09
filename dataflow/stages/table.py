"""The factory's stages, in pipeline order (DESIGN §4: DP -> AS -> RF -> CD -> DE).

This list is the one place the chain is written down: the jobs (`jobs/<name>.py`, `jobs/stage.py NAME`), the
chain in one session or as subprocesses (`dataflow.pipeline.chain`), `--print-submit`, the demo, the
configuration schema (each stage's section) and the tests all iterate it. A stage's output directory in a
chain is `<10 x position>-<name>`. Adding a stage: its module (declaring `STAGE`), one entry here, its tests
and its doc.
"""
from __future__ import annotations

from dataflow.core.contract import Stage
from dataflow.stages.dedup.stage import STAGE as DEDUP
from dataflow.stages.evaluate.stage import STAGE as EVALUATE
from dataflow.stages.filter.stage import STAGE as FILTER
from dataflow.stages.preprocess.stage import STAGE as PREPROCESS
from dataflow.stages.score.stage import STAGE as SCORE

STAGES: list[Stage] = [PREPROCESS, SCORE, FILTER, DEDUP, EVALUATE]


def stages() -> list[Stage]:
    """The table as it is now (tests may register a stage of their own in `STAGES`)."""
    return list(STAGES)


def names() -> list[str]:
    return [s.name for s in STAGES]


def get(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r} in the table; stages: {', '.join(names())}")


def chain_dir(stage: Stage) -> str:
    """The stage's directory under a chain's output: its place in the table, then its name."""
    return f"{10 * (STAGES.index(stage) + 1)}-{stage.name}"
