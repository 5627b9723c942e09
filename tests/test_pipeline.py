"""`make pipeline`: a run killed mid-stage and resumed gives byte-identical data to an uninterrupted run; finished
stages are skipped; a changed section hash invalidates that stage and the ones after it; the DE report's funnel
is the stages' own stats.json; --print-submit gives the cluster lines.

The chain runs on a few hundred real fixture documents through two stages of the table that are cheap here:
DP (ingest JSONL, language ID) and DE. Run A takes the subprocess path (every stage a real `python -m jobs.stage
NAME`), run B the default: every stage in one SparkSession of the `jobs.pipeline` process, killed and resumed.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_s3 import BUCKET, keys_under, s3  # noqa: F401 (s3: the moto server fixture)

from dataflow.core.preflight import PreflightError, check_classpath, check_jvm
from dataflow.pipeline.chain import is_current, plan
from dataflow.pipeline.conf import load_conf
from dataflow.stages import table

ROOT = Path(__file__).resolve().parent.parent

SETS = ["pipeline.stages=[preprocess, evaluate]", "evaluate.sample_share=0.1", "spark.master=local[2]",
        "spark.conf.spark.sql.shuffle.partitions=4"]



def cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    c = [sys.executable, "-m", "jobs.pipeline", "--input", str(inp), "--output", str(out)]
    for s in SETS:
        c += ["--set", s]
    return c + list(extra)


def env() -> dict:
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e["PYSPARK_PYTHON"] = e["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return e


def data_digest(stage_dir: Path) -> list[str]:
    """One digest per Parquet part, in part order: the decoded rows (Arrow IPC bytes: values, types, order)
    plus the footer's row-group layout and statistics. Raw file bytes are not compared: parquet-java lists each
    column chunk's encodings from a HashSet of enums, whose order changes from one JVM to the next, so two
    writes of the same rows differ in those few footer bytes and nowhere else."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    for p in sorted((stage_dir / "data").glob("part-*"), key=lambda p: p.name.split("-")[1]):
        sink = pa.BufferOutputStream()
        table = pq.read_table(p)
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        meta = pq.read_metadata(p)
        groups = []
        for i in range(meta.num_row_groups):
            g = meta.row_group(i).to_dict()
            for c in g["columns"]:
                c["encodings"] = sorted(c["encodings"])
                c.pop("file_offset", None)
            groups.append(g)
        h = hashlib.sha256(sink.getvalue().to_pybytes())
        h.update(json.dumps(groups, sort_keys=True, default=str).encode())
        out.append(h.hexdigest())
    return out


@pytest.fixture(scope="module")
def small_input(corpus_dir, models_dir, tmp_path_factory) -> Path:
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    p = tmp_path_factory.mktemp("pipe_in") / "docs.jsonl"
    p.write_text("\n".join(lines[::12]) + "\n", encoding="utf-8")  # ~100 docs across sources and languages
    return p


def test_killed_run_resumes_byte_identical(small_input, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(cmd(small_input, a, "--runner", "python"), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for d in ("10-preprocess", "50-evaluate"):
        assert (a / d / "_SUCCESS").exists()

    # run B: SIGKILL the whole process group once DE has started writing (DP is finished by then)
    p = subprocess.Popen(cmd(small_input, b), cwd=ROOT, env=env(), start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 480
    while not (b / "50-evaluate").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert p.poll() is None, "the pipeline finished before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert (b / "10-preprocess" / "_SUCCESS").exists()
    assert not (b / "50-evaluate" / "_SUCCESS").exists()

    r = subprocess.run(cmd(small_input, b), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "10-preprocess: done" in r.stdout and "50-evaluate: running in this session" in r.stdout
    for d in ("10-preprocess", "50-evaluate"):
        assert data_digest(a / d) and data_digest(a / d) == data_digest(b / d), d
    # the review sample and sheet are reproducible too
    assert (a / "50-evaluate" / "review.jsonl").read_bytes() == (b / "50-evaluate" / "review.jsonl").read_bytes()

    # the report's funnel numbers are each stage's own accounting
    m = json.loads((b / "50-evaluate" / "metrics.json").read_text())
    st = json.loads((b / "10-preprocess" / "stats.json").read_text())
    [row] = [s for s in m["funnel"]["stages"] if s["stage"] == "preprocess"]
    assert (row["input"], row["kept"], row["rejected"]) == (st["input"], st["kept"], st["rejected"])
    assert (row["chars_kept"], row["chars_rejected"]) == (st["chars"]["kept"], st["chars"]["rejected"])
    assert m["funnel"]["initial"] == {"docs": st["input"], "chars": st["chars"]["input"]}
    assert row["retained_docs_share"] == pytest.approx(st["kept"] / st["input"])
    assert m["output"]["docs"] == st["kept"]
    md = (b / "50-evaluate" / "report.md").read_text()
    assert f"| preprocess | {st['input']:,} | {st['kept']:,} | {st['rejected_total']:,} |" in md
    de = json.loads((b / "50-evaluate" / "stats.json").read_text())
    assert de["input"] == de["kept"] == st["kept"] and de["rejected_total"] == 0

    # nothing changed: every stage is current, a rerun does no work
    cfg = load_conf(overrides=SETS)
    assert all(is_current(s, str(b)) for s in plan(cfg, [str(small_input)], str(b)))
    r = subprocess.run(cmd(small_input, b), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "running" not in r.stdout and r.stdout.count(": done") == 2, r.stdout

    # a DE threshold invalidates DE only; a DP threshold invalidates DP and everything after it
    steps = plan(load_conf(overrides=SETS + ["evaluate.seed=7"]), [str(small_input)], str(b))
    assert [is_current(s, str(b)) for s in steps] == [True, False]
    thr = cfg["preprocess"]["lang_threshold"]
    steps = plan(load_conf(overrides=SETS + [f"preprocess.lang_threshold={thr + 0.1}"]), [str(small_input)], str(b))
    assert [is_current(s, str(b)) for s in steps] == [False, False]


def print_submit(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "jobs.pipeline", *args, "--print-submit"], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_print_submit_lines(tmp_path):
    """YARN-style cluster mode: the chain through the output URIs; models go with --files/--archives and the
    job is pointed at their names in the container; a stage that writes from the driver (DE) stays in client
    mode and gets the chain's earlier outputs; the driver runs the interpreter the configuration names, never a
    path that exists only inside an archive of the executors."""
    lines = print_submit("--input", "s3a://bucket/crawl", "--output", "s3a://bucket/run",
                         "--set", "pipeline.cluster.python=./runtime/bin/python")
    subs = [l for l in lines if l.split(" ")[0].endswith("spark-submit")]
    cfg = load_conf()
    assert [l.split("jobs/stage.py ")[1].split(" ")[0] for l in subs] == table.names()
    prev, earlier = "s3a://bucket/crawl", []
    for line, st in zip(subs, table.stages()):
        d = table.chain_dir(st)
        assert f"--master {cfg['pipeline']['cluster']['master']}" in line
        assert f"--py-files {ROOT}/dist/ziya2_dataflow.zip" in line
        assert f"jobs/stage.py {st.name} --input {prev} --output s3a://bucket/run/{d}" in line
        mode = "client" if st.driver_writes else "cluster"
        assert f"--deploy-mode {mode}" in line
        assert (f"--files {ROOT}/conf/pipeline.yaml" in line) == (mode == "cluster"), line
        assert line.endswith(f"--upstream {' '.join(earlier)}") == st.uses_upstream, line
        prev = f"s3a://bucket/run/{d}"
        earlier.append(prev)
    [dp] = [l for l in subs if "jobs/stage.py preprocess" in l]
    assert f"{ROOT}/build/models/langid.bin" in dp and "--set preprocess.langid_model=langid.bin" in dp
    [de] = [l for l in subs if "jobs/stage.py evaluate" in l]
    assert f"spark.pyspark.driver.python={sys.executable}" in de and "./venv" not in de
    # cluster-mode drivers run the executors' interpreter from the configuration, never this machine's
    assert all("spark.pyspark.python=./runtime/bin/python" in l for l in subs)
    assert all(f"spark.pyspark.driver.python={sys.executable}" not in l for l in subs if "--deploy-mode cluster" in l)


def test_print_submit_ships_model_dirs_flat(tmp_path):
    """An absolute model_dir (CCNet's models live outside the repository) is zipped by the printed command with
    its files at the top level, so `--archives X.zip#alias` extracts to alias/<file> (not alias/lm/<file>), and
    the job is pointed at the alias. The printed packing line runs here, unchanged."""
    import shlex
    import zipfile

    models = tmp_path / "ccnet"
    models.mkdir()
    for name in ("en.sp.model", "en.arpa.bin"):
        (models / name).write_bytes(name.encode() * 10)
    dist = tmp_path / "dist-models"
    lines = print_submit("--input", "s3a://b/in", "--output", "s3a://b/run", "--set", f"score.model_dir={models}",
                         "--set", "pipeline.cluster.python=/usr/bin/python3",
                         "--set", f"pipeline.cluster.models_dist={dist}", "--set", f"pipeline.cluster.zip_python={sys.executable}")
    [pack] = [l for l in lines if "zipfile" in l]
    r = subprocess.run(["bash", "-c", pack], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    names = sorted(zipfile.ZipFile(dist / "score_model_dir.zip").namelist())
    assert names == ["en.arpa.bin", "en.sp.model"]
    [score] = [shlex.split(l) for l in lines if "jobs/stage.py score" in l]
    assert score[score.index("--archives") + 1].endswith("score_model_dir.zip#score_model_dir")
    assert "score.model_dir=score_model_dir" in score


def test_print_submit_client_mode_runs_local_paths(tmp_path):
    """Client mode (standalone): no model shipping (the local driver ships them itself), local paths printed
    absolute so executors with another working directory find them, the driver on the local interpreter."""
    lines = print_submit("--input", "build/corpus/out/fixture/docs.jsonl", "--output", str(tmp_path / "run"),
                         "--set", "pipeline.cluster.master=spark://127.0.0.1:7077",
                         "--set", "pipeline.cluster.deploy_mode=client")
    subs = [l for l in lines if l.split(" ")[0].endswith("spark-submit")]
    assert subs and all("--deploy-mode client" in l and "--files" not in l and "--archives" not in l for l in subs)
    assert f"--input {ROOT / 'build/corpus/out/fixture/docs.jsonl'} --output {tmp_path / 'run' / '10-preprocess'}" in subs[0]
    assert all(f"spark.pyspark.driver.python={sys.executable}" in l for l in subs)
    assert not any("pipeline.cluster" in l for l in subs)   # the stage jobs never read the pipeline section


RECIPE = 'README.md, "Object storage and HDFS"'


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
    return lines[0]


def test_preflight_s3a_output_without_connector_fails_fast(s3, small_input):  # noqa: F811 (the fixture)
    """Spark has no s3a FileSystem here (no hadoop-aws): a job and the chain stop before any work, in one line
    that names the scheme, the connector and the recipe, and leave nothing in the bucket (no `_attempt-*`).
    Fast is measured as the child's CPU seconds (< 10; on a quiet machine its wall time is about the same):
    this machine's load, not the check, decides the wall time, and a stage run to its end costs far more."""
    import resource

    for prefix, argv in (("job/", ["-m", "jobs.stage", "preprocess"]), ("chain/", ["-m", "jobs.pipeline"])):
        out = f"s3a://{BUCKET}/preflight/{prefix}run"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, *argv, "--input", str(small_input), "--output", out,
                            "--set", "spark.master=local[2]"], cwd=ROOT, env=env(), capture_output=True, text=True,
                           timeout=120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        line = one_error_line(r)
        assert line.startswith(f"error: {out}") and "s3a://" in line, line
        assert "hadoop-aws" in line and "aws-java-sdk-bundle" in line and RECIPE in line, line
        assert cpu < 10, f"{prefix}: {cpu:.1f} CPU s"
    assert keys_under(s3, "preflight/") == []


def test_preflight_hdfs_input_is_one_line(small_input, tmp_path):
    """pyarrow's hdfs:// needs libhdfs and a JVM library, absent here: one line instead of 88 `dlopen` ones."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "jobs.stage", "preprocess", "--input", "hdfs://127.0.0.1:9/crawl",
                        "--output", str(out)], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    line = one_error_line(r)
    assert line.startswith("error: hdfs://127.0.0.1:9/crawl") and "libjvm" in line, line
    assert "HADOOP_CONF_DIR" in line and "libhdfs" in line and RECIPE in line, line
    assert not out.exists()


def test_preflight_asks_the_started_jvm(spark, tmp_path):
    """After the JVM starts, Hadoop itself resolves each scheme: pyspark's jars hold the HDFS client, not s3a."""
    check_jvm(spark, ["hdfs://namenode:8020/crawl", str(tmp_path)])
    hadoop = spark._jvm.org.apache.hadoop.util.VersionInfo.getVersion()
    with pytest.raises(PreflightError) as e:
        check_jvm(spark, [str(tmp_path), "s3://bucket/run"])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("s3a://bucket/run: Spark has no Hadoop FileSystem for s3a://"), msg
    assert "S3AFileSystem" in msg and f"hadoop-aws {hadoop}" in msg and RECIPE in msg, msg


def test_preflight_leaves_added_jars_to_the_jvm():
    """Jars that arrive as the JVM starts (--packages) cannot be seen in advance: the classpath check defers."""
    check_classpath(["s3a://bucket/run"], {"spark.jars.packages": "org.apache.hadoop:hadoop-aws:3.5.0"})
    check_classpath(["s3a://bucket/run"], {"spark.hadoop.fs.s3a.impl": "org.example.S3"})
    with pytest.raises(PreflightError, match="s3a://bucket/run: Spark has no Hadoop FileSystem for s3a://"):
        check_classpath(["s3a://bucket/run"], {})
