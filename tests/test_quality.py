"""A small, fast `make quality` (issue #14) on the fixture corpus: each stage measured on labelled real text
through the same builders and measurements as tools/quality, so a stage that regresses fails here.

Pages: the fixture's debian-reference chapters (en, zh-cn, zh-tw, de, fr, ja; real HTML from `make data`),
cut into sections of about SECTION_CHARS characters so that there are a few dozen documents per language.
Labels come from the package's language and from the planted edits, never from the code under test.
Thresholds sit a little under the goals of conf/quality.yaml (issue #14); each says why.
"""
from __future__ import annotations

import copy
import re

import pytest
import yaml

from tools.corpus.text import html2text, read_text
from tools.quality import labelled, measure
from tools.quality.sources import Page, anchors, dp_text

from conftest import FIXTURE, ROOT

SECTION_CHARS = 2000     # a page-sized document (the quality set's pages are 600-5000 characters)
LANGS = ("en", "zh-cn", "zh-tw", "de", "fr", "ja")


@pytest.fixture(scope="module")
def qcfg() -> dict:
    q = yaml.safe_load(open(ROOT / "conf" / "quality.yaml", encoding="utf-8"))
    q = copy.deepcopy(q)
    q["lid"]["per_lang"] = 40          # 6 languages x 40 paragraphs: a second, not a minute
    q["rf"]["clean_per_lang"] = 30
    q["rf"]["junk_per_class"] = 10
    q["cd"].update(originals_per_lang=30, copies_per_class=10, max_pairs=20, min_chars=400)
    q["as"]["docs_per_lang"] = 20
    return q


@pytest.fixture(scope="module")
def cfg() -> dict:
    from dataflow.pipeline.conf import load_conf

    return load_conf(ROOT / "conf" / "pipeline.yaml")


def _sections(text: str, n: int) -> list[str]:
    out, cur = [], []
    for para in re.split(r"\n\s*\n", text):
        cur.append(para)
        if sum(len(p) for p in cur) >= n:
            out.append("\n\n".join(cur))
            cur = []
    return out


@pytest.fixture(scope="module")
def chapters(models_dir) -> dict:
    """(lang, chapter) -> raw HTML of the fixture's debian-reference pages."""
    out = {}
    for lang in LANGS:
        for f in sorted((FIXTURE / "html" / "debian-reference" / lang).glob("ch*.html")):
            out[(lang, f.name.split(".")[0])] = read_text(str(f))
    assert len(out) == 18, sorted(out)
    return out


@pytest.fixture(scope="module")
def pages(chapters) -> list[Page]:
    """Block text in chunks of 40 paragraphs: the translations' chunks line up (chunk k of every language
    covers the same paragraphs), as the quality set's pages do. For LID and CD."""
    out = []
    for (lang, ch), html in sorted(chapters.items()):
        block = labelled.paragraphs(html2text(html))
        for k in range(0, len(block), 40):
            out.append(Page("debian-reference", lang, f"{ch}#{k}", "\n\n".join(block[k:k + 40])))
    return out


@pytest.fixture(scope="module")
def docs(chapters) -> list[Page]:
    """Documents as DP extracts them (resiliparse main content), cut into sections, each with a share of
    its chapter's link texts. For RF and AS."""
    out = []
    for (lang, ch), html in sorted(chapters.items()):
        links = anchors(html)
        secs = _sections(dp_text(html), SECTION_CHARS)
        per = max(1, len(links) // max(1, len(secs)))
        for i, sec in enumerate(secs):
            out.append(Page("debian-reference", lang, f"{ch}#{i}", sec, links[i * per:(i + 1) * per], sec))
    return out


def test_lid_keeps_zh_and_en_and_nothing_else(pages, qcfg, cfg):
    recs = labelled.lid_set(pages, qcfg, qcfg["seed"])
    langs = {r["lang"] for r in recs}
    assert langs == {"en", "zh", "de", "fr", "ja"}, langs
    m = measure.lid(recs, cfg)
    # goal 0.99 on the quality set (issue #14). debian-reference paragraphs are harder: many are a command
    # with a few words around it ('列出内存中所有 timer 单元 "systemctl list-timers"'), which the whole-line
    # fastText model scores below lang_threshold. The model of `make models` reached en 0.96 and zh 0.91
    # here when this test was written (40 paragraphs each); the floors sit about two paragraphs below that,
    # and de/fr/ja paragraphs kept as en or zh count against precision
    assert m["kept"]["en"]["f1"] >= 0.93, m["kept"]["en"]
    assert m["kept"]["zh"]["f1"] >= 0.87, m["kept"]["zh"]


def test_rf_keeps_reference_sections_and_rejects_junk(docs, qcfg, cfg, corpus_dir):
    words_en = open(corpus_dir.parent.parent / "x" / "fixture" / "wamerican" / "usr" / "share" / "dict"
                    / "american-english", encoding="utf-8").read().split("\n")
    from tools.quality.sources import chinese_words

    # numbers: the real figures of the fixture's chapters, five to a row (a numbers table taken from text)
    figures = re.findall(r"\b\d[\d.]*\b", " ".join(p.text for p in docs if p.lang == "en"))
    rows = [figures[i:i + 5] for i in range(0, len(figures) - 5, 5)]
    clean = labelled.rf_clean(docs, qcfg, qcfg["seed"])
    junk = labelled.rf_junk(docs, {"en": words_en, "zh": chinese_words()}, rows, qcfg, qcfg["seed"])
    assert {r["kind"] for r in junk} == set(labelled.JUNK_CLASSES)
    m = measure.rf(clean + junk, cfg)
    # junk goal <= 0.10 kept (issue #14): held for all junk together; a single kind has only ~20 documents
    # here, where one document is 0.05, so a kind may keep up to three of them (0.15)
    n_junk = sum(v["all"]["n"] for v in m["junk"].values())
    kept_junk = sum(v["all"]["kept"] * v["all"]["n"] for v in m["junk"].values())
    assert n_junk >= 80 and kept_junk / n_junk <= 0.10, m["junk"]
    for kind, by_lang in m["junk"].items():
        assert by_lang["all"]["kept"] <= 0.15, (kind, by_lang)
    # clean goal >= 0.90 kept; debian-reference sections are table-heavy (short lines) and cut at
    # arbitrary paragraph boundaries, so the floor is 0.75
    for lang in ("en", "zh"):
        assert m["clean"][lang]["n"] >= 10
        assert m["clean"][lang]["kept"] >= 0.75, (lang, m["clean"][lang])


def test_cd_finds_planted_copies_and_localizations(spark, pages, chapters, qcfg, cfg, tmp_path):
    loc = []
    for ch in ("ch03", "ch04", "ch08"):
        a = labelled.paragraphs(html2text(chapters[("zh-cn", ch)]))
        b = labelled.paragraphs(html2text(chapters[("zh-tw", ch)]))
        assert len(a) == len(b)   # the localization is paragraph for paragraph
        loc.append((ch, a, b))
    recs = labelled.cd_set([p for p in pages if p.lang in ("en", "zh-cn")], loc, qcfg, qcfg["seed"])
    kinds = {r["kind"] for r in recs}
    assert kinds == {"original", "zh-hant", *labelled.CD_CLASSES}, kinds
    m = measure.cd(spark, recs, cfg, str(tmp_path))
    rec = {k: v["recall"] for k, v in m["recall"].items()}
    assert rec["exact"] == 1.0, rec            # exact dedup never misses a byte-identical copy
    # goal 1.0 for punctuation/emoji/whitespace edits: the exact step strips all of them, so nothing less
    for k in ("punct", "emoji", "whitespace"):
        assert rec[k] == 1.0, rec
    # goals 0.95; 0.85 here: 10 copies per kind, so one or two misses are within sampling noise
    assert rec["swap3"] >= 0.85, rec
    assert rec["header"] >= 0.85, rec
    assert rec["zh-hant"] >= 0.85, rec
    # goal 0.99; 0.95 here: about 100 merges, so at most ~5 wrong ones
    assert m["merge_precision"] >= 0.95, (m["merge_precision"], m["false_merges"])


def test_as_ranks_original_text_above_shuffled(docs, qcfg, cfg):
    recs = labelled.as_set(docs, qcfg, qcfg["seed"])
    assert {r["lang"] for r in recs} == {"en", "zh"}
    assert all(r["text"] != r["shuffled"] for r in recs)
    m = measure.as_(recs, cfg)
    # no goal in issue #14; a 5-gram LM that cannot tell prose from its shuffled words is broken, so
    # nearly every page (>= 0.95) must rank above its shuffle
    for lang, d in m["per_lang"].items():
        assert d["original_lower"] >= 0.95, (lang, d)


def test_rf_clean_set_leaves_out_zh_pages_left_in_english(docs, qcfg):
    """A translated page whose main text stayed English (no English twin at the same path to compare with)
    is not zh reference text: the set builder leaves it out, whatever the package calls it."""
    zh = [p for p in docs if p.lang == "zh-cn"]
    en = [p for p in docs if p.lang == "en"]
    assert zh and en
    assert all(labelled.english_prose_share(p) <= qcfg["rf"]["clean_max_untranslated"] for p in zh)
    left_in_english = [Page(p.source, "zh-cn", "untranslated/" + p.path, p.text, p.links, p.main) for p in en]
    share = [labelled.english_prose_share(p) for p in left_in_english]
    assert sum(s > qcfg["rf"]["clean_max_untranslated"] for s in share) >= 0.8 * len(share), share
    kept = labelled.clean_pages(zh + left_in_english, qcfg)
    assert {p.path for p in kept} >= {p.path for p in zh if len(p.main) >= qcfg["rf"]["clean_min_chars"]}
    assert sum(p.path.startswith("untranslated/") for p in kept) <= 0.2 * len(left_in_english)


def test_lid_set_leaves_out_latin_strings_under_a_non_latin_label(pages, qcfg):
    """A ja/ko/zh/... paragraph whose words are mostly in Latin letters (a heading or sentence left in
    English, a command) is not text in that language: the set builder leaves it out by its script, never by
    a detector's answer. Latin-script languages are never touched, and Chinese prose naming a few programs
    stays."""
    share = qcfg["lid"]["min_script_share"]
    paras = {lang: [p for pg in pages if pg.lang == lang for p in labelled.paragraphs(pg.text) if len(p) >= 30]
             for lang in ("ja", "zh-cn", "de", "en")}
    ja = [p for p in paras["ja"] if labelled._CJK.search(p)]
    dropped = [p for p in ja if labelled.not_in_script(p, "ja", share)]
    assert dropped and len(dropped) <= 0.1 * len(ja), (len(dropped), len(ja))
    assert all(len(re.findall(r"[A-Za-z]+", p)) >= 2 for p in dropped)          # each has Latin words
    # the fixture's Japanese translation left some sentences in English; they go, its Japanese prose stays
    assert any(p.startswith("The ") for p in dropped)
    assert sum(not labelled.not_in_script(p, "ja", share) for p in ja if p.rstrip().endswith("。")) >= 0.97 * sum(
        p.rstrip().endswith("。") for p in ja)
    # an English paragraph under a ja label with one Japanese word in front of it, as a translator's heading
    en = [p for p in paras["en"] if len(p.split()) >= 8][:20]
    assert all(labelled.not_in_script("参照 " + p, "ja", share) for p in en)
    # Latin-script languages: never; zh prose that names programs: kept
    assert not any(labelled.not_in_script(p, "de", share) for p in paras["de"])
    zh_prose = [p for p in paras["zh-cn"] if p.rstrip().endswith("。") and re.search("[A-Za-z]{3,}", p)]
    assert len(zh_prose) >= 10
    assert sum(labelled.not_in_script(p, "zh", share) for p in zh_prose) <= 0.05 * len(zh_prose)
