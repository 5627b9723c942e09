"""python -m bench --corpus build/corpus/out/bench --models build/models --work build/bench --out BENCHMARKS.md"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from . import STAGES, BenchContext, machine_line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--corpus", required=True, type=Path)
    ap.add_argument("--fixture", type=Path, default=Path("build/corpus/out/fixture"))
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--peer-python", type=Path, default=Path(".venv-peer/bin/python"))
    ap.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--only", nargs="*", choices=STAGES, help="run only these benchmarks")
    ap.add_argument("--quick", action="store_true", help="small inputs (smoke run)")
    a = ap.parse_args(argv)
    ctx = BenchContext(a.corpus, a.fixture, a.models, a.work, a.peer_python, a.quick)
    a.work.mkdir(parents=True, exist_ok=True)
    sections_dir = Path("docs/bench")
    sections_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in a.only or STAGES:
        t0 = time.time()
        print(f"== bench {name}", flush=True)
        try:
            mod = importlib.import_module(f"bench.{name}")
            body = mod.run(ctx).strip()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue  # keep the last good section for this stage; the failure is in the console and exit code
        stamp = (f"_Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {machine_line()}, "
                 f"with `make bench ONLY={name}` ({time.time() - t0:.0f} s)._")
        (sections_dir / f"{name}.md").write_text(body + "\n\n" + stamp + "\n")
        print(f"== bench {name} done in {time.time() - t0:.0f}s", flush=True)
    write_benchmarks(a.out, sections_dir)
    print(f"wrote {a.out}")
    return 1 if failed else 0


def write_benchmarks(out: Path, sections_dir: Path) -> None:
    """BENCHMARKS.md = a header + each stage's latest section (docs/bench/<stage>.md), in pipeline order."""
    parts = ["# Benchmarks\n\nReproduce all with `make bench` (or one with `make bench ONLY=<name>`: "
             + ", ".join(STAGES) + "). Each section names its command, machine and date.\n"]
    for name in STAGES:
        f = sections_dir / f"{name}.md"
        if f.exists():
            parts.append(f.read_text().strip() + "\n")
    out.write_text("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
