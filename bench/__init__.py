"""Benchmarks (`make bench`). Each stage has a module here with `run(ctx: BenchContext) -> str`, returning
a Markdown section; `python -m bench` runs them in order and writes BENCHMARKS.md.
Peers (datatrove, ...) run in their own venv (`.venv-peer`, `ctx.peer_python`) on the same files in the
same run, so ratios compare like with like."""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

STAGES = ["preprocess", "score", "filter", "dedup", "factory", "profile", "demo", "tokenize", "trainer"]


@dataclass
class BenchContext:
    corpus: Path          # build/corpus/out/bench
    fixture: Path         # build/corpus/out/fixture
    models: Path          # build/models
    work: Path            # scratch directory for this run
    peer_python: Path     # .venv-peer/bin/python (datatrove and friends)
    quick: bool = False   # smaller inputs, for a smoke run

    def sub(self, name: str) -> Path:
        p = self.work / name
        p.mkdir(parents=True, exist_ok=True)
        return p


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except Exception:
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run_cmd(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)
