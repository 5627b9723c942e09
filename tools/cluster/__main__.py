"""A Spark standalone cluster on 127.0.0.1 from the pyspark distribution: one master, N workers, each worker with
its own work directory under DIR. `make cluster-up` / `make cluster-down` call this.

  python -m tools.cluster up   [--dir build/cluster] [--port 7077] [--webui-port 8080] [--workers 2]
                               [--worker-cores 1] [--worker-memory 1g]
  python -m tools.cluster down [--dir build/cluster]
  python -m tools.cluster status [--dir build/cluster]

Master and workers run `spark-class org.apache.spark.deploy.master.Master` / `...worker.Worker` (the pip
distribution of pyspark ships bin/spark-class but not sbin/start-master.sh). `up` returns once every worker has
registered with the master (read from the master's /json status page); DIR/cluster.json records the master URL
and process ids, and `down` stops exactly those processes. Logs: DIR/master.log, DIR/worker-<i>.log.

A busy port fails at once, naming it: Spark itself would move the master to the next free port and leave the
workers knocking at the one asked for, so `up` checks both ports before it starts the master and then that the
master bound the port asked for. DIR/conf/spark-defaults.conf (for `SPARK_CONF_DIR=DIR/conf`) names the master
and puts conf/log4j2.properties on the driver JVM's command line, so a plain `spark-submit` there shows
errors only, like the printed lines.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

from dataflow.core.spark import LOG4J2

SPARK_HOME = Path(pyspark.__file__).resolve().parent
STATE = "cluster.json"
DAEMON_MEMORY = "256m"        # master/worker JVM heap (Spark's default 1g; they only schedule here)
START_TIMEOUT_S = 300         # master up and every worker registered (43 s measured at load 18 on 2 cores)
POLL_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on (or holds) the port: binding it is the test the master's own bind makes."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: dict[str, int]) -> None:
    busy = [f"{what} port {p}" for what, p in ports.items() if port_in_use(p)]
    if busy:
        raise SystemExit(f"[cluster] {' and '.join(busy)} on 127.0.0.1 already in use; stop what holds it or choose "
                         f"another (make cluster-up CLUSTER_PORT=... CLUSTER_UI=...; --port/--webui-port)")


def write_defaults(d: Path, master: str) -> Path:
    """DIR/conf/spark-defaults.conf: this cluster's master and the quiet log4j2 file for the driver JVM."""
    conf = d / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    p = conf / "spark-defaults.conf"
    p.write_text(f"spark.master {master}\n"
                 f"spark.driver.extraJavaOptions -Dlog4j2.configurationFile={LOG4J2.as_uri()}\n")
    return p


def _env(d: Path) -> dict:
    env = dict(os.environ, SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_DAEMON_MEMORY=DAEMON_MEMORY, SPARK_LOG_DIR=str(d), SPARK_PID_DIR=str(d))
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


def _spawn(args: list[str], log: Path, env: dict) -> int:
    with open(log, "ab") as f:
        p = subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return p.pid


def master_status(webui: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{webui}/json/", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def read_state(d: Path) -> dict | None:
    try:
        return json.loads((d / STATE).read_text())
    except (OSError, ValueError):
        return None


def up(d: Path, port: int, webui_port: int, workers: int, cores: int, memory: str) -> dict:
    d = d.resolve()
    st = read_state(d)
    if st and any(_alive(p) for p in st["pids"]):
        if master_status(st["webui"]):
            print(f"[cluster] already up: {st['master']} (make cluster-down first to restart)")
            return st
        down(d)
    check_ports({"master": port, "web UI": webui_port})
    d.mkdir(parents=True, exist_ok=True)
    env = _env(d)
    master, webui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui_port}"
    pids = [_spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                    "--webui-port", str(webui_port)], d / "master.log", env)]
    st = {"master": master, "webui": webui, "pids": pids, "workers": []}
    (d / STATE).write_text(json.dumps(st, indent=2) + "\n")
    deadline = time.time() + START_TIMEOUT_S
    while master_status(webui) is None:
        if time.time() > deadline or not _alive(pids[0]):
            down(d)
            raise SystemExit(f"[cluster] the master did not start; see {d / 'master.log'}")
        time.sleep(POLL_S)
    bound = (master_status(webui) or {}).get("url")
    if bound != master:   # taken between the check and the bind: Spark moved on to another port
        down(d)
        raise SystemExit(f"[cluster] port {port} was taken: the master bound {bound} instead of {master}; choose "
                         f"another (make cluster-up CLUSTER_PORT=...)")
    for i in range(1, workers + 1):
        wdir = d / f"worker-{i}"
        (wdir / "work").mkdir(parents=True, exist_ok=True)
        pid = _spawn(["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
                      "--memory", memory, "--work-dir", str(wdir / "work"), "--webui-port", str(free_port()),
                      master], d / f"worker-{i}.log", env)
        pids.append(pid)
        st["workers"].append({"pid": pid, "work_dir": str(wdir / "work")})
        (d / STATE).write_text(json.dumps(st, indent=2) + "\n")
    while True:
        s = master_status(webui) or {}
        alive = [w for w in s.get("workers", []) if w.get("state") == "ALIVE"]
        if len(alive) >= workers:
            break
        if time.time() > deadline or not all(_alive(p) for p in pids):
            down(d)
            raise SystemExit(f"[cluster] {len(alive)} of {workers} workers registered; see {d}/worker-*.log")
        time.sleep(POLL_S)
    defaults = write_defaults(d, master)
    print(f"[cluster] up: {master} ({workers} workers x {cores} core, {memory}; UI {webui}; state {d / STATE}; "
          f"SPARK_CONF_DIR={defaults.parent} for its spark-defaults.conf)")
    return st


def down(d: Path) -> None:
    d = d.resolve()
    st = read_state(d)
    if not st:
        print(f"[cluster] nothing to stop ({d / STATE} does not exist)")
        return
    for pid in reversed(st["pids"]):   # workers first, then the master
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    for pid in st["pids"]:
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (d / STATE).unlink(missing_ok=True)
    print(f"[cluster] stopped {st['master']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools.cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("--dir", default="build/cluster", help="state, logs and worker work directories")
    ap.add_argument("--port", type=int, default=7077, help="master port (Spark's default 7077)")
    ap.add_argument("--webui-port", type=int, default=8080, help="master web UI port (Spark's default 8080)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-cores", type=int, default=1)
    ap.add_argument("--worker-memory", default="1g", help="memory a worker offers its executors")
    a = ap.parse_args(argv)
    d = Path(a.dir)
    if a.action == "up":
        up(d, a.port, a.webui_port, a.workers, a.worker_cores, a.worker_memory)
    elif a.action == "down":
        down(d)
    else:
        st = read_state(d)
        s = master_status(st["webui"]) if st else None
        if not s:
            print("[cluster] not running")
            return 1
        print(f"[cluster] {st['master']}: {s.get('aliveworkers', len(s.get('workers', [])))} workers alive, "
              f"{s.get('cores')} cores, {len(s.get('activeapps', []))} running applications")
    return 0


if __name__ == "__main__":
    sys.exit(main())
