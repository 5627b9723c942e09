"""Sentence-level rules: each removes one sentence of a kept paragraph (split on 。！？； and . ! ? ;,
see text.split_sentences). Applied last, in this order.
"""
from __future__ import annotations

from collections import Counter

from .lexicon import lexicon_path, matcher
from .registry import rule

EN_ZH = ("en", "zh")


def _lexicon_sentence(unit, doc, p):
    path = lexicon_path(p, doc.lang)
    if not path:
        return None
    hits = matcher(path, doc.lang).findall(unit)
    distinct = {h.lower() for h in hits}
    # one stray word ("kill", "bet") in literature is not harmful content; several distinct terms are
    if len(distinct) >= p["min_distinct_hits"]:
        return "terms: " + ", ".join(f"{t}x{c}" for t, c in Counter(h.lower() for h in hits).most_common(4))
    return None


for _cat in ("porn", "violence", "gambling", "extremism"):
    rule(f"content.{_cat}_sentence", "sentence", EN_ZH,
         f"sentence with at least min_distinct_hits distinct {_cat} lexicon terms")(_lexicon_sentence)


@rule("boilerplate.call_to_action", "sentence", EN_ZH, "short call-to-action sentence (click here, read more, 点击查看, 扫码关注)")
def call_to_action(unit, doc, p):
    s = unit.strip()
    if len(s) > p["max_chars"]:
        return None
    low = s.lower()
    for ph in p["phrases"].get(doc.lang, ()):
        if ph in low:
            return f"phrase {ph!r}"
    return None
