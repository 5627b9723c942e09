"""The data factory as a chain (`make pipeline`): plan the stages, resume finished ones, run the rest as
subprocesses, and print the `spark-submit` lines that run the same chain on a cluster.

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

from dataflow.core import fs
from dataflow.core.config import REPO_ROOT, conf_hash, load_conf, section

STATE_DIR = ".pipeline"   # OUTPUT/.pipeline/<dir>.json: the chain key each finished stage was run with


def job_exists(name: str) -> bool:
    return (REPO_ROOT / "jobs" / f"{name}.py").exists()


def read_json(uri: str) -> dict | None:
    try:
        return json.loads(fs.read_text(uri))
    except (OSError, ValueError):
        return None


def _local(node: str) -> Path | None:
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
    elif isinstance(node, str) and (p := _local(node)) is not None:
        paths = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        h = hashlib.sha256()
        for q in paths:
            h.update(str(q.relative_to(p) if p.is_dir() else q.name).encode() + b"\0")
            with open(q, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        out[node] = h.hexdigest()[:16]
    return out


def plan(cfg: dict, inputs: list[str], output: str, only: list[str] | None = None) -> list[dict]:
    """The chain as it would run: each stage's inputs, output, section hash and chain key."""
    pcfg = section(cfg, "pipeline")
    steps, upstream, prev, earlier = [], conf_hash(sorted(inputs)), list(inputs), []
    for st in pcfg["stages"]:
        name = st["name"]
        if not job_exists(name):
            steps.append({"name": name, "dir": st["dir"], "missing": True})
            continue
        out = fs.join(output, st["dir"])
        sect_hash = conf_hash(cfg.get(name) or {})
        # every stage reads the source types and recipes (DP types and processes, RF/CD/AS pick per type)
        key = conf_hash({"stage": name, "config_hash": sect_hash, "upstream": upstream,
                         "files": referenced_files(cfg.get(name) or {}),
                         "types": {k: cfg.get(k) for k in ("sources", "recipes")}})
        extra = ["--stages", *earlier] if name == "evaluate" else []
        steps.append({"name": name, "dir": st["dir"], "missing": False, "inputs": prev, "output": out,
                      "config_hash": sect_hash, "chain_key": key, "extra_args": extra,
                      "selected": only is None or name in only})
        upstream, prev = key, [out]
        earlier.append(out)
    return steps


def state_uri(output: str, step: dict) -> str:
    return fs.join(output, STATE_DIR, f"{step['dir']}.json")


def is_current(step: dict, output: str) -> bool:
    ok = read_json(fs.join(step["output"], "_SUCCESS"))
    rec = read_json(state_uri(output, step))
    return bool(ok and rec and ok.get("config_hash") == step["config_hash"] and rec.get("chain_key") == step["chain_key"])


def stage_command(step: dict, conf: str, overrides: list[str], pcfg: dict) -> list[str]:
    tail = ["--input", *step["inputs"], "--output", step["output"], "--conf", conf,
            *[x for o in overrides for x in ("--set", o)], *step["extra_args"]]
    if pcfg.get("runner", "python") == "spark-submit":
        launcher = shutil.which(pcfg["spark_submit"]) or str(Path(sys.executable).parent / "spark-submit")
        return [launcher, str(REPO_ROOT / "jobs" / f"{step['name']}.py"), *tail]
    return [sys.executable, "-m", f"jobs.{step['name']}", *tail]


def run_chain(conf: str, overrides: list[str], inputs: list[str], output: str, *, force: bool = False,
              only: list[str] | None = None) -> int:
    from dataflow.core.stage import remove_output

    cfg = load_conf(conf, overrides)
    pcfg = section(cfg, "pipeline")
    # stages run with the repository as working directory: local paths go to them absolute
    inputs, output, conf = [fs.normalize(i) for i in inputs], fs.normalize(output), fs.normalize(conf)
    steps = plan(cfg, inputs, output, only)
    invalid = bool(force)
    t_all = time.time()
    n_run = sum(1 for s in steps if not s["missing"])
    for step in steps:
        if step["missing"]:
            print(f"[pipeline] {step['dir']}: skipped, jobs/{step['name']}.py does not exist", flush=True)
            continue
        if not invalid and is_current(step, output):
            print(f"[pipeline] {step['dir']}: done (config {step['config_hash']}), skipping", flush=True)
            continue
        if not step["selected"]:
            print(f"[pipeline] error: {step['dir']} is not current and not in --stages {only}", file=sys.stderr)
            return 2
        invalid = True  # everything after a (re)run stage reruns: its input changed
        remove_output(step["output"])
        fs.delete(state_uri(output, step))
        cmd = stage_command(step, conf, overrides, pcfg)
        print(f"[pipeline] {step['dir']}: running {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=str(REPO_ROOT))
        if rc != 0:
            print(f"[pipeline] {step['dir']} failed with exit code {rc}; fix it and rerun: finished stages are kept",
                  file=sys.stderr, flush=True)
            return rc
        ok = read_json(fs.join(step["output"], "_SUCCESS"))
        if not ok or ok.get("config_hash") != step["config_hash"]:
            print(f"[pipeline] {step['dir']}: exited 0 but its _SUCCESS is missing or carries config hash "
                  f"{(ok or {}).get('config_hash')} instead of {step['config_hash']} (does the job pass its own "
                  f"section to write_stage?)", file=sys.stderr, flush=True)
            return 3
        fs.write_text(state_uri(output, step), json.dumps(
            {"stage": step["name"], "chain_key": step["chain_key"], "config_hash": step["config_hash"],
             "inputs": step["inputs"], "wall_s": round(time.time() - t0, 2)}, indent=2) + "\n")
    print(f"[pipeline] {n_run} stage(s) current in {output} ({time.time() - t_all:.0f}s)", flush=True)
    dirs = [(s["dir"], s["output"]) for s in steps if not s["missing"]]
    print_table(stats_rows(dirs))
    by_type = type_funnel_rows(dirs)
    if len(by_type) > 1:
        print("\nby source type:")
        print_table(by_type)
    return 0


def stats_rows(dirs: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """in / kept / top rejection reasons / docs/s for each finished stage directory, from its stats.json."""
    rows = [("stage", "in", "kept", "top rejection reasons", "docs/s")]
    for name, d in dirs:
        st = read_json(fs.join(str(d), "stats.json"))
        if st is None:
            continue
        top = sorted((st.get("rejected") or {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append((name, str(st.get("input", "-")), str(st.get("kept", "-")),
                     ", ".join(f"{r}={n}" for r, n in top) or "-", str(st.get("docs_per_s", "-"))))
    return rows


def type_funnel_rows(dirs: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """The funnel per source type: for each type, each finished stage's in / kept / top rejection reasons,
    from stats.json `by_type` (stages whose records carry no type are left out)."""
    rows = [("type", "stage", "in", "kept", "top rejection reasons")]
    per_type: dict[str, list[tuple[str, ...]]] = {}
    for name, d in dirs:
        st = read_json(fs.join(str(d), "stats.json"))
        for t, c in sorted(((st or {}).get("by_type") or {}).items()):
            top = sorted((c.get("rejected_by_reason") or {}).items(), key=lambda kv: -kv[1])[:3]
            per_type.setdefault(t, []).append((t, name, str(c.get("input", "-")), str(c.get("kept", "-")),
                                               ", ".join(f"{r}={n}" for r, n in top) or "-"))
    for t in sorted(per_type):
        rows.extend(per_type[t])
    return rows


def print_table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


# ---------------------------------------------------------------- spark-submit lines for a cluster
def _shown(path: str | Path) -> str:
    """A local path as printed: relative when it lies under the current directory, else absolute."""
    p = os.path.abspath(str(path))
    rel = os.path.relpath(p)
    return p if rel.startswith("..") else rel


def _walk_values(node, prefix: str):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_values(v, f"{prefix}.{k}")
    elif isinstance(node, str):
        yield prefix, node


def shipped_models(scfg: dict, stage: str, ccfg: dict) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(files, folders) a stage's section names that a cluster-mode driver must receive: files whose name ends
    in one of `cluster.model_suffixes`, folders named by a key in `cluster.model_dirs`. Absolute paths
    (CCNet's models under /data) count as much as relative ones; keys under `cluster.skip_keys` (training
    inputs the stage job never reads) do not."""
    suffixes = tuple(ccfg["model_suffixes"])
    skip = tuple(ccfg.get("skip_keys") or ())
    files, dirs = [], []
    for key, value in _walk_values(scfg, stage):
        if key.startswith(skip) or (p := _local(value)) is None:
            continue
        if p.is_dir() and key in (ccfg.get("model_dirs") or []):
            dirs.append((key, p))
        elif p.is_file() and value.endswith(suffixes):
            files.append((key, p))
    return files, dirs


def submit_lines(conf: str, overrides: list[str], inputs: list[str], output: str) -> list[str]:
    """The chain as shell lines, to run in order from the repository root: `#` lines are notes, the others are
    commands (packing a model folder once, then one `spark-submit` per stage).

    Client mode (standalone clusters support no other for Python, and DE always needs it: it writes its review
    sheet and report from the driver): the driver runs here with the local interpreter, reads the configuration
    and models at their local paths and ships them to executors itself (`SparkFiles`). Cluster mode (YARN,
    Kubernetes): the configuration and every model file go with `--files`, model folders as zips with
    `--archives`, and `--set key=<name in the container>` points the job at them."""
    cfg = load_conf(conf, overrides)
    pcfg = section(cfg, "pipeline")
    ccfg = pcfg["cluster"]
    py_files = ccfg["py_files"]
    archives = [a for a in (ccfg.get("archives") or [])]
    python = ccfg.get("python") or sys.executable
    lines = [f"# run in {os.getcwd()} (relative paths below are relative to it); `make dist` builds {py_files}; "
             + (f"executors run {python} from {', '.join(archives)}" if archives else
                f"executors run {python}, which must exist on every node")]
    packed: set[str] = set()
    # the launcher on PATH, else the one installed with pyspark next to this interpreter (a venv not activated)
    launcher = shutil.which(pcfg["spark_submit"]) or next(
        (str(p) for p in [Path(sys.executable).parent / pcfg["spark_submit"]] if p.exists()), pcfg["spark_submit"])
    stage_sets = [o for o in overrides if not o.startswith("pipeline.")]  # the stage jobs never read `pipeline`
    for step in plan(cfg, [fs.normalize(i) for i in inputs], fs.normalize(output)):
        if step["missing"]:
            lines.append(f"# {step['dir']}: jobs/{step['name']}.py does not exist in this checkout")
            continue
        client = ccfg["deploy_mode"] == "client" or step["name"] in (ccfg.get("client_stages") or [])
        files, arch, sets = [], list(archives), []
        conf_arg = _shown(conf)
        if not client:
            files.append(_shown(conf))
            conf_arg = Path(conf).name
            mfiles, mdirs = shipped_models(cfg.get(step["name"]) or {}, step["name"], ccfg)
            names: dict[str, str] = {}
            for key, p in mfiles:
                if names.setdefault(p.name, str(p)) != str(p):
                    raise ValueError(f"--files would ship two different files named {p.name} ({names[p.name]}, {p}); "
                                     f"rename one")
                if _shown(p) not in files:
                    files.append(_shown(p))
                sets.append(f"{key}={p.name}")
            for key, p in mdirs:
                alias = key.replace(".", "_")
                zipped = _shown(Path(ccfg["models_dist"]) / f"{alias}.zip")
                if zipped not in packed:  # the folder's contents at the zip's top level: `#alias` is the folder
                    lines.append(f"mkdir -p {shlex.quote(os.path.dirname(zipped))} && (cd {shlex.quote(_shown(p))} && "
                                 f"{ccfg['zip_python']} -m zipfile -c {shlex.quote(os.path.abspath(zipped))} .)")
                    packed.add(zipped)
                arch.append(f"{zipped}#{alias}")
                sets.append(f"{key}={alias}")
        driver_python = ccfg.get("driver_python") or sys.executable
        cmd = [launcher, "--master", ccfg["master"], "--deploy-mode", "client" if client else "cluster",
               "--name", f"ziya2-{step['name']}", "--py-files", py_files]
        if arch:
            cmd += ["--archives", ",".join(arch)]
        if files:
            cmd += ["--files", ",".join(files)]
        cmd += ["--conf", f"spark.pyspark.python={python}",
                "--conf", f"spark.pyspark.driver.python={driver_python if client else python}"]
        for k, v in (ccfg.get("conf") or {}).items():
            cmd += ["--conf", f"{k}={v}"]
        cmd += [_shown(REPO_ROOT / "jobs" / f"{step['name']}.py"), "--input", *step["inputs"],
                "--output", step["output"], "--conf", conf_arg, *[x for o in stage_sets for x in ("--set", o)],
                *[x for s in sets for x in ("--set", s)], *step["extra_args"]]
        lines.append(" ".join(shlex.quote(c) for c in cmd))
    return lines
