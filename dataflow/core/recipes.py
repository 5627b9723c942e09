"""Source types and their recipes (DESIGN §8): what each kind of data goes through after ingest.

Every record carries `source_type`, one of `SOURCE_TYPES`. The reader sets it (a StackExchange dump is `qa`),
or conf does per input path (`sources.inputs`: the first glob that matches the file's URI or name), else it
is `sources.default_type`. The `recipes` section of conf/pipeline.yaml then says, per type:

- `rules`: the RF rules that apply: `all` (every rule configured under `filter.rules`), or a list of rule ids
  (`gopher_quality.alpha_words`) and rule families (`gopher_quality` = all of its rules); `[]` = none;
- `dedup`: the CD steps whose comparisons the type's records take part in (`all` = `dedup.steps`; the stage
  runs the steps any type names, in CD's fixed order);
- `score`: `lm` (perplexity and quality buckets, AS) or `none` (`quality` = `unscored`, `score_note` = `recipe`);
- `ref_score`: whether AS writes the reference classifier's `ref_score` for the type's records;
- `lid` (DP): `filter` (a language outside `preprocess.keep_langs` or under its threshold is rejected, as
  for web pages) or `label` (the language is predicted and recorded, never a rejection: code and
  supervised data are not prose in one language);
- `whitespace` (DP normalization): `collapse` (runs of spaces become one, CCNet) or `keep` (indentation
  is content in code).

Resolution of a record's type (`TypeResolver`): the reader's (`meta.source_type` from `dataflow.ingest.sources`,
or a `source_type` field of a JSONL/Parquet record; a value outside SOURCE_TYPES makes the record a
`malformed:source_type` row), else `sources.by_source[record source]`, else the first `sources.inputs` glob
matching the file, else `sources.default_type`. `with_source_type(df, conf)` fills the column for frames
written before it existed.

LLaMA §2.1 and Ziya2 §3 give the treatments; conf/pipeline.yaml cites the choice for each type. A record
whose `source_type` is null (an input written before source types existed) is `sources.default_type`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Mapping
from dataflow.core.confschema import Bool, List, OneOf, Section, Str, optional_section

SOURCE_TYPES = ("web", "code", "paper", "qa", "wiki", "book", "supervised")
SCORE_MODES = ("lm", "none")
LID_MODES = ("filter", "label")
WHITESPACE_MODES = ("collapse", "keep")
# reader kinds of dataflow.ingest.sources (READERS); listed here so conf validation need not import the readers
READER_KINDS = ("code_archive", "code_table", "arxiv", "stackexchange", "mediawiki", "gutenberg")


def kind_for(path: str) -> str | None:
    """The reader kind (READER_KINDS) a file name implies, else None (the caller's conf must say)."""
    low = path.lower().rstrip("/")
    name = low.rsplit("/", 1)[-1]
    if name.endswith(".7z") or name == "posts.xml" or name.endswith("-posts.xml"):
        return "stackexchange"
    if name.endswith((".xml.bz2", ".xml.gz")) or ("pages-articles" in name and name.endswith(".xml")):
        return "mediawiki"
    if name.endswith(".tex") or (name.startswith("arxiv_src") and name.endswith(".tar")):
        return "arxiv"
    if name.endswith((".zip", ".tar.gz", ".tgz")):
        return "code_archive"
    if name.endswith((".txt", ".txt.gz", ".txt.bz2")):
        return "gutenberg"
    return None


@dataclass(frozen=True)
class Recipe:
    type: str
    rules: tuple[str, ...] | None     # None = every configured rule
    dedup: tuple[str, ...]
    score: str
    ref_score: bool
    lid: str = "filter"
    whitespace: str = "collapse"

    def applies_rule(self, rule_id: str) -> bool:
        """True when the rule (`family.name`) is in this recipe, by id or by family."""
        if self.rules is None:
            return True
        return rule_id in self.rules or rule_id.split(".", 1)[0] in self.rules


def default_type(conf: Mapping) -> str:
    return (conf.get("sources") or {}).get("default_type") or "web"


def input_entry(conf: Mapping, uri: str) -> Mapping | None:
    """The first `sources.inputs` entry whose glob matches the file's URI or name, else None."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    for entry in (conf.get("sources") or {}).get("inputs") or ():
        if fnmatch.fnmatchcase(uri, entry["match"]) or fnmatch.fnmatchcase(name, entry["match"]):
            return entry
    return None


def type_for_path(conf: Mapping, uri: str) -> str | None:
    """The source type conf assigns to an input file (`sources.inputs`, first match), else None."""
    entry = input_entry(conf, uri)
    return entry.get("type") if entry else None


def reader_kind(conf: Mapping, uri: str) -> str | None:
    """The `dataflow.ingest.sources` reader for an input file: opt-in through a matching `sources.inputs` entry, its
    `kind`, or (an entry without one) the kind the file name implies (`kind_for`)."""
    entry = input_entry(conf, uri)
    if entry is None:
        return None
    if entry.get("kind"):
        return entry["kind"]
    return kind_for(uri)


def source_settings(conf: Mapping, source_type: str) -> dict:
    """The per-type processing settings (`sources.<type>`: licences, thresholds, sites, namespaces)."""
    return dict((conf.get("sources") or {}).get(source_type) or {})


class TypeResolver:
    """A record's source type (see the module doc); per-file conf lookups are cached."""

    def __init__(self, conf: Mapping):
        src = conf.get("sources") or {}
        self.conf = conf
        self.default = default_type(conf)
        self.by_source = dict(src.get("by_source") or {})
        self._files: dict[str, str | None] = {}

    def __call__(self, declared: str | None, source: str | None, file: str | None) -> tuple[str, str | None]:
        """(type, None), or (default type, why) when the record declares a type that does not exist."""
        if declared:
            if declared in SOURCE_TYPES:
                return declared, None
            return self.default, f"source_type {declared!r} is not one of {', '.join(SOURCE_TYPES)}"
        if source in self.by_source:
            return self.by_source[source], None
        if file:
            if file not in self._files:
                self._files[file] = type_for_path(self.conf, file)
            if self._files[file]:
                return self._files[file], None
        return self.default, None


def with_source_type(df, conf: Mapping):
    """The frame with `source_type` filled: a frame written before the column existed, or a null in it, is
    `sources.default_type` (every stage after DP calls this on its input)."""
    from pyspark.sql import functions as F

    d = F.lit(default_type(conf))
    if "source_type" not in df.columns:
        return df.withColumn("source_type", d)
    return df.withColumn("source_type", F.coalesce(F.col("source_type"), d))


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
                        score=r.get("score", "lm"), ref_score=bool(r.get("ref_score", False)),
                        lid=r.get("lid", "filter"), whitespace=r.get("whitespace", "collapse"))
    return out


def recipe_for(conf: Mapping, source_type: str | None) -> Recipe:
    """The recipe of one type; null means the default type."""
    return recipes(conf)[source_type or default_type(conf)]


def recipes_spec(dedup_steps) -> Section:
    """The `recipes` section: one recipe per source type; `dedup` names steps of the dedup stage's table."""
    recipe = optional_section({
        "rules": OneOf(Str(["all"]), List(Str(non_empty=True), unique=True)),
        "dedup": OneOf(Str(["all"]), List(Str(list(dedup_steps)), unique=True)),
        "score": Str(["lm", "none"]), "ref_score": Bool(), "lid": Str(["filter", "label"]),
        "whitespace": Str(["collapse", "keep"])})
    return Section({t: recipe for t in SOURCE_TYPES})
