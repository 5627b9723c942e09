"""RF's shared per-document analysis (rules/text.py Doc, rules/ngrams.py, rules/lexicon.py) against plain
restatements written here: the optimised helpers (cached chunk tokens, vectorised spans, n-grams grown from the
repeated ones, lines without a regex, the lexicon word-run test, the engine's `quiet` skips) must give what the
obvious loops give, on every fixture document; and the engine, run with one rule, decides as the rule's
definition restated here. (tests/test_rules_identical.py compares the whole engine with a golden file written
before the speed work.)
"""
from __future__ import annotations

import copy
import re
import string
import unicodedata
from collections import Counter

import pytest
from test_rules import _naive_repeated as plain_repeated_chars   # datatrove's find_all_duplicate, restated

from dataflow.pipeline.conf import load_conf
from dataflow.stages.filter.rules import REGISTRY, all_rules
from dataflow.stages.filter.rules import lexicon, text
from dataflow.stages.filter.rules.engine import RuleEngine
from dataflow.stages.filter.rules.ngrams import most_common, repeated_chars
from dataflow.stages.filter.rules.registry import rule_conf
from dataflow.stages.filter.rules.text import Doc, split_sentences

ZH_MAP = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh"}
CFG = load_conf()["filter"]
ALL_CHARS = "".join(map(chr, range(0x110000)))
# texts whose shapes the fixture may lack: CRLF, whitespace-only lines, no text, one capital before a full stop
EDGES = ["", " ", "\n", " \n \n", "a\r\n\r\nb\r\n", "x\n \t\ny\n\n\n z \n", "U. S. A. e.g. (U. it's done.)",
         "\u2028line\u2029\x1c sep\x85", "(see lintian). /etc/default V:28 3.11.2 os.path _x_ __y a_b_."]


@pytest.fixture(scope="module")
def docs(corpus_docs) -> list[tuple[str, str]]:
    return [(d["text"], ZH_MAP.get(d["lang"], d["lang"])) for d in corpus_docs]


# ------------------------------------------------------------------ restatements
def plain_chunk_tokens(chunk: str) -> list[str]:
    """The tokenizer's rule, one mark at a time with the module's own patterns (no shortcut, no cache)."""
    if chunk.isalnum() or (text._URL_OR_EMAIL.fullmatch(chunk) and (chunk[-1].isalnum() or chunk[-1] == "/")):
        return [chunk]
    pre, suf = [], []
    while chunk:
        m = text._PREFIX.match(chunk)
        if m and (m.end() < len(chunk) or (not pre and not suf)):
            pre.append(m.group())
            chunk = chunk[m.end():]
            continue
        m = text._SUFFIX.search(chunk)
        if m and m.start() > 0:
            suf.append(m.group())
            chunk = chunk[:m.start()]
            continue
        break
    if chunk and not chunk.isalnum() and not text._URL_OR_EMAIL.fullmatch(chunk):
        mid = [t for t in text._INFIX.split(chunk) if t]
    else:
        mid = [chunk] if chunk else []
    return pre + mid + suf[::-1]


def plain_spans(s: str, toks: list[str]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for t in toks:
        i = s.index(t, pos)
        out.append((i, i + len(t)))
        pos = i + len(t)
    return out


def is_symbol(tok: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PS" for ch in tok)


def only(rule: str) -> RuleEngine:
    """The configured engine with every rule but `rule` switched off."""
    cfg = copy.deepcopy(CFG)
    for r in all_rules(cfg["rules"]):
        if r.name != rule:
            group, check = r.name.split(".")
            cfg["rules"][group][check]["enabled"] = False
    return RuleEngine(cfg)


# ------------------------------------------------------------------ Unicode facts the shortcuts rest on
def test_plain_is_isalnum_and_split_whitespace_ends_at_u3000():
    # text._PLAIN ([^\W_]) is str.isalnum on every code point; str.split()'s whitespace lies in the lookup table
    assert re.findall(r"[^\W_]", ALL_CHARS) == [c for c in ALL_CHARS if c.isalnum()]
    spaces = [c for c in ALL_CHARS if c.isspace()]
    assert spaces and max(map(ord, spaces)) < len(text._WS_TABLE) - 1
    assert [chr(i) for i in text._WS_TABLE.nonzero()[0]] == spaces


def test_case_traps_are_the_only_letters_lower_does_not_map_like_ignorecase():
    traps = set()
    for x in string.ascii_lowercase:
        for c in re.findall(re.escape(x), ALL_CHARS, re.IGNORECASE):
            if c.lower() != x:
                traps.add(c)
    assert traps == set(lexicon.CASE_TRAPS)


# ------------------------------------------------------------------ words, spans, symbols
def test_words_spans_and_symbol_mask_equal_the_plain_loops(docs):
    checked = 0
    for s, lang in docs + [(e, "en") for e in EDGES]:
        doc = Doc(s, lang)
        if lang in ("zh", "ja", "ko"):
            want = text.words(s, lang)
        else:
            want = [t for chunk in s.split() for t in plain_chunk_tokens(chunk)]
            checked += len(want)
        assert doc.words == want
        assert doc.word_spans == plain_spans(s, want)
        assert doc.word_mask == [not is_symbol(t) for t in want]
        assert doc.non_symbol_words == [t for t in want if not is_symbol(t)]
    assert checked > 50_000


# ------------------------------------------------------------------ n-grams
def test_ngram_ids_top_gram_and_repeats_equal_the_plain_counts(docs):
    repeats = 0
    for s, lang in docs:
        doc = Doc(s, lang)
        ws = doc.non_symbol_words
        starts, ends = doc.non_symbol_spans
        assert list(zip(starts.tolist(), ends.tolist())) == \
            [sp for sp, t in zip(plain_spans(s, doc.words), doc.words) if not is_symbol(t)]
        for n in range(1, 11):
            grams = [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]
            ids = doc.gram_ids(n)
            assert len(ids) == len(grams)
            assert len(set(zip(ids.tolist(), grams))) == len(set(grams)) == len(set(ids.tolist()))
            lens = doc.non_symbol_lens
            assert repeated_chars(ids, lens[n:n + len(ids)] - lens[:len(ids)], n) == plain_repeated_chars(ws, n)
            if grams:
                gram, c = Counter(grams).most_common(1)[0]
                first, c2 = most_common(ids)
                assert (grams[first], c2) == (gram, c) and grams.index(gram) == first
                repeats += c > 1
    assert repeats > 1000


# ------------------------------------------------------------------ lines and paragraphs
def test_lines_and_paragraphs_equal_the_gopher_regex_splits(docs):
    for s, _ in docs + [(e, "en") for e in EDGES]:
        doc = Doc(s, "en")
        assert doc.gopher_lines == re.split(r"\s*\n\s*", s.strip())
        assert doc.gopher_paragraphs == re.split(r"\s*\n\s*\n\s*", s.strip())
        assert doc.nonblank_lines == [ln.rstrip() for ln in s.split("\n") if ln.strip()]


def test_sentences_rejoin_to_their_line(docs):
    for s, _ in docs:
        for ln in s.split("\n"):
            assert "".join(split_sentences(ln)) == ln


# ------------------------------------------------------------------ lexicons
def _lexicons(lang):
    return {p["lexicons"][lang] for r in all_rules(CFG["rules"]) if r.name.startswith("content.") and r.name.endswith("_density")
            for p in [rule_conf(CFG["rules"], r.name)]}


def test_lexicon_word_run_test_never_hides_a_hit(docs):
    # every en term planted into a real sentence, in capitals, plural, across a line break, with a case trap:
    # the skip test must let each through, and on the fixture it must agree with a search of the whole text
    base = next(s for s, lang in docs if lang == "en" and len(s) > 500)
    planted = []
    for path in sorted(_lexicons("en")):
        for t in lexicon.read_terms(path):
            planted += [f"{base[:200]} {t.upper()}S, {base[200:400]}", base + "\n" + t.replace(" ", "\n"),
                        f"{t.title()}es. " + base[:300], t.replace("s", "\u017f") + " " + base[:100]]
    found = 0
    for path in sorted(_lexicons("en")):
        lex = lexicon.Lexicon(lexicon.read_terms(path), "en")
        for s in [s for s, lang in docs if lang == "en"] + planted + EDGES:
            hits = lex.hits(Doc(s, "en"))
            assert hits == lex.pattern.findall(s)
            found += bool(hits)
    assert found >= len(planted) // 2


# ------------------------------------------------------------------ quiet rules
def test_a_quiet_rule_fires_on_no_unit_of_its_document(docs):
    planted = [(s + "\nPlease enable JavaScript. Share on Facebook.\nRead our privacy policy. Click here to read "
                "more.\nCopyright (c) 2024 All rights reserved.", lang) for s, lang in docs[::40]]
    quiet_rules = [r for r in all_rules(CFG["rules"]) if REGISTRY[r.name].quiet is not None]
    assert len(quiet_rules) >= 8
    fired = Counter()
    for r in quiet_rules:
        p = {k: v for k, v in rule_conf(CFG["rules"], r.name).items() if k not in ("enabled", "langs")}
        for s, lang in docs + planted:
            doc = Doc(s, lang)
            units = [ln for ln in s.split("\n") if ln.strip()]
            if r.level == "sentence":
                units = [x for ln in units for x in split_sentences(ln) if x.strip()]
            hits = sum(r.fn(u, doc, p) is not None for u in units)
            if REGISTRY[r.name].quiet(doc, p):
                assert hits == 0, (r.name, s[:80])
            fired[r.name] += hits
    assert sum(fired.values()) > 20       # the units do fire where the document is not quiet


# ------------------------------------------------------------------ the engine against restated rules
def test_engine_min_chars_and_duplicate_lines_decide_as_defined(docs):
    floors = rule_conf(CFG["rules"], "length.min_chars")["min_chars"]
    short = only("length.min_chars")
    n_short = 0
    for s, lang in docs:
        want = len(s.strip()) < floors.get(lang, floors["default"])
        assert (short.filter_text(s, lang).reason == "length.min_chars") == want
        n_short += want
    assert 0 < n_short < len(docs)

    caps = rule_conf(CFG["rules"], "gopher_repetition.dup_line_frac")["max_frac"]
    dup = only("gopher_repetition.dup_line_frac")
    n_dup = 0
    for s, lang in docs + [(("A line said twice.\n" * 3) + "Another one.", "en")]:
        lines = re.split(r"\s*\n\s*", s.strip())      # Gopher lines: runs of newlines, whitespace absorbed
        frac = (len(lines) - len(set(lines))) / len(lines)
        want = frac > caps.get(lang, caps["default"])
        assert (dup.filter_text(s, lang).reason == "gopher_repetition.dup_line_frac") == want
        n_dup += want
    assert n_dup > 0


def test_engine_javascript_lines_are_removed_as_defined(docs):
    engine = only("c4.javascript")
    floors = CFG["min_chars_left"]
    removed_total = 0
    for s, lang in docs[::5] + [(s + "\nThis site needs JavaScript enabled.\n\nMore text.", lang)
                                  for s, lang in docs[::25]]:
        lines = s.split("\n")
        gone = [i for i, ln in enumerate(lines) if ln.strip() and "javascript" in ln.lower()]
        out = engine.filter_text(s, lang)
        left = sum(len(ln.strip()) for i, ln in enumerate(lines) if i not in gone)
        if gone and left < max(floors.get(lang, floors["default"]), 1):
            assert out.reason == "c4.javascript"
            continue
        assert out.reason is None
        assert out.units.get("c4.javascript", 0) == len(gone)
        assert out.text == "\n".join(ln for i, ln in enumerate(lines) if i not in gone)
        removed_total += len(gone)
    assert removed_total > 10
