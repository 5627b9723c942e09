"""The one bench harness every section uses: whole processes, sides interleaved, exact CPU time, load recorded.

- Each repetition runs every side once; the order rotates per round (A B, then B A, ...) so neither side
  always runs on a machine warmed or loaded by the other.
- CPU seconds are exact for the whole process tree: each run gets its own cgroup (v1 `cpuacct.usage`, or v2
  `cpu.stat usage_usec`), which every descendant (JVM, Python workers, process pools) inherits. Where no cgroup
  can be made, `wait4` rusage of the reaped child is used (it includes descendants the child waited for); the
  section names the method. Nothing is sampled.
- Peak memory of the tree comes from the memory cgroup (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
- Load: the 1-minute load average before and after each run, and the CPU time *other* processes used during the
  run (all-CPU time from /proc/stat minus the run's own): a run is marked busy when others took more than
  `BUSY_SHARE` of the machine's CPU capacity during it.
- Reported: median with min and max per side, and ratios of medians.
"""
from __future__ import annotations

import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

BUSY_SHARE = 0.10   # others used > 10% of all cores' time during a run -> the section warns (our choice)
_V1 = Path("/sys/fs/cgroup")
_V2 = Path("/sys/fs/cgroup/unified") if (Path("/sys/fs/cgroup/unified") / "cgroup.procs").exists() else Path("/sys/fs/cgroup")


@dataclass
class Run:
    side: str
    rep: int
    wall_s: float
    cpu_s: float
    cpu_method: str
    peak_mem_bytes: int | None
    load_before: float
    load_after: float
    others_cpu_share: float      # CPU used by other processes during the run, as a share of all cores' capacity
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def busy(self) -> bool:
        return self.others_cpu_share > BUSY_SHARE


class _Cgroup:
    """A private cgroup for one run (v1 cpuacct + memory, else v2), or nothing if none can be made."""

    def __init__(self):
        self.name = f"ziya2-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs: dict[str, Path] = {}
        self.method = "wait4"
        try:
            if (_V1 / "cpuacct" / "tasks").exists():
                for ctl in ("cpuacct", "memory"):
                    d = _V1 / ctl / self.name
                    d.mkdir()
                    self.dirs[ctl] = d
                self.method = "cgroup-v1 cpuacct.usage"
            elif (_V2 / "cgroup.procs").exists():
                d = _V2 / self.name
                d.mkdir()
                self.dirs["v2"] = d
                self.method = "cgroup-v2 cpu.stat"
        except OSError:
            self.close()
            self.dirs, self.method = {}, "wait4"

    def enter(self) -> None:
        """Called in the child before exec: join the cgroup(s)."""
        pid = str(os.getpid())
        for ctl, d in self.dirs.items():
            (d / ("cgroup.procs" if ctl == "v2" else "tasks")).write_text(pid)

    def cpu_s(self) -> float | None:
        if "cpuacct" in self.dirs:
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        if "v2" in self.dirs:
            for line in (self.dirs["v2"] / "cpu.stat").read_text().splitlines():
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
        return None

    def peak_mem(self) -> int | None:
        try:
            if "memory" in self.dirs:
                return int((self.dirs["memory"] / "memory.max_usage_in_bytes").read_text())
            if "v2" in self.dirs and (self.dirs["v2"] / "memory.peak").exists():
                return int((self.dirs["v2"] / "memory.peak").read_text())
        except (OSError, ValueError):
            pass
        return None

    def leftover_pids(self) -> list[int]:
        for ctl, d in self.dirs.items():
            f = d / ("cgroup.procs" if ctl == "v2" else "tasks")
            try:
                return [int(x) for x in f.read_text().split()]
            except OSError:
                return []
        return []

    def close(self) -> None:
        for d in self.dirs.values():
            try:
                d.rmdir()
            except OSError:
                pass


def _cpu_jiffies() -> int:
    """All CPU time of the machine so far (user+nice+system+irq+softirq+steal), in clock ticks."""
    fields = open("/proc/stat").readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def run_measured(cmd: Sequence[str], *, side: str = "", rep: int = 0, env: dict | None = None,
                 cwd: str | os.PathLike | None = None, timeout: float | None = None) -> Run:
    """Run one command as a whole process tree and measure it."""
    cg = _Cgroup()
    hz = os.sysconf("SC_CLK_TCK")
    load_before = os.getloadavg()[0]
    jiffies0 = _cpu_jiffies()
    t0 = time.perf_counter()
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    try:
        p = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=out_f, stderr=err_f,
                             preexec_fn=cg.enter if cg.dirs else None, start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (p.pid, signal.SIGKILL)) if timeout else None
        if timer:
            timer.start()
        _, status, ru = os.wait4(p.pid, 0)   # reap it ourselves: wait4's rusage is the fallback CPU figure
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        # anything the tree left behind (a daemon) still belongs to this run: stop it before reading the total
        for pid in cg.leftover_pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        cpu = cg.cpu_s()
        method = cg.method
        if cpu is None:
            cpu, method = ru.ru_utime + ru.ru_stime, "wait4 rusage (reaped tree)"
        jiffies1 = _cpu_jiffies()
        total_cpu = (jiffies1 - jiffies0) / hz
        capacity = wall * (os.cpu_count() or 1)
        others = max(0.0, total_cpu - cpu) / capacity if capacity > 0 else 0.0
        out_f.seek(0)
        err_f.seek(0)
        return Run(side=side, rep=rep, wall_s=wall, cpu_s=cpu, cpu_method=method, peak_mem_bytes=cg.peak_mem(),
                   load_before=load_before, load_after=os.getloadavg()[0], others_cpu_share=others,
                   rc=os.waitstatus_to_exitcode(status), stdout=out_f.read(), stderr=err_f.read())
    finally:
        out_f.close()
        err_f.close()
        cg.close()


@dataclass
class Side:
    """One side of a comparison: how to build its command for repetition `rep`, and what to do before it."""
    name: str
    command: Callable[[int], Sequence[str]]
    env: dict | None = None
    cwd: str | os.PathLike | None = None
    before: Callable[[int], None] | None = None     # e.g. remove the previous output (not timed)
    check: Callable[[Run], None] | None = None      # raise if the run did not do the work (not timed)
    max_reps: int | None = None                     # a reference side (not a goal row) may run fewer rounds


@dataclass
class Comparison:
    runs: list[Run] = field(default_factory=list)

    def of(self, side: str) -> list[Run]:
        return [r for r in self.runs if r.side == side]

    def median(self, side: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.of(side))

    def spread(self, side: str, attr: str, fmt: str = "{:.1f}") -> str:
        vals = [getattr(r, attr) for r in self.of(side)]
        return f"{fmt.format(statistics.median(vals))} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]"

    def table(self, n_docs: int, kept: dict | None = None) -> list[str]:
        """The section's results table: median [min-max] wall and CPU per side, optional kept counts, and input
        documents per CPU-second (per core)."""
        names = list(dict.fromkeys(r.side for r in self.runs))
        counts = {n: len(self.of(n)) for n in names}
        reps = max(counts.values())
        head = "| side | wall s | CPU s (process tree) |" + (" docs kept |" if kept else "") + " input docs / CPU-second |"
        out = [f"Median [min-max] of {reps} interleaved runs" + ("" if len(set(counts.values())) == 1 else
               " (a side with fewer runs says how many)") + ":", "", head,
               "|---|---:|---:|" + ("---:|" if kept else "") + "---:|"]
        for n in names:
            k = f" {kept[n]:,} |" if kept else ""
            label = n if counts[n] == reps else f"{n} ({counts[n]} run{'s' if counts[n] > 1 else ''})"
            out.append(f"| {label} | {self.spread(n, 'wall_s')} | {self.spread(n, 'cpu_s')} |{k} "
                       f"{n_docs / self.median(n, 'cpu_s'):,.1f} |")
        return out

    def ratio(self, base: str, side: str, attr: str = "cpu_s") -> float:
        """How many times faster `side` is than `base`: median(base) / median(side)."""
        return self.median(base, attr) / self.median(side, attr)

    @property
    def busy(self) -> bool:
        return any(r.busy for r in self.runs)

    def load_line(self) -> str:
        lb = [r.load_before for r in self.runs]
        others = max(r.others_cpu_share for r in self.runs)
        methods = sorted({r.cpu_method for r in self.runs})
        line = (f"Load average (1 min) before runs {min(lb):.1f}-{max(lb):.1f} on {os.cpu_count()} cores; other "
                f"processes used at most {others:.0%} of the machine during a run; CPU time by {', '.join(methods)}.")
        if self.busy:
            line = ("> **Warning: the machine was busy** (other processes took more than "
                    f"{BUSY_SHARE:.0%} of its CPU during at least one run); ratios of CPU seconds are the "
                    "fairer reading, wall times are inflated.\n\n" + line)
        return line


def compare(sides: Sequence[Side], reps: int = 3, timeout: float | None = None, log=print) -> Comparison:
    """Interleave the sides for `reps` rounds, rotating which side goes first; every run must succeed."""
    if reps < 1:
        raise ValueError("reps must be >= 1")
    comp = Comparison()
    for rep in range(reps):
        order = list(sides[rep % len(sides):]) + list(sides[:rep % len(sides)])
        for s in order:
            if s.max_reps is not None and rep >= s.max_reps:
                continue
            if s.before:
                s.before(rep)
            cmd = list(s.command(rep))
            r = run_measured(cmd, side=s.name, rep=rep, env=s.env, cwd=s.cwd, timeout=timeout)
            if r.rc != 0:
                raise RuntimeError(f"{s.name} (rep {rep}) exited {r.rc}: {' '.join(map(shlex.quote, cmd))}\n"
                                   f"{r.stderr[-3000:]}")
            if s.check:
                s.check(r)
            log(f"  {s.name} rep {rep}: wall {r.wall_s:.1f}s cpu {r.cpu_s:.1f}s others {r.others_cpu_share:.0%}")
            comp.runs.append(r)
    return comp


def spark_env() -> dict:
    """The environment a side running our Spark jobs gets: this interpreter for driver and workers, loopback
    only, and no SPARK_MASTER from the caller (each side sets spark.master itself)."""
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1")
    env.pop("SPARK_MASTER", None)
    return env


# ---------------------------------------------------------------- provenance: commit and staleness
def git_commit(root: str | os.PathLike = ".") -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance_tag(commit: str, paths: Sequence[str]) -> str:
    """A hidden line at the top of a section: the commit it measured and the code paths it measures."""
    return f"<!-- bench: commit={commit} paths={','.join(paths)} -->"


def parse_provenance(section: str) -> tuple[str, list[str]] | None:
    import re

    m = re.search(r"<!-- bench: commit=(\S+) paths=(\S*) -->", section)
    if not m:
        return None
    return m.group(1), [p for p in m.group(2).split(",") if p]


def stale_reason(section: str, root: str | os.PathLike = ".") -> str | None:
    """Why a section no longer describes the code: no provenance, an unknown commit, or code it measures
    changed after the commit it names (committed changes, and uncommitted ones in those paths)."""
    prov = parse_provenance(section)
    if prov is None:
        return "it names no commit (measured before the bench harness)"
    commit, paths = prov
    base = commit.split("+")[0]
    if base == "unknown":
        return "it names no commit"
    try:
        subprocess.run(["git", "cat-file", "-e", f"{base}^{{commit}}"], cwd=root, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return f"its commit {base} is not in this repository"
    if not paths:
        return None
    changed = subprocess.run(["git", "diff", "--name-only", base, "--", *paths], cwd=root, capture_output=True,
                             text=True).stdout.split()
    if changed:
        more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
        return f"code it measures changed after {base}: {', '.join(changed[:3])}{more}"
    return None
