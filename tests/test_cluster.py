"""A real Spark standalone cluster: `make cluster-up` (a master and two workers on 127.0.0.1, each with its own
work directory, 1 core and 1 GB each) runs DP -> AS -> RF -> CD -> DE from exactly the lines
`python -m jobs.pipeline --print-submit` prints, and each stage's counts and decoded rows equal a local[2] run.

The executors run an interpreter without the repository: a venv that sees the project's third-party
packages but not its editable install, so they can import `dataflow` only from `make dist`'s zip (--py-files).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("10-preprocess", "20-score", "30-filter", "40-dedup", "50-evaluate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"   # spark-submit of the venv
    e["PYSPARK_PYTHON"] = e["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return e


def make(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "-s", *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"make {' '.join(args)}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="session")
def cluster():
    port, ui = free_port(), free_port()
    d = ROOT / "build" / f"cluster-test-{port}"
    make("cluster-up", f"CLUSTER_DIR={d}", f"CLUSTER_PORT={port}", f"CLUSTER_UI={ui}")
    try:
        yield {"master": f"spark://127.0.0.1:{port}", "webui": f"http://127.0.0.1:{ui}", "dir": d}
    finally:
        make("cluster-down", f"CLUSTER_DIR={d}")
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def dist_zip() -> Path:
    make("dist")
    return ROOT / "dist" / "ziya2_dataflow.zip"


@pytest.fixture(scope="session")
def runtime(tmp_path_factory) -> Path:
    """An interpreter as a node would have it: the project's dependencies, not the project."""
    d = tmp_path_factory.mktemp("runtime")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(d)], check=True, timeout=120)
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    [rt_site] = list(d.glob("lib/python*/site-packages"))
    (rt_site / "project-deps.pth").write_text(site + "\n")   # a path entry: its own .pth (the editable hook) is not run
    py = d / "bin" / "python"
    r = subprocess.run([str(py), "-c", "import pyarrow, fasttext, kenlm, yaml\nimport dataflow"], cwd=d,
                       capture_output=True, text=True, timeout=120)
    assert "No module named 'dataflow'" in r.stderr, r.stderr   # the checkout is out of reach
    return py


def test_cluster_up_on_a_busy_port_fails_fast_naming_it(tmp_path):
    """Spark would move the master to the next port and leave the workers waiting on this one for minutes."""
    import time

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "tools.cluster", "up", "--dir", str(tmp_path / "c"), "--port",
                            str(port), "--webui-port", str(free_port()), "--workers", "1"], cwd=ROOT, env=env(),
                           capture_output=True, text=True, timeout=120)
        elapsed = time.time() - t0
    assert r.returncode != 0
    assert f"port {port}" in r.stdout + r.stderr, r.stdout + r.stderr
    assert elapsed < 20, elapsed
    assert not (tmp_path / "c" / "cluster.json").exists()   # nothing was started


def test_dist_zip_imports_dataflow_without_checkout(dist_zip, runtime, tmp_path):
    z = tmp_path / "elsewhere.zip"
    shutil.copy(dist_zip, z)
    names = set(zipfile.ZipFile(z).namelist())
    assert {"dataflow/__init__.py", "conf/pipeline.yaml", "conf/rules/porn.en.txt", "conf/rules/porn.zh.txt"} <= names
    assert not any(n.startswith(("jobs/", "trainer/", "tests/", "bench/", "tools/")) or "__pycache__" in n for n in names)
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import dataflow, dataflow.stages.preprocess, dataflow.stages.score.stage, dataflow.stages.filter.stage, dataflow.stages.dedup, dataflow.stages.evaluate\n"
            "print(dataflow.__file__)")
    r = subprocess.run([str(runtime), "-c", code, str(z)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"{z}/dataflow/__init__.py"


@pytest.fixture(scope="module")
def chain_input(corpus_dir, models_dir, tmp_path_factory) -> Path:
    """A slice of the sample corpus: every 12th docs.jsonl record and the first WARC file."""
    d = tmp_path_factory.mktemp("cluster_in")
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    (d / "docs.jsonl").write_text("\n".join(lines[::12]) + "\n", encoding="utf-8")
    warcs = sorted((corpus_dir / "warc").glob("*.warc.gz"))
    shutil.copy(warcs[0], d / warcs[0].name)
    return d


def rows(stage_dir: Path, sub: str) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((stage_dir / sub).glob("part-*"))
    out = [r for f in files for r in pq.read_table(f).to_pylist()]
    for r in out:   # map columns come back as lists of pairs in file order
        for k, v in r.items():
            if isinstance(v, list) and v and isinstance(v[0], tuple):
                r[k] = sorted(v)
    return sorted(out, key=lambda r: r["id"])


def counts(stage_dir: Path) -> tuple:
    st = json.loads((stage_dir / "stats.json").read_text())
    return st["input"], st["kept"], st["rejected"]


def test_standalone_cluster_runs_printed_lines(cluster, dist_zip, runtime, chain_input, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "cluster"
    r = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--input", str(chain_input), "--output", str(local),
                        "--set", "spark.master=local[2]"], cwd=ROOT, env=env(), capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    overrides = [f"pipeline.cluster.master={cluster['master']}", "pipeline.cluster.deploy_mode=client",
                 f"pipeline.cluster.python={runtime}", "pipeline.cluster.conf.spark.executor.memory=512m"]
    printed = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--input", str(chain_input), "--output",
                              str(remote), "--print-submit", *[x for o in overrides for x in ("--set", o)]],
                             cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    # the README's form prints the same lines (make echoes nothing else into the script)
    script = tmp_path / "submit.sh"
    made = make("pipeline", f"INPUT={chain_input}", f"OUTPUT={remote}", "PRINT_SUBMIT=1", f"OVERRIDES={' '.join(overrides)}")
    assert made.stdout == printed.stdout
    script.write_text(made.stdout)
    lines = script.read_text().splitlines()
    assert lines[0] == "set -euo pipefail"
    commands = [shlex.split(l) for l in lines if not l.startswith("#") and l.split(" ")[0].endswith("spark-submit")]
    assert len(commands) == len(STAGES)
    for argv in commands:
        assert argv[argv.index("--master") + 1] == cluster["master"]
        assert f"spark.pyspark.python={runtime}" in argv
    # the script as printed, from another directory
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert not [l for l in done.stderr.splitlines() if " INFO " in f" {l} "], done.stderr[-2000:]
    # `make cluster-up`'s spark-defaults.conf: this master and the quiet log4j2 file on the driver's command line
    defaults = (cluster["dir"] / "conf" / "spark-defaults.conf").read_text().splitlines()
    assert f"spark.master {cluster['master']}" in defaults
    assert f"spark.driver.extraJavaOptions -Dlog4j2.configurationFile={(ROOT / 'conf/log4j2.properties').as_uri()}" in defaults

    # the five applications ran on the cluster's executors, not in a local driver
    with urllib.request.urlopen(f"{cluster['webui']}/json/", timeout=10) as resp:
        status = json.loads(resp.read())
    apps = {a["name"] for a in status["completedapps"]}
    assert {f"ziya2-{s.split('-', 1)[1]}" for s in STAGES} <= apps
    assert status["aliveworkers"] == 2

    for s in STAGES:
        assert (remote / s / "_SUCCESS").exists(), s
        assert counts(remote / s) == counts(local / s), s
    for s in STAGES[:-1]:
        # the local chain ran DP, AS and RF fused (#27): only RF, the group's last stage, holds their kept rows
        if s in ("10-preprocess", "20-score"):
            assert not (local / s / "data").exists() and rows(remote / s, "data"), s
        else:   # RF's rows there also carry the fingerprints the fused pass computed for CD
            from dataflow.stages.dedup.fingerprints import CARRIED

            kept = sorted(({k: v for k, v in r.items() if k not in CARRIED} for r in rows(local / s, "data")),
                          key=lambda r: r["id"])
            assert kept and rows(remote / s, "data") == kept, s
        assert rows(remote / s, "rejected") == rows(local / s, "rejected"), s
    # DE's review sample is the same documents in the same order
    assert (remote / "50-evaluate" / "review.jsonl").read_bytes() == (local / "50-evaluate" / "review.jsonl").read_bytes()
