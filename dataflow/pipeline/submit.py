"""The chain as shell lines for a cluster (`jobs.pipeline --print-submit`, `make pipeline PRINT_SUBMIT=1`): one
`spark-submit jobs/stage.py NAME` per stage of the table, with the files and archives each one needs."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from dataflow.core import fs
from dataflow.core.config import REPO_ROOT
from dataflow.pipeline.chain import launcher_path, local_path, plan
from dataflow.pipeline.conf import load_conf


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
        if key.startswith(skip) or (p := local_path(value)) is None:
            continue
        if p.is_dir() and key in (ccfg.get("model_dirs") or []):
            dirs.append((key, p))
        elif p.is_file() and value.endswith(suffixes):
            files.append((key, p))
    return files, dirs


def submit_lines(conf: str, overrides: list[str], inputs: list[str], output: str) -> list[str]:
    """The chain as shell lines, to run in order from the repository root: `#` lines are notes, the others are
    commands (packing a model folder once, then one `spark-submit jobs/stage.py NAME` per stage of the table).

    Client mode (standalone clusters support no other for Python, and a stage that declares `driver_writes`
    always needs it): the driver runs here with the local interpreter, reads the configuration
    and models at their local paths and ships them to executors itself (`SparkFiles`). Cluster mode (YARN,
    Kubernetes): the configuration and every model file go with `--files`, model folders as zips with
    `--archives`, and `--set key=<name in the container>` points the job at them."""
    cfg = load_conf(conf, overrides)
    pcfg = cfg["pipeline"]
    ccfg = pcfg["cluster"]
    py_files = ccfg["py_files"]
    archives = [a for a in (ccfg.get("archives") or [])]
    python = ccfg.get("python") or sys.executable
    lines = [f"# run in {os.getcwd()} (relative paths below are relative to it); `make dist` builds {py_files}; "
             + (f"executors run {python} from {', '.join(archives)}" if archives else
                f"executors run {python}, which must exist on every node")]
    packed: set[str] = set()
    launcher = launcher_path(pcfg["spark_submit"])
    stage_sets = [o for o in overrides if not o.startswith("pipeline.")]  # the stage jobs never read `pipeline`
    for step in plan(cfg, [fs.normalize(i) for i in inputs], fs.normalize(output), look=False):
        stage = step["stage"]
        client = (ccfg["deploy_mode"] == "client" or stage.driver_writes
                  or step["name"] in (ccfg.get("client_stages") or []))
        files, arch, sets = [], list(archives), []
        conf_arg = _shown(conf)
        if not client:
            files.append(_shown(conf))
            conf_arg = Path(conf).name
            mfiles, mdirs = shipped_models(cfg.get(stage.section) or {} if stage.section else {}, stage.section or "",
                                           ccfg)
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
        cmd += [_shown(REPO_ROOT / "jobs" / "stage.py"), step["name"], "--input", *step["inputs"],
                "--output", step["output"], "--conf", conf_arg, *[x for o in stage_sets for x in ("--set", o)],
                *[x for s in sets for x in ("--set", s)],
                *(["--upstream", *step["upstream"]] if step["upstream"] else [])]
        lines.append(" ".join(shlex.quote(c) for c in cmd))
    return lines
