"""`make dist`: the library as one zip for `spark-submit --py-files` (standalone and Kubernetes put only
.zip/.egg/.jar on the executors' sys.path; a wheel works on YARN alone).

The zip holds `dataflow/` (the importable package, no byte code) and `conf/` (pipeline.yaml, mixer.yaml and the
lexicons in conf/rules) at its top level, mirroring the repository, so `dataflow.core.config.REPO_ROOT` inside it is the
zip. Jobs are not in it: spark-submit sends the job file itself. Entries carry a fixed date, so the same tree
gives the same bytes.
"""
from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dataflow",)
DATA = ("conf",)
EPOCH = (1980, 1, 1, 0, 0, 0)   # the earliest date a zip entry can carry: reproducible bytes


def members(root: Path = ROOT) -> list[tuple[Path, str]]:
    out = []
    for top in (*PACKAGES, *DATA):
        for p in sorted((root / top).rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and "__pycache__" not in rel and not p.name.endswith((".pyc", ".pyo")):
                if top in PACKAGES and p.suffix not in (".py", ".yaml", ".json", ".txt"):
                    continue
                out.append((p, rel))
    return out


def build(dest: str | os.PathLike, root: Path = ROOT) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p, rel in members(root):
            info = zipfile.ZipInfo(rel, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, p.read_bytes())
    os.replace(tmp, dest)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools.cluster.dist", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "dist" / "ziya2_dataflow.zip"), help="the zip to write")
    a = ap.parse_args(argv)
    p = build(a.out)
    n = len(zipfile.ZipFile(p).namelist())
    print(f"[dist] {p} ({n} files, {p.stat().st_size / 1e6:.1f} MB): dataflow/ and conf/ for --py-files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
