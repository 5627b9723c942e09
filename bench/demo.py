"""`make demo`'s factory part (the chain of the stage table on the sample corpus, in one session) at this commit
against the commit before the fused pass (#27), interleaved, same inputs and settings: its wall time is the goal
(<= 60% of the earlier commit's). The earlier commit runs from a git worktree of it (its own `dataflow/` and
`conf/`, this checkout's models and corpus); this commit also runs with `pipeline.fuse=false`, to show what the
fusion itself is worth."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import BenchContext
from .harness import Side, compare, git_commit, spark_env

PATHS = ["dataflow/core", "dataflow/pipeline", "dataflow/stages/preprocess", "dataflow/stages/score",
         "dataflow/stages/filter", "dataflow/stages/dedup", "dataflow/stages/evaluate"]
BASE = os.environ.get("BENCH_DEMO_BASE", "3635706")   # the commit before the fused pass
GOAL = 0.60
ROOT = Path(__file__).resolve().parent.parent


def _worktree(commit: str, where: Path) -> Path:
    """A checkout of `commit` beside the work dir, sharing this checkout's build/ (models, corpus)."""
    if not (where / ".git").exists():
        shutil.rmtree(where, ignore_errors=True)
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), commit], cwd=ROOT, check=True,
                       capture_output=True)
    build = where / "build"
    if not build.exists():
        build.symlink_to(ROOT / "build")
    return where


def run(ctx: BenchContext) -> str:
    from dataflow.pipeline.demo import SOURCE_SETS, chain_inputs, model_sets

    work = ctx.sub("demo")
    base = _worktree(BASE, work / "base-tree")
    inputs = chain_inputs(ctx.fixture)
    sets = [*model_sets(ctx.models), *SOURCE_SETS, "spark.master=local[2]"]
    outs = {n: work / n for n in ("before", "fused", "unfused")}

    def command(name: str, extra: list[str]):
        def cmd(rep: int) -> list[str]:
            argv = [sys.executable, "-m", "jobs.pipeline", "--input", *inputs, "--output", str(outs[name])]
            for s in [*sets, *extra]:
                argv += ["--set", s]
            return argv
        return cmd

    def clear(name: str):
        return lambda rep: shutil.rmtree(outs[name], ignore_errors=True)

    env = spark_env()
    sides = [Side("before", command("before", []), env=env, cwd=base, before=clear("before")),
             Side("fused", command("fused", []), env=env, cwd=ROOT, before=clear("fused")),
             Side("unfused", command("unfused", ["pipeline.fuse=false"]), env=env, cwd=ROOT, before=clear("unfused"))]
    comp = compare(sides, reps=1 if ctx.quick else 3)
    n_records = json.loads((outs["fused"] / "10-preprocess" / "stats.json").read_text())["input"]
    share = comp.median("fused", "wall_s") / comp.median("before", "wall_s")
    verdict = "met" if share <= GOAL else f"**missed** by {share / GOAL:.2f}x"
    lines = [f"Input: the demo's chain inputs (`dataflow/pipeline/demo.py`: the fixture's WARC files, docs.jsonl and "
             f"the source dumps), the demo's settings, `local[2]`, all stages DP -> AS -> RF -> CD -> DE, from an "
             f"empty output each run. before: commit `{git_commit(base)}` (a worktree of it); fused: this commit; "
             f"unfused: this commit with `pipeline.fuse=false`.", "",
             *comp.table(n_records), "",
             f"**The demo's factory part takes {share:.0%} of the earlier commit's wall time** (fused, median); goal <= "
             f"{GOAL:.0%}: {verdict}. Unfused at this commit: "
             f"{comp.median('unfused', 'wall_s') / comp.median('before', 'wall_s'):.0%}. CPU (process tree): fused "
             f"{comp.median('fused', 'cpu_s'):.1f} s, unfused {comp.median('unfused', 'cpu_s'):.1f} s, before "
             f"{comp.median('before', 'cpu_s'):.1f} s.", "", comp.load_line(), "",
             f"Commit `{git_commit()}`. Command: `make bench ONLY=demo`"]
    return "## Demo: the factory part at this commit vs before the fused pass\n\n" + "\n".join(lines)
