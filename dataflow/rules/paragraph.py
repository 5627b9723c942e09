"""Paragraph-level rules: each removes one paragraph (a non-blank line, the unit C4 and CCNet filter;
HTML extraction writes one block per line). Applied after the document rules, in this order.
"""
from __future__ import annotations

import re

from .registry import ANY_LANG, rule
from .text import words

EN_ZH = ("en", "zh")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)


def _c4_line(unit: str) -> str:
    return _CITATION.sub("", unit.strip())


@rule("c4.terminal_punct", "paragraph", EN_ZH, "line does not end in terminal punctuation (or ends in an ellipsis)")
def terminal_punct(unit, doc, p):
    s = _c4_line(unit)
    if not s.endswith(tuple(p["end_chars"])) or s.endswith(("...", "…")):
        return f"ends with {s[-1:]!r}"
    return None


@rule("c4.min_words", "paragraph", EN_ZH, "line with fewer than min_words words (zh: jieba words, punctuation excluded)")
def min_words(unit, doc, p):
    if doc.lang == "zh":
        n = sum(1 for w in words(unit, "zh") if any(ch.isalnum() for ch in w))
    else:
        n = len(unit.split())
    return f"{n} words < {p['min_words']}" if n < p["min_words"] else None


@rule("c4.max_word_length", "paragraph", ("en",), "line containing a whitespace token longer than max_chars")
def max_word_length(unit, doc, p):
    longest = max((len(w) for w in unit.split()), default=0)
    return f"token of {longest} chars > {p['max_chars']}" if longest > p["max_chars"] else None


@rule("c4.javascript", "paragraph", (ANY_LANG,), "line mentioning javascript (\"enable JavaScript\" notices)")
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


@rule("c4.policy", "paragraph", EN_ZH, "cookie / privacy-policy / terms-of-use line")
def policy(unit, doc, p):
    ph = _has_phrase(unit, doc, p)
    return f"policy phrase {ph!r}" if ph else None


# "Home | News | Contact", "首页 > 新闻 > 正文": several short items joined by separators
# ASCII separators only count with spaces around them, so paths (/usr/share) and a>b stay prose
_NAV_SEP = re.compile(r"\s+(?:\||>|/|-|–)\s+|\s*(?:»|›|·|•|→|｜|\t)\s*")   # HTML-to-text renders menu cells with tabs


@rule("boilerplate.navigation", "paragraph", EN_ZH,
      "navigation line: a known phrase, or at least min_items short items joined by | » > · / separators")
def navigation(unit, doc, p):
    ph = _has_phrase(unit, doc, p)
    if ph:
        return f"navigation phrase {ph!r}"
    s = unit.strip()
    items = [x for x in _NAV_SEP.split(s) if x]
    if len(items) >= p["min_items"] and max(map(len, items)) <= p["max_item_chars"]:
        return f"{len(items)} separated items"
    return None


@rule("boilerplate.copyright", "paragraph", EN_ZH, "copyright / all-rights-reserved / ICP licence line")
def copyright_line(unit, doc, p):
    s = unit.strip()
    if len(s) > p["max_chars"]:
        return None  # a long paragraph that mentions copyright is prose, not a footer
    ph = "©" if "©" in s else _has_phrase(unit, doc, p)
    return f"copyright phrase {ph!r}" if ph else None


@rule("boilerplate.share", "paragraph", EN_ZH, "social-share line (share on / tweet / 分享到)")
def share(unit, doc, p):
    s = unit.strip()
    if len(s) > p["max_chars"]:
        return None
    ph = _has_phrase(unit, doc, p)
    return f"share phrase {ph!r}" if ph else None
