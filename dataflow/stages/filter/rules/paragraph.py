"""Paragraph-level rules: each removes one paragraph (a non-blank line, the unit C4 and CCNet filter;
HTML extraction writes one block per line). Applied after the document rules, in the configured order.
The `c4` rules follow datatrove 0.10's C4QualityFilter line filters (whitespace words, citations removed
before the end check); each rule declares its parameters in the `RULES` table at the end of this file.
"""
from __future__ import annotations

import re

from dataflow.core.confschema import Int, List, Map, Str
from dataflow.stages.filter.rules.base import ANY_LANG, Rule
from dataflow.stages.filter.rules.text import holds_phrase, words

EN_ZH = ("en", "zh")
PHRASES = Map(List(Str(non_empty=True)))          # language -> phrases (lowercase substrings)
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)   # datatrove CITATION_REGEX (+ any case)


def _c4_line(unit: str) -> str:
    return _CITATION.sub("", unit.strip())


def terminal_punct(unit, doc, p):
    s = _c4_line(unit)
    if not s.endswith(tuple(p["end_chars"])) or s.endswith(("...", "…")):
        return f"ends with {s[-1:]!r}"
    return None


def _javascript_quiet(doc, p) -> bool:
    return not holds_phrase(doc, ("javascript",))


def _phrases_quiet(doc, p) -> bool:
    return not holds_phrase(doc, _phrases(p, doc.lang))


def _copyright_quiet(doc, p) -> bool:
    return "©" not in doc.text and _phrases_quiet(doc, p)


def min_words(unit, doc, p):
    if doc.lang == "zh":
        n = doc.line_word_counts.get(unit)     # the document's jieba words, counted per line once
        if n is None:                           # a unit that is no line of the document
            n = sum(1 for w in words(unit, "zh") if any(ch.isalnum() for ch in w))
    else:
        n = len(unit.split())
    return f"{n} words < {p['min_words']}" if n < p["min_words"] else None


def max_word_length(unit, doc, p):
    longest = max(map(len, unit.split()), default=0)
    return f"token of {longest} chars > {p['max_chars']}" if longest > p["max_chars"] else None


def javascript(unit, doc, p):
    return "mentions javascript" if "javascript" in unit.lower() else None


def _phrases(p, lang):
    return p["phrases"].get(lang, ()) if isinstance(p["phrases"], dict) else p["phrases"]


def _has_phrase(unit, doc, p):
    low = unit.lower()
    for ph in _phrases(p, doc.lang):
        if ph in low:
            return ph
    return None


def policy(unit, doc, p):
    ph = _has_phrase(unit, doc, p)
    return f"policy phrase {ph!r}" if ph else None


# "Home | News | Contact", "首页 > 新闻 > 正文": several short items joined by separators
# ASCII separators only count with spaces around them, so paths (/usr/share) and a>b stay prose
_NAV_SEP = re.compile(r"\s+(?:\||>|/|-|–)\s+|\s*(?:»|›|·|•|→|｜|\t)\s*")   # HTML-to-text renders menu cells with tabs


def navigation(unit, doc, p):
    ph = _has_phrase(unit, doc, p)
    if ph:
        return f"navigation phrase {ph!r}"
    s = unit.strip()
    items = [x for x in _NAV_SEP.split(s) if x]
    if len(items) >= p["min_items"] and max(map(len, items)) <= p["max_item_chars"]:
        return f"{len(items)} separated items"
    return None


def copyright_line(unit, doc, p):
    s = unit.strip()
    if len(s) > p["max_chars"]:
        return None  # a long paragraph that mentions copyright is prose, not a footer
    ph = "©" if "©" in s else _has_phrase(unit, doc, p)
    return f"copyright phrase {ph!r}" if ph else None


def share(unit, doc, p):
    s = unit.strip()
    if len(s) > p["max_chars"]:
        return None
    ph = _has_phrase(unit, doc, p)
    return f"share phrase {ph!r}" if ph else None


RULES = (
    Rule("c4.terminal_punct", "paragraph", EN_ZH, "line does not end in terminal punctuation (or ends in an ellipsis)",
         terminal_punct, {"end_chars": List(Str(non_empty=True), min_len=1)}),
    Rule("c4.min_words", "paragraph", EN_ZH, "line with fewer than min_words words (zh: jieba words, punctuation excluded)",
         min_words, {"min_words": Int(0)}),
    Rule("c4.max_word_length", "paragraph", ("en",), "line containing a whitespace token longer than max_chars",
         max_word_length, {"max_chars": Int(1)}),
    Rule("c4.javascript", "paragraph", (ANY_LANG,), "line mentioning javascript (\"enable JavaScript\" notices)",
         javascript, quiet=_javascript_quiet),
    Rule("c4.policy", "paragraph", EN_ZH, "cookie / privacy-policy / terms-of-use line", policy, {"phrases": PHRASES},
         quiet=_phrases_quiet),
    Rule("boilerplate.navigation", "paragraph", EN_ZH,
         "navigation line: a known phrase, or at least min_items short items joined by | » > · / separators",
         navigation, {"min_items": Int(2), "max_item_chars": Int(1), "phrases": PHRASES}),
    Rule("boilerplate.copyright", "paragraph", EN_ZH, "copyright / all-rights-reserved / ICP licence line",
         copyright_line, {"max_chars": Int(1), "phrases": PHRASES},
         quiet=_copyright_quiet),
    Rule("boilerplate.share", "paragraph", EN_ZH, "social-share line (share on / tweet / 分享到)", share,
         {"max_chars": Int(1), "phrases": PHRASES}, quiet=_phrases_quiet),
)
