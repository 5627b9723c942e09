"""Sentence-level rules: each removes one sentence of a kept paragraph (split on 。！？； and . ! ? ;,
see text.split_sentences). Applied last, in the configured order; each rule declares its parameters in the
`RULES` table at the end of this file.
"""
from __future__ import annotations

from collections import Counter

from dataflow.core.confschema import Int, List, Map, Str
from dataflow.core.confschema import File
from dataflow.stages.filter.rules.base import Rule
from dataflow.stages.filter.rules.lexicon import lexicon_hits, lexicon_path, matcher
from dataflow.stages.filter.rules.text import holds_phrase

EN_ZH = ("en", "zh")


def _lexicon_sentence(unit, doc, p):
    path = lexicon_path(p, doc.lang)
    if not path:
        return None
    if p["min_distinct_hits"] >= 1 and not lexicon_hits(doc, path) and unit in doc.text:
        return None     # no term anywhere in the document, so none in this sentence of it (one search per document)
    hits = matcher(path, doc.lang).findall(unit)
    distinct = {h.lower() for h in hits}
    # one stray word ("kill", "bet") in literature is not harmful content; several distinct terms are
    if len(distinct) >= p["min_distinct_hits"]:
        return "terms: " + ", ".join(f"{t}x{c}" for t, c in Counter(h.lower() for h in hits).most_common(4))
    return None


def _lexicon_quiet(doc, p) -> bool:
    path = lexicon_path(p, doc.lang)
    return not path or (p["min_distinct_hits"] >= 1 and not lexicon_hits(doc, path))


def call_to_action(unit, doc, p):
    s = unit.strip()
    if len(s) > p["max_chars"]:
        return None
    low = s.lower()
    for ph in p["phrases"].get(doc.lang, ()):
        if ph in low:
            return f"phrase {ph!r}"
    return None


def _call_to_action_quiet(doc, p) -> bool:
    return not holds_phrase(doc, p["phrases"].get(doc.lang, ()))


RULES = (
    *(Rule(f"content.{cat}_sentence", "sentence", EN_ZH, f"sentence with at least min_distinct_hits distinct {cat} lexicon terms",
           _lexicon_sentence, {"min_distinct_hits": Int(1), "lexicons": Map(File())}, quiet=_lexicon_quiet)
      for cat in ("porn", "violence", "gambling", "extremism")),
    Rule("boilerplate.call_to_action", "sentence", EN_ZH, "short call-to-action sentence (click here, read more, 点击查看, 扫码关注)",
         call_to_action, {"max_chars": Int(1), "phrases": Map(List(Str(non_empty=True)))}, quiet=_call_to_action_quiet),
)
