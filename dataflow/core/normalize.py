"""Text normalization (CCNet / Ziya2 DP): ftfy + Unicode normal form, control characters, full-width ASCII,
whitespace. Paragraphs (blank-line separated) and line breaks inside them are kept: later stages
(line rules, paragraph rules, per-paragraph perplexity) need them.
"""
from __future__ import annotations

import re
import unicodedata

import ftfy
import regex

# every line separator Unicode knows -> \n (before splitting into lines; \r\n is replaced first)
_LINE_SEPS = re.compile(r"[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# C0/C1 controls except \t and \n, noncharacters, and lone surrogates (from JSON \\ud800 escapes), which UTF-8
# cannot hold
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff\ud800-\udfff]")
# Invisible characters, by Unicode's own properties rather than a hand list: Default_Ignorable_Code_Point (zero
# widths, joiners, soft hyphen, word joiner, variation selectors, tag characters U+E0000-E007F, ...) and
# Bidi_Control (embeddings, overrides, isolates U+2066-2069, U+061C), and the other format characters (General
# Category Cf: interlinear annotation U+FFF9-FFFB, ...) except the prepended concatenation marks, which are
# drawn (the Arabic number sign U+0600, end of ayah U+06DD). They render as nothing, so text can hide in them (an
# instruction in tag characters) and they split words for tokenizers; removing them changes no visible
# character. Only non-ASCII text is searched (no ASCII character has any of these properties).
_INVISIBLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}[\p{Cf}--\p{Prepended_Concatenation_Mark}]]+",
                           regex.V1)
# horizontal whitespace runs (incl. NBSP, ideographic space, en/em spaces) -> one space; the pattern skips
# what is already one plain space (most of any text), so only runs that change are replaced
_HS = "\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_HSPACE = re.compile(f"[{_HS}][ {_HS}]*| [ {_HS}]+")
_LINE_EDGES = re.compile(r" \n ?|\n ")  # after _HSPACE a line edge holds at most one space
_BLANKS = re.compile(r"\n{3,}")
# full-width ASCII (U+FF01..FF5E) -> ASCII; NFKC already does this, the table makes sure for NFC/NFD
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20
_FOLDS_WIDTH = ("NFKC", "NFKD")  # compatibility forms already map U+FF01..FF5E and U+3000

# ftfy costs ~1 µs per character even on clean text, so it runs only where it can change something:
# UTF-8 mojibake always pairs a lead char Â..ô with a continuation char (0x80-0xBF or a cp1252 special),
# and HTML entities are `&name;`/`&#n;`. Everything else ftfy would do is covered below (NFKC folds
# ligatures and widths, the control-character class removes C1 controls and lone surrogates).
_FTFY_NEEDED = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
    "|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")
_FTFY = ftfy.TextFixerConfig(normalization=None, uncurl_quotes=False, fix_line_breaks=False,
                             remove_control_chars=False, explain=False)


def normalize(text: str, *, form: str = "NFKC", keep_whitespace: bool = False) -> str:
    """Normalized text; '' when nothing printable is left. `keep_whitespace` (code, whose indentation is
    content): spaces and tabs stay as they are; only line separators, controls and leading/trailing blank lines change."""
    if _FTFY_NEEDED.search(text):  # mojibake and HTML entities first, on the text as extracted
        text = ftfy.fix_text(text, _FTFY)
    if form:
        text = unicodedata.normalize(form, text)
    if form not in _FOLDS_WIDTH:
        text = text.translate(_FULLWIDTH)
    text = _CONTROL.sub("", _LINE_SEPS.sub("\n", text.replace("\r\n", "\n")))
    if not text.isascii():
        text = _INVISIBLE.sub("", text)
    if keep_whitespace:
        return text.strip("\n")
    text = _LINE_EDGES.sub("\n", _HSPACE.sub(" ", text))
    if "\n\n\n" in text:
        text = _BLANKS.sub("\n\n", text)
    return text.strip("\n ")
