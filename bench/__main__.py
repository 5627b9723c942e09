"""python -m bench --corpus build/corpus/out/bench --models build/models --work build/bench --out BENCHMARKS.md"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
import traceback
from pathlib import Path

from . import STAGES, BenchContext, machine_line
from .harness import git_commit, parse_provenance, provenance_tag, stale_reason


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
    ap.add_argument("--compose-only", action="store_true",
                    help="only rewrite BENCHMARKS.md from docs/bench/ (marking stale sections), run nothing")
    a = ap.parse_args(argv)
    ctx = BenchContext(a.corpus, a.fixture, a.models, a.work, a.peer_python, a.quick)
    a.work.mkdir(parents=True, exist_ok=True)
    sections_dir = Path("docs/bench")
    sections_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in [] if a.compose_only else (a.only or STAGES):
        t0 = time.time()
        print(f"== bench {name}", flush=True)
        try:
            mod = importlib.import_module(f"bench.{name}")
            body = mod.run(ctx).strip()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue  # keep the last good section for this stage; the failure is in the console and exit code
        commit = git_commit()
        stamp = (f"_Measured {time.strftime('%Y-%m-%d', time.gmtime())} at commit `{commit}` on {machine_line()}, "
                 f"with `make bench ONLY={name}` ({time.time() - t0:.0f} s)._")
        tag = provenance_tag(commit, [*getattr(mod, "PATHS", []), f"bench/{name}.py", "bench/harness.py"])
        (sections_dir / f"{name}.md").write_text(tag + "\n" + body + "\n\n" + stamp + "\n")
        print(f"== bench {name} done in {time.time() - t0:.0f}s", flush=True)
    write_benchmarks(a.out, sections_dir)
    print(f"wrote {a.out}")
    return 1 if failed else 0


def write_benchmarks(out: Path, sections_dir: Path) -> None:
    """BENCHMARKS.md = a header + each section (docs/bench/<name>.md) in pipeline order, each marked stale when
    the code it measures changed after the commit it names."""
    parts = ["# Benchmarks\n\nReproduce all with `make bench` (or one with `make bench ONLY=<name>`: "
             + ", ".join(STAGES) + "). Each section names its command, commit, machine and load; a section whose "
             "measured code changed after that commit is marked stale.\n"]
    names = STAGES + sorted(p.stem for p in sections_dir.glob("*.md") if p.stem not in STAGES)
    goals = []
    for name in names:
        f = sections_dir / f"{name}.md"
        if f.exists():
            text = f.read_text().strip()
            why = stale_reason(text)
            goals += [(_title(text), _commit(text), bool(why), line) for line in goal_lines(text)]
            if why:
                text = _mark_stale(text, why, name)
            parts.append(text + "\n")
    if goals:
        parts.insert(1, _goals_section(goals))
    out.write_text("\n".join(parts))


# a sentence that states a goal: "goal >= 2.0x", "goal <= 1.15x", "(goal: >= 2x)"
_GOAL = re.compile(r"\bgoal\b[^.;]{0,40}?(>=|<=)\s*\d+(\.\d+)?x", re.I)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*(])")


def goal_lines(section: str) -> list[str]:
    """The sentences of a section that state a goal with its bound, as the section wrote them (with its
    verdict); tables, quotes and tags are skipped."""
    return [sentence for line in section.splitlines() if not line.lstrip().startswith(("|", ">", "<!--"))
            for sentence in _SENTENCE_END.split(line.strip()) if _GOAL.search(sentence)]


def _title(section: str) -> str:
    return next((line[3:].strip() for line in section.splitlines() if line.startswith("## ")), "")


def _commit(section: str) -> str:
    prov = parse_provenance(section)
    return prov[0][:12] if prov else "none"


def _goals_section(goals: list) -> str:
    """Every goal line of every section, quoted, with the section's commit; a stale section's lines say so."""
    lines = ["## Goals at a glance", "",
             "Quoted from the sections below (each states its goal and verdict where it was measured); generated "
             "when BENCHMARKS.md is written.", ""]
    for title, commit, stale, line in goals:
        mark = " **(stale: see the section)**" if stale else ""
        lines.append(f"- {title} (`{commit}`){mark}: {line}")
    return "\n".join(lines) + "\n"


def _mark_stale(text: str, why: str, name: str) -> str:
    """Insert the stale note under the section's heading (or at its top)."""
    rerun = f"`make bench ONLY={name}`" if name in STAGES else "the command this section names"
    note = f"> **Stale:** {why}. Rerun {rerun}."
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            return "\n".join(lines[:i + 1] + ["", note] + lines[i + 1:])
    return note + "\n\n" + text


if __name__ == "__main__":
    sys.exit(main())
