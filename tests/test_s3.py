"""Object storage, for real: a local S3-compatible server (moto in server mode, on 127.0.0.1 with a free port)
holds the raw input and receives the side files.

- DP reads WARC and JSONL from `s3://bucket/...` (listed on the driver and streamed in executors through
  `dataflow.core.fs`), and keeps the same documents as a run over the same files on local disk.
- A stage attempt on an `s3://` output writes its side files (stats.json, cutoffs, examples), commits them and
  writes `_SUCCESS` last; readers refuse the output before that; the pipeline's resume state lives there too.

Spark's own Parquet writes to `s3a://` need Hadoop's s3a connector jars (hadoop-aws), which cannot be
installed here, so DP's data/ goes to local disk in this test (README: "Object storage").
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import gzip_members

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
BUCKET = "ziya2-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server; the AWS_* variables point dataflow.core.fs (here and in subprocesses) at it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    p = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in p.stdout:   # blocks until the server says it listens (or exits)
        seen.append(line)
        if f"127.0.0.1:{port}" in line and "Running on" in line:
            break
    assert p.poll() is None, "".join(seen)
    keys = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    import boto3

    client = boto3.client("s3", endpoint_url=keys["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        p.terminate()
        p.wait(timeout=30)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from dataflow.core import fs
        fs._FS.clear()   # cached S3 filesystems point at the stopped server


def keys_under(client, prefix: str) -> list[str]:
    """Object keys, without the empty `dir/` markers pyarrow puts for directories."""
    out = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in out.get("Contents", []) if not o["Key"].endswith("/"))


@pytest.fixture(scope="module")
def raw_input(corpus_dir, models_dir, tmp_path_factory) -> Path:
    """A slice of the sample corpus on local disk: two WARC files and every 10th docs.jsonl record."""
    d = tmp_path_factory.mktemp("s3_in")
    for w in sorted((corpus_dir / "warc").glob("*.warc.gz"))[:2]:
        shutil.copy(w, d / w.name)
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    (d / "docs.jsonl").write_text("\n".join(lines[::10]) + "\n", encoding="utf-8")
    return d


def run_dp(inp: str, out: Path) -> dict:
    e = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    r = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--input", inp, "--output", str(out),
                        "--set", "spark.master=local[2]"], cwd=ROOT, env=e, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out / "stats.json").read_text())


def texts(stage_dir: Path, sub: str) -> list[tuple]:
    import pyarrow.parquet as pq

    rows = [r for f in sorted((stage_dir / sub).glob("part-*")) for r in pq.read_table(f).to_pylist()]
    return sorted((r["url"] or "", r["text"] or "", r.get("reason") or "") for r in rows)


def test_dp_ingests_from_s3(s3, raw_input, tmp_path):
    uploaded = 0
    for f in sorted(raw_input.iterdir()):
        s3.upload_file(str(f), BUCKET, f"crawl/{f.name}")
        uploaded += 1
    assert len(keys_under(s3, "crawl/")) == uploaded == 3

    local = run_dp(str(raw_input), tmp_path / "local")
    remote = run_dp(f"s3://{BUCKET}/crawl", tmp_path / "remote")
    # our own count of the records uploaded: JSONL lines plus WARC responses (gzip members: warcinfo, then a
    # request and a response per page)
    n_jsonl = len((raw_input / "docs.jsonl").read_text(encoding="utf-8").splitlines())
    n_pages = sum((len(gzip_members(w)) - 1) // 2 for w in raw_input.glob("*.warc.gz"))
    assert n_pages > 0
    assert remote["input"] == n_jsonl + n_pages == local["input"]
    assert (remote["kept"], remote["rejected"]) == (local["kept"], local["rejected"])
    assert remote["kept"] + remote["rejected_total"] == remote["input"]
    assert texts(tmp_path / "remote", "data") == texts(tmp_path / "local", "data")
    assert any(p.startswith(f"s3://{BUCKET}/crawl") or p.startswith(f"s3a://{BUCKET}/crawl") for p in remote["inputs"])


def test_stage_side_files_commit_to_s3(s3):
    from dataflow.core import fs
    from dataflow.core.stage import Attempt, IncompleteInputError, stage_input_paths

    out = f"s3://{BUCKET}/run/20-score"
    attempt = Attempt(out).begin()
    fs.write_text(attempt.path("cutoffs.json"), json.dumps({"en": {"p30": 340.0, "p60": 520.0}}) + "\n")
    fs.write_text(attempt.path("examples", "length.min_chars.jsonl"), '{"id": "a"}\n{"id": "b"}\n')
    fs.write_text(attempt.path("stats.json"), json.dumps({"stage": "score", "input": 3, "kept": 2}) + "\n")
    # not committed yet: the output is unfinished and every reader refuses it
    assert "run/20-score/_SUCCESS" not in keys_under(s3, "run/")
    with pytest.raises(IncompleteInputError):
        stage_input_paths([out])
    attempt.commit({"stage": "score", "config_hash": "abc"})

    assert keys_under(s3, "run/20-score/") == ["run/20-score/_SUCCESS", "run/20-score/cutoffs.json",
                                               "run/20-score/examples/length.min_chars.jsonl",
                                               "run/20-score/stats.json"]
    body = s3.get_object(Bucket=BUCKET, Key="run/20-score/examples/length.min_chars.jsonl")["Body"].read()
    assert body == b'{"id": "a"}\n{"id": "b"}\n'
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="run/20-score/_SUCCESS")["Body"].read())
    assert marker == {"stage": "score", "config_hash": "abc"}


def test_pipeline_resume_state_on_s3(s3):
    """The pipeline's resume check reads `_SUCCESS` and `.pipeline/<dir>.json` from the run URI."""
    from dataflow.core import fs
    from dataflow.pipeline.conf import load_conf
    from dataflow.pipeline.chain import is_current, plan, state_uri

    run = f"s3://{BUCKET}/chain"
    cfg = load_conf(overrides=["pipeline.stages=[preprocess]"])
    [step] = plan(cfg, [f"s3://{BUCKET}/crawl"], run)
    assert step["output"] == f"{run}/10-preprocess"
    assert not is_current(step, run)
    s3.put_object(Bucket=BUCKET, Key="chain/10-preprocess/_SUCCESS",
                  Body=json.dumps({"config_hash": step["config_hash"]}).encode())
    assert not is_current(step, run)   # finished, but not recorded as this chain's stage
    fs.write_text(state_uri(run, step), json.dumps({"chain_key": step["chain_key"]}))
    assert "chain/.pipeline/10-preprocess.json" in keys_under(s3, "chain/")
    assert is_current(step, run)
    [other] = plan(cfg, [f"s3://{BUCKET}/other-crawl"], run)   # another input: another chain key
    assert not is_current(other, run)
