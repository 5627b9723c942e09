"""CD survives losing a worker mid-job (issue #28 item 3, DESIGN §9 "Survives losing an executor").

A Spark standalone cluster of two workers (1 core each) on 127.0.0.1 runs the CD job (`jobs.dedup`, the
default steps) twice over the same input: the fixture corpus plus copies planted by the test (a re-crawl
of the same URL, a copy under its own URL, a copy-edited copy). The first run is left alone. In the second,
once the attempt's `_scratch` holds half as many finished checkpoints as the first run made in all, one
worker is killed by PID, its Worker JVM and its executor JVM together, as a node would be lost. The job must
still exit 0, and its kept rows, rejected rows and stats.json counts must equal the undisturbed run's.

What is lost with the worker: the tasks running on its executor and the shuffle files it wrote, which lived
on its local disk. What is not: the checkpoints (components.checkpoint), Parquet on the output's filesystem,
which the surviving executor reads; Spark recomputes the rest from lineage back to them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from test_dedup import base_rows, change_words

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 900          # one CD run on the cluster: 82-153 s measured here (2 shared cores, load 2-7)
DEAD_TIMEOUT_S = 120         # the master marks a killed worker DEAD when its connection drops (seconds)
POLL_S = 0.2
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_env() -> dict:
    e = dict(os.environ, PYTHONUNBUFFERED="1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two 1-core workers of its own (tools.cluster), always stopped afterwards."""
    d = tmp_path_factory.mktemp("lost_worker") / "cluster"
    up = subprocess.run([sys.executable, "-m", "tools.cluster", "up", "--dir", str(d), "--port", str(free_port()),
                         "--webui-port", str(free_port()), "--workers", "2", "--worker-cores", "1"],
                        cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=400)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    state = json.loads((d / "cluster.json").read_text())
    try:
        yield state
    finally:
        down = subprocess.run([sys.executable, "-m", "tools.cluster", "down", "--dir", str(d)], cwd=ROOT,
                              env=tool_env(), capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def crawl(corpus_docs, tmp_path_factory) -> tuple[Path, int]:
    """The fixture corpus and three planted copies of each document, as 4 Parquet files: a re-crawl of the same
    URL with the same text (url step), the same text under its own URL (exact), and 3 words swapped under its
    own URL (the fuzzy steps). Returns (directory, rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflow.core.schema import DOC_ARROW_SCHEMA

    rows = base_rows(corpus_docs)
    for n, r in enumerate(base_rows(corpus_docs)):
        later = {**r["meta"], "warc_date": "2024-04-01T00:00:00Z"}
        rows.append({**r, "id": f"{r['id']}#recrawl", "meta": later})
        rows.append({**r, "id": f"{r['id']}#mirror", "url": f"{r['url']}?mirror=1", "meta": later})
        rows.append({**r, "id": f"{r['id']}#edit", "url": f"{r['url']}?edit=1", "meta": later,
                     "text": change_words(r["text"], 3, seed=n)})
    d = tmp_path_factory.mktemp("lost_worker_in")
    for k in range(4):
        pq.write_table(pa.Table.from_pylist(rows[k::4], schema=DOC_ARROW_SCHEMA), d / f"part-{k}.parquet")
    return d, len(rows)


def start_cd(cluster: dict, inp: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """`python -m jobs.dedup` on the cluster, its output (stdout and stderr) going to OUT.log."""
    sets = [f"spark.master={cluster['master']}", "spark.driver_memory=1g",
            "spark.conf.spark.executor.memory=512m"]
    argv = [sys.executable, "-m", "jobs.dedup", "--input", str(inp), "--output", str(out),
            *[x for s in sets for x in ("--set", s)]]
    log = out.with_suffix(".log")
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, cwd=ROOT, env=tool_env(), stdout=f, stderr=subprocess.STDOUT)
    return p, log


def checkpoints(out: Path) -> int:
    """Finished checkpoints of the running attempt: directories under OUT/_attempt-*/_scratch with Spark's
    `_SUCCESS` (the scratch directory goes once the outputs are written)."""
    return len(list(out.glob("_attempt-*/_scratch/*/_SUCCESS")))


def finish(p: subprocess.Popen, log: Path, deadline: float, watch: Path | None = None) -> int:
    """Wait for the job; with `watch`, return the most checkpoints its scratch directory held meanwhile."""
    most = 0
    while p.poll() is None:
        assert time.time() < deadline, f"the CD job did not finish in time: {log.read_text()[-3000:]}"
        if watch is not None:
            most = max(most, checkpoints(watch))
        time.sleep(POLL_S)
    assert p.returncode == 0, log.read_text()[-5000:]
    return most


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc/*/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(stat.parent.name))
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def executor_of(worker_pid: int, app_id: str) -> int | None:
    """The executor JVM the worker started for application `app_id`: a child of the Worker JVM."""
    for c in children(worker_pid):
        argv = cmdline(c)
        if EXECUTOR_CLASS in argv and app_id in argv:
            return c
    return None


def master_json(cluster: dict) -> dict:
    with urllib.request.urlopen(f"{cluster['webui']}/json/", timeout=10) as r:
        return json.loads(r.read())


def table(d: Path) -> list[dict]:
    """The rows of a Parquet output directory, map columns as sorted pairs, sorted by id (then the rest)."""
    import pyarrow.parquet as pq

    out = [r for f in sorted(d.glob("part-*")) for r in pq.read_table(f).to_pylist()]
    for r in out:
        for k, v in r.items():
            if isinstance(v, list) and v and isinstance(v[0], tuple):
                r[k] = sorted(v)
    return sorted(out, key=lambda r: (r["id"], repr(r)))


RUN_SPECIFIC = ("wall_s", "docs_per_s", "seconds", "argv")   # timings, and the command line (it names OUT)


def counts(stats: object) -> object:
    """stats.json without what differs between any two runs: every count, the config hash, the versions."""
    if isinstance(stats, dict):
        return {k: counts(v) for k, v in stats.items() if k not in RUN_SPECIFIC}
    if isinstance(stats, list):
        return [counts(v) for v in stats]
    return stats


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] == "Z"
    except (OSError, IndexError):
        return True


def test_cd_survives_a_lost_worker(cluster, crawl, tmp_path):
    inp, n_rows = crawl
    a, b = tmp_path / "a", tmp_path / "b"

    # A: undisturbed; how many checkpoints the attempt makes tells where the middle of the job is
    t0 = time.time()
    p, log_a = start_cd(cluster, inp, a)
    made = finish(p, log_a, t0 + RUN_TIMEOUT_S, watch=a)
    print(f"[test] undisturbed run: {time.time() - t0:.0f}s, {made} checkpoints seen", flush=True)
    assert made >= 4, made
    status = master_json(cluster)
    assert status["aliveworkers"] == 2 and len(status["completedapps"]) == 1

    # B: kill one worker once half of those checkpoints are written
    t0 = time.time()
    p, log_b = start_cd(cluster, inp, b)
    deadline = t0 + RUN_TIMEOUT_S
    while checkpoints(b) < made // 2:
        assert p.poll() is None, f"the job ended before the middle: {log_b.read_text()[-3000:]}"
        assert time.time() < deadline, "the job never reached the middle"
        time.sleep(POLL_S)
    [app] = master_json(cluster)["activeapps"]
    # this cluster's last worker (its JVM, as cluster.json records it) and the executor it runs for this job
    worker = cluster["workers"][-1]
    victim = worker["pid"]
    assert Path(f"/proc/{victim}/comm").read_text().strip() == "java"
    assert "org.apache.spark.deploy.worker.Worker" in cmdline(victim) and worker["work_dir"] in cmdline(victim)
    executor = executor_of(victim, app["id"])
    assert executor is not None, (victim, app["id"], [cmdline(c) for c in children(victim)])
    assert p.poll() is None and not (b / "_SUCCESS").exists()   # the job runs at the moment of the kill
    at = checkpoints(b)
    for pid in (victim, executor):   # the node goes: its worker, then (without a chance to clean up) its executor
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:   # the executor may have exited on its own as its worker vanished
            pass
    print(f"[test] killed worker {victim} and its executor {executor} after {time.time() - t0:.0f}s, "
          f"{at} of {made} checkpoints", flush=True)

    # both processes are gone and the master has marked the worker DEAD, while the job goes on
    dead_by = time.time() + DEAD_TIMEOUT_S
    while not (gone(victim) and gone(executor) and
               any(w["state"] == "DEAD" for w in master_json(cluster)["workers"])):
        assert time.time() < dead_by, "the worker did not die, or the master never marked it DEAD"
        time.sleep(POLL_S)
    status = master_json(cluster)
    assert sorted(w["state"] for w in status["workers"]) == ["ALIVE", "DEAD"], status["workers"]
    assert p.poll() is None, "the job must still be running once the master has lost the worker"
    finish(p, log_b, deadline)
    print(f"[test] run with a lost worker: {time.time() - t0:.0f}s", flush=True)
    driver = log_b.read_text()
    assert "Lost executor" in driver, driver[-3000:]   # the driver saw the executor go (TaskSchedulerImpl)
    assert "Lost executor" not in log_a.read_text()

    # same result, row for row
    for out in (a, b):
        assert sorted(x.name for x in out.iterdir()) == ["_SUCCESS", "data", "rejected", "stats.json"], out
    kept_a, rej_a = table(a / "data"), table(a / "rejected")
    assert kept_a and rej_a and len(kept_a) + len(rej_a) == n_rows
    assert {r["reason"] for r in rej_a} >= {"dedup:url", "dedup:exact"}   # the planted copies were found
    assert table(b / "data") == kept_a
    assert table(b / "rejected") == rej_a
    stats_a, stats_b = (json.loads((out / "stats.json").read_text()) for out in (a, b))
    assert (stats_a["input"], stats_a["kept"], stats_a["rejected_total"]) == (n_rows, len(kept_a), len(rej_a))
    assert stats_a["rejected"] == dict(Counter(r["reason"] for r in rej_a))
    assert counts(stats_b) == counts(stats_a)
