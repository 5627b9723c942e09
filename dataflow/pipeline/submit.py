"""The chain as a shell script for a cluster (`jobs.pipeline --print-submit`, `make pipeline PRINT_SUBMIT=1`): one
`spark-submit jobs/stage.py NAME` per stage of the table, with the files and archives each one needs.

The script runs as printed, from any directory and in a fresh shell: it starts with `set -euo pipefail` (a
failing stage stops it), exports the SPARK_HOME of the Spark that printed it and calls that Spark's
`bin/spark-submit` by absolute path, and every local path in it (configuration, inputs, outputs, the zip, the
job file, archives) is absolute. YARN and Kubernetes lines carry the executors' Python from the configuration
(`pipeline.cluster.python`), never this machine's interpreter, and Kubernetes lines the container image and
upload path (`pipeline.cluster.conf`); a missing one is one error line naming the key. The driver JVM gets
conf/log4j2.properties on its command line (Spark's INFO lines stay off the console; `--verbose` keeps them).
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pyspark

from dataflow.core import fs
from dataflow.core.config import REPO_ROOT
from dataflow.core.spark import LOG4J2
from dataflow.pipeline.chain import local_path, plan
from dataflow.pipeline.conf import load_conf

# what a master's lines cannot do without: (configuration key, what it is), per master prefix
REQUIRED = {
    "yarn": (("python", "the executors' interpreter on the nodes, e.g. ./runtime/bin/python from "
                        "pipeline.cluster.archives (docs/pipeline.md)"),),
    "k8s://": (("python", "the executors' interpreter in the container image, e.g. /usr/bin/python3"),
               ("conf.spark.kubernetes.container.image", "the image the driver and executors run"),
               ("conf.spark.kubernetes.file.upload.path", "where spark-submit uploads local files (s3a://..., hdfs://...)")),
}


def spark_home() -> str:
    """The Spark this process would submit to: $SPARK_HOME, else the pyspark distribution of this interpreter."""
    return os.environ.get("SPARK_HOME") or str(Path(pyspark.__file__).resolve().parent)


def absolute(path: str | Path) -> str:
    """A local path as printed: absolute. A relative one names what exists under the current directory, else
    under the repository (where the YAML's relative paths point: dist/, build/models/)."""
    p = str(path)
    if not fs.is_local(p):
        return p
    if os.path.isabs(p) or os.path.exists(p):
        return os.path.abspath(p)
    found = local_path(p)
    return os.path.abspath(found if found is not None else REPO_ROOT / p)


def _archive(spec: str) -> str:
    """`path#alias` with the path made absolute."""
    path, sep, alias = spec.partition("#")
    return absolute(path) + sep + alias


def check_master(ccfg: dict) -> None:
    """The keys a YARN or Kubernetes master needs and the configuration leaves unset: one ValueError line."""
    for prefix, keys in REQUIRED.items():
        if not str(ccfg["master"]).startswith(prefix):
            continue
        for key, what in keys:
            node = ccfg
            for part in ([key] if not key.startswith("conf.") else ["conf", key[len("conf."):]]):
                node = (node or {}).get(part) if isinstance(node, dict) else None
            if not node:
                raise ValueError(f"--print-submit for master {ccfg['master']} needs pipeline.cluster.{key} "
                                 f"({what}); set it with --set pipeline.cluster.{key}=...")


def java_options(ccfg: dict, client: bool, verbose: bool) -> tuple[list[str], str | None]:
    """(files to ship, spark.driver.extraJavaOptions): the configured options plus the quiet log4j2 file, on the
    driver JVM's command line (set after the JVM started, it would miss Spark's start-up lines)."""
    opts = str((ccfg.get("conf") or {}).get("spark.driver.extraJavaOptions") or "")
    if verbose or not LOG4J2.exists():
        return [], opts or None
    if client:
        return [], " ".join(x for x in (opts, f"-Dlog4j2.configurationFile={LOG4J2.as_uri()}") if x)
    # cluster mode: the file goes with --files into the driver container's working directory
    return [str(LOG4J2)], " ".join(x for x in (opts, f"-Dlog4j2.configurationFile={LOG4J2.name}") if x)


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


def submit_lines(conf: str, overrides: list[str], inputs: list[str], output: str, verbose: bool = False) -> list[str]:
    """The chain as a shell script: `set -euo pipefail`, SPARK_HOME, `#` notes, then the commands (packing a
    model folder once, then one `spark-submit jobs/stage.py NAME` per stage of the table).

    Client mode (standalone clusters support no other for Python, and a stage that declares `driver_writes`
    always needs it): the driver runs here with the local interpreter, reads the configuration
    and models at their local paths and ships them to executors itself (`SparkFiles`). Cluster mode (YARN,
    Kubernetes): the configuration and every model file go with `--files`, model folders as zips with
    `--archives`, and `--set key=<name in the container>` points the job at them."""
    cfg = load_conf(conf, overrides)
    pcfg = cfg["pipeline"]
    ccfg = pcfg["cluster"]
    check_master(ccfg)
    conf = absolute(conf)
    py_files = absolute(ccfg["py_files"])
    archives = [_archive(a) for a in (ccfg.get("archives") or [])]
    python = ccfg.get("python") or sys.executable
    home = spark_home()
    launcher = str(Path(home) / "bin" / "spark-submit")
    lines = ["set -euo pipefail",
             f"export SPARK_HOME={shlex.quote(home)}",
             f"# every path below is absolute: run it from any directory; `make dist` builds {py_files}; "
             + (f"executors run {python} from {', '.join(archives)}" if archives else
                f"executors run {python}, which must exist on every node")]
    packed: set[str] = set()
    stage_sets = [o for o in overrides if not o.startswith("pipeline.")]  # the stage jobs never read `pipeline`
    for step in plan(cfg, [fs.normalize(i) for i in inputs], fs.normalize(output), look=False):
        stage = step["stage"]
        client = (ccfg["deploy_mode"] == "client" or stage.driver_writes
                  or step["name"] in (ccfg.get("client_stages") or []))
        files, arch, sets = [], list(archives), []
        conf_arg = conf
        if not client:
            files.append(conf)
            conf_arg = Path(conf).name
            mfiles, mdirs = shipped_models(cfg.get(stage.section) or {} if stage.section else {}, stage.section or "",
                                           ccfg)
            names: dict[str, str] = {}
            for key, p in mfiles:
                if names.setdefault(p.name, str(p)) != str(p):
                    raise ValueError(f"--files would ship two different files named {p.name} ({names[p.name]}, {p}); "
                                     f"rename one")
                if absolute(p) not in files:
                    files.append(absolute(p))
                sets.append(f"{key}={p.name}")
            for key, p in mdirs:
                alias = key.replace(".", "_")
                zipped = absolute(Path(ccfg["models_dist"]) / f"{alias}.zip")
                if zipped not in packed:  # the folder's contents at the zip's top level: `#alias` is the folder
                    lines.append(f"mkdir -p {shlex.quote(os.path.dirname(zipped))} && (cd {shlex.quote(absolute(p))} && "
                                 f"{ccfg['zip_python']} -m zipfile -c {shlex.quote(zipped)} .)")
                    packed.add(zipped)
                arch.append(f"{zipped}#{alias}")
                sets.append(f"{key}={alias}")
        log_files, driver_opts = java_options(ccfg, client, verbose)
        files += [f for f in log_files if f not in files]
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
            if k != "spark.driver.extraJavaOptions":
                cmd += ["--conf", f"{k}={v}"]
        if driver_opts:
            cmd += ["--conf", f"spark.driver.extraJavaOptions={driver_opts}"]
        cmd += [str(REPO_ROOT / "jobs" / "stage.py"), step["name"], "--input", *step["inputs"],
                "--output", step["output"], "--conf", conf_arg, *[x for o in stage_sets for x in ("--set", o)],
                *[x for s in sets for x in ("--set", s)],
                *(["--upstream", *step["upstream"]] if step["upstream"] else []),
                *(["--verbose"] if verbose else [])]
        lines.append(" ".join(shlex.quote(c) for c in cmd))
    return lines
