"""Text units for the rules: words, lines, paragraphs and sentences, for zh and en.

Every splitter here is *lossless* where the engine removes units (lines, sentences): joining the pieces
gives the input back, so removing one unit leaves the rest of the text byte-for-byte intact.
Chinese is never split on whitespace: words come from jieba; Japanese/Korean fall back to one token per
CJK character.
"""
from __future__ import annotations

import re
import unicodedata
from functools import cached_property, lru_cache
from itertools import compress

import numpy as np

from dataflow.core.text import CJK_RANGES, char_class
from dataflow.stages.filter.rules.ngrams import next_gram_ids, word_ids

# Punctuation that ends a line or sentence, Latin and CJK (full-width) forms. FineWeb and the
# paragraph rules use it for "ends in terminal punctuation".
TERMINAL_PUNCT = tuple(".!?;。！？；…‼⁇⁈⁉．｡")
# Closing quotes/brackets that may follow the terminal mark ("Yes." she said / 他说：“好。”)
CLOSERS = "\"'”’」』）)】》〉]"

# A sentence ends at CJK terminal punctuation (no space needed), or at . ! ? ; followed by space/closer/end;
# trailing closers and whitespace stay with the sentence so the pieces re-join losslessly.
_SENT_END = re.compile(r"(?:[。！？；…]+|[.!?;]+(?=[\s" + re.escape(CLOSERS) + r"]|$))[" + re.escape(CLOSERS) + r"]*\s*")


# Space-delimited languages: a stand-in for the spaCy English tokenizer datatrove 0.10 uses (spaCy is not a
# dependency), after spaCy's own algorithm: split on whitespace; a URL or e-mail address stays one token;
# then strip prefix and suffix punctuation one mark at a time, and split infixes (hyphens and : < > = /
# between a letter/digit and a letter, "," between letters, an ellipsis). So "(see lintian)." is
# ( see lintian ) . ; /etc/systemd is /etc / systemd; V:28, 3.11.2, os.path and e.g stay whole.
_URL_OR_EMAIL = re.compile(r"(?:https?://|ftp://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PLAIN = re.compile(r"[^\W_]+")
_PREFIX = re.compile(r"\.\.\.+|…|[§%=—–+$£€¥(\[{<,:;!?¿¡_#*&\"'“”‘’«»`。？！，、；：～·|\\~^@]")
_SUFFIX = re.compile(r"(?:\.\.\.+|…|'s|’s|[)\]}>,:;!?_#*&\"'“”‘’«»`%°。？！，、；：～·—–|\\~^@]|"
                     r"(?<=[^A-Z])\.|(?<=[A-Z][A-Z])\.)$")
_INFIX = re.compile(r"(\.\.\.+|…|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[a-z])\.(?=[A-Z])|(?<=[^\W\d_]),(?=[^\W\d_])|"
                    r"(?<=[^\W_])(?:---|--|-|–|—|~)(?=[^\W\d_])|(?<=[^\W_])[:<>=/](?=[^\W\d_]))")


@lru_cache(maxsize=1 << 16)   # a pure function of the chunk; web text repeats its punctuated chunks ("it's", "(see")
def _chunk_tokens(chunk: str) -> tuple[str, ...]:
    if _PLAIN.fullmatch(chunk) or (_URL_OR_EMAIL.fullmatch(chunk) and (chunk[-1].isalnum() or chunk[-1] == "/")):
        return (chunk,)
    pre, suf = [], []
    while chunk:
        m = _PREFIX.match(chunk)
        if m and m.end() < len(chunk) or (m and not pre and not suf and len(chunk) == m.end()):
            pre.append(m.group())
            chunk = chunk[m.end():]
            continue
        m = _SUFFIX.search(chunk)
        if m and m.start() > 0:
            suf.append(m.group())
            chunk = chunk[:m.start()]
            continue
        break
    if chunk and not _PLAIN.fullmatch(chunk) and not _URL_OR_EMAIL.fullmatch(chunk):
        mid = [t for t in _INFIX.split(chunk) if t]
    else:
        mid = [chunk] if chunk else []
    return tuple(pre + mid + suf[::-1])


def _space_words(text: str) -> list[str]:
    out: list[str] = []
    plain = _PLAIN.fullmatch
    for chunk in text.split():
        if plain(chunk):            # most chunks are one plain word: no cache lookup, no tuple
            out.append(chunk)
        else:
            out += _chunk_tokens(chunk)
    return out


# ja/ko (no jieba): CJK ideographs and kana/hangul are one token each, everything else as above
_CJK_CLASS = char_class(CJK_RANGES)     # Han + kana + hangul (dataflow.core.text: one home for the ranges)
_CJK_WORD_RE = re.compile(_CJK_CLASS + r"|[^\W" + _CJK_CLASS[1:-1] + r"]+(?:['’.]\w+)*|[^\w\s]")

_jieba = None
# jieba's HMM pass (finalseg's Viterbi) copies its path list at every character, so one unbroken run of Han
# characters costs time quadratic in its length (80k identical characters: 31 s). Longer runs are cut into
# pieces of this many characters first; jieba segments each block between non-Han characters on its own, so
# text whose runs are all shorter segments exactly as before. Our choice: prose has punctuation far sooner.
MAX_HAN_RUN = 1000


def _segmenter():
    global _jieba
    if _jieba is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.ERROR)
        jieba.initialize()
        _jieba = jieba
    return _jieba


@lru_cache(maxsize=1 << 16)   # a pure function of the token; web text repeats tokens, so most calls are hits
def is_punct_token(tok: str) -> bool:
    """A token made only of punctuation/symbols (Unicode categories P* and S*)."""
    return all(unicodedata.category(ch)[0] in "PS" for ch in tok)


def words(text: str, lang: str | None) -> list[str]:
    """Word tokens, punctuation tokens included (as datatrove's split_into_words): jieba for zh (datatrove 0.10
    tokenizes zh with spaCy's jieba segmenter), one token per CJK character for ja/ko, the regex above else."""
    if lang == "zh":
        jb = _segmenter()
        return [w for piece in _bounded_pieces(text, jb.re_han_default) for w in jb.lcut(piece) if not w.isspace()]
    if lang in ("ja", "ko"):
        return _CJK_WORD_RE.findall(text)
    return _space_words(text)


def _bounded_pieces(text: str, block: re.Pattern):
    """`text` in pieces for jieba: whole when no run of its block characters (`block`: jieba's own Han-block
    pattern) is longer than MAX_HAN_RUN, else cut at the edges of each long run and inside it every
    MAX_HAN_RUN characters. Joined, the pieces are `text`."""
    start = 0
    for m in block.finditer(text):
        if m.end() - m.start() <= MAX_HAN_RUN:
            continue
        if m.start() > start:
            yield text[start:m.start()]
        for i in range(m.start(), m.end(), MAX_HAN_RUN):
            yield text[i:min(i + MAX_HAN_RUN, m.end())]
        start = m.end()
    if start < len(text) or not text:
        yield text[start:]


def is_table_row(line: str) -> bool:
    """A line of two or more non-empty cells separated by tabs (DP's rendering of an HTML table row)."""
    return "\t" in line and sum(1 for c in line.split("\t") if c.strip()) >= 2


def split_sentences(line: str) -> list[str]:
    """Lossless sentence split of one line: "".join(result) == line."""
    out, start = [], 0
    for m in _SENT_END.finditer(line):
        if m.end() > start:
            out.append(line[start:m.end()])
            start = m.end()
    if start < len(line):
        out.append(line[start:])
    return out


# Gopher splits on "\n{2,}" / "\n+"; whitespace around the newlines is absorbed too, so "\r\n" text and
# whitespace-only lines do not produce runs of identical "\r" or " " lines that count as duplicates
_PARA_SPLIT = re.compile(r"\s*\n\s*\n\s*")
_LINE_SPLIT = re.compile(r"\s*\n\s*")


class Doc:
    """One document as the rules see it; every derived view is computed once, on first use."""

    __slots__ = ("text", "lang", "__dict__")

    def __init__(self, text: str, lang: str | None):
        self.text = text
        self.lang = lang

    @cached_property
    def words(self) -> list[str]:
        return words(self.text, self.lang)

    @cached_property
    def word_spans(self) -> list[tuple[int, int]]:
        """(start, end) of each of `words` in `text` (every token is a substring, in order)."""
        out, pos, text = [], 0, self.text
        for w in self.words:
            i = text.find(w, pos)
            if i < 0:           # not expected; keep going without losing the alignment of later tokens
                i = pos
            out.append((i, i + len(w)))
            pos = i + len(w)
        return out

    @cached_property
    def word_mask(self) -> list[bool]:
        """True for each of `words` that is not a punctuation/symbol token (decided once per distinct token)."""
        punct = {w: is_punct_token(w) for w in set(self.words)}
        return [not punct[w] for w in self.words]

    @cached_property
    def non_symbol(self) -> tuple[list[str], list[tuple[int, int]]]:
        """The non-symbol words and their spans."""
        return self.non_symbol_words, list(compress(self.word_spans, self.word_mask))

    @cached_property
    def non_symbol_words(self) -> list[str]:
        return list(compress(self.words, self.word_mask))

    @cached_property
    def non_symbol_lens(self) -> np.ndarray:
        """Cumulative character counts of the non-symbol words (0 first): words i..j-1 hold lens[j] - lens[i]."""
        ws = self.non_symbol_words
        return np.concatenate(([0], np.cumsum(np.fromiter(map(len, ws), dtype=np.int64, count=len(ws)))))

    def gram_ids(self, n: int) -> np.ndarray:
        """Ids of the non-symbol word n-grams in text order, equal exactly when the n-grams are (ngrams.py);
        every n up to the largest asked is computed once per document."""
        grams = self.__dict__.setdefault("_gram_ids", {})
        if n not in grams:
            if 1 not in grams:
                grams[1] = word_ids(self.non_symbol_words)
            for k in range(max(grams) + 1, n + 1):
                grams[k] = next_gram_ids(grams[k - 1], grams[1], k)
        return grams[n]

    def memo(self, key, compute):
        """A value derived from this document once, shared by the rules that need it (a lexicon's hits)."""
        cache = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    @cached_property
    def line_word_counts(self) -> dict[str, int]:
        """Line (as text.split("\n") gives it) -> its words with a letter or digit. A word never crosses a line
        (jieba segments each block between non-Han characters on its own; no token holds a newline), so the
        document's words, split by line, are each line's own words."""
        counts: dict[str, int] = {}
        spans, ws, k, pos = self.word_spans, self.words, 0, 0
        for line in self.text.split("\n"):
            end, n = pos + len(line), 0
            while k < len(ws) and spans[k][0] < end:
                n += any(ch.isalnum() for ch in ws[k])
                k += 1
            counts.setdefault(line, n)
            pos = end + 1
        return counts

    @cached_property
    def lines(self) -> list[str]:
        """str.splitlines, as Gopher quality counts bullet/ellipsis lines."""
        return self.text.splitlines()

    @cached_property
    def nonblank_lines(self) -> list[str]:
        """Lines without trailing whitespace (so "\r\n" endings and trailing spaces do not hide the final
        punctuation FineWeb looks at); blank lines dropped."""
        return [ln.rstrip() for ln in self.text.split("\n") if ln.strip()]

    @cached_property
    def prose_lines(self) -> list[str]:
        """The non-blank lines that are not table rows, or all of them when every line is a row.
        DP's HTML extraction writes a <table> row as one line with its cells separated by tabs; a row is a
        record (package, size, description), not a line of prose, and never ends in a full stop. A page made
        of nothing but rows is judged on its rows, as before."""
        prose = [ln for ln in self.nonblank_lines if not is_table_row(ln)]
        return prose or self.nonblank_lines

    @cached_property
    def gopher_lines(self) -> list[str]:
        """Gopher repetition: lines split on runs of newlines."""
        return _LINE_SPLIT.split(self.text.strip())

    @cached_property
    def gopher_paragraphs(self) -> list[str]:
        """Gopher repetition: paragraphs split on blank lines."""
        return _PARA_SPLIT.split(self.text.strip())

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def compact(self) -> str:
        """The text without whitespace (character n-gram rules)."""
        return "".join(self.text.split())
