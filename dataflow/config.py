"""Pipeline configuration: one YAML file (conf/pipeline.yaml) plus dotted overrides.

The configuration is a plain nested dict, passed explicitly to every stage (never a global).
`--set a.b.c=value` overrides parse the value as YAML, so numbers, booleans and lists keep their type.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = REPO_ROOT / "conf" / "pipeline.yaml"


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {item!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw.strip() else ""


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


def load_conf(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> dict:
    """Load the pipeline YAML and apply dotted overrides. Relative paths inside stay relative to the
    current directory (the repository root for `make` and `python -m jobs.*`)."""
    p = Path(path) if path else DEFAULT_CONF
    if not p.exists():
        raise FileNotFoundError(f"configuration file {p} does not exist")
    with open(p, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"configuration file {p} must hold a mapping at the top level")
    return apply_overrides(cfg, overrides)


def section(cfg: Mapping, name: str) -> dict:
    """A stage's own section; a missing section is an error that names it."""
    if name not in cfg or not isinstance(cfg[name], dict):
        raise KeyError(f"configuration has no section {name!r}")
    return cfg[name]


def conf_hash(obj: Any) -> str:
    """Stable hash of a configuration fragment (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
