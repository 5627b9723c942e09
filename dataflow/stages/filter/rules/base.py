"""What a rule is. A rule is a named one-line decision (the datatrove lesson): it returns None to keep, or a
short detail string to remove. The engine (engine.py) does all the bookkeeping.

Document and final rules get `(doc: Doc, params)` (a final rule sees the text left after unit removal, as
C4's "fewer than 5 sentences" page drop does); paragraph and sentence rules get `(unit: str, doc: Doc, params)`
and remove that unit; such a rule may also declare `quiet(doc, params)`, true when it fires on no unit of the
document (no lexicon hit, none of its phrases anywhere), which the engine asks once instead of asking every unit.
A rule's name is `<group>.<check>`; its thresholds live in conf/pipeline.yaml at
`filter.rules.<group>.<check>` and it declares them here with `dataflow.core.confschema` specs, so a wrong type,
range or name fails on the driver before any Spark work (and again when the engine is built).

This module imports no rule module: document/paragraph/sentence.py each end in an explicit `RULES` tuple,
and registry.py joins those tables (no registration by import side effect).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from dataflow.core.confschema import Bool, List, Map, Spec, Str

# document rules judge the input, paragraph/sentence rules remove units, final rules judge what is left
LEVELS = ("document", "paragraph", "sentence", "final")
ANY_LANG = "*"


class PerLang(Map):
    """A per-language value: `{default: v, zh: v2, ...}`; `default` is required (pipeline language codes)."""

    def __init__(self, values: Spec, *, doc: str = ""):
        super().__init__(values, doc=doc)

    @property
    def expected(self):
        return f"a mapping of language -> {self.values.expected} with a 'default' entry"

    def _check(self, value, key):
        errs = super()._check(value, key)
        if not errs and "default" not in value:
            errs.append(f"{key}: missing 'default' (expected {self.expected})")
        return errs


def per_lang(values: Mapping[str, Any], lang: str | None):
    """The value of a PerLang setting for one language."""
    return values.get(lang, values["default"])


# keys every rule section accepts besides its own parameters
COMMON_PARAMS: dict[str, Spec] = {
    "enabled": Bool(doc="false switches the rule off"),
    "langs": List(Str(non_empty=True), min_len=1, doc="the languages it runs on (pipeline codes, * = any)"),
}


@dataclass(frozen=True)
class Rule:
    name: str
    level: str
    langs: tuple[str, ...]      # ("*",) = every language
    description: str
    fn: Callable[..., str | None]
    params: Mapping[str, Spec] = field(default_factory=dict)   # parameter name -> its spec (all required)
    quiet: Callable[..., bool] | None = None    # paragraph/sentence rules: (doc, params) -> fires on no unit

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"rule {self.name}: level {self.level!r} is not one of {LEVELS}")
        if self.name.count(".") != 1:
            raise ValueError(f"rule {self.name}: the name must be <group>.<check>")
        clash = set(self.params) & set(COMMON_PARAMS)
        if clash:
            raise ValueError(f"rule {self.name}: parameter(s) {sorted(clash)} are reserved")

    def applies_to(self, lang: str | None) -> bool:
        return ANY_LANG in self.langs or lang in self.langs
