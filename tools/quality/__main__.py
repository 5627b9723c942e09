"""`make quality`: build the labelled set (cached under ROOT/set) and measure every stage on it -> QUALITY.md.

  python -m tools.quality [--root build/quality] [--out QUALITY.md] [--conf conf/pipeline.yaml]
                          [--quality-conf conf/quality.yaml] [--skip-fetch] [--rebuild]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time

from dataflow.core.overrides import load_yaml
from dataflow.pipeline.conf import load_conf

from . import labelled, measure, report, sources

SETS = ("lid", "rf", "cd", "as")
BUILDER_VERSION = 7   # bump when labelled.py changes what it builds, so a cached set is rebuilt
PAGES_VERSION = 1     # bump when sources.read_pages changes what it reads


def _write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def set_key(qcfg: dict) -> str:
    body = {k: v for k, v in qcfg.items() if k != "goals"}
    return hashlib.sha256(json.dumps([BUILDER_VERSION, body], sort_keys=True).encode()).hexdigest()[:16]


def _pages(x: str, qcfg: dict, root: str) -> list:
    """Parsing ~10k HTML pages is the slow part of a build: the pages are cached by the package list."""
    key = hashlib.sha256(json.dumps([PAGES_VERSION, qcfg["packages"]], sort_keys=True).encode()).hexdigest()[:16]
    path = f"{root}/pages-{key}.pkl"
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    pages = sources.read_pages(x, qcfg)
    with open(path + ".tmp", "wb") as f:
        pickle.dump(pages, f)
    os.replace(path + ".tmp", path)
    return pages


def build_set(qcfg: dict, root: str, skip_fetch: bool) -> dict[str, list[dict]]:
    x = f"{root}/x" if skip_fetch else sources.fetch_packages(qcfg, root)
    seed = qcfg["seed"]
    pages = _pages(x, qcfg, root)
    words = {"en": sources.english_words(x, qcfg), "zh": sources.chinese_words()}
    ref = sources.reference_pages(x, qcfg)   # clean reference sections (RF, AS) besides the pages
    sets = {"lid": labelled.lid_set(pages, qcfg, seed),
            "rf": (labelled.rf_clean(pages + ref, qcfg, seed)
                   + labelled.rf_junk(pages, words, sources.number_rows(x, qcfg), qcfg, seed)),
            "cd": labelled.cd_set(pages, sources.localization_chapters(x, qcfg), qcfg, seed),
            "as": labelled.as_set(pages + ref, qcfg, seed)}
    d = f"{root}/set"
    os.makedirs(d, exist_ok=True)
    for name, rows in sets.items():
        _write_jsonl(f"{d}/{name}.jsonl", rows)
    with open(f"{d}/VERSIONS", "w") as f:
        for name in sorted(os.listdir(f"{root}/dl")):
            f.write(name + "\n")
    with open(f"{d}/set.json", "w") as f:
        json.dump({"key": set_key(qcfg), "counts": {k: len(v) for k, v in sets.items()}}, f)
    return sets


def load_or_build(qcfg: dict, root: str, skip_fetch: bool, rebuild: bool) -> tuple[dict, bool]:
    d = f"{root}/set"
    try:
        ok = not rebuild and json.load(open(f"{d}/set.json"))["key"] == set_key(qcfg)
    except (OSError, ValueError, KeyError):
        ok = False
    if ok:
        return {name: _read_jsonl(f"{d}/{name}.jsonl") for name in SETS}, False
    return build_set(qcfg, root, skip_fetch), True


def _git(*args) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def spark_session():
    from dataflow.core.spark import get_session

    # a small local session: the CD set is ~1.5k records; 2 cores and 2 GB keep `make quality` a good neighbour
    return get_session({"spark": {"master": "local[2]", "driver_memory": "2g", "log_level": "ERROR",
                                  "conf": {"spark.sql.shuffle.partitions": 4, "spark.ui.enabled": "false"}}},
                       app_name="ziya2-quality")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="build/quality")
    ap.add_argument("--out", default="QUALITY.md")
    ap.add_argument("--conf", default="conf/pipeline.yaml")
    ap.add_argument("--quality-conf", default="conf/quality.yaml")
    ap.add_argument("--skip-fetch", action="store_true", help="reuse ROOT/dl and ROOT/x as they are")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the set even if the cached one matches")
    a = ap.parse_args(argv)
    t0 = time.time()
    cfg = load_conf(a.conf)
    qcfg = load_yaml(open(a.quality_conf, encoding="utf-8").read())
    sets, built = load_or_build(qcfg, a.root, a.skip_fetch, a.rebuild)
    print(f"quality set: {({k: len(v) for k, v in sets.items()})} ({'built' if built else 'cached'}, "
          f"{time.time() - t0:.0f}s)", flush=True)
    results = {"lid": measure.lid(sets["lid"], cfg)}
    print(f"lid: {results['lid']['seconds']}s", flush=True)
    results["rf"] = measure.rf(sets["rf"], cfg)
    print(f"rf: {results['rf']['seconds']}s", flush=True)
    results["as"] = measure.as_(sets["as"], cfg)
    print(f"as: {results['as']['seconds']}s", flush=True)
    spark = spark_session()
    try:
        results["cd"] = measure.cd(spark, sets["cd"], cfg, os.path.abspath(a.root))
    finally:
        spark.stop()
    print(f"cd: {results['cd']['seconds']}s", flush=True)
    dirty = _git("status", "--porcelain", "--", "dataflow", "conf", "jobs")
    meta = {"command": "make quality" if os.environ.get("MAKELEVEL") else "python -m tools.quality " + " ".join(argv or sys.argv[1:]),
            "commit": _git("rev-parse", "HEAD"), "dirty": "dataflow/ or conf/" if dirty else "",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": time.time() - t0, "built": built, "root": a.root, "conf": a.conf,
            "quality_conf": a.quality_conf,
            "set": {"packages": sources.deb_names(qcfg), "counts": ", ".join(f"{k} {len(v)}" for k, v in sets.items())}}
    with open(f"{a.root}/results.json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, ensure_ascii=False, default=str)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(report.render(results, qcfg["goals"], meta))
    missed = [n for n, _, _, ok in report.verdicts(results, qcfg["goals"]) if not ok]
    print(f"{a.out}: {len(missed)} goal(s) missed{': ' + ', '.join(missed) if missed else ''} ({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
