"""The labelled evaluation set, built from real pages (sources.Page): pure functions, seeded, no I/O.

Labels come from the package and the construction, never from the code under test:
  lid  paragraphs labelled with their translation's language. A translated paragraph made mostly of the
       English page's word trigrams was left untranslated and is dropped; an English paragraph that
       appears verbatim in most translations is code or a name and is dropped too.
  rf   clean reference pages (kind=clean) and five junk kinds made from real text: navigation (the link
       texts of real pages), repeated (real paragraphs repeated), stuffing (a page's own keywords
       re-arranged), numbers (rows of a real numbers table), spam (real porn/gambling vocabulary mixed with
       a real page's words).
  cd   originals, planted copies (exact, punct, emoji, whitespace, swap3, header) and real zh-tw
       localizations of zh-cn originals; `group` is the truth: records of one group are duplicates. Two
       originals whose exact word or character 5-gram Jaccard (computed here, not with CD's code) reaches
       `truth_jaccard` share a group, whatever their labelled language.
  as   clean pages, each with a shuffled twin (the words of every line in random order).
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

from dataflow.core.text import CJK_RE

from .sources import Page, paragraphs

CJK_LANGS = ("zh", "ja", "ko")
_CJK = CJK_RE   # Han, kana and hangul: dataflow/core/text.py is the one home of the ranges
CD_CLASSES = ("exact", "punct", "emoji", "whitespace", "swap3", "header")
JUNK_CLASSES = ("navigation", "repeated", "stuffing", "numbers", "spam")


def stable(seed, s: str) -> int:
    return int(hashlib.sha1(f"{seed}\x1f{s}".encode("utf-8")).hexdigest()[:12], 16)


def gold_lang(code: str) -> str:
    """Corpus code -> the code the pipeline keeps (zh-cn and zh-tw are both zh)."""
    return "zh" if code.startswith("zh") else code.split("-")[0]


def _index(pages):
    by = {}
    for p in pages:
        by[(p.source, p.lang, p.path)] = p
    return by


def word_trigrams(text: str) -> set:
    w = re.findall(r"\w+", text.lower())
    return {" ".join(w[i:i + 3]) for i in range(len(w) - 2)}


def is_untranslated(para: str, en_trigrams: set, share: float = 0.5) -> bool:
    """A paragraph of a translation that is mostly the English page's words in the English order: left in
    English (translators localize cross-references such as "see Afsnit 12.1.1", so verbatim equality misses
    these). `share`: our choice; a translated paragraph shares only names and commands with the English."""
    tri = word_trigrams(para)
    return bool(tri) and len(tri & en_trigrams) >= share * len(tri)


# Languages whose own script is not Latin (those of the LID sources and their neighbours)
NON_LATIN = frozenset("zh ja ko ru uk bg be sr mk el ar fa ur he yi hi mr ne bn gu pa ta te kn ml si th lo km my "
                      "ka hy am".split())
_SCRIPTS = (("latin", re.compile(r"[A-Za-z\u00C0-\u024F]")), ("han", re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF]")),
            ("hiragana", re.compile(r"[\u3040-\u309F]")), ("katakana", re.compile(r"[\u30A0-\u30FF]")),
            ("hangul", re.compile(r"[\u1100-\u11FF\u3130-\u318F\uAC00-\uD7AF]")))


def _script(ch: str) -> str | None:
    for name, rx in _SCRIPTS:
        if rx.match(ch):
            return name
    return "other" if ch.isalpha() else None


def script_words(para: str, lang: str) -> tuple[int, int]:
    """(words not in Latin letters, words in Latin letters). A word is a run of letters of one script, so
    Japanese splits where kanji, hiragana and katakana alternate (設定|を|変更|します, close to its words) and
    space-separated scripts split at spaces; zh is cut by jieba (dataflow.stages.filter.rules.text.words)."""
    if lang == "zh":
        from dataflow.stages.filter.rules.text import words
        toks = [w for w in words(para, "zh") if any(c.isalpha() for c in w)]
        latin = sum(1 for w in toks if _script(next(c for c in w if c.isalpha())) == "latin")
        return len(toks) - latin, latin
    native = latin = 0
    prev = None
    for ch in para:
        cur = _script(ch)
        if cur is not None and cur != prev:
            if cur == "latin":
                latin += 1
            else:
                native += 1
        prev = cur
    return native, latin


def not_in_script(para: str, lang: str, min_share: float) -> bool:
    """A paragraph labelled with a language not written in Latin letters whose words are still mostly in
    Latin letters ("CULTURE independent それとも inexpensive?", "이전5장. Packaging System: Tools and ..."): a
    string left (mostly) in English, not text in that language. It looks at the text's script, never at a
    detector's answer; "插入 LibreOffice Draw 或 Impress 图形" (half its words Chinese) stays."""
    if lang not in NON_LATIN:
        return False
    native, latin = script_words(para, lang)
    return native + latin > 0 and native / (native + latin) < min_share


_PROSE = re.compile(r"[A-Za-z]{2,}")


def untranslated_share(page, en_page) -> float:
    """Share of a translated page's paragraph characters that are English prose left untranslated:
    is_untranslated, at least 8 words and a sentence end (commands and code are the same in every
    translation and are not untranslated prose)."""
    if en_page is None:
        return 0.0
    en = word_trigrams(en_page.text)
    paras = paragraphs(page.text)
    total = sum(len(p) for p in paras) or 1
    return sum(len(p) for p in paras if len(_PROSE.findall(p)) >= 8 and p.rstrip()[-1:] in ".:!?"
               and is_untranslated(p, en)) / total


def english_prose_share(page) -> float:
    """Share of a zh page's characters in English sentences: lines with no Han/kana/hangul character, at least
    5 Latin words and a sentence end. Catches pages left (partly) in English that have no English twin at the
    same path (untranslated_share needs one); a command or a code line has no sentence end (our choice)."""
    lines = [" ".join(ln.split()) for ln in page.main.split("\n") if ln.strip()]   # the main content, as RF sees it
    total = sum(len(ln) for ln in lines) or 1
    return sum(len(ln) for ln in lines if not _CJK.search(ln) and len(_PROSE.findall(ln)) >= 5
               and ln[-1:] in ".!?") / total


def round_robin(items: list, key, seed) -> list:
    """Items ordered by a seeded hash within each source, then taken one source at a time, so no single
    package dominates a sample."""
    by: dict[str, list] = {}
    for it in sorted(items, key=lambda p: stable(seed, key(p))):
        by.setdefault(it.source, []).append(it)
    out, queues = [], [by[k] for k in sorted(by)]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


# ---------------------------------------------------------------- LID
def lid_set(pages, cfg: dict, seed) -> list[dict]:
    c = cfg["lid"]
    by = _index(pages)
    versions: dict[tuple, list] = {}
    for p in pages:
        versions.setdefault((p.source, p.path), []).append(p)
    seen_in: dict[tuple, Counter] = {}
    for key, vs in versions.items():
        cnt = Counter()
        for v in vs:
            if v.lang != "en":
                cnt.update(set(paragraphs(v.text)))
        seen_in[key] = cnt
    pools: dict[str, dict[str, dict]] = {}
    en_tris: dict[tuple, set] = {}
    for p in pages:
        gold = gold_lang(p.lang)
        en = by.get((p.source, "en", p.path))
        if (p.source, p.path) not in en_tris:
            en_tris[(p.source, p.path)] = word_trigrams(en.text) if en is not None else set()
        en_tri = en_tris[(p.source, p.path)]
        n_other = sum(1 for v in versions[(p.source, p.path)] if v.lang != "en")
        for para in paragraphs(p.text):
            if len(para) < (c["min_chars_cjk"] if gold in CJK_LANGS else c["min_chars"]):
                continue
            if gold in CJK_LANGS and not _CJK.search(para):
                continue
            if not_in_script(para, gold, c["min_script_share"]):
                continue   # mostly Latin letters under a non-Latin label: its label would be wrong
            if p.lang != "en" and is_untranslated(para, en_tri):
                continue   # left untranslated: its label would be wrong
            if p.lang == "en" and n_other and seen_in[(p.source, p.path)][para] > c["shared_max"] * n_other:
                continue   # the same in most translations: code, a command, a name
            pools.setdefault(gold, {}).setdefault(para, {"lang": gold, "variant": p.lang, "source": p.source,
                                                         "path": p.path, "text": para})
    out = []
    for gold in sorted(pools):
        items = sorted(pools[gold].values(), key=lambda r: stable(seed, r["text"]))[:c["per_lang"]]
        for k, r in enumerate(items):
            out.append({"id": f"lid:{gold}:{k}", **r})
    return out


# ---------------------------------------------------------------- RF
def clean_pages(pages, cfg: dict, langs=("en", "zh-cn", "zh-tw")) -> list:
    """Pages long enough to be documents, translated (not left in English), in the kept languages."""
    c = cfg["rf"]
    by = _index(pages)
    out = []
    for p in pages:
        if p.lang not in langs or len(p.main) < c["clean_min_chars"]:
            continue
        if p.lang != "en" and max(untranslated_share(p, by.get((p.source, "en", p.path))),
                                  english_prose_share(p)) > c["clean_max_untranslated"]:
            continue
        out.append(p)
    return out


def rf_clean(pages, cfg: dict, seed) -> list[dict]:
    out = []
    cands = clean_pages(pages, cfg)
    for lang in ("en", "zh"):
        mine = round_robin([p for p in cands if gold_lang(p.lang) == lang], lambda p: p.source + p.path + p.lang, seed)
        for k, p in enumerate(mine[:cfg["rf"]["clean_per_lang"]]):
            out.append({"id": f"rf:clean:{lang}:{k}", "lang": lang, "kind": "clean", "source": p.source,
                        "path": f"{p.lang}/{p.path}", "text": p.main})
    return out


def _words(text: str, lang: str) -> list[str]:
    if lang == "zh":
        import jieba

        jieba.setLogLevel(60)
        return [w for w in jieba.lcut(text) if len(w) >= 2 and _CJK.search(w)]
    return [w.lower() for w in re.findall(r"[A-Za-z]{4,}", text)]


def _join(tokens: list[str], lang: str, sep_en: str = " ", sep_zh: str = "") -> str:
    return (sep_zh if lang == "zh" else sep_en).join(tokens)


def junk_navigation(page_group, lang, rng) -> str:
    links = []
    for p in page_group:
        for a in p.links:
            if not links or links[-1] != a:
                links.append(a)
    links = links[:60]
    if rng.random() < 0.5:
        return "\n".join(links)
    return "\n".join(" | ".join(links[i:i + 6]) for i in range(0, len(links), 6))


def junk_repeated(page, lang, rng) -> str | None:
    paras = [p for p in paragraphs(page.text) if len(p) >= (20 if lang == "zh" else 60)][:3]
    if len(paras) < 2:
        return None
    return "\n\n".join(paras * 4)


def junk_stuffing(page, lang, rng) -> str | None:
    top = [w for w, _ in Counter(_words(page.text, lang)).most_common(8)]
    if len(top) < 5:
        return None
    lines = [_join([rng.choice(top) for _ in range(12)], lang, ", ", "，") for _ in range(15)]
    return "\n".join(lines)


def junk_numbers(rows, title: str, rng) -> str:
    start = rng.randrange(max(1, len(rows) - 40))
    return title + "\n" + "\n".join("\t".join(r) for r in rows[start:start + 40])


def junk_spam(page, vocab: list[str], lang, rng) -> str | None:
    words = _words(page.text, lang)
    if len(words) < 20:
        return None
    lines = []
    for _ in range(15):
        toks = rng.sample(vocab, 4) + rng.sample(words, 4)
        rng.shuffle(toks)
        lines.append(_join(toks, lang, " ", "，") + ("！" if lang == "zh" else "!"))
    return "\n".join(lines)


def spam_vocab(words: list[str], seeds: list[str], lang: str, limit: int = 400) -> list[str]:
    """Real words that start with a seed (wamerican, en) or contain one (jieba's dictionary by frequency, zh)."""
    out = []
    for w in words:
        lw = w.lower()
        if "'" in w or not w or (lang == "en" and not w.isalpha()):
            continue
        hit = any(s in lw for s in seeds) if lang == "zh" else any(lw.startswith(s) for s in seeds)
        if hit and lw not in out:
            out.append(lw)
            if len(out) >= limit:
                break
    return out


def rf_junk(pages, words: dict[str, list[str]], numbers: list[list[str]], cfg: dict, seed) -> list[dict]:
    n = cfg["rf"]["junk_per_class"]
    out = []
    for lang, code in (("en", "en"), ("zh", "zh-cn")):
        rng = random.Random(stable(seed, "junk:" + lang))
        mine = sorted((p for p in pages if p.lang == code and len(p.text) >= 300),
                      key=lambda p: stable(seed, p.source + p.path))
        vocab = spam_vocab(words[lang], cfg["rf"]["spam_seeds"][lang], lang)
        linked = [p for p in mine if len(p.links) >= 8]
        made = {k: 0 for k in JUNK_CLASSES}
        for i in range(len(mine)):
            if all(v >= n for v in made.values()):
                break
            p = mine[i]
            texts = {
                "navigation": junk_navigation(linked[i % len(linked):i % len(linked) + 3], lang, rng) if linked else None,
                "repeated": junk_repeated(p, lang, rng),
                "stuffing": junk_stuffing(p, lang, rng),
                "numbers": junk_numbers(numbers, p.text.strip().split("\n")[0][:80], rng),
                "spam": junk_spam(p, vocab, lang, rng) if len(vocab) >= 20 else None,
            }
            for kind, t in texts.items():
                if t and made[kind] < n:
                    out.append({"id": f"rf:{kind}:{lang}:{made[kind]}", "lang": lang, "kind": kind,
                                "source": p.source, "path": f"{p.lang}/{p.path}", "text": t})
                    made[kind] += 1
    return out


# ---------------------------------------------------------------- CD
_PUNCT_EN = str.maketrans(",.;:!?()", "，。；：！？（）")
_PUNCT_ZH = str.maketrans("，。；：！？（）", ",.;:!?()")


def edit_punct(t: str, lang: str, rng) -> str:
    return t.translate(_PUNCT_ZH if lang == "zh" else _PUNCT_EN)


def edit_emoji(t: str, lang: str, rng) -> str:
    return re.sub(r"([.!?。！？])(\s)", lambda m: m.group(1) + " " + rng.choice("👍😀🔥✨🎉") + m.group(2), t, count=5) + " 😀"


def edit_whitespace(t: str, lang: str, rng) -> str:
    t = re.sub(r"[ \t]+", "  ", t).replace("\n", " \n\n")
    if lang == "zh":
        t = t.replace("，", "， ").replace("。", "。 ")
    return "  " + t + "   \n"


def edit_swap3(t: str, lang: str, rng) -> str:
    """Three words replaced by other words of the same document (the planted edit of bench/dedup.py)."""
    if lang == "zh":
        import jieba

        jieba.setLogLevel(60)
        w = jieba.lcut(t)
    else:
        w = t.split(" ")
    for _ in range(3):
        w[rng.randrange(len(w))] = w[rng.randrange(len(w))]
    return ("" if lang == "zh" else " ").join(w)


def edit_header(t: str, lang: str, rng, other: str = "") -> str:
    line = next((ln for ln in other.split("\n") if ln.strip()), "")[:200]
    return line + "\n" + t


EDITS = {"exact": lambda t, lang, rng: t, "punct": edit_punct, "emoji": edit_emoji,
         "whitespace": edit_whitespace, "swap3": edit_swap3}


def shingle_set(text: str, lang: str, n: int = 5) -> set:
    """Exact 5-grams for the truth: words (\\w+, lower case), or characters of zh with non-word chars removed."""
    if lang == "zh":
        s = re.sub(r"[\W_]+", "", text.lower())
        return {s[i:i + n] for i in range(max(1, len(s) - n + 1))}
    w = re.findall(r"\w+", text.lower())
    return {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def _bound(a: set, b: set) -> float:
    return min(len(a), len(b)) / max(len(a), len(b), 1)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def localization_pairs(chapters, window_chars: int) -> list[tuple]:
    """Aligned windows of parallel paragraphs -> (zh-cn Page, zh-tw Page) pairs."""
    out = []
    for ch, cn, tw in chapters:
        i = 0
        while i < len(cn):
            j, n = i, 0
            while j < len(cn) and n < window_chars:
                n += len(cn[j])
                j += 1
            if n >= window_chars:
                out.append((Page("debian-reference", "zh-cn", f"{ch}#{i}", "\n\n".join(cn[i:j])),
                            Page("debian-reference", "zh-tw", f"{ch}#{i}", "\n\n".join(tw[i:j]))))
            i = j
    return out


def cd_set(pages, chapters, cfg: dict, seed) -> list[dict]:
    c = cfg["cd"]
    rng = random.Random(stable(seed, "cd"))
    long_enough = [p for p in pages if len(p.text) >= c["min_chars"]]
    pairs = localization_pairs(chapters, c["window_chars"])
    pairs = sorted(pairs, key=lambda pr: stable(seed, pr[0].path))[:c["max_pairs"]]
    originals = {("zh", p.source, p.path): p for p, _ in pairs}
    for lang, code in (("en", "en"), ("zh", "zh-cn")):
        mine = sorted((p for p in long_enough if p.lang == code), key=lambda p: stable(seed, "o" + p.source + p.path))
        for p in mine:
            if sum(1 for k in originals if k[0] == lang) >= c["originals_per_lang"]:
                break
            originals.setdefault((lang, p.source, p.path), p)
    recs = []
    for k, ((lang, source, path), p) in enumerate(sorted(originals.items())):
        recs.append({"id": f"cd:original:{k}", "lang": lang, "kind": "original", "source": source,
                     "path": f"{p.lang}/{path}", "text": p.text, "date": "2024-01-01T00:00:00Z"})
    # truth among originals: union-find over exact 5-gram Jaccard >= truth_jaccard
    parent = list(range(len(recs)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # both word and character 5-grams, across languages: a zh-cn page left in English is a copy of the en page
    words = [shingle_set(r["text"], "en") for r in recs]
    chars = [shingle_set(r["text"], "zh") for r in recs]
    for i in range(len(recs)):
        for j in range(i + 1, len(recs)):
            if max(_bound(words[i], words[j]), _bound(chars[i], chars[j])) < c["truth_jaccard"]:
                continue   # sizes alone rule it out: J <= min/max
            if max(jaccard(words[i], words[j]), jaccard(chars[i], chars[j])) >= c["truth_jaccard"]:
                parent[find(i)] = find(j)
    for i, r in enumerate(recs):
        r["group"] = f"g{find(i)}"
    by_key = {(r["lang"], r["source"], r["path"].split("/", 1)[1]): r for r in recs}
    out = list(recs)
    for k, (p, tw) in enumerate(pairs):
        o = by_key[("zh", p.source, p.path)]
        out.append({"id": f"cd:zh-hant:{k}", "lang": "zh", "kind": "zh-hant", "source": tw.source,
                    "path": f"zh-tw/{tw.path}", "text": tw.text, "date": "2024-02-01T00:00:00Z", "group": o["group"]})
    for kind in CD_CLASSES:
        picked = sorted(recs, key=lambda r: stable(seed, kind + r["id"]))
        en = [r for r in picked if r["lang"] == "en"]
        zh = [r for r in picked if r["lang"] == "zh"]
        chosen = [x for pair in zip(en, zh) for x in pair][:c["copies_per_class"]]
        for k, o in enumerate(chosen):
            if kind == "header":
                other = recs[rng.randrange(len(recs))]["text"]
                text = edit_header(o["text"], o["lang"], rng, other)
            else:
                text = EDITS[kind](o["text"], o["lang"], rng)
            out.append({"id": f"cd:{kind}:{k}", "lang": o["lang"], "kind": kind, "source": o["source"],
                        "path": o["path"], "text": text, "date": "2024-02-01T00:00:00Z", "group": o["group"],
                        "original": o["id"]})
    return out


# ---------------------------------------------------------------- AS
def shuffle_words(text: str, lang: str, rng) -> str:
    out = []
    for line in text.split("\n"):
        if lang == "zh":
            import jieba

            jieba.setLogLevel(60)
            toks = jieba.lcut(line)
        else:
            toks = line.split()
        rng.shuffle(toks)
        out.append(("" if lang == "zh" else " ").join(toks))
    return "\n".join(out)


def as_set(pages, cfg: dict, seed) -> list[dict]:
    out = []
    cands = clean_pages(pages, cfg, langs=("en", "zh-cn"))
    for lang in ("en", "zh"):
        mine = round_robin([p for p in cands if gold_lang(p.lang) == lang], lambda p: "as" + p.source + p.path, seed)
        for k, p in enumerate(mine[:cfg["as"]["docs_per_lang"]]):
            rng = random.Random(stable(seed, f"as:{lang}:{k}"))
            out.append({"id": f"as:{lang}:{k}", "lang": lang, "source": p.source, "path": f"{p.lang}/{p.path}",
                        "text": p.main, "shuffled": shuffle_words(p.main, lang, rng)})
    return out
