"""The whole data factory: DP -> AS -> RF -> CD -> DE, each stage a subprocess writing OUTPUT/<nn>-<stage>/.

  python -m jobs.pipeline --input build/corpus/out/fixture --output build/runs/pipeline [--force]
  python -m jobs.pipeline --input s3a://bucket/crawl --output s3a://bucket/run --print-submit

Resume: a stage whose output has `_SUCCESS` with the current configuration hash of its section, fed by the
same upstream chain, is skipped; so a killed run picks up at the stage it was in (that stage's partial output
is removed and redone). A changed threshold changes its section's hash, which reruns that stage and every
stage after it. `--force` reruns everything. Stages whose job module does not exist yet are skipped with a
note, and the next stage reads the previous available output.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


from dataflow.config import DEFAULT_CONF, REPO_ROOT, conf_hash, load_conf, section
from dataflow.stage import remove_output

STATE_DIR = ".pipeline"   # OUTPUT/.pipeline/<dir>.json: the chain key each finished stage was run with


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jobs.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", "-i", nargs="+", required=True, metavar="IN",
                    help="raw input for the first stage (corpus directory, WARC/WET, JSONL, Parquet)")
    ap.add_argument("--output", "-o", required=True, metavar="OUT", help="run directory; stage i writes OUT/<nn>-<stage>/")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), metavar="YAML", help="pipeline configuration")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="configuration override passed to every stage (repeatable); it counts in the stage's hash")
    ap.add_argument("--force", action="store_true", help="rerun every stage even if its _SUCCESS is current")
    ap.add_argument("--stages", nargs="+", metavar="NAME",
                    help="run only these stages of pipeline.stages (the others must be done or absent)")
    ap.add_argument("--print-submit", action="store_true",
                    help="print the chain's spark-submit lines for a cluster (pipeline.cluster) instead of running")
    return ap


def job_exists(name: str) -> bool:
    return (REPO_ROOT / "jobs" / f"{name}.py").exists()


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
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
    elif isinstance(node, str) and "/" in node and "://" not in node:
        p = Path(node)
        paths = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p] if p.is_file() else []
        if paths:
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
        out = output.rstrip("/") + "/" + st["dir"]  # string join: Path() would fold s3a:// to s3a:/
        sect_hash = conf_hash(cfg.get(name) or {})
        key = conf_hash({"stage": name, "config_hash": sect_hash, "upstream": upstream,
                         "files": referenced_files(cfg.get(name) or {})})
        extra = ["--stages", *earlier] if name == "evaluate" else []
        steps.append({"name": name, "dir": st["dir"], "missing": False, "inputs": prev, "output": out,
                      "config_hash": sect_hash, "chain_key": key, "extra_args": extra,
                      "selected": only is None or name in only})
        upstream, prev = key, [out]
        earlier.append(out)
    return steps


def is_current(step: dict, output: str) -> bool:
    ok = read_json(Path(step["output"]) / "_SUCCESS")
    rec = read_json(Path(output) / STATE_DIR / f"{step['dir']}.json")
    return bool(ok and rec and ok.get("config_hash") == step["config_hash"] and rec.get("chain_key") == step["chain_key"])


def stage_command(step: dict, args, pcfg: dict) -> list[str]:
    tail = ["--input", *step["inputs"], "--output", step["output"], "--conf", args.conf,
            *[x for o in args.overrides for x in ("--set", o)], *step["extra_args"]]
    if pcfg.get("runner", "python") == "spark-submit":
        launcher = shutil.which(pcfg["spark_submit"]) or str(Path(sys.executable).parent / "spark-submit")
        return [launcher, str(REPO_ROOT / "jobs" / f"{step['name']}.py"), *tail]
    return [sys.executable, "-m", f"jobs.{step['name']}", *tail]


def run_chain(args) -> int:
    cfg = load_conf(args.conf, args.overrides)
    pcfg = section(cfg, "pipeline")
    steps = plan(cfg, args.input, args.output, args.stages)
    state = Path(args.output) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    invalid = bool(args.force)
    t_all = time.time()
    n_run = sum(1 for s in steps if not s["missing"])
    for step in steps:
        if step["missing"]:
            print(f"[pipeline] {step['dir']}: skipped, jobs/{step['name']}.py does not exist", flush=True)
            continue
        if not invalid and is_current(step, args.output):
            print(f"[pipeline] {step['dir']}: done (config {step['config_hash']}), skipping", flush=True)
            continue
        if not step["selected"]:
            print(f"[pipeline] error: {step['dir']} is not current and not in --stages {args.stages}", file=sys.stderr)
            return 2
        invalid = True  # everything after a (re)run stage reruns: its input changed
        remove_output(step["output"])
        (state / f"{step['dir']}.json").unlink(missing_ok=True)
        cmd = stage_command(step, args, pcfg)
        print(f"[pipeline] {step['dir']}: running {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=str(REPO_ROOT))
        if rc != 0:
            print(f"[pipeline] {step['dir']} failed with exit code {rc}; fix it and rerun: finished stages are kept",
                  file=sys.stderr, flush=True)
            return rc
        ok = read_json(Path(step["output"]) / "_SUCCESS")
        if not ok or ok.get("config_hash") != step["config_hash"]:
            print(f"[pipeline] {step['dir']}: exited 0 but its _SUCCESS is missing or carries config hash "
                  f"{(ok or {}).get('config_hash')} instead of {step['config_hash']} (does the job pass its own "
                  f"section to write_stage?)", file=sys.stderr, flush=True)
            return 3
        (state / f"{step['dir']}.json").write_text(json.dumps(
            {"stage": step["name"], "chain_key": step["chain_key"], "config_hash": step["config_hash"],
             "inputs": step["inputs"], "wall_s": round(time.time() - t0, 2)}, indent=2) + "\n")
    print(f"[pipeline] {n_run} stage(s) current in {args.output} ({time.time() - t_all:.0f}s)", flush=True)
    print_table(steps)
    return 0


def print_table(steps: list[dict]) -> None:
    """in / kept / top rejection reasons / docs/s for each finished stage, from its stats.json."""
    rows = [("stage", "in", "kept", "top rejection reasons", "docs/s")]
    for s in steps:
        if s["missing"]:
            continue
        st = read_json(Path(s["output"]) / "stats.json") or {}
        top = sorted((st.get("rejected") or {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append((s["dir"], str(st.get("input", "-")), str(st.get("kept", "-")),
                     ", ".join(f"{r}={n}" for r, n in top) or "-", str(st.get("docs_per_s", "-"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def model_paths(node, prefix: str, suffixes: tuple[str, ...]):
    """(dotted key, path) for each configuration value that names a model/lexicon file or directory."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from model_paths(v, f"{prefix}.{k}", suffixes)
    elif isinstance(node, str) and ("/" in node or node.endswith(suffixes)):
        p = REPO_ROOT / node if not os.path.isabs(node) else Path(node)
        if p.is_file() and node.endswith(suffixes):
            yield prefix, node, "file"
        elif p.is_dir() and node.startswith(("build/models", "conf/")):
            yield prefix, node, "dir"


def submit_lines(args) -> list[str]:
    """spark-submit lines for a cluster: packed venv via --archives, the code wheel via --py-files, models and
    the configuration via --files (referenced by their base name in the container's working directory)."""
    cfg = load_conf(args.conf, args.overrides)
    pcfg = section(cfg, "pipeline")
    ccfg = pcfg["cluster"]
    suffixes = tuple(ccfg["model_suffixes"])
    lines = ["# build the shipped artefacts first: `make dist` (the wheel) and `venv-pack -o dist/venv.tar.gz`"]
    conf_name = Path(args.conf).name
    for step in plan(cfg, args.input, args.output):
        if step["missing"]:
            lines.append(f"# {step['dir']}: jobs/{step['name']}.py does not exist in this checkout")
            continue
        conf_rel = os.path.relpath(args.conf, REPO_ROOT) if Path(args.conf).resolve().is_relative_to(REPO_ROOT) else args.conf
        files, archives, sets = [conf_rel], [ccfg["archives"]], []
        for key, path, kind in model_paths(cfg.get(step["name"]) or {}, step["name"], suffixes):
            if kind == "file":
                if path not in files:
                    files.append(path)
                sets.append(f"{key}={Path(path).name}")
            else:
                name = Path(path).name
                lines.append(f"# {step['name']}: pack {path} once: (cd {Path(path).parent} && zip -qr "
                             f"{os.path.relpath('dist', Path(path).parent)}/{name}.zip {name})")
                if f"dist/{name}.zip#{name}" not in archives:
                    archives.append(f"dist/{name}.zip#{name}")
                sets.append(f"{key}={name}")
        cmd = [pcfg["spark_submit"], "--master", ccfg["master"], "--deploy-mode", ccfg["deploy_mode"],
               "--name", f"ziya2-{step['name']}",
               "--archives", ",".join(archives), "--py-files", ccfg["py_files"], "--files", ",".join(files),
               "--conf", f"spark.pyspark.python={ccfg['python']}",
               "--conf", f"spark.pyspark.driver.python={ccfg['python']}",
               f"jobs/{step['name']}.py", "--input", *step["inputs"], "--output", step["output"],
               "--conf", conf_name, *[x for o in args.overrides for x in ("--set", o)],
               *[x for s in sets for x in ("--set", s)], *step["extra_args"]]
        lines.append(" ".join(shlex.quote(c) for c in cmd))
    return lines


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.print_submit:
        print("\n".join(submit_lines(args)))
        return 0
    return run_chain(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
