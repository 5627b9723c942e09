"""The one place a SparkSession is built, plus the helpers that move model files to executors.

Local runs use the interpreter that runs the driver (the project venv) for Python workers and bind to
127.0.0.1. On a cluster, `spark-submit --master ...` decides the master and this module only adds the
conf keys that are not already set.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

_DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.ui.showConsoleProgress": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.python.worker.reuse": "true",
}


def _local_env() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # workers import dataflow/ from the repository when it is not installed as a wheel
    root = str(Path(__file__).resolve().parent.parent)
    pp = os.environ.get("PYTHONPATH", "")
    if root not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = root + (os.pathsep + pp if pp else "")


def get_session(cfg: Mapping[str, Any] | None = None, app_name: str = "ziya2-dataflow"):
    """Build (or return the active) SparkSession from the `spark` section of the configuration."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    scfg = dict((cfg or {}).get("spark", {}) or {})
    master = os.environ.get("SPARK_MASTER") or scfg.get("master") or "local[*]"
    # under spark-submit the JVM already exists (PYSPARK_GATEWAY_PORT) and --master decides
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ and not os.environ.get("SPARK_MASTER")
    if not submitted and master.startswith("local"):
        _local_env()
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        builder = builder.master(master)
    conf = dict(_DEFAULTS)
    conf.update({k: str(v) for k, v in (scfg.get("conf") or {}).items()})
    for key in ("driver_memory",):
        if scfg.get(key):
            conf["spark.driver.memory"] = str(scfg[key])
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(scfg.get("log_level", "WARN"))
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
