"""Text keys shared by the dedup steps: the punctuation-free form (exact), shingles (SimHash, MinHash) and
the CCNet line form (lines). Pure functions over str, so they are tested without Spark.

Ziya2 compares texts "after removing punctuation, symbols and emoji": we drop every code point whose
Unicode category is P* (punctuation, ASCII and CJK alike), S* (symbols, emoji, emoji skin tones),
Z* (spaces) or C* (controls, format characters such as the emoji joiner U+200D), plus the variation
selectors that emoji carry (U+FE0E/U+FE0F, category Mn). NFKC first folds full-width letters and digits
to ASCII, and lower-casing folds case.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

# variation selectors ride on emoji but are category Mn (marks), so the category test alone keeps them
_EXTRA_STRIP = [(0xFE00, 0xFE0F), (0xE0100, 0xE01EF)]


def _strip_ranges() -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    start = prev = None
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp))[0] in "PSZC":
            if start is None:
                start = cp
            elif cp != prev + 1:
                ranges.append((start, prev))
                start = cp
            prev = cp
    if start is not None:
        ranges.append((start, prev))
    return ranges + _EXTRA_STRIP


@lru_cache(maxsize=1)
def strip_pattern() -> re.Pattern:
    """One compiled character class of all P/S/Z/C code points (built once per process, ~0.5 s)."""
    def esc(cp: int) -> str:
        return "\\U%08x" % cp
    body = "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in _strip_ranges())
    return re.compile(f"[{body}]+")


@lru_cache(maxsize=1)
def t2s_converter():
    """Built once per Python worker. The t2s tables ship inside the opencc wheel, so there is no model
    file to send with ship_file/load_once."""
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return t2s_converter().convert(text)


def prepare(text: str, lang: str | None, t2s_langs: frozenset | set | tuple = ()) -> str:
    """NFKC + lower case, and OpenCC t2s for the configured languages (zh)."""
    text = unicodedata.normalize("NFKC", text or "")
    if lang in t2s_langs:
        text = to_simplified(text)
    return text.lower()


def exact_form(text: str, lang: str | None = None, t2s_langs=()) -> str:
    """The text with punctuation, symbols, emoji, whitespace and controls removed."""
    return strip_pattern().sub("", prepare(text, lang, t2s_langs))


_WORD = re.compile(r"\w+")


def words(text: str, lang: str | None = None, t2s_langs=()) -> list[str]:
    return _WORD.findall(prepare(text, lang, t2s_langs))


def shingles(text: str, lang: str | None, n: int, char_langs, t2s_langs=()) -> list[str]:
    """Character n-grams of the punctuation-free text for char_langs (zh: no spaces between words),
    word n-grams otherwise. A text shorter than n units yields one shingle of what there is."""
    if lang in char_langs:
        s = exact_form(text, lang, t2s_langs)
        if not s:
            return []
        return [s[i:i + n] for i in range(max(1, len(s) - n + 1))]
    w = words(text, lang, t2s_langs)
    if not w:
        return []
    return [" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))]


_DIGIT = re.compile(r"\d")


def line_form(line: str, lang: str | None = None, t2s_langs=()) -> str:
    """CCNet's line normalization (cc_net/text_normalizer.normalize): lower case, digits -> 0, accents
    kept, punctuation and whitespace removed; here with the same P/S/Z/C class as exact dedup."""
    return _DIGIT.sub("0", exact_form(line, lang, t2s_langs))
