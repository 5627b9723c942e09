"""Dotted `key.path=value` overrides of a nested dict: the one parser of `--set` for the pipeline and the trainer.

The value is parsed as YAML, so numbers, booleans and lists keep their type (`a.b=[1, 2]`, `a.c=true`); an
empty value is the empty string. Missing sections are created; replacing a value with a section is an error.
Under a dotted-key map (`DOTTED_KEY_MAPS` for the pipeline: `spark.conf`, `pipeline.cluster.conf`) the rest
of the key is one key: `spark.conf.spark.sql.shuffle.partitions=8` sets `cfg["spark"]["conf"]
["spark.sql.shuffle.partitions"]`.

Only yaml and the standard library: the trainer imports this without the pipeline.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

import yaml

class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases (`*name`): a configuration has no use for them, and a nest of aliases
    to aliases (a "billion laughs") expands to gigabytes when the configuration is walked or hashed."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"YAML aliases are not allowed in a configuration "
                                              f"(*{event.anchor}): write the value out", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str):
    """YAML as plain data, without aliases (the one YAML reader of configurations and `--set` values)."""
    return yaml.load(text, Loader=_NoAliasLoader)   # noqa: S506 - a SafeLoader subclass


# maps of the pipeline configuration whose keys contain dots themselves: everything after the prefix is one key
DOTTED_KEY_MAPS: tuple[tuple[str, ...], ...] = (("spark", "conf"), ("pipeline", "cluster", "conf"))


def _split_key(key: str, dotted_maps: Sequence[tuple[str, ...]] = DOTTED_KEY_MAPS) -> list[str]:
    path = key.split(".")
    for prefix in dotted_maps:
        n = len(prefix)
        if tuple(path[:n]) == tuple(prefix) and len(path) > n + 1:
            return path[:n] + [".".join(path[n:])]
    return path


def parse_override(item: str, dotted_maps: Sequence[tuple[str, ...]] = DOTTED_KEY_MAPS) -> tuple[list[str], Any]:
    """`key.path=value` -> (key path, YAML-parsed value); ValueError for a malformed item."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {item!r} has an empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ValueError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return _split_key(key, dotted_maps), value


def apply_overrides(cfg: dict, overrides: Iterable[str],
                    dotted_maps: Sequence[tuple[str, ...]] = DOTTED_KEY_MAPS) -> dict:
    """A deep copy of `cfg` with every override applied in order (the original is untouched)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        path, value = parse_override(item, dotted_maps)
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
