"""AS stage on the real sample corpus: cc_net perplexity equals KenLM's own, per-language 30/30/40
buckets, reference prose above word lists and licences (on held-out text), unscored/empty/over-long
documents accounted, fixed cutoffs, --drop, and the job's accounting from stats.json."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pyarrow as pa
import pytest

from dataflow.pipeline.conf import load_conf
from dataflow.models.lm.normalize import normalize_line
from dataflow.models.lm.train import is_heldout, pipeline_lang
from dataflow.core.schema import DOC_ARROW_SCHEMA
from dataflow.stages.score.stage import bucket, doc_perplexity, load_kenlm, load_sp, run
from dataflow.core.stage import write_stage

CONF = load_conf()
CFG = CONF["score"]
NORM = dict(accent=True, case=True, numbers=True, punct=True)


@pytest.fixture(scope="module")
def scfg(models_dir):
    lm_dir = models_dir / "lm"
    for lang in CFG["langs"]:
        for f in (f"{lang}.sp.model", f"{lang}.arpa.bin"):
            if not (lm_dir / f).exists():
                pytest.exit(f"{lm_dir / f} is missing: run `make models`", returncode=2)
    # relative_error 0: exact sample quantiles, which the cutoff tests compare with their own sorted values
    # (the shipped 0.001 bounds memory at scale and is exact only below ~500 documents per language)
    return {**CFG, "model_dir": str(lm_dir), "relative_error": 0.0}


@pytest.fixture(scope="module")
def models(scfg):
    return {l: (load_sp(f"{scfg['model_dir']}/{l}.sp.model"), load_kenlm(f"{scfg['model_dir']}/{l}.arpa.bin"))
            for l in scfg["langs"]}


def doc_rows(docs):
    """The DP output schema from corpus records (lang mapped as DP maps it; label kept in meta)."""
    return [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": pipeline_lang(d["lang"]),
             "lang_score": 1.0, "meta": [("label", d["label"])]} for d in docs]


def frame(spark, rows, partitions=2):
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA)).repartition(partitions)


@pytest.fixture(scope="module")
def scored_corpus(spark, corpus_docs, scfg, tmp_path_factory):
    """One stage run over the whole sample corpus, written through write_stage."""
    out = tmp_path_factory.mktemp("score") / "out"
    df = frame(spark, doc_rows(corpus_docs))
    stats = write_stage(run(df, scfg, conf=CONF), out, stage="score", input_count=len(corpus_docs), cfg=scfg)
    rows = spark.read.parquet(str(out / "data")).select("id", "lang", "ppl", "quality", "score_note").collect()
    return stats, {r["id"]: r.asDict() for r in rows}


# ------------------------------------------------------------------ the perplexity formula
def test_single_line_ppl_equals_kenlm_perplexity(corpus_docs, models):
    """cc_net: one paragraph line scored with <s> </s>, length = pieces + 1 -> KenLM's Model.perplexity."""
    checked = 0
    for d in corpus_docs:
        lang = pipeline_lang(d["lang"])
        if lang not in models or d["label"] != "ref":
            continue
        line = next((l for l in d["text"].split("\n") if len(l.strip()) > 20), None)
        if line is None:
            continue
        sp, lm = models[lang]
        ppl, n, truncated = doc_perplexity(line, sp, lm, NORM, 20000, 4096)
        expected = lm.perplexity(" ".join(sp.encode(normalize_line(line), out_type=str)))
        assert (n, truncated) == (1, 0)
        assert ppl == pytest.approx(expected, rel=1e-9)
        checked += 1
        if checked >= 40:
            break
    assert checked == 40


def test_document_ppl_is_length_weighted_over_paragraphs(corpus_docs, models):
    """Multi-line document: 10^(-sum log10 p / sum (pieces + 1)), summed from KenLM's per-token
    full_scores (an independent path from Model.score)."""
    sp, lm = models["en"]
    d = next(d for d in corpus_docs if d["id"].startswith("debian-reference:en/"))
    lines = [normalize_line(l) for l in d["text"].split("\n")]
    lines = [l for l in lines if l]
    log_sum = length = 0
    for l in lines:
        sent = " ".join(sp.encode(l, out_type=str))
        scores = [s for s, _, _ in lm.full_scores(sent, bos=True, eos=True)]
        log_sum += sum(scores)
        length += len(scores)            # pieces + </s>
    ppl, n, _ = doc_perplexity(d["text"], sp, lm, NORM, 20000, 4096)
    assert n == len(lines) > 50
    assert ppl == pytest.approx(10 ** (-log_sum / length), rel=1e-9)


def test_bucket_boundaries_follow_cc_net():
    cut = {"p30": 100.0, "p60": 200.0}
    assert [bucket(p, cut) for p in (99.9, 100.0, 199.9, 200.0, 5000.0)] == ["high", "medium", "medium", "low", "low"]
    assert bucket(None, cut) == "unscored" and bucket(50.0, None) == "unscored"


# ------------------------------------------------------------------ the stage on the sample corpus
def test_stage_ppl_matches_per_record_function(scored_corpus, corpus_docs, models):
    _, rows = scored_corpus
    for d in corpus_docs[::37]:
        lang = pipeline_lang(d["lang"])
        r = rows[d["id"]]
        if lang in models:
            expected, _, _ = doc_perplexity(d["text"], *models[lang], NORM, 20000, 4096)
            assert r["ppl"] == pytest.approx(expected, rel=1e-12)
        else:
            assert r["ppl"] is None and r["quality"] == "unscored" and r["score_note"] == "no_model"


def test_bucket_shares_are_30_30_40_per_language(scored_corpus):
    stats, rows = scored_corpus
    by_lang = stats["extra"]["quality_by_lang"]
    for lang in ("en", "zh"):
        counts = by_lang[lang]
        n = sum(counts.values())
        assert n > 300 and "unscored" not in counts
        for q, share in (("high", 0.30), ("medium", 0.30), ("low", 0.40)):
            assert abs(counts[q] / n - share) <= 0.01, (lang, counts)
        # the buckets really are ppl ranges split at the reported cutoffs
        cut = stats["extra"]["cutoffs"][lang]
        assert cut["source"] == "computed" and cut["p30"] < cut["p60"]
        # relative_error 0: exact sample quantiles, the smallest value with >= p of the values at or below it
        vals = sorted(r["ppl"] for r in rows.values() if r["lang"] == lang)
        assert cut["p30"] == vals[math.ceil(0.3 * len(vals)) - 1]
        assert cut["p60"] == vals[math.ceil(0.6 * len(vals)) - 1]
        for r in rows.values():
            if r["lang"] == lang:
                assert r["quality"] == bucket(r["ppl"], cut)


def test_reference_prose_ranks_above_word_lists_and_licences(scored_corpus, corpus_docs):
    """Held-out dictionary/manual prose (never trained on) has lower median perplexity than English
    word-list chunks and licence texts."""
    _, rows = scored_corpus
    tcfg = CFG["train"]
    held_ref = [rows[d["id"]]["ppl"] for d in corpus_docs if d["lang"] == "en" and d["label"] == "ref"
                and is_heldout(d["id"], tcfg["heldout_fraction"], tcfg["seed"])]
    words = [rows[d["id"]]["ppl"] for d in corpus_docs if d["source"] == "wamerican"]
    licences = [rows[d["id"]]["ppl"] for d in corpus_docs if d["source"] == "common-licenses"]
    assert len(held_ref) >= 30 and len(words) >= 10 and len(licences) >= 5
    assert statistics.median(held_ref) < statistics.median(words)
    assert statistics.median(held_ref) < statistics.median(licences)


def test_accounting_and_unscored_languages(scored_corpus, corpus_docs):
    stats, rows = scored_corpus
    assert stats["input"] == len(corpus_docs) == stats["kept"] + stats["rejected_total"]
    assert stats["rejected_total"] == 0           # annotate only by default
    other = [d for d in corpus_docs if pipeline_lang(d["lang"]) not in ("en", "zh")]
    assert other and stats["extra"]["unscored"]["no_model"] == len(other)
    for d in other:
        assert stats["extra"]["quality_by_lang"][d["lang"]] == {"unscored": sum(1 for o in other if o["lang"] == d["lang"])}


def test_empty_overlong_missing_model_and_drop(spark, corpus_docs, scfg, tmp_path):
    """Empty/whitespace-only text, a paragraph over the char and piece limits, a language without a model,
    and --drop low: every record ends kept or rejected with a reason."""
    en = [d for d in corpus_docs if d["lang"] == "en" and d["label"] == "ref"][:40]
    long_doc = dict(en[0], id="edit:one-paragraph", text=" ".join(en[0]["text"].split()))  # the manual as one line
    blank = dict(en[1], id="edit:blank", text="\n \n\t\n")
    empty = dict(en[2], id="edit:empty", text="")
    de = next(d for d in corpus_docs if d["lang"] == "de")
    docs = en[3:] + [long_doc, blank, empty, de]
    cfg = {**scfg, "max_paragraph_chars": 5000, "max_paragraph_pieces": 300, "drop": ["low"]}
    out = tmp_path / "out"
    stats = write_stage(run(frame(spark, doc_rows(docs)), cfg, conf=CONF), out, stage="score", input_count=len(docs), cfg=cfg)
    assert stats["input"] == stats["kept"] + stats["rejected_total"] == len(docs)
    kept = {r["id"]: r for r in spark.read.parquet(str(out / "data")).collect()}
    rej = {r["id"]: r for r in spark.read.parquet(str(out / "rejected")).collect()}
    assert set(kept) | set(rej) == {d["id"] for d in docs} and not set(kept) & set(rej)
    assert {r["reason"] for r in rej.values()} == {"quality:low"}
    assert stats["rejected"]["quality:low"] == len(rej) > 0
    assert all(r["quality"] == "low" and r["detail"].startswith("ppl=") for r in rej.values())
    assert "low" not in {r["quality"] for r in kept.values()}
    for i in ("edit:blank", "edit:empty"):
        assert kept[i]["quality"] == "unscored" and kept[i]["ppl"] is None and kept[i]["score_note"] == "empty"
    assert kept[de["id"]]["score_note"] == "no_model"
    long_row = kept.get(long_doc["id"]) or rej[long_doc["id"]]
    assert long_row["score_note"] == "truncated:1" and long_row["ppl"] > 0
    assert stats["extra"]["unscored"] == {"empty": 2, "no_model": 1, "truncated_docs": 1}


def test_missing_model_file_for_a_configured_language_is_an_error(spark, corpus_docs, scfg, tmp_path):
    cfg = {**scfg, "langs": ["en", "fr"]}
    with pytest.raises(FileNotFoundError, match="fr.sp.model"):
        run(frame(spark, doc_rows(corpus_docs[:5])), cfg, conf=CONF)


def test_results_do_not_depend_on_partitions_and_fixed_cutoffs_apply(spark, corpus_docs, scfg, scored_corpus):
    """Same docs in 1 and 5 partitions: identical ppl, cutoffs and buckets. Then a later batch (a subset)
    bucketed with the first run's cutoffs gets exactly the buckets those cutoffs imply."""
    stats, rows = scored_corpus
    sub = [d for d in corpus_docs if pipeline_lang(d["lang"]) in ("en", "zh")][::3]
    outs = []
    for parts in (1, 5):
        res = run(frame(spark, doc_rows(sub), parts), scfg, conf=CONF)
        got = {r["id"]: (r["ppl"], r["quality"]) for r in res.kept.select("id", "ppl", "quality").collect()}
        outs.append((got, res.stats()["cutoffs"]))
        res.annotated.unpersist()
    assert outs[0] == outs[1]

    fixed = {l: {"p30": c["p30"], "p60": c["p60"]} for l, c in stats["extra"]["cutoffs"].items()}
    res = run(frame(spark, doc_rows(sub)), scfg, cutoffs=fixed, conf=CONF)
    got = res.kept.select("id", "lang", "ppl", "quality").collect()
    extra = res.stats()
    res.annotated.unpersist()
    assert {l: c["source"] for l, c in extra["cutoffs"].items()} == {"en": "fixed", "zh": "fixed"}
    for r in got:
        assert r["quality"] == bucket(r["ppl"], fixed[r["lang"]]) == rows[r["id"]]["quality"]


def test_job_end_to_end_with_cutoffs_file(spark, corpus_docs, models_dir, tmp_path):
    import pyarrow.parquet as pq

    from jobs import score as job

    docs = [d for d in corpus_docs if d["source"] in ("dict-devil", "wamerican", "debian-reference")]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(doc_rows(docs), schema=DOC_ARROW_SCHEMA), src)
    common = ["--input", str(src), "--set", f"score.model_dir={models_dir / 'lm'}"]
    assert job.main([*common, "--output", str(tmp_path / "a")])["stage"] == "score"
    stats = json.loads((tmp_path / "a/stats.json").read_text())
    assert (tmp_path / "a/_SUCCESS").exists()
    assert stats["input"] == len(docs) == stats["kept"] + stats["rejected_total"]
    cut = json.loads((tmp_path / "a/cutoffs.json").read_text())
    assert set(cut) == {"en", "zh"} and cut["en"]["p30"] == stats["extra"]["cutoffs"]["en"]["p30"]

    assert job.main([*common, "--output", str(tmp_path / "b"), "--cutoffs", str(tmp_path / "a/cutoffs.json"),
                     "--drop", "low", "medium"])["stage"] == "score"
    stats_b = json.loads((tmp_path / "b/stats.json").read_text())
    assert stats_b["input"] == stats_b["kept"] + stats_b["rejected_total"]
    assert {c["source"] for c in stats_b["extra"]["cutoffs"].values()} == {"fixed"}
    q = stats["extra"]["quality_by_lang"]
    assert stats_b["rejected"] == {f"quality:{b}": sum(v.get(b, 0) for v in q.values()) for b in ("low", "medium")}
    assert stats_b["config_hash"] != stats["config_hash"]

    # fixed cutoffs for every language and nothing to reject: the streaming pass (no scratch, no cache)
    # gives every record the bucket of the first run, whose cutoffs these are; computed cutoffs cached the pass
    assert job.main([*common, "--output", str(tmp_path / "c"), "--cutoffs", str(tmp_path / "a/cutoffs.json")])["stage"] == "score"
    stats_c = json.loads((tmp_path / "c/stats.json").read_text())
    assert stats_c["extra"]["single_pass"] == "streamed" and stats["extra"]["single_pass"] == "cached"
    assert stats_c["input"] == stats_c["kept"] == len(docs) and stats_c["rejected_total"] == 0
    assert stats_c["extra"]["quality_by_lang"] == q and stats_c["chars"] == stats["chars"]
    a_rows = dict(zip(*pq.read_table(tmp_path / "a/data", columns=["id", "quality"]).to_pydict().values()))
    c_rows = dict(zip(*pq.read_table(tmp_path / "c/data", columns=["id", "quality"]).to_pydict().values()))
    assert c_rows == a_rows and len(a_rows) == len(docs)
    assert not list(tmp_path.glob("*/_scored")) and not list(tmp_path.glob("*/_attempt-*"))


def test_recipe_without_scoring_is_unscored_never_dropped_and_outside_the_cutoffs(spark, corpus_docs, scfg, models,
                                                                                   tmp_path):
    """Records whose source type's recipe says `score: none` (code, supervised in conf/pipeline.yaml) get
    quality unscored, ppl null, score_note recipe and no ref_score; even `--drop unscored` keeps them, and
    the cutoffs are the exact quantiles of the web records alone."""
    from dataflow.core.recipes import recipe_for

    conf = load_conf()
    assert recipe_for(conf, "code").score == recipe_for(conf, "supervised").score == "none"
    assert recipe_for(conf, None).score == "lm" and recipe_for(conf, None).ref_score
    en = [d for d in corpus_docs if d["lang"] == "en" and d["label"] in ("ref", "lowq")]
    web, code, sup = en[0::3], en[1::3], en[2::3]
    de = next(d for d in corpus_docs if d["lang"] == "de")   # web, no model: unscored by no_model, droppable
    rows = doc_rows(web + code + sup + [de])
    types = {**{d["id"]: "code" for d in code}, **{d["id"]: "supervised" for d in sup}}
    for r in rows:
        r["source_type"] = types.get(r["id"])           # null: the default type (web)
    cfg = {**scfg, "drop": ["low", "unscored"]}
    out = tmp_path / "out"
    schema = DOC_ARROW_SCHEMA if "source_type" in DOC_ARROW_SCHEMA.names else \
        DOC_ARROW_SCHEMA.append(pa.field("source_type", pa.string()))
    df = spark.createDataFrame(pa.Table.from_pylist(rows, schema=schema)).repartition(2)
    stats = write_stage(run(df, cfg, conf=conf), out, stage="score", input_count=len(rows), cfg=cfg)
    kept = {r["id"]: r for r in spark.read.parquet(str(out / "data")).collect()}
    rej = {r["id"]: r for r in spark.read.parquet(str(out / "rejected")).collect()}
    assert len(kept) + len(rej) == len(rows) == stats["kept"] + stats["rejected_total"]
    for i, t in types.items():
        r = kept[i]
        assert (r["quality"], r["ppl"], r["score_note"], r["ref_score"], r["source_type"]) == \
            ("unscored", None, "recipe", None, t)
    assert rej[de["id"]]["reason"] == "quality:unscored" and rej[de["id"]]["score_note"] == "no_model"
    assert {r["reason"] for r in rej.values()} == {"quality:low", "quality:unscored"}
    assert stats["rejected"]["quality:low"] == sum(1 for r in rej.values() if r["reason"] == "quality:low") > 0
    assert stats["extra"]["unscored_by_recipe"] == {"recipe": len(types), "unknown_type": 0}
    # web records: ppl from the per-record function, a ref_score, and cutoffs from them alone
    sp, lm = models["en"]
    vals = sorted(doc_perplexity(d["text"], sp, lm, NORM, 20000, 4096)[0] for d in web)
    cut = stats["extra"]["cutoffs"]["en"]
    assert cut["p30"] == pytest.approx(vals[math.ceil(0.3 * len(vals)) - 1], rel=1e-12)
    assert cut["p60"] == pytest.approx(vals[math.ceil(0.6 * len(vals)) - 1], rel=1e-12)
    for d in web:
        r = kept.get(d["id"]) or rej[d["id"]]
        assert r["source_type"] == "web" and 0.0 <= r["ref_score"] <= 1.0
    assert stats["extra"]["quality_by_type"]["code"] == {"unscored": len(code)}
    assert stats["extra"]["quality_by_type"]["supervised"] == {"unscored": len(sup)}
