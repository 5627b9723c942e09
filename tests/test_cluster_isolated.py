"""The whole chain on a standalone cluster whose workers cannot see the driver's disk (issue 26, DESIGN §9
"No shared disk").

`python -m tools.cluster up --hide DRIVER` starts two workers, each in its own mount namespace with an empty
tmpfs over DRIVER, the driver's private directory (its working directory and TMPDIR), as on a real cluster
where a driver's local files exist on the driver's machine only. Stage data goes to SHARED, a directory both
sides see (it stands in for HDFS: Spark's own Parquet writes cannot reach `s3a://` here, no hadoop-aws), and
the tokenizer's files to `s3://` on a moto server, which executors reach only through `spark.executorEnv`
(the workers are started without the AWS_* variables). The driver runs the documented commands, each its own
process with `spark.master=spark://...`: `jobs.pipeline` (DP -> AS -> RF -> CD -> DE), `jobs.train_tokenizer`
to `s3://`, `jobs.encode` (model read from `s3://`) of the kept documents and of the supervised examples, and
`jobs.mix`. A write an executor makes to a driver-local path lands in its worker's tmpfs and is lost, and a
read of a driver-local path from an executor fails: either shows up as a failed step or a missing file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import gzip_members
from test_s3 import BUCKET, keys_under, s3  # noqa: F401  (s3: the moto server fixture)

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("10-preprocess", "20-score", "30-filter", "40-dedup", "50-evaluate")
AWS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
STEP_TIMEOUT_S = 900


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_env() -> dict:
    """The environment the cluster's daemons start with: no AWS_* (executors get them from the driver's conf)."""
    e = {k: v for k, v in os.environ.items() if k not in AWS}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SHARED (seen by all), DRIVER (hidden from the workers) and a 2-worker cluster started with --hide DRIVER."""
    base = tmp_path_factory.mktemp("cluster")
    shared, driver, cdir = base / "shared", base / "driver", base / "cluster"
    shared.mkdir()
    (driver / "tmp").mkdir(parents=True)
    port, ui = free_port(), free_port()
    up = subprocess.run([sys.executable, "-m", "tools.cluster", "up", "--dir", str(cdir), "--port", str(port),
                         "--webui-port", str(ui), "--workers", "2", "--hide", str(driver)],
                        cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=400)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    state = json.loads((cdir / "cluster.json").read_text())
    try:
        yield {"master": state["master"], "webui": state["webui"], "workers": [w["pid"] for w in state["workers"]],
               "shared": shared, "driver": driver, "dir": cdir}
    finally:
        down = subprocess.run([sys.executable, "-m", "tools.cluster", "down", "--dir", str(cdir)], cwd=ROOT,
                              env=tool_env(), capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    # `down` stopped exactly what `up` recorded: the pids of the workers started through unshare are gone too
    assert not [p for p in state["pids"] if running(p)], state["pids"]


def running(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def warc_responses(path: Path) -> int:
    """WARC response records in a .warc.gz, read here from the gzip members' headers (not by the reader under test)."""
    data, n = path.read_bytes(), 0
    for off in gzip_members(path):
        head = zlib.decompressobj(31).decompress(data[off:], 4096).split(b"\r\n\r\n", 1)[0]
        n += b"\r\nWARC-Type: response\r\n" in head + b"\r\n"
    return n


@pytest.fixture(scope="module")
def chain_input(cluster, corpus_dir) -> tuple[Path, int]:
    """A small slice of the fixture corpus on the shared disk (the first WARC file and every 15th docs.jsonl
    line), and how many documents it holds."""
    d = cluster["shared"] / "in"
    d.mkdir()
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()[::15]
    (d / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    warc = sorted((corpus_dir / "warc").glob("*.warc.gz"))[0]
    shutil.copy(warc, d / warc.name)
    return d, len(lines) + warc_responses(d / warc.name)


def parquet_rows(d: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in d.glob("part-*"))


def step(cluster, module: str, *args: str, sets: list[str] = ()) -> str:
    """One documented command run by the driver: cwd and TMPDIR in the private directory, master the cluster,
    the executors' S3 settings through spark.executorEnv."""
    driver = cluster["driver"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(driver / "tmp"), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    spark = [f"spark.master={cluster['master']}", "spark.conf.spark.executor.memory=512m",
             *[f"spark.conf.spark.executorEnv.{k}={os.environ[k]}" for k in AWS]]
    argv = [sys.executable, "-m", module, *args, *[x for s in (*spark, *sets) for x in ("--set", s)]]
    t0 = time.time()
    r = subprocess.run(argv, cwd=driver, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    print(f"[test] {module}: {time.time() - t0:.0f}s", flush=True)
    assert r.returncode == 0, f"{module}: {r.stdout[-3000:]}{r.stderr[-5000:]}"
    return r.stdout


def test_hide_refuses_what_a_worker_needs(tmp_path):
    """Hiding the repository (or Spark, the venv, the cluster's own directory) would leave no worker able to
    start: `up` refuses at once, names it, and starts nothing."""
    r = subprocess.run([sys.executable, "-m", "tools.cluster", "up", "--dir", str(tmp_path / "c"), "--port",
                        str(free_port()), "--webui-port", str(free_port()), "--workers", "1", "--hide", str(ROOT)],
                       cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert f"--hide {ROOT} would hide" in r.stdout + r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "c" / "cluster.json").exists()


def test_workers_cannot_see_the_driver_dir(cluster):
    """The isolation is real: a file the driver puts in its private directory is absent in every worker's view."""
    probe = cluster["driver"] / "probe.txt"
    probe.write_text("driver only\n")
    try:
        for pid in cluster["workers"]:
            # unshare and the mounting shell exec'ed into the worker: the recorded pid is its JVM
            assert Path(f"/proc/{pid}/comm").read_text().strip() == "java", pid
            seen = subprocess.run(["nsenter", "-t", str(pid), "-m", "ls", "-A", str(cluster["driver"])],
                                  capture_output=True, text=True, timeout=30)
            assert seen.returncode == 0, seen.stderr
            assert seen.stdout.split() == [], (pid, seen.stdout)
            shared = subprocess.run(["nsenter", "-t", str(pid), "-m", "test", "-d", str(cluster["shared"])],
                                    timeout=30)
            assert shared.returncode == 0, "the shared directory must stay visible to the workers"
    finally:
        probe.unlink()


def test_whole_chain_without_a_shared_driver_disk(cluster, chain_input, s3, corpus_dir):
    inp, docs = chain_input
    shared, driver = cluster["shared"], cluster["driver"]
    run = shared / "run"
    tok = f"s3://{BUCKET}/cluster/tokenizer"

    # DP -> AS -> RF -> CD -> DE in one driver process, every stage on the cluster's executors
    step(cluster, "jobs.pipeline", "--input", str(inp), "--output", str(run))
    previous_kept = docs
    for s in STAGES:
        d = run / s
        assert (d / "_SUCCESS").exists(), s
        st = json.loads((d / "stats.json").read_text())
        rejected = parquet_rows(d / "rejected")
        if "fused" in st and not (d / "data").exists():
            # DP, AS and RF ran as one pass: only RF, the group's last stage, holds their kept rows, so the rows
            # counted here (every stage's rejected rows, RF's kept) must add up over the group
            assert s in ("10-preprocess", "20-score") and st["fused"]["data"] == str(run / "30-filter"), s
            kept = st["kept"]
        else:
            kept = parquet_rows(d / "data")
        assert kept + rejected == previous_kept, (s, kept, rejected, previous_kept)   # nothing lost on the way
        assert (st["input"], st["kept"]) == (previous_kept, kept), (s, st["input"], st["kept"])
        previous_kept = kept
    assert previous_kept > 0
    review = (run / "50-evaluate" / "review.jsonl").read_text(encoding="utf-8").splitlines()
    assert review and all(json.loads(line)["id"] for line in review)

    # the tokenizer: executors write the sampled sentences to s3://, the driver trains on its own copy
    step(cluster, "jobs.train_tokenizer", "--input", str(run / "40-dedup"), "--output", tok,
         sets=["tokenizer.train.vocab_size=2000"])
    keys = keys_under(s3, "cluster/tokenizer/")
    assert {f"cluster/tokenizer/{n}" for n in ("tokenizer.model", "tokenizer.vocab", "train_sentences.txt",
                                                "vocab_report.json", "vocab_report.md")} <= set(keys), keys
    assert not [k for k in keys if "/_sentences/" in k], keys   # the executors' parts are cleaned up
    sentences = s3.get_object(Bucket=BUCKET, Key="cluster/tokenizer/train_sentences.txt")["Body"].read()
    assert len(sentences.decode("utf-8").splitlines()) > 100
    import sentencepiece as spm

    model_bytes = s3.get_object(Bucket=BUCKET, Key="cluster/tokenizer/tokenizer.model")["Body"].read()
    model = spm.SentencePieceProcessor(model_proto=model_bytes)
    assert model.get_piece_size() == 2000

    # encode with the model on s3://, the kept documents and the supervised examples (raw JSONL on the shared disk)
    for name, src in (("pretrain", run / "40-dedup"), ("supervised", inp / "docs.jsonl")):
        step(cluster, "jobs.encode", "--input", str(src), "--output", str(shared / "tokenized" / name),
             "--model", f"{tok}/tokenizer.model")
        out = shared / "tokenized" / name
        assert (out / "_SUCCESS").exists(), name
        assert parquet_rows(out / "data") > 0, name
    assert parquet_rows(shared / "tokenized" / "pretrain" / "data") + parquet_rows(
        shared / "tokenized" / "pretrain" / "rejected") == previous_kept

    # mix the three training stages; the tokenizer named by its s3:// URI
    mix = shared / "mix"
    step(cluster, "jobs.mix", "--conf", str(ROOT / "conf" / "mixer.yaml"), "--output", str(mix),
         "--input", f"pretrain={shared / 'tokenized' / 'pretrain'}", f"supervised={shared / 'tokenized' / 'supervised'}",
         "--tokenizer", f"{tok}/tokenizer.model", "--pipeline-conf", str(ROOT / "conf" / "pipeline.yaml"),
         sets=["pack.seq_len=512"])
    top = json.loads((mix / "manifest.json").read_text())
    assert top["stages"] == [f"stage{n}/manifest.json" for n in (1, 2, 3)] and top["seq_len"] == 512
    assert top["tokenizer"]["path"] == f"{tok}/tokenizer.model"
    assert top["tokenizer"]["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    for n in (1, 2, 3):
        stage = mix / f"stage{n}"
        assert (stage / "_SUCCESS").exists(), n
        manifest = json.loads((stage / "manifest.json").read_text())
        tables = [pq.read_table(stage / sh["path"], columns=["input_ids"]) for sh in manifest["shards"]]
        assert sum(t.num_rows for t in tables) == manifest["rows"], n
        assert all(len(ids) == 512 for t in tables for ids in t.column("input_ids").to_pylist()), n
    assert json.loads((mix / "stage1" / "manifest.json").read_text())["rows"] > 0

    # the private directory holds only the driver's own files: the copy of the s3:// model it shipped to the
    # executors (SparkFiles). No stage output, no executor part, no `s3:/` directory made by a local write.
    left = sorted(p for p in driver.rglob("*") if p.is_file())
    shipped = driver / "tmp" / "ziya2-shipped-models"
    assert left and all(p.parent == shipped and p.name.endswith("-tokenizer.model") for p in left), left
    assert {p.read_bytes() for p in left} == {model_bytes}
