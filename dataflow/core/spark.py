"""The one place a SparkSession is built, plus the helpers that move model files to executors.

Local runs use the interpreter that runs the driver (the project venv) for Python workers and bind to
127.0.0.1. On a cluster, `spark-submit --master ...` decides the master.

Precedence (DESIGN §6, #13.4): `spark-submit --conf`, `PYSPARK_SUBMIT_ARGS --conf` and `spark-defaults.conf`
win; the YAML's `spark` section and this module's settings are defaults, set only for keys nobody set.

Console (#12.7): unless `verbose`, Spark logs only errors (conf/log4j2.properties), its progress bars are
off, and `dataflow.core.progress` prints one line per stage instead.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping
from dataflow.core.confschema import Map, Scalar, Str, optional_section

_DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.adaptive.enabled": "true",
    "spark.python.worker.reuse": "true",
}
LOG4J2 = Path(__file__).resolve().parents[2] / "conf" / "log4j2.properties"
_JAVA_OPTS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def read_spark_defaults(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keys of `spark-defaults.conf` ($SPARK_CONF_DIR, else $SPARK_HOME/conf) and of `--conf k=v` in
    PYSPARK_SUBMIT_ARGS: what spark-submit will apply when it launches the driver JVM for a plain `python -m`."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    conf_dir = env.get("SPARK_CONF_DIR") or (os.path.join(env["SPARK_HOME"], "conf") if env.get("SPARK_HOME") else None)
    if conf_dir and os.path.isfile(os.path.join(conf_dir, "spark-defaults.conf")):
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as f:
            for raw in f:
                raw = raw.strip()
                m = re.match(r"([^\s=:]+)\s*[=:\s]\s*(.*)$", raw)   # java.util.Properties: '=', ':' or blanks
                if m and not raw.startswith(("#", "!")):
                    out[m.group(1)] = m.group(2).strip()
    args = shlex.split(env.get("PYSPARK_SUBMIT_ARGS", ""))
    for i, a in enumerate(args):
        if a in ("--conf", "-c") and i + 1 < len(args) and "=" in args[i + 1]:
            k, v = args[i + 1].split("=", 1)
            out[k] = v
        elif a == "--driver-memory" and i + 1 < len(args):
            out["spark.driver.memory"] = args[i + 1]
    return out


def session_settings(cfg: Mapping[str, Any] | None, existing: Mapping[str, str], verbose: bool = False,
                     local: bool = False) -> dict:
    """The Spark settings to apply: this module's and the YAML's defaults, minus every key `existing`
    (spark-submit --conf, spark-defaults.conf) already sets. Pure, so the precedence is testable.
    `local`: the master is local[...], where the driver JVM also runs the executors: `spark.local_java_options`
    go on its command line and the web UI is off (`spark.conf` can switch it back on)."""
    scfg = dict((cfg or {}).get("spark", {}) or {})
    conf = dict(_DEFAULTS)
    if local:
        conf["spark.ui.enabled"] = "false"
    if scfg.get("driver_memory"):
        conf["spark.driver.memory"] = str(scfg["driver_memory"])
    conf.update({k: _str(v) for k, v in (scfg.get("conf") or {}).items()})
    conf["spark.ui.showConsoleProgress"] = "true" if verbose else "false"
    if not verbose and LOG4J2.exists():
        for key in _JAVA_OPTS:
            conf[key] = f"-Dlog4j2.configurationFile={LOG4J2.as_uri()}"
    if local and scfg.get("local_java_options"):
        key = "spark.driver.extraJavaOptions"
        conf[key] = " ".join(x for x in (conf.get(key), str(scfg["local_java_options"])) if x)
    return {k: v for k, v in conf.items() if k not in existing}


def _str(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _local_env() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # workers import dataflow/ from the repository when it is not installed as a wheel
    root = str(Path(__file__).resolve().parents[2])
    pp = os.environ.get("PYTHONPATH", "")
    if root not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = root + (os.pathsep + pp if pp else "")


def existing_settings() -> dict[str, str]:
    """Spark settings somebody else already made: under spark-submit the JVM's (its --conf and
    spark-defaults.conf), else what spark-submit will read when pyspark launches it."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        from pyspark import SparkConf, SparkContext

        SparkContext._ensure_initialized()
        return dict(SparkConf().getAll())
    return read_spark_defaults()


def get_session(cfg: Mapping[str, Any] | None = None, app_name: str = "ziya2-dataflow", verbose: bool = False):
    """Build (or return the active) SparkSession from the `spark` section of the configuration."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    scfg = dict((cfg or {}).get("spark", {}) or {})
    existing = existing_settings()
    master = os.environ.get("SPARK_MASTER") or existing.get("spark.master") or scfg.get("master") or "local[*]"
    # under spark-submit the JVM already exists (PYSPARK_GATEWAY_PORT) and --master decides
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ and not os.environ.get("SPARK_MASTER")
    if not submitted and master.startswith("local"):
        _local_env()
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        builder = builder.master(master)
    for k, v in session_settings(cfg, existing, verbose, local=not submitted and master.startswith("local")).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel((scfg.get("log_level") or "WARN") if verbose else "ERROR")
    return spark


def default_parallelism(spark) -> int:
    return max(1, int(spark.sparkContext.defaultParallelism))


def ship_file(spark, path: str | os.PathLike) -> str:
    """Send a model file to every executor (SparkFiles) and return the name workers resolve it by.
    Local files are also readable directly, so `resolve_file` falls back to the original path."""
    path = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        spark.sparkContext.addFile(path)
    except Exception as e:  # adding the same path twice is fine; a real failure is not
        if "already registered" not in str(e) and "has already been added" not in str(e):
            raise
    return path


def resolve_file(path: str) -> str:
    """On a worker: the local copy of a file shipped with `ship_file`/`--files`, else the path itself."""
    if Path(path).exists():
        return path
    try:
        from pyspark import SparkFiles

        local = SparkFiles.get(Path(path).name)
        if Path(local).exists():
            return local
    except Exception:
        pass
    raise FileNotFoundError(f"model file {path} is neither local nor shipped with --files/SparkFiles")


_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def load_once(kind: str, path: str, loader: Callable[[str], Any]) -> Any:
    """Module-level cache: each Python worker loads a given model file once, whatever the batch count."""
    key = (kind, path)
    obj = _CACHE.get(key)
    if obj is None:
        with _LOCK:
            obj = _CACHE.get(key)
            if obj is None:
                obj = loader(resolve_file(path))
                _CACHE[key] = obj
    return obj


# the `spark` section of conf/pipeline.yaml (YAML values are defaults: spark-submit --conf and spark-defaults win)
SPEC = optional_section({
    "master": Str(non_empty=True),
    "driver_memory": Str(non_empty=True, nullable=True),
    "log_level": Str(["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE"], nullable=True),
    "conf": Map(Scalar, nullable=True),      # Spark keys with dots: --set spark.conf.spark.sql.x=1 sets one key
    "local_java_options": Str(nullable=True),
})
