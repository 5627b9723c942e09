"""One progress line per stage, instead of Spark's overlapping console bars (#12.7).

A daemon thread polls Spark's own status store (the one behind the web UI, kept whether or not the UI
runs; no listener of ours) every `interval` seconds and prints

    [filter] 12/40 tasks  4,210 records  18.3 MB read  1,020 rec/s  elapsed 0:04  ETA 0:10

on one line (rewritten in place on a terminal; a new line at most every `log_every` seconds otherwise).
Records and bytes are what the running Spark stages have read so far; the ETA extrapolates the finished
share of their tasks. Nothing is printed for a stage that ends before the first poll.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time

POLL_S = 1.0        # how often the status store is read (cheap: a few py4j calls)
LOG_EVERY_S = 30.0  # without a terminal, a progress line at most this often (logs stay short)


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def snapshot(spark) -> dict:
    """Tasks, records and bytes of the running Spark stages (the JVM status store; statusTracker fallback)."""
    sc = spark.sparkContext
    out = {"tasks": 0, "done": 0, "records": 0, "bytes": 0}
    try:
        stages = sc._jsc.sc().statusStore().activeStages()
        for i in range(stages.size()):
            st = stages.apply(i)
            out["tasks"] += int(st.numTasks())
            out["done"] += int(st.numCompleteTasks())
            out["records"] += int(st.inputRecords()) + int(st.shuffleReadRecords())
            out["bytes"] += int(st.inputBytes()) + int(st.shuffleReadBytes())
        return out
    except Exception:  # an older/newer JVM API: tasks only, through the public tracker
        tr = sc.statusTracker()
        for sid in tr.getActiveStageIds():
            info = tr.getStageInfo(sid)
            if info is not None:
                out["tasks"] += info.numTasks
                out["done"] += info.numCompletedTasks
        return out


def line(stage: str, snap: dict, elapsed: float, first: dict) -> str:
    parts = [f"[{stage}]"]
    if snap["tasks"]:
        parts.append(f"{snap['done']}/{snap['tasks']} tasks")
    if snap["records"]:
        parts.append(f"{snap['records']:,} records")
    if snap["bytes"]:
        parts.append(f"{_size(snap['bytes'])} read")
    if snap["records"] and elapsed > 0:
        parts.append(f"{snap['records'] / elapsed:,.0f} rec/s")
    parts.append(f"elapsed {_hms(elapsed)}")
    frac = snap["done"] / snap["tasks"] if snap["tasks"] else 0.0
    if 0 < frac < 1:
        started = first.get("t", 0.0)
        parts.append(f"ETA {_hms((elapsed - started) * (1 - frac) / frac)}")
    return "  ".join(parts)


@contextlib.contextmanager
def stage_progress(spark, stage: str, enabled: bool = True, stream=None, interval: float = POLL_S,
                   log_every: float = LOG_EVERY_S):
    """Print the stage's progress line while the block runs (a no-op when disabled)."""
    if not enabled:
        yield
        return
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    stop = threading.Event()
    t0 = time.time()
    state = {"printed": False, "last": 0.0}
    first: dict = {}

    def loop():
        while not stop.wait(interval):
            try:
                snap = snapshot(spark)
            except Exception:
                return
            if not snap["tasks"]:
                continue
            now = time.time()
            first.setdefault("t", now - t0)
            text = line(stage, snap, now - t0, first)
            if tty:
                stream.write("\r" + text[:200].ljust(100))
                stream.flush()
                state["printed"] = True
            elif now - state["last"] >= log_every:
                stream.write(text + "\n")
                stream.flush()
                state["last"] = now

    th = threading.Thread(target=loop, name=f"progress-{stage}", daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(timeout=interval * 2)
        if state["printed"]:
            stream.write("\r" + " " * 100 + "\r")
            stream.flush()
