"""Pipeline configuration: one YAML file (conf/pipeline.yaml) plus dotted overrides, validated.

The configuration is a plain nested dict, passed explicitly to every stage (never a global).
`--set a.b.c=value` overrides parse the value as YAML, so numbers, booleans and lists keep their type;
under `spark.conf` the rest of the key is one Spark key (`--set spark.conf.spark.sql.shuffle.partitions=8`).
`load_conf` checks the result against `confspec.pipeline_spec()` on the driver (ConfigError: one line per
mistake) and resolves relative paths: the YAML's against the repository root the file belongs to (the
parent of `conf/`), `--set` ones against the current directory, so jobs run from any directory.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONF = REPO_ROOT / "conf" / "pipeline.yaml"
# maps whose keys contain dots themselves: everything after the prefix is one key
DOTTED_KEY_MAPS = (("spark", "conf"), ("pipeline", "cluster", "conf"))


def _split_key(key: str) -> list[str]:
    path = key.split(".")
    for prefix in DOTTED_KEY_MAPS:
        n = len(prefix)
        if tuple(path[:n]) == prefix and len(path) > n + 1:
            return path[:n] + [".".join(path[n:])]
    return path


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ValueError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return _split_key(key), value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        path, value = parse_override(item)
        node = cfg
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ValueError(f"override {item!r}: {part!r} is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return cfg


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from a path or URI; a missing file or a non-mapping is a clear error."""
    from dataflow.core import fs

    path = str(path)
    if not fs.exists(path):
        raise FileNotFoundError(f"configuration file {path} does not exist")
    try:
        cfg = yaml.safe_load(fs.read_text(path)) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"configuration file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"configuration file {path} must hold a mapping at the top level")
    return cfg


def conf_root(path: str | os.PathLike) -> str:
    """The directory relative paths of a configuration file are read against: the repository root for a file
    in a `conf/` folder (conf/pipeline.yaml names build/models/..., conf/rules/...), else the file's folder."""
    from dataflow.core import fs

    d = fs.parent(fs.normalize(str(path)))
    return fs.parent(d) if fs.basename(d) == "conf" else d


def resolve_paths(spec, cfg: dict, base: str | None) -> None:
    """Make every relative local File/Dir value absolute, in place: against `base` (falling back to the package
    root where only that has the file), or against the current directory when `base` is None."""
    from dataflow.core import fs
    from dataflow.core.confspec import path_keys

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


def load_conf(path: str | os.PathLike | None = None, overrides: Iterable[str] = (), *, validate: bool = True) -> dict:
    """Load the pipeline YAML, apply dotted overrides, resolve paths and check the result against the schema
    (ConfigError names every wrong key). Nothing here starts Spark."""
    from dataflow.core.confschema import validate as check
    from dataflow.core.confspec import pipeline_spec

    path = str(path) if path else str(DEFAULT_CONF)
    spec = pipeline_spec()
    cfg = read_yaml(path)
    resolve_paths(spec, cfg, conf_root(path))
    cfg = apply_overrides(cfg, overrides)
    resolve_paths(spec, cfg, None)
    if validate:
        check(spec, cfg)
    return cfg


def missing_files(cfg: Mapping, sections: Iterable[str]) -> list[str]:
    """'<key> = <path>' for every configured File of these sections that does not exist (checked on the
    driver before any task starts; URIs through the filesystem layer)."""
    from dataflow.core import fs
    from dataflow.core.confspec import File, path_keys, pipeline_spec

    spec = pipeline_spec()
    out = []
    for name in sections:
        sub = spec.fields.get(name)
        if sub is None or not isinstance(cfg.get(name), Mapping):
            continue
        for key, s, value, _c, _i in path_keys(sub, cfg[name], name):
            if isinstance(s, File) and not fs.exists(value):
                out.append(f"{key} = {value}")
    return out


def require_files(cfg: Mapping, sections: Iterable[str]) -> None:
    """Raise FileNotFoundError naming each missing model/lexicon file of these sections."""
    missing = missing_files(cfg, sections)
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
