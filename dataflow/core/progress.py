"""One progress line per stage, instead of Spark's overlapping console bars (#12.7).

A daemon thread polls Spark's own status store (the one behind the web UI, kept whether or not the UI
runs; no listener of ours) every `interval` seconds and prints

    [filter] 4,210 of 12,000 records  1,020 rec/s  elapsed 0:04  ETA 0:08

on one line (rewritten in place on a terminal; a new line at most every `log_every` seconds otherwise).
The measure is the whole stage's, not Spark's sub-stages': a stage tells the runner what its input holds
(`Work`: the rows its Parquet footers declare, or the bytes of the raw files DP lists) and how much of it
is done (the records Spark has read since the stage began, or the read units DP's ledger has recorded), and
the ETA extrapolates that share. Without a measure, the line falls back to the running tasks. Nothing is
printed for a stage that ends before the first poll.
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


class Work:
    """How much of a stage's input is done: `total` units (records or bytes, named by `unit`), and `done()` ->
    (units done, records done) polled from the driver."""

    def __init__(self, total: int, unit: str, done):
        self.total, self.unit, self.done = int(total), unit, done


def read_work(spark, total_rows: int) -> Work:
    """A Parquet-input stage: the records its Spark stages have read since now, out of the footers' rows (a
    frame read twice counts once: the share is capped at the input)."""
    base = _read_so_far(spark)

    def done():
        n = min(max(0, _read_so_far(spark) - base), total_rows)
        return n, n

    return Work(total_rows, "records", done)


def _read_so_far(spark) -> int:
    try:
        sc = spark.sparkContext
        # every stage, any status: stageList(statuses=null, details, withSummaries, quantiles, taskStatuses)
        stages = sc._jsc.sc().statusStore().stageList(None, False, False, sc._gateway.new_array(sc._jvm.double, 0),
                                                      None)
        return sum(int(stages.apply(i).inputRecords()) for i in range(stages.size()))
    except Exception:  # noqa: BLE001 - a JVM API we do not know: no measure, the task line instead
        return 0


def work_line(stage: str, work: Work, elapsed: float) -> str | None:
    done, records = work.done()
    if not done:
        return None
    parts = [f"[{stage}]"]
    if work.unit == "records":
        parts.append(f"{done:,} of {work.total:,} records")
    else:
        parts.append(f"{records:,} records  {_size(done)} of {_size(work.total)}")
    if records and elapsed > 0:
        parts.append(f"{records / elapsed:,.0f} rec/s")
    parts.append(f"elapsed {_hms(elapsed)}")
    if 0 < done < work.total:
        parts.append(f"ETA {_hms(elapsed * (work.total - done) / done)}")
    return "  ".join(parts)


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
                   log_every: float = LOG_EVERY_S, work=None):
    """Print the stage's progress line while the block runs (a no-op when disabled). `work() -> Work | None`
    gives the stage's measure once its input is known (asked at each poll until it answers)."""
    if not enabled:
        yield
        return
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    stop = threading.Event()
    t0 = time.time()
    state = {"printed": False, "last": 0.0}
    first: dict = {}

    measure: dict = {}

    def loop():
        while not stop.wait(interval):
            try:
                if work is not None and "w" not in measure:
                    w = work()
                    if w is not None:
                        measure["w"] = w
                snap = snapshot(spark)
                now = time.time()
                text = work_line(stage, measure["w"], now - t0) if "w" in measure else None
            except Exception:
                return
            if text is None:
                if not snap["tasks"]:
                    continue
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
