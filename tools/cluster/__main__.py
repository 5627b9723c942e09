"""A Spark standalone cluster on 127.0.0.1 from the pyspark distribution: one master, N workers, each worker with
its own work directory under DIR. `make cluster-up` / `make cluster-down` call this.

  python -m tools.cluster up   [--dir build/cluster] [--port 7077] [--webui-port 8080] [--workers 2]
                               [--worker-cores 1] [--worker-memory 1g] [--hide DIR ...]
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

`--hide DIR` (repeatable) makes the workers stand on nodes that do not share the driver's disk: each worker
starts inside its own mount namespace (`unshare -m --propagation private`, which needs root or CAP_SYS_ADMIN)
with an empty tmpfs mounted over every DIR, so its executors cannot read what the driver keeps there, and what
an executor writes there stays in the worker's namespace, invisible to the driver (and gone with the worker).
Everything else (the repository, the venv, SPARK_HOME, DIR) stays visible. `unshare` and the shell that mounts
exec into spark-class, which execs the JVM: the recorded process id is the worker's JVM, and `up` checks in
/proc/<pid>/mountinfo that each worker's namespace really has the tmpfs over every DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
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
REPO = Path(__file__).resolve().parents[2]
STATE = "cluster.json"
DAEMON_MEMORY = "256m"        # master/worker JVM heap (Spark's default 1g; they only schedule here)
START_TIMEOUT_S = 300         # master up and every worker registered (43 s measured at load 18 on 2 cores)
POLL_S = 0.5
HIDDEN_SIZE = "64m"           # each --hide tmpfs: memory-backed, so what executors write there is bounded


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


def _spawn(args: list[str], log: Path, env: dict, hide: list[Path] = ()) -> int:
    """Start `spark-class ARGS` in its own session (so `down` can stop its process group); with `hide`, inside
    a private mount namespace with a tmpfs over each of those directories. Every step execs the next, so the
    returned pid ends up being the JVM's."""
    argv = [str(SPARK_HOME / "bin" / "spark-class"), *args]
    if hide:
        mounts = " && ".join(f"mount -t tmpfs -o size={HIDDEN_SIZE} ziya2-hidden {shlex.quote(str(h))}"
                             for h in hide)
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$0" "$@"', *argv]
    with open(log, "ab") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
    return p.pid


def check_hide(hide: list[Path], d: Path) -> list[Path]:
    """The directories to hide from the workers, resolved and created (an executor must not be able to create
    one on the shared disk either). A worker cannot start without its own directory, Spark or the repository,
    so hiding any of them is refused, as is a machine without `unshare`."""
    if not hide:
        return []
    if shutil.which("unshare") is None:
        raise SystemExit("[cluster] --hide needs util-linux's `unshare` (and root or CAP_SYS_ADMIN for mount)")
    out = []
    for h in hide:
        h = h.resolve()
        for needed in (d, SPARK_HOME, REPO, Path(sys.prefix).resolve()):
            if needed == h or needed.is_relative_to(h):
                raise SystemExit(f"[cluster] --hide {h} would hide {needed}, which the workers need")
        h.mkdir(parents=True, exist_ok=True)
        out.append(h)
    return out


def tmpfs_mounts(pid: int) -> set[str]:
    """Mount points of the tmpfs file systems in the mount namespace of process `pid` (/proc/PID/mountinfo:
    the 5th field is the mount point, with octal escapes; the file system type follows the ' - ')."""
    out = set()
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                head, _, tail = line.partition(" - ")
                if tail.split(" ", 1)[0] == "tmpfs":
                    out.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), head.split(" ")[4]))
    except OSError:
        pass
    return out


def check_hidden(pids: list[int], hide: list[Path]) -> list[str]:
    """For each worker pid, the hidden directories its namespace does not cover (empty: isolation holds)."""
    return [f"worker pid {p}: {h}" for p in pids for h in hide if str(h) not in tmpfs_mounts(p)]


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


def up(d: Path, port: int, webui_port: int, workers: int, cores: int, memory: str,
       hide: list[Path] = ()) -> dict:
    d = d.resolve()
    hide = check_hide(list(hide), d)
    st = read_state(d)
    if st and any(_alive(p) for p in st["pids"]):
        if master_status(st["webui"]) and st.get("hidden", []) == [str(h) for h in hide]:
            print(f"[cluster] already up: {st['master']} (make cluster-down first to restart)")
            return st
        down(d)
    check_ports({"master": port, "web UI": webui_port})
    d.mkdir(parents=True, exist_ok=True)
    env = _env(d)
    master, webui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui_port}"
    pids = [_spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                    "--webui-port", str(webui_port)], d / "master.log", env)]
    st = {"master": master, "webui": webui, "pids": pids, "workers": [], "hidden": [str(h) for h in hide]}
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
                      master], d / f"worker-{i}.log", env, hide)
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
    uncovered = check_hidden(pids[1:], hide)
    if uncovered:
        down(d)
        raise SystemExit(f"[cluster] a worker's namespace does not hide {', '.join(uncovered)}; see {d}/worker-*.log")
    defaults = write_defaults(d, master)
    hidden = f"; hidden from the workers: {', '.join(map(str, hide))}" if hide else ""
    print(f"[cluster] up: {master} ({workers} workers x {cores} core, {memory}; UI {webui}; state {d / STATE}; "
          f"SPARK_CONF_DIR={defaults.parent} for its spark-defaults.conf{hidden})")
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
    ap.add_argument("--hide", action="append", default=[], type=Path, metavar="DIR",
                    help="start every worker in its own mount namespace with an empty tmpfs over DIR, so executors "
                         "cannot see the driver's files there (repeatable; needs unshare and root)")
    a = ap.parse_args(argv)
    d = Path(a.dir)
    if a.action == "up":
        up(d, a.port, a.webui_port, a.workers, a.worker_cores, a.worker_memory, a.hide)
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
