"""Text units for the rules: words, lines, paragraphs and sentences, for zh and en.

Every splitter here is *lossless* where the engine removes units (lines, sentences): joining the pieces
gives the input back, so removing one unit leaves the rest of the text byte-for-byte intact.
Chinese is never split on whitespace: words come from jieba; Japanese/Korean fall back to one token per
CJK character.
"""
from __future__ import annotations

import operator
import re
import unicodedata
from functools import cached_property
from itertools import chain, compress

import numpy as np

from dataflow.core.text import CJK_RANGES, char_class
from dataflow.stages.filter.rules.ngrams import gram_ids, repeated_groups

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
_PLAIN = re.compile(r"[^\W_]+")       # = str.isalnum (tests/test_filter_analysis.py checks every code point)
_PREFIX_MARKS = "§%=—–+$£€¥(\\[{<,:;!?¿¡_#*&\"'“”‘’«»`。？！，、；：～·|\\\\~^@"      # one mark each, as a class
_SUFFIX_MARKS = ")\\]}>,:;!?_#*&\"'“”‘’«»`%°。？！，、；：～·—–|\\\\~^@"
_PREFIX = re.compile(r"\.\.\.+|…|[" + _PREFIX_MARKS + "]")
_SUFFIX = re.compile(r"(?:\.\.\.+|…|'s|’s|[" + _SUFFIX_MARKS + r"]|(?<=[^A-Z])\.|(?<=[A-Z][A-Z])\.)$")
_INFIX = re.compile(r"(\.\.\.+|…|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[a-z])\.(?=[A-Z])|(?<=[^\W\d_]),(?=[^\W\d_])|"
                    r"(?<=[^\W_])(?:---|--|-|–|—|~)(?=[^\W\d_])|(?<=[^\W_])[:<>=/](?=[^\W\d_]))")
# The usual chunk that is not one plain word: a word of letters, digits and inner underscores with at most one
# mark before it and one after ("(see", "word,", "end.", "dvb_demux."). The loop below strips such a mark in one
# step (no multi-character prefix or suffix can match: the word holds no dot or apostrophe), a word of \w never
# splits at an infix (every infix is a non-word mark), and the URL/e-mail forms need a dot, ':' or '@' inside. The
# one exception is a final "." after a single capital ("U."): no suffix (`_SUFFIX`'s lookbehinds), so the loop.
_WRAPPED = re.compile("([…" + _PREFIX_MARKS + r"])?([^\W_](?:\w*[^\W_])?)([…." + _SUFFIX_MARKS + "])?")
_CAPITAL_END = re.compile(r"(?:^|[^A-Z])[A-Z]$")


def _chunk_tokens(chunk: str) -> tuple[str, ...]:
    """The tokens of one whitespace-free chunk; joined, they give the chunk back (prefixes, the infix split
    with its separators kept, suffixes), which is what lets Doc place them without searching."""
    if _PLAIN.fullmatch(chunk) or (_URL_OR_EMAIL.fullmatch(chunk) and (chunk[-1].isalnum() or chunk[-1] == "/")):
        return (chunk,)
    m = _WRAPPED.fullmatch(chunk)
    if m and not (m[3] == "." and _CAPITAL_END.search(m[2])):
        return tuple(t for t in m.groups() if t)
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


class _BoundedCache(dict):
    """key -> compute(key), for a pure function: emptied when full, so only speed depends on what it holds
    (web text repeats its chunks and tokens: "the", "it's", "(see"), never a result."""

    def __init__(self, compute, size: int):
        super().__init__()
        self.compute, self.size = compute, size

    def __missing__(self, key):
        if len(self) >= self.size:
            self.clear()
        value = self[key] = self.compute(key)
        return value


def _chunk_entry(chunk: str) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """A chunk's tokens and, for each, whether it is a word (not a punctuation/symbol token)."""
    toks = _chunk_tokens(chunk)
    return toks, tuple(map(_IS_WORD.__getitem__, toks))


# non-plain chunk -> (tokens, word flags), decided once per worker ("it's", "(see", "lintian).")
_CHUNKS = _BoundedCache(_chunk_entry, 1 << 16)


def space_tokens(text: str) -> tuple[list[str], list[bool], list[str], list[int]]:
    """(tokens, word flags, chunks, tokens per chunk) of space-delimited text. Most chunks are one plain word
    (`_PLAIN`, which is str.isalnum: one C call each) and are their own token; only the others are looked up,
    so the Python loop runs over them alone."""
    chunks = text.split()
    odd = list(compress(range(len(chunks)), map(operator.not_, map(str.isalnum, chunks))))
    if not odd:
        return chunks, [True] * len(chunks), chunks, [1] * len(chunks)
    toks, flags, per_chunk = list(zip(chunks)), [(True,)] * len(chunks), [1] * len(chunks)
    for i in odd:
        toks[i], flags[i] = _CHUNKS[chunks[i]]
        per_chunk[i] = len(toks[i])
    return list(chain.from_iterable(toks)), list(chain.from_iterable(flags)), chunks, per_chunk


def _space_words(text: str) -> list[str]:
    return space_tokens(text)[0]


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


def is_punct_token(tok: str) -> bool:
    """A token made only of punctuation/symbols (Unicode categories P* and S*)."""
    return all(unicodedata.category(ch)[0] in "PS" for ch in tok)


_IS_WORD = _BoundedCache(lambda tok: not is_punct_token(tok), 1 << 16)    # token -> not a punctuation token


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
# whitespace-only lines do not produce runs of identical "\r" or " " lines that count as duplicates. These are
# the definitions; `gopher_lines`/`gopher_paragraphs` below compute the same pieces from the lines (a regex
# that starts with \s* is tried at every character), and tests/test_filter_analysis.py holds them equal.
_PARA_SPLIT = re.compile(r"\s*\n\s*\n\s*")
_LINE_SPLIT = re.compile(r"\s*\n\s*")


def gopher_lines(lines: list[str]) -> list[str]:
    """`_LINE_SPLIT.split(text.strip())` from text.split("\n"): a run of whitespace with a newline in it is one
    separator, so the pieces are the non-blank lines, stripped ([""] for a blank text)."""
    return [s for s in map(str.strip, lines) if s] or [""]


def gopher_paragraphs(lines: list[str]) -> list[str]:
    """`_PARA_SPLIT.split(text.strip())` from text.split("\n"): a run of whitespace with two newlines in it is a
    blank line between two paragraphs, so a paragraph is a run of non-blank lines, joined and stripped."""
    paras, cur = [], []
    for ln in lines:
        if not ln or ln.isspace():
            if cur:
                paras.append("\n".join(cur).strip())
                cur = []
        else:
            cur.append(ln)
    if cur:
        paras.append("\n".join(cur).strip())
    return paras or [""]


# str.split() separates at these characters (str.isspace; none lies above U+3000, the test checks every code
# point); a lookup table over code points finds where each whitespace chunk starts in one vectorised pass
_WS_TABLE = np.zeros(0x3002, dtype=bool)
_WS_TABLE[[c for c in range(0x3001) if chr(c).isspace()]] = True


def chunk_starts(text: str) -> np.ndarray:
    """Where each chunk of text.split() starts: a non-whitespace character after whitespace or at the start."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    ws = _WS_TABLE[np.minimum(cp, len(_WS_TABLE) - 1)]
    return np.flatnonzero(~ws & np.concatenate(([True], ws[:-1])))


def _found_starts(text: str, ws: list[str]) -> np.ndarray:
    """Each token's start by searching the text left to right (tokens are substrings, in order): jieba and the
    ja/ko regex, whose tokens are not whitespace chunks."""
    out, pos, find = [], 0, text.find
    for w in ws:
        i = find(w, pos)
        if i < 0:           # not expected; keep going without losing the alignment of later tokens
            i = pos
        out.append(i)
        pos = i + len(w)
    return np.array(out, dtype=np.int64)


def _lengths(strings: list[str]) -> np.ndarray:
    return np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))


class Doc:
    """One document as the rules see it: the shared per-document analysis. Every view (words and where they
    stand, the non-symbol words, lines, paragraphs, n-gram ids, lexicon hits) is computed once, on first use,
    by whichever rule asks first, and reused by every other rule."""

    __slots__ = ("text", "lang", "__dict__")

    def __init__(self, text: str, lang: str | None):
        self.text = text
        self.lang = lang

    @cached_property
    def _tokens(self) -> tuple[list[str], list[bool], np.ndarray, np.ndarray]:
        """(words, word mask, word starts, word lengths). Space-delimited text: as a chunk's tokens join to the
        chunk, each token starts at its chunk's start plus the lengths of the tokens before it in the chunk
        (vectorised). jieba/ja/ko tokens are found by searching."""
        if self.lang in ("zh", "ja", "ko"):
            ws = words(self.text, self.lang)
            return ws, list(map(_IS_WORD.__getitem__, ws)), _found_starts(self.text, ws), _lengths(ws)
        ws, mask, chunks, per_chunk = space_tokens(self.text)
        lens, at = _lengths(ws), chunk_starts(self.text)
        if len(at) != len(chunks):      # not expected (str.split and the table agree); search instead
            return ws, mask, _found_starts(self.text, ws), lens
        clens = _lengths(chunks)
        return ws, mask, np.cumsum(lens) - lens + np.repeat(at - (np.cumsum(clens) - clens), per_chunk), lens

    @property
    def words(self) -> list[str]:
        """Word tokens, punctuation tokens included (text.words)."""
        return self._tokens[0]

    @property
    def word_mask(self) -> list[bool]:
        """True for each of `words` that is not a punctuation/symbol token."""
        return self._tokens[1]

    @property
    def word_lens(self) -> np.ndarray:
        return self._tokens[3]

    @cached_property
    def word_spans(self) -> list[tuple[int, int]]:
        """(start, end) of each of `words` in `text` (every token is a substring, in order)."""
        starts = self._tokens[2]
        return list(zip(starts.tolist(), (starts + self.word_lens).tolist()))

    @cached_property
    def non_symbol_words(self) -> list[str]:
        return list(compress(self.words, self.word_mask))

    @cached_property
    def non_symbol_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the non-symbol words in `text`."""
        keep = np.array(self.word_mask, dtype=bool)
        starts = self._tokens[2][keep]
        return starts, starts + self.word_lens[keep]

    @cached_property
    def non_symbol_lens(self) -> np.ndarray:
        """Cumulative character counts of the non-symbol words (0 first): words i..j-1 hold lens[j] - lens[i]."""
        starts, ends = self.non_symbol_spans
        return np.concatenate(([0], np.cumsum(ends - starts)))

    def gram_ids(self, n: int) -> np.ndarray:
        """Ids of the non-symbol word n-grams in text order, equal exactly when the n-grams are (ngrams.py)."""
        groups = self.gram_groups(n)
        return word_ids_array(self) if n == 1 else gram_ids(groups)

    def gram_groups(self, n: int) -> np.ndarray:
        """ngrams.repeated_groups for each n up to the largest asked, computed once per document."""
        cache = self.__dict__.setdefault("_gram_groups", {})
        if n not in cache:
            words = word_ids_array(self)
            if 1 not in cache:
                cache[1] = repeated_groups(None, words, 1)
            for k in range(max(cache) + 1, n + 1):
                cache[k] = repeated_groups(cache[k - 1], words, k)
        return cache[n]

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
        for line in self.split_lines:
            end, n = pos + len(line), 0
            while k < len(ws) and spans[k][0] < end:
                n += any(ch.isalnum() for ch in ws[k])
                k += 1
            counts.setdefault(line, n)
            pos = end + 1
        return counts

    @cached_property
    def split_lines(self) -> list[str]:
        """text.split("\n"): the engine's paragraphs, blank ones included."""
        return self.text.split("\n")

    @cached_property
    def lines(self) -> list[str]:
        """str.splitlines, as Gopher quality counts bullet/ellipsis lines."""
        return self.text.splitlines()

    @cached_property
    def nonblank_lines(self) -> list[str]:
        """Lines without trailing whitespace (so "\r\n" endings and trailing spaces do not hide the final
        punctuation FineWeb looks at); blank lines dropped."""
        return [s for s in map(str.rstrip, self.split_lines) if s]

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
        return gopher_lines(self.split_lines)

    @cached_property
    def gopher_paragraphs(self) -> list[str]:
        """Gopher repetition: paragraphs split on blank lines."""
        return gopher_paragraphs(self.split_lines)

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def compact(self) -> str:
        """The text without whitespace (character n-gram rules)."""
        return "".join(self.text.split())


def holds_phrase(doc: Doc, phrases) -> bool:
    """Whether some phrase is in the lowercased document: one search per document that tells a rule matching
    `phrase in unit.lower()` it can fire on no line or sentence. A unit's lowercase is the matching piece of the
    document's (str.lower maps each character alone, but for the final sigma, so a phrase with σ or ς counts as
    held: the unit test decides)."""
    low = doc.lower
    return any(ph in low or "σ" in ph or "ς" in ph for ph in phrases)


def word_ids_array(doc: Doc) -> np.ndarray:
    """The non-symbol words as ints, equal exactly when the words are: each word's id is the position of its first
    occurrence (dict.setdefault, mapped in C), so the ids are below len(words) and rise in order of appearance."""
    ws = doc.non_symbol_words
    return doc.memo("word_ids", lambda: np.array(list(map({}.setdefault, ws, range(len(ws)))), dtype=np.int64))
