"""Document-level rules: each rejects a whole document (applied first, in this order).

Definitions follow datatrove 0.10 where a rule bears a datatrove name (GopherQualityFilter,
GopherRepetitionFilter, FineWebQualityFilter, C4QualityFilter); the thresholds are in conf/pipeline.yaml.
Word-based rules use `Doc.words` (jieba for zh, never whitespace).
"""
from __future__ import annotations

import re
from collections import Counter

from .lexicon import lexicon_path, matcher
from .registry import ANY_LANG, rule
from .text import CLOSERS, TERMINAL_PUNCT, cjk_count

EN_ZH = ("en", "zh")
ALL = (ANY_LANG,)


# ------------------------------------------------------------------ length
@rule("length.min_chars", "document", ALL,
      "text shorter than min_chars (per language); also the floor after paragraph/sentence removal")
def min_chars(doc, p):
    floor = min_chars_for(p, doc.lang)
    n = len(doc.text.strip())
    return f"{n} chars < {floor}" if n < floor else None


def min_chars_for(p: dict, lang: str | None) -> int:
    by_lang = p["min_chars"]
    return int(by_lang.get(lang, by_lang["default"]))


# ------------------------------------------------------------------ Gopher quality (Rae et al. 2021)
@rule("gopher_quality.word_count", "document", ("en",), "non-symbol words outside [min_words, max_words]")
def word_count(doc, p):
    n = len(doc.non_symbol_words)
    if n < p["min_words"]:
        return f"{n} words < {p['min_words']}"
    if n > p["max_words"]:
        return f"{n} words > {p['max_words']}"
    return None


@rule("gopher_quality.mean_word_length", "document", ("en",), "mean non-symbol word length outside [min, max]")
def mean_word_length(doc, p):
    ws = doc.non_symbol_words
    if not ws:
        return "no words"
    mean = sum(map(len, ws)) / len(ws)
    if mean < p["min_mean"] or mean > p["max_mean"]:
        return f"mean word length {mean:.2f} outside [{p['min_mean']}, {p['max_mean']}]"
    return None


@rule("gopher_quality.hash_ratio", "document", ALL, "'#' per word above max_ratio")
def hash_ratio(doc, p):
    n = len(doc.words)
    r = doc.text.count("#") / n if n else 0.0
    return f"#/word {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("gopher_quality.ellipsis_ratio", "document", ALL, "'...' and '…' per word above max_ratio")
def ellipsis_ratio(doc, p):
    n = len(doc.words)
    r = (doc.text.count("...") + doc.text.count("…")) / n if n else 0.0
    return f"ellipsis/word {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("gopher_quality.bullet_lines", "document", ALL, "share of lines starting with a bullet above max_ratio")
def bullet_lines(doc, p):
    lines = doc.lines
    if not lines:
        return None
    r = sum(ln.lstrip().startswith(tuple(p["bullets"])) for ln in lines) / len(lines)
    return f"bullet lines {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("gopher_quality.ellipsis_lines", "document", ALL, "share of lines ending in an ellipsis above max_ratio")
def ellipsis_lines(doc, p):
    lines = doc.lines
    if not lines:
        return None
    r = sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
    return f"ellipsis lines {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("gopher_quality.alpha_words", "document", ("en",), "share of words with an alphabetic character below min_ratio")
def alpha_words(doc, p):
    ws = doc.words
    if not ws:
        return "no words"
    r = sum(any(c.isalpha() for c in w) for w in ws) / len(ws)
    return f"alpha words {r:.3f} < {p['min_ratio']}" if r < p["min_ratio"] else None


@rule("gopher_quality.stop_words", "document", ("en",), "fewer than min_stop_words distinct English stop words")
def stop_words(doc, p):
    n = len(set(p["stop_words"]).intersection(doc.words))
    return f"{n} distinct stop words < {p['min_stop_words']}" if n < p["min_stop_words"] else None


# ------------------------------------------------------------------ Gopher repetition
def _duplicates(units: list[str]) -> tuple[int, int]:
    """(duplicate units, characters in them): every occurrence after the first counts."""
    seen, n, chars = set(), 0, 0
    for u in units:
        if u in seen:
            n += 1
            chars += len(u)
        else:
            seen.add(u)
    return n, chars


@rule("gopher_repetition.dup_line_frac", "document", ALL, "share of duplicate lines above max_frac")
def dup_line_frac(doc, p):
    lines = doc.gopher_lines
    n, _ = _duplicates(lines)
    r = n / len(lines) if lines else 0.0
    return f"dup lines {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


@rule("gopher_repetition.dup_para_frac", "document", ALL, "share of duplicate paragraphs above max_frac")
def dup_para_frac(doc, p):
    paras = doc.gopher_paragraphs
    n, _ = _duplicates(paras)
    r = n / len(paras) if paras else 0.0
    return f"dup paragraphs {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


@rule("gopher_repetition.dup_line_char_frac", "document", ALL, "characters in duplicate lines above max_frac")
def dup_line_char_frac(doc, p):
    _, chars = _duplicates(doc.gopher_lines)
    r = chars / len(doc.text) if doc.text else 0.0
    return f"dup line chars {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


@rule("gopher_repetition.dup_para_char_frac", "document", ALL, "characters in duplicate paragraphs above max_frac")
def dup_para_char_frac(doc, p):
    _, chars = _duplicates(doc.gopher_paragraphs)
    r = chars / len(doc.text) if doc.text else 0.0
    return f"dup paragraph chars {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


def _ngram_sep(lang):
    # zh words are joined without spaces (the characters are what repeats)
    return "" if lang in ("zh", "ja", "ko") else " "


@rule("gopher_repetition.top_ngram", "document", ALL,
      "characters covered by the most frequent n-gram above max_frac[n] (n = 2, 3, 4)")
def top_ngram(doc, p):
    ws, sep, total = doc.words, _ngram_sep(doc.lang), len(doc.text)
    if not total:
        return None
    for n, frac in sorted((int(k), float(v)) for k, v in p["max_frac"].items()):
        if len(ws) < n:
            continue
        counts = Counter(zip(*(ws[i:] for i in range(n))))
        gram, c = counts.most_common(1)[0]
        if c < 2:
            continue
        r = len(sep.join(gram)) * c / total
        if r > frac:
            return f"top {n}-gram {sep.join(gram)!r} x{c}: {r:.3f} > {frac}"
    return None


@rule("gopher_repetition.dup_ngram", "document", ALL,
      "characters in repeated n-grams above max_frac[n] (n = 5..10), non-overlapping count")
def dup_ngram(doc, p):
    ws, total = doc.words, len(doc.text)
    if not total:
        return None
    for n, frac in sorted((int(k), float(v)) for k, v in p["max_frac"].items()):
        seen, repeated, i, last = set(), 0, 0, len(ws) - n + 1
        while i < last:
            gram = "".join(ws[i:i + n])
            if gram in seen:
                repeated += len(gram)
                i += n          # skip the repeat, so overlapping repeats are not counted twice
            else:
                seen.add(gram)
                i += 1
        r = repeated / total
        if r > frac:
            return f"duplicated {n}-grams {r:.3f} > {frac}"
    return None


# ------------------------------------------------------------------ FineWeb (Penedo et al. 2024)
# English only: its thresholds were tuned on English web text (a 30-character zh line is a full sentence);
# zh gets zh.mean_line_length instead. `langs` in conf can widen them.
@rule("fineweb.line_punct_ratio", "document", ("en",), "share of lines ending in terminal punctuation below min_ratio")
def line_punct_ratio(doc, p):
    lines = doc.nonblank_lines
    if not lines:
        return "no lines"
    r = sum(ln.endswith(TERMINAL_PUNCT) for ln in lines) / len(lines)
    return f"terminal-punct lines {r:.3f} < {p['min_ratio']}" if r < p["min_ratio"] else None


@rule("fineweb.short_line_ratio", "document", ("en",), "share of lines of at most short_line_chars above max_ratio")
def short_line_ratio(doc, p):
    lines = doc.nonblank_lines
    if not lines:
        return "no lines"
    r = sum(len(ln) <= p["short_line_chars"] for ln in lines) / len(lines)
    return f"short lines {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("fineweb.char_dup_ratio", "document", ("en",), "characters in duplicate lines over non-newline characters above max_ratio")
def char_dup_ratio(doc, p):
    _, chars = _duplicates(doc.nonblank_lines)
    denom = len(doc.text) - doc.text.count("\n")
    r = chars / denom if denom else 0.0
    return f"dup line chars {r:.4f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("fineweb.list_ratio", "document", ("en",), "newlines per word above max_ratio (list-like pages)")
def list_ratio(doc, p):
    n = len(doc.words)
    r = doc.text.count("\n") / n if n else float("inf")
    return f"newlines/word {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


# ------------------------------------------------------------------ C4 (Raffel et al. 2020), document drops
@rule("c4.lorem_ipsum", "document", ALL, "placeholder text ('lorem ipsum') anywhere")
def lorem_ipsum(doc, p):
    return "contains lorem ipsum" if "lorem ipsum" in doc.lower else None


_PROSE_END = TERMINAL_PUNCT + tuple(CLOSERS)


@rule("c4.curly_bracket", "document", EN_ZH, "a '{' in a prose line (ends in punctuation, >= min_words words): code")
def curly_bracket(doc, p):
    # C4 only looks at lines that survived its line filters, i.e. prose-like lines
    for ln in doc.nonblank_lines:
        s = ln.strip()
        if "{" in s and s.endswith(_PROSE_END) and len(s.split()) >= p["min_words"]:
            return f"curly bracket in line {s[:60]!r}"
    return None


# ------------------------------------------------------------------ Chinese
@rule("zh.cjk_ratio", "document", ("zh",), "share of CJK characters among non-space characters below min_ratio")
def cjk_ratio(doc, p):
    n = len(doc.compact)
    r = cjk_count(doc.compact) / n if n else 0.0
    return f"CJK share {r:.3f} < {p['min_ratio']}" if r < p["min_ratio"] else None


@rule("zh.char_ngram_repetition", "document", ("zh",), "share of repeated character n-grams (n = ngram) above max_ratio")
def char_ngram_repetition(doc, p):
    s, n = doc.compact, int(p["ngram"])
    total = len(s) - n + 1
    if total <= 1:
        return None
    distinct = len({s[i:i + n] for i in range(total)})
    r = 1 - distinct / total
    return f"repeated {n}-grams {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


@rule("zh.mean_line_length", "document", ("zh",), "mean non-blank line length (characters) outside [min_chars, max_chars]")
def mean_line_length(doc, p):
    lines = doc.nonblank_lines
    if not lines:
        return "no lines"
    mean = sum(len(ln.strip()) for ln in lines) / len(lines)
    if mean < p["min_chars"] or mean > p["max_chars"]:
        return f"mean line length {mean:.1f} outside [{p['min_chars']}, {p['max_chars']}]"
    return None


@rule("zh.function_words", "document", ("zh",),
      "fewer than min_distinct distinct common function words (zh analogue of Gopher's stop words)")
def function_words(doc, p):
    if len(doc.compact) < p["min_chars_to_apply"]:
        return None
    n = sum(1 for w in p["words"] if w in doc.text)
    return f"{n} distinct function words < {p['min_distinct']}" if n < p["min_distinct"] else None


# ------------------------------------------------------------------ garbled text
# U+FFFD, C1 controls, private-use characters, UTF-8 read as Latin-1/cp1252 (Ã©, â€™, Â ), and the
# GBK mojibake "锟斤拷" / uninitialised-memory "烫烫烫"/"屯屯屯"
_GARBLED = re.compile("\ufffd|[\x80-\x9f]|[\ue000-\uf8ff]|Ã[\x80-\xbf]|â€[\x80-\xbf™œ˜šž\u201c\u201d\u2018\u2019\u2013\u2014\u2022\u20ac]|Â[\xa0-\xbf]|锟斤拷|烫烫|屯屯")


@rule("garbled.char_ratio", "document", ALL, "share of characters in mojibake/replacement sequences above max_ratio")
def garbled_ratio(doc, p):
    if not doc.text:
        return None
    chars = sum(len(m) for m in _GARBLED.findall(doc.text))
    r = chars / len(doc.text)
    return f"garbled chars {r:.4f} > {p['max_ratio']}" if r > p["max_ratio"] else None


# ------------------------------------------------------------------ boilerplate densities
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'）)\]，。]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# phone numbers: optional country code, then groups separated by space/dot/dash, at least 8 digits in all
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w])")


def _share(pattern: re.Pattern, text: str) -> float:
    return sum(len(m.group(0)) for m in pattern.finditer(text)) / len(text) if text else 0.0


@rule("boilerplate.url_density", "document", ALL, "share of characters inside URLs above max_char_share")
def url_density(doc, p):
    r = _share(_URL, doc.text)
    return f"URL chars {r:.3f} > {p['max_char_share']}" if r > p["max_char_share"] else None


@rule("boilerplate.email_density", "document", ALL, "share of characters inside e-mail addresses above max_char_share")
def email_density(doc, p):
    r = _share(_EMAIL, doc.text)
    return f"e-mail chars {r:.3f} > {p['max_char_share']}" if r > p["max_char_share"] else None


@rule("boilerplate.phone_density", "document", ALL, "share of characters inside phone numbers above max_char_share")
def phone_density(doc, p):
    r = _share(_PHONE, doc.text)
    return f"phone chars {r:.3f} > {p['max_char_share']}" if r > p["max_char_share"] else None


# ------------------------------------------------------------------ content lexicons (density)
def _density(doc, p):
    path = lexicon_path(p, doc.lang)
    if not path:
        return None
    hits = matcher(path, doc.lang).findall(doc.text)
    if len(hits) < p["min_hits"]:
        return None
    r = sum(map(len, hits)) / len(doc.text)
    if r > p["max_char_share"]:
        top = Counter(h.lower() for h in hits).most_common(3)
        return f"{len(hits)} hits, {r:.4f} of chars > {p['max_char_share']}: " + ", ".join(f"{t}x{c}" for t, c in top)
    return None


for _cat in ("porn", "violence", "gambling", "extremism"):
    rule(f"content.{_cat}_density", "document", EN_ZH,
         f"{_cat} lexicon: at least min_hits hits covering more than max_char_share of the characters")(_density)
