"""Content lexicons (conf/rules/<category>.<lang>.txt): one term per line, `#` starts a comment.

en terms match case-insensitively on word boundaries (a trailing plural s/es is allowed); zh terms match
as substrings (no word boundaries in Chinese). Each file is loaded once per Python worker
(`dataflow.core.spark.load_once`); on a cluster it is shipped with `ship_file` and found by `resolve_file`.

Speed: a case-insensitive alternation of ~30 terms is tried at every word boundary (sre's per-branch literal
check does not work under IGNORECASE), about 1 ms per lexicon for a 15k-character English page, and most pages
hold no term at all. So an en lexicon first asks the document's distinct lowercased word runs (`\\w+`, computed
once per document and shared by the four lexicons) whether every run of some term is among them, and runs the
pattern only then (`Lexicon.hits`). The test is exact, never a guess: see `word_clauses`.
"""
from __future__ import annotations

import re

from dataflow.core.spark import load_once

# The characters outside ASCII that IGNORECASE matches to an ASCII letter but str.lower() does not turn into
# that letter (sre's equivalences ı~i and ſ~s; İ lowercases to two characters). A text with one of them skips
# the word-run test (tests/test_filter_analysis.py derives the list from sre over every code point).
CASE_TRAPS = ("\u0130", "\u0131", "\u017f")
_WORD_RUN = re.compile(r"\w+")


def read_terms(path: str) -> list[str]:
    terms = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                terms.append(line)
    if not terms:
        raise ValueError(f"lexicon {path} holds no terms")
    return terms


def compile_terms(terms: list[str], lang: str) -> re.Pattern:
    # longest first so "online casino" wins over "casino" and a hit covers the whole phrase
    alts = "|".join(re.escape(t) for t in sorted(set(terms), key=lambda t: (-len(t), t)))
    if lang == "en":
        # inner spaces match any run of whitespace; boundaries keep "sex" out of "Essex"
        alts = alts.replace(r"\ ", r"\s+")
        return re.compile(r"\b(?:" + alts + r")(?:e?s)?\b", re.IGNORECASE)
    return re.compile("(?:" + alts + ")", re.IGNORECASE)


def word_clauses(terms: list[str]) -> list[tuple[frozenset[str], frozenset[str]]] | None:
    """Per term, the lowercased word runs (`\\w+`) a text must hold for an en match of it: (every run but the last,
    the last run or it + s or it + es), or None when the terms do not allow the test.

    An en match starts and ends at a word boundary, and between the term's runs stands a non-word character
    (whitespace for a space, the mark itself for "-"), so each run of the term is a whole run of the text, the last
    one followed by the plural s/es the pattern allows. Every character that matches an ASCII letter under
    IGNORECASE lowercases to that letter, unless the text holds one of CASE_TRAPS. So a text whose runs,
    lowercased, satisfy no term's clause holds no match. Terms outside ASCII give None (always search)."""
    clauses = []
    for t in terms:
        runs = _WORD_RUN.findall(t.lower())
        if not t.isascii() or not runs or not _WORD_RUN.match(t):
            return None
        last = runs[-1]
        clauses.append((frozenset(runs[:-1]), frozenset((last, last + "s", last + "es"))))
    return clauses


class Lexicon:
    """One compiled lexicon file: its pattern, and for en the word-run test that skips a search that cannot hit."""

    def __init__(self, terms: list[str], lang: str):
        self.pattern = compile_terms(terms, lang)
        self.clauses = word_clauses(terms) if lang == "en" else None

    def hits(self, doc) -> list[str]:
        """Every hit in the document: `pattern.findall(doc.text)`, without the search when it cannot hit."""
        if self.clauses is not None and not any(c in doc.text for c in CASE_TRAPS):
            runs = doc.memo("lower_word_runs", lambda: lower_word_runs(doc.text))
            if not any(need <= runs and not last.isdisjoint(runs) for need, last in self.clauses):
                return []
        return self.pattern.findall(doc.text)


def lower_word_runs(text: str) -> set[str]:
    """The distinct `\\w+` runs of `text`, each lowercased (joined on a non-word character, lowered at once)."""
    return set("\0".join(set(_WORD_RUN.findall(text))).lower().split("\0"))


def load(path: str, lang: str) -> Lexicon:
    return load_once(f"lexicon:{lang}", path, lambda local: Lexicon(read_terms(local), lang))


def matcher(path: str, lang: str) -> re.Pattern:
    return load(path, lang).pattern


def lexicon_path(params: dict, lang: str) -> str | None:
    """The lexicon file of a content rule for this language (params['lexicons'][lang]), if any."""
    return (params.get("lexicons") or {}).get(lang)


def lexicon_hits(doc, path: str) -> list[str]:
    """Every hit of the lexicon at `path` in the whole document, found once per document: the density rule
    measures them, and a sentence rule needs no per-sentence search in a document with none. A term never
    spans a sentence break (a break is punctuation, and the boundaries around it are the same in the line)."""
    return doc.memo(("lexicon", path), lambda: load(path, doc.lang).hits(doc))
