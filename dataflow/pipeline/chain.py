"""The data factory as a chain (`make pipeline`, `make demo`): plan the stages of the table, resume finished
ones, and run the rest, by default all in one SparkSession of this process (`pipeline.runner: session`), or
each as its own process (`python`: `python -m jobs.stage NAME`; `spark-submit`: `spark-submit jobs/stage.py
NAME`). Both ways write the same outputs, stats.json and state files, so a chain started one way resumes the
other.

Resume: a stage whose output has `_SUCCESS` with the current configuration hash of its section, fed by the
same upstream chain, is skipped; a killed run picks up at the stage it was in (that stage's partial output is
removed and redone). A changed threshold, lexicon or model changes that stage's chain key, which reruns it and
every stage after it. Run directories and their state files are URIs (`dataflow.core.fs`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from dataflow.core import fs, fused, preflight
from dataflow.core.config import REPO_ROOT, conf_hash
from dataflow.core.contract import Stage
from dataflow.core.runner import check_inputs, print_summary, run_fused, run_stage
from dataflow.core.spark import get_session
from dataflow.core.stage import remove_output
from dataflow.pipeline.conf import load_conf, require_files
from dataflow.pipeline.summary import print_table, read_json, stats_rows, type_funnel_rows
from dataflow.stages import table

STATE_DIR = ".pipeline"   # OUTPUT/.pipeline/<dir>.json: the chain key each finished stage was run with


def local_path(node: str) -> Path | None:
    """A configuration string that names an existing local file or folder (relative: to the current directory,
    then to the repository), else None. URIs and plain words are not paths."""
    if "://" in node or ("/" not in node and os.sep not in node):
        return None
    for p in (Path(node), REPO_ROOT / node):
        if p.exists():
            return p
    return None


def referenced_files(node) -> dict:
    """Content hashes of the local files and folders a section names (lexicons, models): editing a lexicon
    or retraining a model changes no YAML value, yet it must invalidate the stage like a threshold does."""
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for v in node.values():
            out.update(referenced_files(v))
    elif isinstance(node, list):
        for v in node:
            out.update(referenced_files(v))
    elif isinstance(node, str) and (p := local_path(node)) is not None:
        paths = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        h = hashlib.sha256()
        for q in paths:
            h.update(str(q.relative_to(p) if p.is_dir() else q.name).encode() + b"\0")
            with open(q, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        out[node] = h.hexdigest()[:16]
    return out


def input_state(inputs: list[str]) -> list:
    """What the chain's raw input holds now: every file it names with its size and modification time. The
    first stage's key covers it, so an input that grew, shrank or was rewritten is never skipped as done."""
    return [[i, [[e.uri, e.size, e.mtime_ns] for e in fs.entries(i)]] for i in sorted(inputs)]


def chain_stages(cfg: Mapping) -> list[Stage]:
    """The table's stages the configuration selects (`pipeline.stages`; null: all), in the table's order."""
    chosen = (cfg.get("pipeline") or {}).get("stages")
    return [s for s in table.stages() if chosen is None or s.name in chosen]


def plan(cfg: dict, inputs: list[str], output: str, only: list[str] | None = None, *,
         look: bool = True) -> list[dict]:
    """The chain as it would run: each stage's inputs, output, section hash, chain key and upstream outputs.
    `look=False` (printing lines for a cluster whose storage this machine may not reach) keys the chain on the
    input paths alone: its keys are then not the ones a run records."""
    first = input_state(inputs) if look else sorted(inputs)
    steps, upstream, prev, earlier = [], conf_hash(first), list(inputs), []
    for stage in chain_stages(cfg):
        out = fs.join(output, table.chain_dir(stage))
        section = cfg.get(stage.section) if stage.section else None
        sect_hash = conf_hash(section or {})
        # every stage reads the source types and recipes (DP types and processes, RF/CD/AS pick per type)
        key = conf_hash({"stage": stage.name, "config_hash": sect_hash, "upstream": upstream,
                         "files": referenced_files(section or {}),
                         "types": {k: cfg.get(k) for k in ("sources", "recipes")}})
        steps.append({"name": stage.name, "stage": stage, "dir": table.chain_dir(stage), "inputs": prev,
                      "output": out, "config_hash": sect_hash, "chain_key": key,
                      "upstream": list(earlier) if stage.uses_upstream else [],
                      "selected": only is None or stage.name in only})
        upstream, prev = key, [out]
        earlier.append(out)
    return steps


def state_uri(output: str, step: dict) -> str:
    return fs.join(output, STATE_DIR, f"{step['dir']}.json")


def is_current(step: dict, output: str) -> bool:
    ok = read_json(fs.join(step["output"], "_SUCCESS"))
    rec = read_json(state_uri(output, step))
    return bool(ok and rec and ok.get("config_hash") == step["config_hash"] and rec.get("chain_key") == step["chain_key"])


def holds_data(step: dict) -> bool:
    """Whether a finished stage's output holds its kept rows (a stage inside a fused group has none: they went
    on to the group's last stage)."""
    return fs.exists(fs.join(step["output"], "data"))


def first_to_run(steps: list[dict], output: str, force: bool = False) -> int:
    """The index of the first stage to (re)run: the first one not current, moved back over stages that kept no
    `data/` of their own (the group of a fused pass is rerun from its start); len(steps) when all are current."""
    k = 0 if force else next((i for i, s in enumerate(steps) if not is_current(s, output)), len(steps))
    while 0 < k < len(steps) and not holds_data(steps[k - 1]):
        k -= 1
    return k


def stage_command(step: dict, conf: str, overrides: list[str], pcfg: Mapping) -> list[str]:
    """A stage as its own process: `jobs/stage.py NAME` (any stage of the table, no job file of its own)."""
    tail = [step["name"], "--input", *step["inputs"], "--output", step["output"], "--conf", conf,
            *[x for o in overrides for x in ("--set", o)],
            *(["--upstream", *step["upstream"]] if step["upstream"] else [])]
    if pcfg.get("runner") == "spark-submit":
        launcher = launcher_path(pcfg["spark_submit"])
        return [launcher, str(REPO_ROOT / "jobs" / "stage.py"), *tail]
    return [sys.executable, "-m", "jobs.stage", *tail]


def launcher_path(name: str) -> str:
    """The launcher on PATH, else the one installed with pyspark next to this interpreter (a venv not activated)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def run_chain(conf: str, overrides: list[str], inputs: list[str], output: str, *, force: bool = False,
              only: list[str] | None = None, runner: str | None = None, spark=None, verbose: bool = False) -> int:
    """Run the chain; 0 when every selected stage is current. `runner` overrides `pipeline.runner`; `spark`
    is the session to use in `session` mode (default: one built from the configuration)."""
    cfg = load_conf(conf, overrides)
    pcfg = dict(cfg.get("pipeline") or {})
    runner = runner or pcfg.get("runner") or "session"
    pcfg["runner"] = runner
    # stages run with the repository as working directory: local paths go to them absolute
    inputs, output, conf = [fs.normalize(i) for i in inputs], fs.normalize(output), fs.normalize(conf)
    first = chain_stages(cfg)[:1]
    if first:   # the run's schemes, through both filesystem layers: before planning lists the input
        preflight.before_jvm(first[0], cfg, inputs, output)
    steps = plan(cfg, inputs, output, only)
    if runner == "session":
        for step in steps:   # model and lexicon files of every stage: before the JVM starts
            require_files(cfg, step["stage"].required_files)
    t_all = time.time()
    start = first_to_run(steps, output, force)
    for step in steps[:start]:
        print(f"[pipeline] {step['dir']}: done (config {step['config_hash']}), skipping", flush=True)
    for step in steps[start:]:
        if not step["selected"]:
            print(f"[pipeline] error: {step['dir']} is not current and not in --stages {only}", file=sys.stderr)
            return 2
    # everything after a (re)run stage reruns (its input changed); in this session consecutive per-document
    # stages run fused, one pass per group (pipeline.fuse)
    todo = steps[start:]
    cut = fused.groups([s["stage"] for s in todo], cfg, fuse=runner == "session" and bool(pcfg.get("fuse", True)))
    at = 0
    for group in cut:
        gsteps, at = todo[at:at + len(group)], at + len(group)
        after = todo[at]["stage"] if at < len(todo) else None   # a fused pass computes what it reads
        carry = after.carry(cfg) if after is not None and after.carry is not None and len(gsteps) > 1 else None
        rc = _run_steps(gsteps, cfg, conf, overrides, output, pcfg, runner, spark, verbose, carry)
        if isinstance(rc, int):
            return rc
        spark = rc
    print(f"[pipeline] {len(steps)} stage(s) current in {output} ({time.time() - t_all:.0f}s)", flush=True)
    dirs = [(s["dir"], s["output"]) for s in steps]
    print_table(stats_rows(dirs))
    by_type = type_funnel_rows(dirs)
    if len(by_type) > 1:
        print("\nby source type:")
        print_table(by_type)
    return 0


def _run_steps(gsteps: list[dict], cfg, conf: str, overrides, output: str, pcfg, runner: str, spark, verbose: bool,
               carry=None):
    """One group of the chain (a fused pass, or one stage): its outputs removed and rewritten, its state files
    written once every stage in it finished. Returns the session (in session mode) or an exit code on failure."""
    for step in gsteps:
        remove_output(step["output"])
        fs.delete(state_uri(output, step))
    t0 = time.time()
    if runner == "session":
        label = "+".join(s["dir"] for s in gsteps)
        print(f"[pipeline] {label}: running " + ("fused in this session (one pass)" if len(gsteps) > 1 else
                                                 "in this session"), flush=True)
        # the stages' driver checks before their work (the first one's before the JVM starts; the later stages'
        # inputs do not exist yet, their own checks run here)
        first = gsteps[0]
        check_inputs(first["stage"], cfg, first["inputs"], first["output"])
        for step in gsteps[1:]:
            if step["stage"].precheck is not None:
                step["stage"].precheck(cfg, step["inputs"], step["output"])
        spark = spark or get_session(cfg, app_name="ziya2-pipeline", verbose=verbose)
        preflight.after_jvm(first["stage"], spark, first["inputs"], first["output"])
        try:
            if len(gsteps) > 1:
                all_stats = run_fused([s["stage"] for s in gsteps], spark, cfg, first["inputs"],
                                      [s["output"] for s in gsteps], upstream=first["upstream"],
                                      progress=not verbose, carry=carry)
            else:
                all_stats = [run_stage(first["stage"], spark, cfg, first["inputs"], first["output"],
                                       upstream=first["upstream"], progress=not verbose)]
            for step, stats in zip(gsteps, all_stats):
                print_summary(stats, step["output"], stage=step["stage"])
        except Exception as e:   # noqa: BLE001 - reported like a failed subprocess; finished stages stay
            print(f"[pipeline] {label} failed: {type(e).__name__}: {e}; fix it and rerun: finished "
                  f"stages are kept", file=sys.stderr, flush=True)
            return 1
    else:
        step = gsteps[0]
        cmd = stage_command(step, conf, overrides, pcfg)
        print(f"[pipeline] {step['dir']}: running {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        rc = subprocess.call(cmd, cwd=str(REPO_ROOT))
        if rc != 0:
            print(f"[pipeline] {step['dir']} failed with exit code {rc}; fix it and rerun: finished stages are "
                  f"kept", file=sys.stderr, flush=True)
            return rc
    for step in gsteps:
        ok = read_json(fs.join(step["output"], "_SUCCESS"))
        if not ok or ok.get("config_hash") != step["config_hash"]:
            print(f"[pipeline] {step['dir']}: finished but its _SUCCESS is missing or carries config hash "
                  f"{(ok or {}).get('config_hash')} instead of {step['config_hash']}", file=sys.stderr, flush=True)
            return 3
    for step in gsteps:   # only now: a group is current once every stage in it finished
        fs.write_text(state_uri(output, step), json.dumps(
            {"stage": step["name"], "chain_key": step["chain_key"], "config_hash": step["config_hash"],
             "inputs": step["inputs"], "wall_s": round(time.time() - t0, 2),
             **({"fused": [s["name"] for s in gsteps]} if len(gsteps) > 1 else {})}, indent=2) + "\n")
    return spark
