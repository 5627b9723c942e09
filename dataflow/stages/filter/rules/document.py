"""Document-level rules: each rejects a whole document (applied first, in the configured order).

Rules in the `gopher_quality`, `gopher_repetition`, `fineweb` and `c4` groups follow datatrove 0.10's
GopherQualityFilter, GopherRepetitionFilter, FineWebQualityFilter and C4QualityFilter: the same
tokenization (text.words, a stand-in for its spaCy/jieba tokenizers), the same numerators and denominators
and the same comparison (> or >=). Every intended deviation is marked `deviation:` here and listed in the
comments of conf/pipeline.yaml `filter.rules`. Thresholds live in the configuration; each rule declares its
parameters in the `RULES` table at the end of this file.
"""
from __future__ import annotations

import re
from collections import Counter
from itertools import repeat

import numpy as np

from dataflow.core.confschema import Float, Int, List, Map, Str
from dataflow.core.confschema import File
from dataflow.stages.filter.rules.base import ANY_LANG, PerLang, Rule, per_lang
from dataflow.stages.filter.rules.codelines import code_spans
from dataflow.stages.filter.rules.lexicon import lexicon_hits, lexicon_path
from dataflow.stages.filter.rules.ngrams import most_common, repeated_chars
from dataflow.core.text import has_han
from dataflow.stages.filter.rules.text import split_sentences

EN, ZH, EN_ZH, ALL = ("en",), ("zh",), ("en", "zh"), (ANY_LANG,)
RATIO = Float(0, 1)
PHRASES = Map(List(Str(non_empty=True)))          # language -> phrases (lowercase substrings)


# ------------------------------------------------------------------ length
def min_chars(doc, p):
    floor = per_lang(p["min_chars"], doc.lang)
    n = len(doc.text.strip())
    return f"{n} chars < {floor}" if n < floor else None


# ------------------------------------------------------------------ Gopher quality (Rae et al. 2021, App. A)
# datatrove: words = split_into_words(text); non-symbol words have a character outside its PUNCTUATION_SET.
# deviation: a symbol is any Unicode P*/S* character (datatrove's fixed set misses • → © € and others).
def word_count(doc, p):
    n = len(doc.non_symbol_words)
    if n < p["min_words"]:
        return f"{n} words < {p['min_words']}"
    if n > p["max_words"]:
        return f"{n} words > {p['max_words']}"
    return None


def mean_word_length(doc, p):
    ws = doc.non_symbol_words
    if not ws:
        return "no words"
    mean = sum(map(len, ws)) / len(ws)
    if mean < p["min_mean"] or mean > p["max_mean"]:
        return f"mean word length {mean:.2f} outside [{p['min_mean']}, {p['max_mean']}]"
    return None


def hash_ratio(doc, p):
    n = len(doc.words)                      # datatrove: '#' count over all tokens
    r = doc.text.count("#") / n if n else 0.0
    return f"#/word {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


def ellipsis_ratio(doc, p):
    n = len(doc.words)
    r = (doc.text.count("...") + doc.text.count("…")) / n if n else 0.0
    return f"ellipsis/word {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


def bullet_lines(doc, p):
    lines = doc.lines                       # datatrove: text.splitlines(), blank lines included
    if not lines:
        return None
    r = sum(map(str.startswith, map(str.lstrip, lines), repeat(tuple(p["bullets"])))) / len(lines)
    return f"bullet lines {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


def ellipsis_lines(doc, p):
    lines = doc.lines
    if not lines:
        return None
    r = sum(map(str.endswith, map(str.rstrip, lines), repeat(("...", "…")))) / len(lines)
    return f"ellipsis lines {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


def alpha_words(doc, p):
    # deviation: the denominator is the non-symbol words, as Gopher's "80% of words" and datatrove before 0.3
    # (n_words = tokens not in string.punctuation); datatrove 0.10 divides by every token, so each "(" ")"
    # "." "/" of technical prose counts against it ("(see lintian)." scores 2/5).
    ws = doc.non_symbol_words
    if not ws:
        return "no words"
    alpha = {w: any(map(str.isalpha, w)) for w in set(ws)}     # each distinct word decided once
    r = sum(map(alpha.__getitem__, ws)) / len(ws)
    return f"alpha words {r:.3f} < {p['min_ratio']}" if r < p["min_ratio"] else None


def stop_words(doc, p):
    n = len(set(p["stop_words"]).intersection(doc.words))    # datatrove: distinct, case-sensitive
    return f"{n} distinct stop words < {p['min_stop_words']}" if n < p["min_stop_words"] else None


# ------------------------------------------------------------------ Gopher repetition (Rae et al. 2021, Table A1)
def _duplicates(units: list[str]) -> tuple[int, int]:
    """(duplicate units, characters in them): every occurrence after the first counts (datatrove find_duplicates)."""
    distinct = set(units)
    return len(units) - len(distinct), sum(map(len, units)) - sum(map(len, distinct))


# lines: datatrove splits on "\n+" (no empty lines); deviation: whitespace around the newlines is absorbed too,
# so whitespace-only lines between paragraphs are not duplicates of each other.
def dup_line_frac(doc, p):
    lines, frac = doc.gopher_lines, per_lang(p["max_frac"], doc.lang)
    n, _ = _duplicates(lines)
    r = n / len(lines) if lines else 0.0
    return f"dup lines {r:.3f} > {frac}" if r > frac else None


def dup_para_frac(doc, p):
    paras = doc.gopher_paragraphs
    n, _ = _duplicates(paras)
    r = n / len(paras) if paras else 0.0
    return f"dup paragraphs {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


def dup_line_char_frac(doc, p):
    _, chars = _duplicates(doc.gopher_lines)
    r = chars / len(doc.text) if doc.text else 0.0
    return f"dup line chars {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


def dup_para_char_frac(doc, p):
    _, chars = _duplicates(doc.gopher_paragraphs)
    r = chars / len(doc.text) if doc.text else 0.0
    return f"dup paragraph chars {r:.3f} > {p['max_frac']}" if r > p["max_frac"] else None


def _ngram_sep(lang):
    # how an n-gram is shown in a detail (zh/ja/ko words are written without spaces)
    return "" if lang in ("zh", "ja", "ko") else " "


# deviation: n-grams of the non-symbol words (as for alpha_words, a lone punctuation mark is not a word;
# datatrove 0.10 n-grams every token, so code samples' "' ) > > >" dominate), and an n-gram covers the
# characters of the text it spans (Gopher: "fraction of characters contained within" the n-grams); datatrove
# measures the n-gram joined with spaces, equal for whitespace-separated words but inflated for split
# punctuation ('" /etc / shadow "' is 17 characters for the 13 of "/etc/shadow").
def top_ngram(doc, p):
    total = len(doc.text)
    if not total:
        return None
    ws = doc.non_symbol_words
    for n, frac in sorted((int(k), float(v)) for k, v in per_lang(p["max_frac"], doc.lang).items()):
        if len(ws) < n:
            continue
        ids = doc.gram_ids(n)
        first, c = most_common(ids)
        if c < 2:
            continue    # deviation: an n-gram seen once is no repetition (datatrove rejects "Hello world" here)
        starts, ends = doc.non_symbol_spans
        at = np.flatnonzero(ids == ids[first])
        covered = int((ends[at + n - 1] - starts[at]).sum())
        r = covered / total
        if r > frac:
            return f"top {n}-gram {_ngram_sep(doc.lang).join(ws[first:first + n])!r} x{c}: {r:.3f} > {frac}"
    return None


def dup_ngram(doc, p):
    # datatrove find_all_duplicate: non-overlapping repeats, each counted as the characters of its words
    # without the spaces between them, over len(text). deviation: the non-symbol words (as above).
    total = len(doc.text)
    if not total:
        return None
    lens = doc.non_symbol_lens
    for n, frac in sorted((int(k), float(v)) for k, v in per_lang(p["max_frac"], doc.lang).items()):
        ids = doc.gram_ids(n)
        # datatrove: len("".join(words)), the words' own characters
        repeated = repeated_chars(ids, lens[n:n + len(ids)] - lens[:len(ids)], n)
        r = repeated / total
        if r > frac:
            return f"duplicated {n}-grams {r:.3f} > {frac}"
    return None


# ------------------------------------------------------------------ FineWeb (Penedo et al. 2024)
# char_dup_ratio and list_ratio run on en and zh, zh with FineWeb-2's cmn_Hani thresholds (configs/cmn_Hani.yml;
# its pipeline applies them to every language). short_line_ratio stays English (FineWeb-2 switches it off: a
# 30-character zh line is a full sentence). line_punct_ratio carries FineWeb-2's zh value but runs on en only
# by default (deviation, see conf: zh documentation writes headings and labels as lines of their own).
# lines are the non-blank lines, as datatrove 0.10 (split("\n"), blank lines dropped); deviation: trailing
# whitespace is stripped before the end-character test.
# deviation: both line ratios look at the lines of prose (text.Doc.prose_lines): the rows of a table (DP
# writes a <table> row as one line of tab-separated cells) are records, not unpunctuated prose lines; a page
# of nothing but rows is judged on its rows. Package and option tables are the usual body of documentation.
def line_punct_ratio(doc, p):
    lines, floor = doc.prose_lines, per_lang(p["min_ratio"], doc.lang)
    if not lines:
        return "no lines"
    r = sum(ln.endswith(tuple(p["end_chars"])) for ln in lines) / len(lines)
    return f"terminal-punct lines {r:.3f} <= {floor}" if r <= floor else None


def short_line_ratio(doc, p):
    lines = doc.prose_lines
    if not lines:
        return "no lines"
    r = sum(len(ln) <= p["short_line_chars"] for ln in lines) / len(lines)
    return f"short lines {r:.3f} >= {p['max_ratio']}" if r >= p["max_ratio"] else None


def char_dup_ratio(doc, p):
    # deviation: repeated lines of at most max_ignored_line_chars (labels and table cells: Note, Tip, Yes, -)
    # do not count; every structured page repeats them, and short lines are short_line_ratio's business
    _, chars = _duplicates([ln for ln in doc.nonblank_lines if len(ln.strip()) > p["max_ignored_line_chars"]])
    denom = len(doc.text) - doc.text.count("\n")
    r = chars / denom if denom else 0.0
    return f"dup line chars {r:.4f} >= {p['max_ratio']}" if r >= p["max_ratio"] else None


def list_ratio(doc, p):
    # deviation: line breaks between non-blank lines (a blank-line paragraph break counts once, as in
    # trafilatura's single-newline text); datatrove counts every "\n"
    n, cap = len(doc.words), per_lang(p["max_ratio"], doc.lang)
    breaks = max(len(doc.nonblank_lines) - 1, 0)
    r = breaks / n if n else float("inf")
    return f"line breaks/word {r:.3f} > {cap}" if r > cap else None


# ------------------------------------------------------------------ C4 (Raffel et al. 2020 §2.2), document drops
def lorem_ipsum(doc, p):
    return "contains lorem ipsum" if "lorem ipsum" in doc.lower else None


# A brace group glued to the word before it with no space, quote, ':' or ';' inside: shell brace expansion
# (.orig.tar.{gz,bz2,xz}), TeX arguments (\emph{x}, a_{i}). Prose, not the code C4 meant to drop.
# Also prose that only names the characters: a quoted brace ('{'), or a brace in a run of three or more lone
# symbols ("special characters: { } ( ) [ ]"), and shell/template variables (${var:-x}).
_INLINE_BRACES = re.compile(r"(?<=[^\s{}])\{[^{}\s:;\"']*\}|\$\{[^{}]*\}|(['\"`‘“])[{}]+['\"`’”]|"
                            r"(?<!\S)[^\w\s](?:\s+[^\w\s]){2,}(?!\S)")


def curly_bracket(doc, p):
    # C4 drops a page with '{' in a line that survived its line filters: a line ending in C4's terminal
    # punctuation (end_chars, not an ellipsis) with >= min_words words. deviation: inline brace groups (above)
    # do not count.
    ends = tuple(p["end_chars"])
    for ln in doc.nonblank_lines:
        s = ln.strip()
        if "{" in s and s.endswith(ends) and not s.endswith(("...", "…")) and len(s.split()) >= p["min_words"]:
            if "{" in _INLINE_BRACES.sub("", s):
                return f"curly bracket in line {s[:60]!r}"
    return None


def min_sentences(doc, p):
    # a final rule: counts the sentences of the lines the paragraph rules left (C4: len(sent_tokenize(line))
    # per kept line; here text.split_sentences)
    n = sum(1 for ln in doc.nonblank_lines for s in split_sentences(ln) if s.strip())
    return f"{n} sentences left < {p['min_sentences']}" if n < p["min_sentences"] else None


# ------------------------------------------------------------------ Chinese
def cjk_ratio(doc, p):
    # Chinese words among the words written in letters (jieba's words, text.words): a word with a Han
    # character is Chinese; one of other letters (Latin, Cyrillic, kana ...) is not. Digits, punctuation and
    # symbols belong to no language, so `ls -l /etc/apt/` or a version table does not count against the
    # Chinese of the page; a page of Latin words does. Words, not letters: a letter share weighs an English
    # word (~5 letters) three times a Chinese one (~1.5 characters), so zh prose naming a few identifiers
    # (LibreOffice, apt-get, IsUnoStruct) looked foreign. The lines of a code listing (codelines.code_spans)
    # are no natural language either: the prose of a zh page with a program in it is what is measured.
    code, k = code_spans(doc.text), 0
    counts = Counter(doc.words)
    if code:        # only the words outside the code lines count
        counts = Counter()
        for w, (a, _) in zip(doc.words, doc.word_spans):
            while k < len(code) and code[k][1] <= a:
                k += 1
            if not (k < len(code) and code[k][0] <= a):
                counts[w] += 1
    han = other = 0
    for w, c in counts.items():     # each distinct word classified once
        if has_han(w):
            han += c
        elif any(ch.isalpha() for ch in w):
            other += c
    r = han / (han + other) if han + other else 0.0
    return f"Chinese share of words {r:.3f} < {p['min_ratio']}" if r < p["min_ratio"] else None


def char_ngram_repetition(doc, p):
    s, n = doc.compact, int(p["ngram"])
    total = len(s) - n + 1
    if total <= 1:
        return None
    distinct = len({s[i:i + n] for i in range(total)})
    r = 1 - distinct / total
    return f"repeated {n}-grams {r:.3f} > {p['max_ratio']}" if r > p["max_ratio"] else None


def mean_line_length(doc, p):
    lines = doc.nonblank_lines
    if not lines:
        return "no lines"
    mean = sum(len(ln.strip()) for ln in lines) / len(lines)
    if mean < p["min_chars"] or mean > p["max_chars"]:
        return f"mean line length {mean:.1f} outside [{p['min_chars']}, {p['max_chars']}]"
    return None


def function_words(doc, p):
    if len(doc.compact) < p["min_chars_to_apply"]:
        return None
    n = sum(1 for w in p["words"] if w in doc.text)
    return f"{n} distinct function words < {p['min_distinct']}" if n < p["min_distinct"] else None


# ------------------------------------------------------------------ garbled text
# U+FFFD, C1 controls, private-use characters, UTF-8 read as Latin-1/cp1252 (Ã©, â€™, Â ), and the
# GBK mojibake "锟斤拷" / uninitialised-memory "烫烫烫"/"屯屯屯"
_GARBLED = re.compile("\ufffd|[\x80-\x9f]|[\ue000-\uf8ff]|Ã[\x80-\xbf]|â€[\x80-\xbf™œ˜šž\u201c\u201d\u2018\u2019\u2013\u2014\u2022\u20ac]|Â[\xa0-\xbf]|锟斤拷|烫烫|屯屯")


# every _GARBLED alternative starts with one of these: a text without any holds no match (one scan in C, where the
# alternation is tried at every character)
_GARBLED_FIRST = re.compile("[\ufffd\x80-\x9f\ue000-\uf8ffÃâÂ锟烫屯]")


def garbled_ratio(doc, p):
    if not doc.text:
        return None
    chars = sum(len(m) for m in _GARBLED.findall(doc.text)) if _GARBLED_FIRST.search(doc.text) else 0
    r = chars / len(doc.text)
    return f"garbled chars {r:.4f} > {p['max_ratio']}" if r > p["max_ratio"] else None


# ------------------------------------------------------------------ boilerplate densities
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'）)\]，。]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# phone numbers: optional country code, then groups separated by space/dot/dash, at least 8 digits in all
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w])")
# what may stand beside an address on a line that is nothing but addresses: separators, mailto:, brackets
_ADDRESS_FILLER = re.compile(r"(?i)mailto:|e-?mail:?|[\s,;:|<>()\[\]\"'/-]")


def _share(pattern: re.Pattern, text: str) -> float:
    return sum(map(len, pattern.findall(text))) / len(text) if text else 0.0     # no capturing groups: whole matches


def url_density(doc, p):
    # every URL holds "://" or "www." (any case): without either, no match and no search
    r = _share(_URL, doc.text) if "://" in doc.text or "www." in doc.lower else 0.0
    return f"URL chars {r:.3f} > {p['max_char_share']}" if r > p["max_char_share"] else None


def email_density(doc, p):
    # Address dumps are lines of nothing but addresses; a maintainer list ("Jane Doe <jane@debian.org>")
    # or an address in a sentence names a person and stays (our choice, see conf)
    lines = doc.nonblank_lines
    bare = sum(1 for ln in lines if _EMAIL.search(ln) and not _ADDRESS_FILLER.sub("", _EMAIL.sub("", ln))) \
        if "@" in doc.text else 0        # an address holds "@"
    r = bare / len(lines) if lines else 0.0
    if bare >= p["min_lines"] and r > p["max_line_share"]:
        return f"{bare} address-only lines, {r:.3f} of lines > {p['max_line_share']}"
    return None


def phone_density(doc, p):
    r = _share(_PHONE, doc.text)
    return f"phone chars {r:.3f} > {p['max_char_share']}" if r > p["max_char_share"] else None


# ------------------------------------------------------------------ content lexicons (density)
def density(doc, p):
    path = lexicon_path(p, doc.lang)
    if not path:
        return None
    hits = lexicon_hits(doc, path)
    if len(hits) < p["min_hits"]:
        return None
    r = sum(map(len, hits)) / len(doc.text)
    if r > p["max_char_share"]:
        top = Counter(h.lower() for h in hits).most_common(3)
        return f"{len(hits)} hits, {r:.4f} of chars > {p['max_char_share']}: " + ", ".join(f"{t}x{c}" for t, c in top)
    return None


_DENSITY = {"min_hits": Int(1), "max_char_share": RATIO, "lexicons": Map(File())}
_MAX_RATIO = {"max_ratio": Float(0)}
_MAX_FRAC = {"max_frac": RATIO}

# ------------------------------------------------------------------ the table (conf decides the order)
RULES = (
    Rule("length.min_chars", "document", ALL, "text shorter than min_chars (per language)", min_chars,
         {"min_chars": PerLang(Int(0))}),
    Rule("gopher_quality.word_count", "document", EN, "non-symbol words outside [min_words, max_words]", word_count,
         {"min_words": Int(0), "max_words": Int(1)}),
    Rule("gopher_quality.mean_word_length", "document", EN, "mean non-symbol word length outside [min, max]",
         mean_word_length, {"min_mean": Float(0), "max_mean": Float(0)}),
    Rule("gopher_quality.hash_ratio", "document", ALL, "'#' per word above max_ratio", hash_ratio, _MAX_RATIO),
    Rule("gopher_quality.ellipsis_ratio", "document", ALL, "'...' and '…' per word above max_ratio", ellipsis_ratio,
         _MAX_RATIO),
    Rule("gopher_quality.bullet_lines", "document", ALL, "share of lines starting with a bullet above max_ratio",
         bullet_lines, {"max_ratio": RATIO, "bullets": List(Str(non_empty=True), min_len=1)}),
    Rule("gopher_quality.ellipsis_lines", "document", ALL, "share of lines ending in an ellipsis above max_ratio",
         ellipsis_lines, {"max_ratio": RATIO}),
    Rule("gopher_quality.alpha_words", "document", EN,
         "share of non-symbol words with an alphabetic character below min_ratio", alpha_words, {"min_ratio": RATIO}),
    Rule("gopher_quality.stop_words", "document", EN, "fewer than min_stop_words distinct English stop words",
         stop_words, {"min_stop_words": Int(0), "stop_words": List(Str(non_empty=True))}),
    Rule("gopher_repetition.dup_line_frac", "document", ALL, "share of duplicate lines above max_frac (per language)",
         dup_line_frac, {"max_frac": PerLang(RATIO)}),
    Rule("gopher_repetition.dup_para_frac", "document", ALL, "share of duplicate paragraphs above max_frac",
         dup_para_frac, _MAX_FRAC),
    Rule("gopher_repetition.dup_line_char_frac", "document", ALL, "characters in duplicate lines above max_frac",
         dup_line_char_frac, _MAX_FRAC),
    Rule("gopher_repetition.dup_para_char_frac", "document", ALL, "characters in duplicate paragraphs above max_frac",
         dup_para_char_frac, _MAX_FRAC),
    Rule("gopher_repetition.top_ngram", "document", ALL,
         "characters covered by the most frequent n-gram above max_frac[lang][n] (n = 2, 3, 4)", top_ngram,
         {"max_frac": PerLang(Map(RATIO, keys=Int(1)))}),
    Rule("gopher_repetition.dup_ngram", "document", ALL,
         "characters in repeated n-grams above max_frac[lang][n] (n = 5..10), non-overlapping count", dup_ngram,
         {"max_frac": PerLang(Map(RATIO, keys=Int(1)))}),
    Rule("fineweb.line_punct_ratio", "document", EN,
         "share of prose lines (table rows aside) ending in terminal punctuation <= min_ratio (per language)",
         line_punct_ratio, {"min_ratio": PerLang(RATIO), "end_chars": List(Str(non_empty=True), min_len=1)}),
    Rule("fineweb.short_line_ratio", "document", EN, "share of prose lines (table rows aside) of at most short_line_chars >= max_ratio",
         short_line_ratio, {"max_ratio": RATIO, "short_line_chars": Int(0)}),
    Rule("fineweb.char_dup_ratio", "document", EN_ZH,
         "characters in duplicate lines (longer than max_ignored_line_chars) over non-newline characters >= max_ratio",
         char_dup_ratio, {"max_ratio": RATIO, "max_ignored_line_chars": Int(0)}),
    Rule("fineweb.list_ratio", "document", EN_ZH, "line breaks per word above max_ratio (per language; list-like pages)",
         list_ratio, {"max_ratio": PerLang(Float(0))}),
    Rule("c4.lorem_ipsum", "document", ALL, "placeholder text ('lorem ipsum') anywhere", lorem_ipsum),
    Rule("c4.curly_bracket", "document", EN_ZH,
         "a code '{' in a line C4 keeps (ends in end_chars, >= min_words words); inline brace groups excepted",
         curly_bracket, {"min_words": Int(0), "end_chars": List(Str(non_empty=True), min_len=1)}),
    Rule("c4.min_sentences", "final", EN, "fewer than min_sentences sentences left after the line rules",
         min_sentences, {"min_sentences": Int(0)}),
    Rule("zh.cjk_ratio", "document", ZH, "share of Chinese (Han) words among the words in letters below min_ratio",
         cjk_ratio, {"min_ratio": RATIO}),
    Rule("zh.char_ngram_repetition", "document", ZH, "share of repeated character n-grams (n = ngram) above max_ratio",
         char_ngram_repetition, {"ngram": Int(1), "max_ratio": RATIO}),
    Rule("zh.mean_line_length", "document", ZH,
         "mean non-blank line length (characters) outside [min_chars, max_chars]", mean_line_length,
         {"min_chars": Float(0), "max_chars": Float(0)}),
    Rule("zh.function_words", "document", ZH,
         "fewer than min_distinct distinct common function words (zh analogue of Gopher's stop words)",
         function_words, {"min_distinct": Int(0), "min_chars_to_apply": Int(0), "words": List(Str(non_empty=True))}),
    Rule("garbled.char_ratio", "document", ALL, "share of characters in mojibake/replacement sequences above max_ratio",
         garbled_ratio, {"max_ratio": RATIO}),
    Rule("boilerplate.url_density", "document", ALL, "share of characters inside URLs above max_char_share",
         url_density, {"max_char_share": RATIO}),
    Rule("boilerplate.email_density", "document", ALL,
         "at least min_lines lines of bare e-mail addresses, above max_line_share of the lines", email_density,
         {"min_lines": Int(1), "max_line_share": RATIO}),
    Rule("boilerplate.phone_density", "document", ALL, "share of characters inside phone numbers above max_char_share",
         phone_density, {"max_char_share": RATIO}),
    *(Rule(f"content.{cat}_density", "document", EN_ZH,
           f"{cat} lexicon: at least min_hits hits covering more than max_char_share of the characters", density,
           _DENSITY) for cat in ("porn", "violence", "gambling", "extremism")),
)
