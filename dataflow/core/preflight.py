"""Pre-flight: can both filesystem layers reach every input and output scheme, before any work or output?

A run touches its storage twice over: `dataflow.core.fs` (pyarrow) lists raw input, streams it in executors and
writes side files and markers; Spark's Hadoop layer reads and writes the Parquet `data/` and `rejected/`. Either
may lack the scheme on a given machine: without hadoop-aws on the classpath Spark has no `s3a` FileSystem, and
pyarrow's `hdfs://` needs libhdfs and a JVM. Found late, that costs a whole stage and leaves an `_attempt-*`
folder at the output (#26); found here, it costs one line:

    error: s3a://bucket/run: Spark has no FileSystem for s3a:// (...); add hadoop-aws 3.4.1 and ...; see README.md, "Object storage and HDFS"

`check_python` runs before the JVM starts (and before anything lists the input); so does `check_classpath`,
which looks for each scheme's FileSystem class in the jars the driver JVM will load (pyspark's `jars/`), so a
missing connector fails in a second or two, not after a JVM start of 5-15 s. Only when nobody added jars
(`spark.jars`, `spark.jars.packages`, extra class paths): those arrive as the JVM starts, and `check_jvm` then
asks Hadoop itself, right after the session starts, before the stage's attempt begins. All of them only look:
nothing is created at the output.
"""
from __future__ import annotations

import glob
import os
import zipfile
from typing import Iterable, Mapping

from dataflow.core import fs
from dataflow.core.contract import Stage, read_documents
from dataflow.core.spark import read_spark_defaults

RECIPE = 'README.md, "Object storage and HDFS"'

# what each scheme needs on Spark's side (jars on the driver's and executors' classpath) and on ours
CONNECTORS = {
    "s3a": "hadoop-aws {hadoop} and the aws-java-sdk-bundle it was built with (--packages "
           "org.apache.hadoop:hadoop-aws:{hadoop})",
    "gs": "the gcs-connector for Hadoop 3 (com.google.cloud.bigdataoss:gcs-connector:hadoop3-2.2.x, shaded)",
    "abfs": "hadoop-azure {hadoop} and azure-storage (--packages org.apache.hadoop:hadoop-azure:{hadoop})",
    "hdfs": "a Hadoop client configuration (HADOOP_CONF_DIR with core-site.xml and hdfs-site.xml); "
            "for the Python side libhdfs (ARROW_LIBHDFS_DIR or HADOOP_HOME/lib/native), JAVA_HOME with "
            "lib/server/libjvm.so and CLASSPATH=$(hadoop classpath --glob)",
}
CONNECTORS["abfss"] = CONNECTORS["abfs"]
CONNECTORS["viewfs"] = CONNECTORS["hdfs"]
# the class Hadoop's core-default.xml maps each scheme to (fs.<scheme>.impl)
FS_CLASSES = {
    "s3a": "org/apache/hadoop/fs/s3a/S3AFileSystem.class",
    "gs": "com/google/cloud/hadoop/fs/gcs/GoogleHadoopFileSystem.class",
    "abfs": "org/apache/hadoop/fs/azurebfs/AzureBlobFileSystem.class",
    "abfss": "org/apache/hadoop/fs/azurebfs/SecureAzureBlobFileSystem.class",
    "hdfs": "org/apache/hadoop/hdfs/DistributedFileSystem.class",
    "viewfs": "org/apache/hadoop/fs/viewfs/ViewFileSystem.class",
}
# settings that put more jars on the driver's classpath when the JVM starts: then only the JVM can tell
CLASSPATH_KEYS = ("spark.jars", "spark.jars.packages", "spark.driver.extraClassPath", "spark.executor.extraClassPath")


class PreflightError(ValueError):
    """A scheme one of the two filesystem layers cannot use here: one line, printed by `cli.main_guard`."""


def _first_line(e: object) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


def _remote(uris: Iterable[str]) -> dict[str, str]:
    """One URI per scheme (the Spark form: s3 -> s3a, gcs -> gs) among the non-local ones."""
    out: dict[str, str] = {}
    for u in uris:
        u = fs.spark_uri(str(u))
        if not fs.is_local(u):
            out.setdefault(fs.scheme(u), u)
    return out


def needs(scheme: str, hadoop: str = "<your Hadoop version>") -> str:
    return CONNECTORS.get(scheme, f"a Hadoop FileSystem for {scheme}://").format(hadoop=hadoop)


def check_python(uris: Iterable[str]) -> None:
    """Every remote URI through `dataflow.core.fs`: the filesystem is built and the URI answers a metadata
    query (a missing path is fine: outputs do not exist yet). libhdfs's 88-line `dlopen` report, a refused
    connection or bad credentials become one line that names the scheme and what it needs."""
    for sch, uri in _remote(uris).items():
        try:
            fs.info(uri)
        except Exception as e:  # noqa: BLE001 - any failure of the store's client is this one error
            raise PreflightError(f"{uri}: this machine cannot reach {sch}:// through pyarrow ({_first_line(e)}); "
                                 f"it needs {needs(sch)}; see {RECIPE}") from None


def spark_jars(spark_home: str | None = None) -> list[str]:
    """The jars a local driver JVM starts with: $SPARK_HOME/jars, else pyspark's own."""
    if spark_home is None:
        import pyspark

        spark_home = os.environ.get("SPARK_HOME") or os.path.dirname(pyspark.__file__)
    return sorted(glob.glob(os.path.join(spark_home, "jars", "*.jar")))


def _has_class(jars: list[str], member: str) -> bool:
    for j in jars:
        try:
            with zipfile.ZipFile(j) as z:
                z.getinfo(member)
                return True
        except (KeyError, OSError, zipfile.BadZipFile):
            continue
    return False


def check_classpath(uris: Iterable[str], settings: Mapping[str, str], jars: list[str] | None = None) -> None:
    """Before the JVM starts: each remote scheme's FileSystem class is in the jars the driver will load, unless
    `settings` (spark-defaults, --conf, the YAML's spark.conf) add jars or name the class (`spark.hadoop.fs.
    <scheme>.impl`), which only the started JVM can check (`check_jvm`)."""
    if any(settings.get(k) for k in CLASSPATH_KEYS):
        return
    remote = {sch: uri for sch, uri in _remote(uris).items()
              if sch in FS_CLASSES and not settings.get(f"spark.hadoop.fs.{sch}.impl")}
    if not remote:
        return
    jars = spark_jars() if jars is None else jars
    hadoop = next((os.path.basename(j)[len("hadoop-client-api-"):-4] for j in jars
                   if os.path.basename(j).startswith("hadoop-client-api-")), "<your Hadoop version>")
    for sch, uri in remote.items():
        if not _has_class(jars, FS_CLASSES[sch]):
            cls = FS_CLASSES[sch][:-len(".class")].replace("/", ".")
            raise PreflightError(f"{uri}: Spark has no Hadoop FileSystem for {sch}:// here ({cls} is in none of "
                                 f"the {len(jars)} jars of {os.path.dirname(jars[0]) if jars else 'the classpath'}); "
                                 f"add {needs(sch, hadoop)} to the Spark classpath; see {RECIPE}")


def check_jvm(spark, uris: Iterable[str]) -> None:
    """Every remote URI's scheme through Spark's Hadoop layer, as its Parquet reads and writes will resolve it
    (`FileSystem.getFileSystemClass(scheme, conf)`: the `fs.<scheme>.impl` setting or a service on the
    classpath). A class lookup, no I/O: the stage's own work reports a store that refuses the request."""
    jvm = spark._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for sch, uri in _remote(uris).items():
        try:
            jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(sch, conf)
        except Exception as e:  # noqa: BLE001 - py4j wraps UnsupportedFileSystemException / ClassNotFound
            hadoop = str(jvm.org.apache.hadoop.util.VersionInfo.getVersion())
            java = getattr(e, "java_exception", None)   # py4j: the Java exception, not "An error occurred..."
            reason = _first_line(java.toString() if java is not None else e).rsplit("Exception: ", 1)[-1]
            raise PreflightError(f"{uri}: Spark has no Hadoop FileSystem for {sch}:// here ({reason}); add "
                                 f"{needs(sch, hadoop)} to the Spark classpath; see {RECIPE}") from None


def spark_uris(stage: Stage, inputs: Iterable[str], output: str) -> list[str]:
    """What Spark's Hadoop layer opens: the output (Parquet data/ and rejected/) and, for a stage with the default
    reader, its Parquet inputs. DP's raw files are read by `dataflow.core.fs` alone."""
    return [output, *(inputs if stage.read is read_documents else ())]


def before_jvm(stage: Stage, conf: Mapping, inputs: Iterable[str], output: str) -> None:
    """The checks a run makes before anything lists its input or starts a JVM: every URI through pyarrow, and
    the Spark-side schemes against the jars the driver will load (not under spark-submit, whose JVM exists:
    `after_jvm` asks it directly)."""
    inputs = [str(i) for i in inputs]
    check_python([*inputs, output])
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        settings = {**{k: str(v) for k, v in ((conf.get("spark") or {}).get("conf") or {}).items()},
                    **read_spark_defaults()}
        check_classpath(spark_uris(stage, inputs, output), settings)


def after_jvm(stage: Stage, spark, inputs: Iterable[str], output: str) -> None:
    """Right after the session starts and before the stage's attempt: Hadoop resolves every Spark-side scheme."""
    check_jvm(spark, spark_uris(stage, [str(i) for i in inputs], output))
