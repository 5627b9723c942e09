"""The rule registry. A rule is a named one-line decision (the datatrove lesson): it returns None to
keep, or a short detail string to remove. The engine (engine.py) does all the bookkeeping.

    @rule("gopher_quality.stop_words", "document", ("en",), "fewer than min distinct English stop words")
    def stop_words(doc, p):
        n = len(STOP & set(doc.words))
        return f"{n} stop words < {p['min_stop_words']}" if n < p["min_stop_words"] else None

Document rules get `(doc: Doc, params)`; paragraph and sentence rules get `(unit: str, doc: Doc, params)`
and remove that unit. A rule's name is `<group>.<check>`; its thresholds live in conf/pipeline.yaml at
`filter.rules.<group>.<check>` (with `enabled: true|false`). Code holds no defaults: a registered rule
missing from the configuration is an error that names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

LEVELS = ("document", "paragraph", "sentence")
ANY_LANG = "*"


@dataclass(frozen=True)
class Rule:
    name: str
    level: str
    langs: tuple[str, ...]      # ("*",) = every language
    description: str
    fn: Callable[..., str | None]

    def applies_to(self, lang: str | None) -> bool:
        return ANY_LANG in self.langs or lang in self.langs


REGISTRY: dict[str, Rule] = {}


def rule(name: str, level: str, langs: tuple[str, ...], description: str):
    if level not in LEVELS:
        raise ValueError(f"rule {name}: level {level!r} is not one of {LEVELS}")
    if name.count(".") != 1:
        raise ValueError(f"rule {name}: the name must be <group>.<check>")

    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"rule {name} is registered twice")
        REGISTRY[name] = Rule(name, level, tuple(langs), description, fn)
        return fn

    return deco


def all_rules() -> list[Rule]:
    """Every registered rule in application order: document, paragraph, sentence; registration order within."""
    from . import document, paragraph, sentence  # noqa: F401  (registration side effect)

    return sorted(REGISTRY.values(), key=lambda r: LEVELS.index(r.level))


def rule_conf(rules_cfg: Mapping[str, Any], name: str) -> dict:
    group, check = name.split(".")
    node = (rules_cfg or {}).get(group, {}) or {}
    if check not in node or not isinstance(node[check], dict):
        raise KeyError(f"filter.rules.{name} is missing from the configuration (every rule needs its section)")
    return dict(node[check])


@dataclass(frozen=True)
class ActiveRule:
    """A rule with its thresholds resolved from conf: what the engine runs (picklable: fn by name)."""
    name: str
    level: str
    langs: tuple[str, ...]
    params: dict

    @property
    def fn(self):
        if self.name not in REGISTRY:   # a fresh Spark worker: registration happens on first import
            all_rules()
        return REGISTRY[self.name].fn

    def applies_to(self, lang: str | None) -> bool:
        return ANY_LANG in self.langs or lang in self.langs


def active_rules(filter_cfg: Mapping[str, Any]) -> list[ActiveRule]:
    """The enabled rules, in order, with their parameters; errors name unknown or missing conf entries."""
    rules_cfg = filter_cfg.get("rules") or {}
    known = {r.name for r in all_rules()}
    for group, checks in rules_cfg.items():
        for check in (checks or {}):
            if f"{group}.{check}" not in known:
                raise KeyError(f"filter.rules.{group}.{check} names no registered rule")
    out = []
    for r in all_rules():
        p = rule_conf(rules_cfg, r.name)
        if not p.pop("enabled", True):
            continue
        langs = tuple(p.pop("langs", r.langs))
        out.append(ActiveRule(r.name, r.level, langs, p))
    return out
