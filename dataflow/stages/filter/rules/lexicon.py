"""Content lexicons (conf/rules/<category>.<lang>.txt): one term per line, `#` starts a comment.

en terms match case-insensitively on word boundaries (a trailing plural s/es is allowed); zh terms match
as substrings (no word boundaries in Chinese). Each file is loaded once per Python worker
(`dataflow.core.spark.load_once`); on a cluster it is shipped with `ship_file` and found by `resolve_file`.
"""
from __future__ import annotations

import re

from dataflow.core.spark import load_once


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


def matcher(path: str, lang: str) -> re.Pattern:
    return load_once(f"lexicon:{lang}", path, lambda local: compile_terms(read_terms(local), lang))


def lexicon_path(params: dict, lang: str) -> str | None:
    """The lexicon file of a content rule for this language (params['lexicons'][lang]), if any."""
    return (params.get("lexicons") or {}).get(lang)


def lexicon_hits(doc, path: str) -> list[str]:
    """Every hit of the lexicon at `path` in the whole document, found once per document: the density rule
    measures them, and a sentence rule needs no per-sentence search in a document with none. A term never
    spans a sentence break (a break is punctuation, and the boundaries around it are the same in the line)."""
    return doc.memo(("lexicon", path), lambda: matcher(path, doc.lang).findall(doc.text))
