"""Pipeline configuration: one YAML file (conf/pipeline.yaml) plus dotted overrides, validated.

The configuration is a plain nested dict, passed explicitly to every stage (never a global).
`--set a.b.c=value` overrides parse the value as YAML, so numbers, booleans and lists keep their type;
under `spark.conf` the rest of the key is one Spark key (`--set spark.conf.spark.sql.shuffle.partitions=8`).
`load_with_spec` checks the result against a schema on the driver (the pipeline's: `dataflow.pipeline.conf`) (ConfigError: one line per
mistake) and resolves relative paths: the YAML's against the repository root the file belongs to (the
parent of `conf/`), `--set` ones against the current directory, so jobs run from any directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from dataflow.core import fs
from dataflow.core.confschema import File, Section, path_keys
from dataflow.core.confschema import validate as check
# `--set` overrides: one parser for the pipeline and the trainer (dataflow.core.overrides)
from dataflow.core.overrides import DOTTED_KEY_MAPS, _split_key, apply_overrides, load_yaml, parse_override  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]


def packaged_conf_root(root: Path = REPO_ROOT) -> Path:
    """The folder whose `conf/` holds the shipped configuration: the checkout, or, when `dataflow` is imported
    from `make dist`'s zip (`spark-submit --py-files`: REPO_ROOT is then the zip file itself), the zip's `conf/`
    extracted once into a private temporary folder named after the zip's content hash. The YAML's relative
    paths (conf/rules/...) resolve against that folder like against a checkout, so a job without `--conf`
    reads the configuration and lexicons it was shipped with."""
    if not zipfile.is_zipfile(root):
        return root
    h = hashlib.sha256()
    with open(root, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    dest = Path(tempfile.gettempdir()) / f"ziya2-conf-{h.hexdigest()[:16]}"
    if not (dest / "conf").is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
        with zipfile.ZipFile(root) as z:
            z.extractall(tmp, [n for n in z.namelist() if n.startswith("conf/")])
        try:
            os.replace(tmp, dest)     # atomic: a concurrent job sees the whole folder or none
        except OSError:               # another job extracted the same zip first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


DEFAULT_CONF = packaged_conf_root() / "conf" / "pipeline.yaml"


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from a path or URI; a missing file or a non-mapping is a clear error."""
    path = str(path)
    if not fs.exists(path):
        raise FileNotFoundError(f"configuration file {path} does not exist")
    try:
        cfg = load_yaml(fs.read_text(path)) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"configuration file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"configuration file {path} must hold a mapping at the top level")
    return cfg


def conf_root(path: str | os.PathLike) -> str:
    """The directory relative paths of a configuration file are read against: the repository root for a file
    in a `conf/` folder (conf/pipeline.yaml names build/models/..., conf/rules/...), else the file's folder."""
    d = fs.parent(fs.normalize(str(path)))
    return fs.parent(d) if fs.basename(d) == "conf" else d


def resolve_paths(spec, cfg: dict, base: str | None) -> None:
    """Make every relative local File/Dir value absolute, in place: against `base` (falling back to the package
    root where only that has the file), or against the current directory when `base` is None."""
    for _key, _spec, value, container, index in list(path_keys(spec, cfg)):
        if fs.scheme(value) or os.path.isabs(os.path.expanduser(value)):
            continue
        if base is None:
            container[index] = os.path.abspath(value)
            continue
        cand = fs.join(base, value)
        if fs.is_local(cand) and not os.path.exists(cand) and (REPO_ROOT / value).exists():
            cand = str(REPO_ROOT / value)
        container[index] = cand


def load_with_spec(spec: Section, path: str | os.PathLike, overrides: Iterable[str] = (), *,
                   validate: bool = True) -> dict:
    """Load a YAML configuration, apply dotted overrides, resolve paths and check the result against `spec`
    (ConfigError names every wrong key). Nothing here starts Spark. The pipeline's own configuration is
    `dataflow.pipeline.conf.load_conf`, which passes the spec assembled from every stage."""
    cfg = read_yaml(path)
    resolve_paths(spec, cfg, conf_root(path))
    cfg = apply_overrides(cfg, overrides)
    resolve_paths(spec, cfg, None)
    if validate:
        check(spec, cfg)
    return cfg


def missing_files(spec: Section, cfg: Mapping, sections: Iterable[str]) -> list[str]:
    """'<key> = <path>' for every configured File of these sections that does not exist (checked on the
    driver before any task starts; URIs through the filesystem layer)."""
    out = []
    for name in sections:
        sub = spec.fields.get(name)
        if sub is None or not isinstance(cfg.get(name), Mapping):
            continue
        for key, s, value, _c, _i in path_keys(sub, cfg[name], name):
            if isinstance(s, File) and not fs.exists(value):
                out.append(f"{key} = {value}")
    return out


def require_files(spec: Section, cfg: Mapping, sections: Iterable[str]) -> None:
    """Raise FileNotFoundError naming each missing model/lexicon file of these sections."""
    missing = missing_files(spec, cfg, sections)
    if missing:
        raise FileNotFoundError("missing file(s) named by the configuration: " + "; ".join(missing))


def section(cfg: Mapping, name: str) -> dict:
    """A stage's own section; a missing section is an error that names it."""
    if name not in cfg or not isinstance(cfg[name], dict):
        raise KeyError(f"configuration has no section {name!r}")
    return cfg[name]


def conf_hash(obj: Any) -> str:
    """Stable hash of a configuration fragment (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
