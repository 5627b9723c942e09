"""The rule table and its configuration.

`TABLE` is the explicit list of every rule (document.RULES + paragraph.RULES + sentence.RULES); nothing
registers itself by being imported. A rule's thresholds live in conf/pipeline.yaml at
`filter.rules.<group>.<check>` (plus `enabled: true|false` and an optional `langs: [..]`); code holds no
defaults, so a rule missing from the configuration is an error that names it.

`rules_spec()` is the `confschema.Section` of the whole `filter.rules` mapping, built from each rule's
declared parameters: unknown groups, rules and parameters are errors with a spelling hint, and a wrong type
or range names the dotted key. `dataflow.pipeline.conf` checks it on the driver before any Spark work;
`active_rules` checks it again, so the engine fails at construction on a bad parameter (datatrove style).

Order: document rules, then paragraph rules, then sentence rules (Ziya2 §3.1), then final rules (judging the
text left, as C4's page drop); within a level, the order in which the rules appear in `filter.rules` (the
configured order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dataflow.core.confschema import Int, Section, validate
from dataflow.stages.filter.rules import document, paragraph, sentence
from dataflow.stages.filter.rules.base import ANY_LANG, COMMON_PARAMS, LEVELS, PerLang, Rule

TABLE: tuple[Rule, ...] = document.RULES + paragraph.RULES + sentence.RULES
REGISTRY: dict[str, Rule] = {r.name: r for r in TABLE}
if len(REGISTRY) != len(TABLE):
    raise ValueError("a rule name appears twice in the rule table")

# `filter` settings the engine itself reads (besides `rules`)
SETTINGS = {
    # a document left with fewer characters after paragraph/sentence removal is rejected by the rule that cut it
    "min_chars_left": PerLang(Int(0)),
}


def rule_spec(r: Rule) -> Section:
    """One rule's section: its declared parameters (all required) plus `enabled` and `langs` (optional)."""
    return Section({**COMMON_PARAMS, **r.params}, required=set(r.params))


def rules_spec() -> Section:
    """The schema of `filter.rules`: group -> check -> parameters; every rule in the table is required."""
    groups: dict[str, dict[str, Section]] = {}
    for r in TABLE:
        group, check = r.name.split(".")
        groups.setdefault(group, {})[check] = rule_spec(r)
    return Section({g: Section(checks) for g, checks in groups.items()})


def settings_spec() -> dict:
    """The `filter` keys the rule engine reads besides `rules` (for the filter stage's spec, `stages.filter.stage.spec`)."""
    return dict(SETTINGS)


def all_rules(rules_cfg: Mapping[str, Any] | None = None) -> list[Rule]:
    """Every rule in application order: level first, then the order of `rules_cfg` (the table's order for
    rules it does not name, or without one)."""
    pos = {name: i for i, name in enumerate(_configured_names(rules_cfg or {}))}
    table_pos = {r.name: len(pos) + i for i, r in enumerate(TABLE)}
    return sorted(TABLE, key=lambda r: (LEVELS.index(r.level), pos.get(r.name, table_pos[r.name])))


def _configured_names(rules_cfg: Mapping[str, Any]) -> list[str]:
    return [f"{g}.{c}" for g, checks in rules_cfg.items() if isinstance(checks, Mapping) for c in checks]


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
        return REGISTRY[self.name].fn

    @property
    def quiet(self):
        return REGISTRY[self.name].quiet

    def applies_to(self, lang: str | None) -> bool:
        return ANY_LANG in self.langs or lang in self.langs


def active_rules(filter_cfg: Mapping[str, Any]) -> list[ActiveRule]:
    """The enabled rules in application order with their parameters. Raises confschema.ConfigError (every
    mistake, one line each, naming `filter.rules.<group>.<check>.<param>`) on a bad `filter.rules`."""
    rules_cfg = filter_cfg.get("rules")
    validate(rules_spec(), rules_cfg, "filter.rules")
    out = []
    for r in all_rules(rules_cfg):
        p = rule_conf(rules_cfg, r.name)
        if not p.pop("enabled", True):
            continue
        langs = tuple(p.pop("langs", r.langs))
        out.append(ActiveRule(r.name, r.level, langs, p))
    return out


# the list-valued parameters left out of the rule table's threshold column (long phrase/word lists)
_LISTS = ("phrases", "words", "stop_words", "end_chars", "bullets")


def list_rules(filter_cfg: Mapping[str, Any], markdown: bool = False) -> str:
    """Every rule in application order with its languages and whether this configuration enables it; with
    `markdown`, the table in docs/filter.md (thresholds included, long lists left out)."""
    rules_cfg = filter_cfg.get("rules") or {}
    active = {r.name: r for r in active_rules(filter_cfg)}
    ordered = all_rules(rules_cfg)
    if markdown:
        rows = ["| # | rule | level | languages | description | thresholds (conf) |", "|---:|---|---|---|---|---|"]
        for i, r in enumerate(ordered, 1):
            p = {k: v for k, v in rule_conf(rules_cfg, r.name).items() if k not in ("enabled", "langs") + _LISTS}
            if "lexicons" in p:   # resolved to absolute paths by load_conf: show the file names
                p["lexicons"] = {lang: str(v).rsplit("/", 1)[-1] for lang, v in p["lexicons"].items()}
            thr = ", ".join(f"{k}={v}" for k, v in p.items()).replace("|", "\\|") or "-"
            on = "" if r.name in active else " (disabled)"
            langs = ",".join(active[r.name].langs if r.name in active else r.langs)
            rows.append(f"| {i} | `{r.name}`{on} | {r.level} | {langs} | {r.description} | {thr} |")
        return "\n".join(rows)
    rows = [f"{'#':>3}  {'rule':36} {'level':9} {'langs':7} {'on':3} description"]
    for i, r in enumerate(ordered, 1):
        langs = ",".join(active[r.name].langs if r.name in active else r.langs)
        rows.append(f"{i:>3}  {r.name:36} {r.level:9} {langs:7} {'yes' if r.name in active else 'no':3} {r.description}")
    return "\n".join(rows)
