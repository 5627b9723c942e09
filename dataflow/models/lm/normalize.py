"""CCNet's text normalisation, applied before SentencePiece both when the LMs are trained and when
documents are scored (cc_net/text_normalizer.py `normalize(line, accent=True, case=True, numbers=True,
punct=1)`, the setting cc_net's `mine.py` uses for perplexity):

1. strip the line; lower-case it;
2. strip accents (NFD, drop combining marks, category Mn);
3. every Unicode digit becomes `0`;
4. CJK/typographic punctuation is mapped to its ASCII counterpart (table below, cc_net's UNICODE_PUNCT);
5. control characters (U+0000-001F, U+007F-009F) are removed.

One deliberate difference: cc_net normalises a whole document at once, which deletes the newlines
(they are control characters) before it splits the document into lines, so its "per line" score is in
effect one line per document. We normalise each paragraph line separately, so paragraph boundaries
survive as sentence boundaries (`<s> ... </s>`) as Ziya2 and the CCNet paper describe.
"""
from __future__ import annotations

import re
import unicodedata

# cc_net UNICODE_PUNCT (punct=1: replace). "１" -> '"' is cc_net's own (odd) entry, kept for parity.
UNICODE_PUNCT = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"',
    "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!",
    "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'", "…": "...",
    "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-",
}
_PUNCT_TABLE = str.maketrans(UNICODE_PUNCT)
_NON_PRINTING = re.compile("[" + "".join(map(chr, list(range(0, 32)) + list(range(127, 160)))) + "]")
_DIGIT = re.compile(r"\d")


def strip_accents(line: str) -> str:
    nfd = unicodedata.normalize("NFD", line)
    return "".join(c for c in nfd if unicodedata.category(c) != "Mn")


def normalize_line(line: str, accent: bool = True, case: bool = True, numbers: bool = True,
                   punct: bool = True) -> str:
    line = line.strip()
    if not line:
        return line
    if case:
        line = line.lower()
    if accent and not line.isascii():  # ASCII has no combining marks: skip the NFD round trip
        line = strip_accents(line)
    if numbers:
        line = _DIGIT.sub("0", line)
    if punct:
        line = line.translate(_PUNCT_TABLE)
    return _NON_PRINTING.sub("", line)


def normalize_settings(cfg: dict) -> dict:
    """The `score.normalize` section as keyword arguments for `normalize_line`."""
    n = cfg.get("normalize") or {}
    return {k: bool(n.get(k, True)) for k in ("accent", "case", "numbers", "punct")}
