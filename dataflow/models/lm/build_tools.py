"""Build KenLM's `lmplz` and `build_binary` from the PyPI sdist (`make kenlm-tools`).

The `kenlm` wheel only ships the query module; training needs the two C++ tools. They are built from the
same sdist version with Debian's boost (`make apt`) and cmake, only those two targets and what they link,
with `-j2` (CI has two cores). Cached: a second run with both binaries present does nothing.

    python -m dataflow.models.lm.build_tools --dest build/tools/kenlm [--sdist kenlm-0.3.0.tar.gz] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

TOOLS = ("lmplz", "build_binary")
DEFAULT_VERSION = "0.3.0"  # the kenlm pin in pyproject.toml


def kenlm_version() -> str:
    try:
        from importlib import metadata

        return metadata.version("kenlm")
    except Exception:
        return DEFAULT_VERSION


def tools_ready(dest: Path) -> bool:
    return all(os.access(dest / "bin" / t, os.X_OK) for t in TOOLS)


def fetch_sdist(src_dir: Path, version: str) -> Path:
    """The kenlm sdist through pip (PyPI). `--no-build-isolation` stops pip from building the sdist's
    build requirements (cmake, from source) just to read its metadata."""
    src_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(src_dir.glob(f"kenlm-{version}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
           f"kenlm=={version}", "-d", str(src_dir)]
    print("+", " ".join(cmd[:5] + ["--no-build-isolation"] + cmd[5:]), flush=True)
    if subprocess.run(cmd[:5] + ["--no-build-isolation"] + cmd[5:]).returncode != 0:
        # no setuptools in this interpreter: let pip isolate the metadata step (cmake/setuptools wheels)
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    found = sorted(src_dir.glob(f"kenlm-{version}.tar.gz"))
    if not found:
        raise FileNotFoundError(f"pip did not leave kenlm-{version}.tar.gz in {src_dir}")
    return found[0]


def unpack(sdist: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        target = into / top
        if not (target / "CMakeLists.txt").exists():
            tf.extractall(into, filter="data")
    if not (target / "CMakeLists.txt").exists():
        raise FileNotFoundError(f"{sdist} has no CMakeLists.txt under {top}/")
    return target


def build(source: Path, build_dir: Path, jobs: int) -> Path:
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is not installed: run `make apt` (cmake build-essential boost)")
    run = lambda cmd: (print("+", " ".join(cmd), flush=True), subprocess.run(cmd, check=True))
    run(["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
         "-DCOMPILE_TESTS=OFF", "-DENABLE_PYTHON=OFF"])
    run(["cmake", "--build", str(build_dir), "--target", *TOOLS, "--parallel", str(jobs)])
    return build_dir / "bin"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dataflow.models.lm.build_tools", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=Path("build/tools/kenlm"),
                    help="install prefix: DEST/bin/{lmplz,build_binary}; DEST/src and DEST/build are kept as cache")
    ap.add_argument("--sdist", type=Path, default=None, help="a local kenlm sdist (default: download it with pip)")
    ap.add_argument("--version", default=kenlm_version(), help="kenlm sdist version (default: the installed kenlm)")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="parallel compile jobs (default 2)")
    ap.add_argument("--force", action="store_true", help="rebuild even if both tools are present")
    a = ap.parse_args(argv)
    dest = a.dest.resolve()
    if tools_ready(dest) and not a.force:
        print(f"kenlm tools already built in {dest}/bin", flush=True)
        return 0
    t0 = time.time()
    sdist = a.sdist.resolve() if a.sdist else fetch_sdist(dest / "src", a.version)
    source = unpack(sdist, dest / "src")
    bin_dir = build(source, dest / "build", a.jobs)
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        shutil.copy2(bin_dir / tool, dest / "bin" / tool)
    info = {"sdist": sdist.name, "tools": list(TOOLS), "build_s": round(time.time() - t0, 1)}
    (dest / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"built {', '.join(TOOLS)} from {sdist.name} in {info['build_s']} s -> {dest}/bin", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
