"""Source types and their recipes (DESIGN §8): what each kind of data goes through after ingest.

Every record carries `source_type`, one of `SOURCE_TYPES`. The reader sets it (a StackExchange dump is `qa`),
or conf does per input path (`sources.inputs`: the first glob that matches the file's URI or name), else it
is `sources.default_type`. The `recipes` section of conf/pipeline.yaml then says, per type:

- `rules`: the RF rules that apply: `all` (every rule configured under `filter.rules`), or a list of rule ids
  (`gopher_quality.alpha_words`) and rule families (`gopher_quality` = all of its rules); `[]` = none;
- `dedup`: the CD steps whose comparisons the type's records take part in (`all` = `dedup.steps`; the stage
  runs the steps any type names, in CD's fixed order);
- `score`: `lm` (perplexity and quality buckets, AS) or `none` (`quality` = `unscored`, `score_note` = `recipe`);
- `ref_score`: whether AS writes the reference classifier's `ref_score` for the type's records.

LLaMA §2.1 and Ziya2 §3 give the treatments; conf/pipeline.yaml cites the choice for each type. A record
whose `source_type` is null (an input written before source types existed) is `sources.default_type`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Mapping

SOURCE_TYPES = ("web", "code", "paper", "qa", "wiki", "book", "supervised")
SCORE_MODES = ("lm", "none")


@dataclass(frozen=True)
class Recipe:
    type: str
    rules: tuple[str, ...] | None     # None = every configured rule
    dedup: tuple[str, ...]
    score: str
    ref_score: bool

    def applies_rule(self, rule_id: str) -> bool:
        """True when the rule (`family.name`) is in this recipe, by id or by family."""
        if self.rules is None:
            return True
        return rule_id in self.rules or rule_id.split(".", 1)[0] in self.rules


def default_type(conf: Mapping) -> str:
    return (conf.get("sources") or {}).get("default_type") or "web"


def type_for_path(conf: Mapping, uri: str) -> str | None:
    """The source type conf assigns to an input file (`sources.inputs`, first match), else None."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    for entry in (conf.get("sources") or {}).get("inputs") or ():
        if fnmatch.fnmatchcase(uri, entry["match"]) or fnmatch.fnmatchcase(name, entry["match"]):
            return entry.get("type")
    return None


def recipes(conf: Mapping) -> dict[str, Recipe]:
    """Every type's recipe from the root configuration (validated by `config.load_conf`)."""
    steps = tuple((conf.get("dedup") or {}).get("steps") or ())
    out = {}
    for t in SOURCE_TYPES:
        r = (conf.get("recipes") or {}).get(t) or {}
        rules = r.get("rules", "all")
        dedup = r.get("dedup", "all")
        out[t] = Recipe(type=t,
                        rules=None if rules == "all" else tuple(rules),
                        dedup=steps if dedup == "all" else tuple(dedup),
                        score=r.get("score", "lm"), ref_score=bool(r.get("ref_score", False)))
    return out


def recipe_for(conf: Mapping, source_type: str | None) -> Recipe:
    """The recipe of one type; null means the default type."""
    return recipes(conf)[source_type or default_type(conf)]
