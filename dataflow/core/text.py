"""Text helpers shared by every stage: CJK script ranges and tests, the fingerprint form of a text
(punctuation/symbols/emoji/space removed, Traditional Chinese folded to Simplified phrases) and shingles.

Scripts (Unicode 15 blocks; one list each, so every stage counts the same characters):
- `HAN_RANGES`: CJK Unified Ideographs, Extension A, Compatibility Ideographs and the supplementary
  ideographic planes (Extensions B-I, U+20000-U+323AF). A "CJK share" of Chinese text counts these.
- `KANA_RANGES`, `HANGUL_RANGES`: Japanese kana (with half-width katakana), Korean hangul.
- `CJK_RANGES` = Han + kana + hangul. `SPACELESS_RANGES` = CJK plus Thai, Lao, Khmer and Myanmar: scripts
  whose words are not separated by spaces, so word shingles do not work and character shingles are used.
`char_class(ranges)` gives the regex class body for any of them.

Fingerprints (used by CD's exact/SimHash/MinHash/line keys and DE's near-duplicate estimate; the stored
text is never changed): `fingerprint_form` removes every code point of Unicode category P*, S*, Z*, C*
and Me (punctuation, symbols and emoji, spaces, controls and format characters such as the emoji joiner,
enclosing keycaps) and the emoji variation selectors and keycap digits, applies NFKC (full-width letters
and digits), lower-cases, and folds Chinese with an OpenCC chain whatever the language label says (any
text holding a Han character). The default chain s2twp -> tw2sp -> hk2s maps a Simplified text, its
character-level Traditional conversion, its Taiwan localization (程式/檔案/透過 for 程序/文件/通过) and
its Hong Kong variant form onto one Simplified spelling: going through the Taiwan phrase form first makes
the phrase mapping symmetric (tw2sp alone would turn a mainland 程序 into 进程).
"""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from dataflow.core.hashing import SHINGLE_HASHES, char_hashes, gram_hashes, low32, sha1_32, word_hashes

Ranges = Sequence[tuple[int, int]]

HAN_RANGES: Ranges = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x323AF))
KANA_RANGES: Ranges = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
HANGUL_RANGES: Ranges = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))
CJK_RANGES: Ranges = (*HAN_RANGES, *KANA_RANGES, *HANGUL_RANGES)
SPACELESS_RANGES: Ranges = (*CJK_RANGES, (0x0E00, 0x0E7F), (0x0E80, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF))


def char_class(ranges: Ranges) -> str:
    """Regex character class matching one code point of `ranges`, e.g. '[\\u4e00-\\u9fff...]'."""
    def esc(cp: int) -> str:
        return "\\U%08x" % cp
    return "[" + "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges) + "]"


HAN_RE = re.compile(char_class(HAN_RANGES))
CJK_RE = re.compile(char_class(CJK_RANGES))
SPACELESS_RE = re.compile(char_class(SPACELESS_RANGES))


def in_ranges(ch: str, ranges: Ranges) -> bool:
    cp = ord(ch)
    return any(a <= cp <= b for a, b in ranges)


def han_count(text: str) -> int:
    return len(HAN_RE.findall(text))


def cjk_count(text: str) -> int:
    """Han, kana and hangul characters."""
    return len(CJK_RE.findall(text))


def has_han(text: str) -> bool:
    return HAN_RE.search(text) is not None


# ------------------------------------------------------------------ fingerprint form
# variation selectors ride on emoji but are category Mn, so the category test alone keeps them; a keycap
# emoji (1️⃣ = digit, U+FE0F, U+20E3) would otherwise leave its digit behind
_EXTRA_STRIP = [(0xFE00, 0xFE0F), (0xE0100, 0xE01EF)]
_KEYCAP = re.compile("[0-9#*]\ufe0f?\u20e3")


def _strip_ranges() -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    start = prev = None
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat[0] in "PSZC" or cat == "Me":
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
    """One compiled class of all P/S/Z/C/Me code points (built once per process, ~0.5 s)."""
    return re.compile(char_class(_strip_ranges()) + "+")


@lru_cache(maxsize=8)
def _opencc(config: str):
    import opencc     # the conversion tables ship inside the wheel: nothing to send to executors

    return opencc.OpenCC(config)


def zh_fold(text: str, chain: Iterable[str] = ()) -> str:
    """Apply the OpenCC configs of `chain` in order to a text that holds a Han character (else as is)."""
    chain = tuple(chain)
    if not chain or not has_han(text):
        return text
    for config in chain:
        text = _opencc(config).convert(text)
    return text


@lru_cache(maxsize=1)
def _strip_table() -> np.ndarray:
    """A bool per code point: is it in the strip class (`strip_pattern`)? Built once per process (~0.5 s)."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for a, b in _strip_ranges():
        table[a:b + 1] = True
    return table


_SPACE = np.uint32(32)


def strip(text: str, repl: str) -> str:
    """`strip_pattern().sub(repl, text)` for repl "" or " " (runs of spaces then made one), without the regex:
    the text's code points as one array, looked up in `_strip_table` (the class is ~1M code points, which `re`
    tests range by range: ~1 µs per character). The same characters, decided by the same Unicode database."""
    if repl not in ("", " "):
        raise ValueError(f"strip replaces with '' or ' ', got {repl!r}")
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    hit = _strip_table()[cps]
    if not hit.any():
        return text
    if repl == "":
        out = cps[~hit]
    else:
        out = np.where(hit, _SPACE, cps)
        space = out == _SPACE
        drop = np.zeros_like(space)
        drop[1:] = space[1:] & space[:-1]        # a space right after a space goes: runs become one
        out = out[~drop]
    return out.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def prepare(text: str | None, zh_chain: Iterable[str] = ()) -> str:
    """NFKC, Chinese folding and lower case; symbols are removed first so that compatibility symbols
    (™, ℃) do not turn into letters under NFKC."""
    text = strip(_KEYCAP.sub(" ", text or ""), " ")
    return zh_fold(unicodedata.normalize("NFKC", text), zh_chain).lower()


def fingerprint_form(text: str | None, zh_chain: Iterable[str] = ()) -> str:
    """The text with punctuation, symbols, emoji, whitespace and controls removed (see the module doc)."""
    return strip(prepare(text, zh_chain), "")


_WORD = re.compile(r"\w+")


def words(text: str | None, zh_chain: Iterable[str] = ()) -> list[str]:
    return _WORD.findall(prepare(text, zh_chain))


def spaceless_share(form: str) -> float:
    """Share of spaceless-script characters (CJK, Thai, ...) in a fingerprint form."""
    return len(SPACELESS_RE.findall(form)) / len(form) if form else 0.0


class Shingled:
    """Everything the fingerprints of one text derive from, computed once: the prepared text (`prepare`),
    its fingerprint form, whether it is shingled by characters, its words and its n-grams per n. CD computes
    the exact key, SimHash and MinHash of a record from one of these (dataflow.stages.dedup.fingerprints).

    shingle_hash (dataflow.core.hashing.SHINGLE_HASHES): how shingles become hashes. `fast64` (the default)
    hashes the words or characters once and their n-grams with array operations, never building a shingle
    string; `sha1` hashes each shingle string (datasketch's input hash)."""
    __slots__ = ("prepared", "form", "spaceless", "shingle_hash", "_words", "_grams", "_sets", "_hashes")

    def __init__(self, text: str | None, zh_chain: Iterable[str] = (), char_share: float = 0.3,
                 shingle_hash: str = "fast64"):
        if shingle_hash not in SHINGLE_HASHES:
            raise ValueError(f"shingle_hash must be one of {SHINGLE_HASHES}, got {shingle_hash!r}")
        self.prepared = prepare(text, zh_chain)
        self.form = strip(self.prepared, "")
        self.spaceless = bool(self.form) and spaceless_share(self.form) >= char_share
        self.shingle_hash = shingle_hash
        self._words: list[str] | None = None
        self._grams: dict[int, list[str]] = {}
        self._sets: dict[int, np.ndarray] = {}
        self._hashes: dict[int, np.ndarray] = {}

    def words(self) -> list[str]:
        if self._words is None:
            self._words = _WORD.findall(self.prepared)
        return self._words

    def n(self, char_n: int, word_n: int) -> int:
        """The effective n-gram size of this text: `char_n` characters when spaceless, else `word_n` words."""
        return char_n if self.spaceless else word_n

    def count(self, char_n: int, word_n: int) -> int:
        """The number of shingles (occurrences, `len(shingles(...))`) without building them."""
        if not self.form:
            return 0
        units = len(self.form) if self.spaceless else len(self.words())
        return max(1, units - self.n(char_n, word_n) + 1)

    def shingles(self, char_n: int, word_n: int) -> list[str]:
        """See `shingles`; the list is shared between calls with the same effective n (do not modify it)."""
        if not self.form:
            return []
        n = self.n(char_n, word_n)
        out = self._grams.get(n)
        if out is None:
            if self.spaceless:
                f = self.form
                out = [f[i:i + n] for i in range(max(1, len(f) - n + 1))]
            else:
                w = self.words()
                out = [" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))]
            self._grams[n] = out
        return out

    def gram_hashes(self, char_n: int, word_n: int) -> np.ndarray:
        """`fast64`: uint64 per shingle occurrence, in order (hashing.gram_hashes over the characters of the
        form or the words); empty for an empty form (shared between calls, do not modify)."""
        n = self.n(char_n, word_n)
        out = self._hashes.get(n)
        if out is None:
            if not self.form:
                units = np.zeros(0, np.uint64)
            else:
                units = char_hashes(self.form) if self.spaceless else word_hashes(self.words())
            out = self._hashes[n] = gram_hashes(units, n)
        return out

    def hash_set(self, char_n: int, word_n: int) -> np.ndarray:
        """The shingle set as its sorted distinct 32-bit hashes: the low 32 bits of `gram_hashes` (`fast64`)
        or the SHA-1 of each shingle (`sha1`, hashing.sha1_32). What MinHash permutes and what fuzzy
        verification intersects (shared between calls, do not modify)."""
        n = self.n(char_n, word_n)
        out = self._sets.get(n)
        if out is None:
            if self.shingle_hash == "fast64":
                out = np.unique(low32(self.gram_hashes(char_n, word_n)))
            else:
                out = np.unique(sha1_32(dict.fromkeys(self.shingles(char_n, word_n))))
            self._sets[n] = out
        return out


def shingles(text: str | None, char_n: int, word_n: int, zh_chain: Iterable[str] = (),
             char_share: float = 0.3) -> list[str]:
    """Character `char_n`-grams of the fingerprint form when at least `char_share` of it is written in a
    spaceless script (decided from the text, not the language label, so two copies of a page always get the
    same kind of shingles), word `word_n`-grams otherwise. A text shorter than n units yields one shingle of
    what there is; an empty one yields none."""
    return list(Shingled(text, zh_chain, char_share).shingles(char_n, word_n))


_DIGIT = re.compile(r"\d")


def line_form(line: str, zh_chain: Iterable[str] = ()) -> str:
    """CCNet's line normalization (cc_net/text_normalizer.normalize): lower case, digits -> 0, accents
    kept, punctuation and whitespace removed; here with the fingerprint class."""
    return _DIGIT.sub("0", fingerprint_form(line, zh_chain))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """Jaccard similarity of two shingle sets (0 when both are empty)."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0
