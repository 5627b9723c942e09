"""The reference classifier (CCNet / LLaMA §2.1) trained on the sample corpus: held-out reference prose
scores above held-out low-quality pages, a one-chunk document's ref_score is fastText's own probability,
AS's `score.ref_min` threshold rejects with reason ref_score (counts checked against the test's own), and a
missing required model fails before any Spark work."""
from __future__ import annotations

import json
import statistics

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflow.models import refclass
from dataflow.pipeline.conf import load_conf
from dataflow.models.lm.train import pipeline_lang
from dataflow.core.schema import DOC_ARROW_SCHEMA

CFG = load_conf()["score"]
TC = CFG["ref_train"]


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("refclass") / "refclass.bin"
    report = refclass.train(str(corpus_dir), str(out), CFG)
    return out, report, refclass.load_model(str(out))


def heldout_docs(corpus_docs, label):
    return [d for d in corpus_docs if d["label"] == label
            and refclass.is_heldout(str(d["id"]), TC["heldout_fraction"], TC["seed"])]


def fasttext_ref_prob(model, line: str) -> float:
    labels, probs = model.predict(line, k=2)
    return min(1.0, float(dict(zip(labels, probs))[refclass.LABEL_REF]))   # fastText's softmax can exceed 1 by 1e-5


def test_heldout_reference_pages_score_above_low_quality_pages(trained, corpus_docs):
    path, report, model = trained
    ref, low = heldout_docs(corpus_docs, "ref"), heldout_docs(corpus_docs, "lowq")
    assert len(ref) >= 50 and len(low) >= 5
    cc, mc = TC["chunk_chars"], CFG["ref_max_chunks"]
    ref_s = [refclass.ref_score(model, d["text"], cc, mc) for d in ref]
    low_s = [refclass.ref_score(model, d["text"], cc, mc) for d in low]
    assert statistics.fmean(ref_s) > statistics.fmean(low_s) + 0.5
    # the report next to the model says the same, on the same held-out documents
    side = json.loads((path.parent / (path.name + ".json")).read_text())
    assert side["heldout_documents"] == {refclass.LABEL_REF: len(ref), refclass.LABEL_OTHER: len(low)}
    assert side["heldout"]["documents"]["n"] == len(ref) + len(low)
    assert side["heldout"]["mean_score"]["ref"] == pytest.approx(statistics.fmean(ref_s), abs=1e-4)
    # no held-out document was trained on: the training chunks cover exactly the other documents
    n_train = {lb: 0 for lb in (refclass.LABEL_REF, refclass.LABEL_OTHER)}
    for d in corpus_docs:
        lb = {"ref": refclass.LABEL_REF, "lowq": refclass.LABEL_OTHER}.get(d["label"])
        if lb and not refclass.is_heldout(str(d["id"]), TC["heldout_fraction"], TC["seed"]):
            n_train[lb] += len(refclass.chunks(d["text"], TC["chunk_chars"]))
    assert side["train_chunks"] == n_train


def test_one_chunk_score_is_fasttexts_probability(trained, corpus_docs):
    _, _, model = trained
    short = [d for d in corpus_docs if d["label"] in ("ref", "lowq") and 20 < len(d["text"]) < 300
             and "\n" not in d["text"].strip()][:20]
    assert len(short) >= 5
    for d in short:
        line = " ".join(d["text"].split())
        assert refclass.ref_score(model, d["text"], TC["chunk_chars"], 8) == pytest.approx(
            fasttext_ref_prob(model, line), abs=1e-6)


def rows_of(docs):
    return [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": pipeline_lang(d["lang"]),
             "lang_score": 1.0, "meta": [("label", d["label"])]} for d in docs]


def test_threshold_rejects_as_ref_score_and_missing_model_fails_first(spark, corpus_docs, models_dir, trained,
                                                                      tmp_path):
    from jobs import score as job

    path, _, model = trained
    docs = heldout_docs(corpus_docs, "ref")[:60] + heldout_docs(corpus_docs, "lowq")
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows_of(docs), schema=DOC_ARROW_SCHEMA), src)
    common = ["--input", str(src), "--set", f"score.model_dir={models_dir / 'lm'}"]

    # a required model that is missing: refused before the stage reads anything (no attempt, no job)
    tracker = spark.sparkContext.statusTracker()
    jobs_before = set(tracker.getJobIdsForGroup(None))
    with pytest.raises(FileNotFoundError, match="reference classifier"):
        job.main([*common, "--output", str(tmp_path / "missing"),
                  "--set", f"score.ref_model={tmp_path / 'no-such-model.bin'}", "--set", "score.ref_required=true"])
    assert not (tmp_path / "missing").exists()
    assert set(tracker.getJobIdsForGroup(None)) == jobs_before

    ref_min = 0.5
    assert job.main([*common, "--output", str(tmp_path / "out"), "--set", f"score.ref_model={path}",
                     "--set", f"score.ref_min={ref_min}"])["stage"] == "score"   # the stage's stats.json
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    kept = pq.read_table(tmp_path / "out/data").to_pylist()
    rej = pq.read_table(tmp_path / "out/rejected").to_pylist()
    ids = {d["id"] for d in docs}
    assert len(kept) + len(rej) == len(docs) == stats["input"]
    assert {r["id"] for r in kept} | {r["id"] for r in rej} == ids
    assert {r["reason"] for r in rej} == {"ref_score"}
    assert stats["rejected"] == {"ref_score": len(rej)} and stats["kept"] == len(kept)
    assert all(r["ref_score"] < ref_min and r["detail"].startswith("ref_score=") for r in rej)
    assert all(r["ref_score"] >= ref_min for r in kept)
    # the word lists and licences go, the reference prose stays (the test's own labels)
    low_ids = {d["id"] for d in docs if d["label"] == "lowq"}
    assert sum(r["id"] in low_ids for r in rej) >= 0.8 * len(low_ids)
    assert sum(r["id"] not in low_ids for r in kept) >= 0.8 * (len(docs) - len(low_ids))
    # single-chunk documents: the stage's ref_score is fastText's own probability
    by_id = {r["id"]: r for r in kept + rej}
    for d in docs:
        if len(d["text"]) < 300 and "\n" not in d["text"].strip() and d["text"].strip():
            assert by_id[d["id"]]["ref_score"] == pytest.approx(fasttext_ref_prob(model, " ".join(d["text"].split())),
                                                                abs=1e-6)


def test_divergence_is_retried_at_lower_rates_then_named(tmp_path):
    """fastText's NaN at an absurd learning rate: the fit halves the rate MAX_HALVINGS times, then fails with an
    error naming the setting; a rate that trains is reported as used."""
    train = [(refclass.LABEL_REF, "the quick brown fox jumps over the lazy dog " * 20),
             (refclass.LABEL_OTHER, "buy cheap casino bonus click here now " * 20)] * 50
    tc = {**TC, "lr": 1e9, "epoch": 5}
    with pytest.raises(RuntimeError, match="score.ref_train.lr"):
        refclass.fit(train, tc, tmp_path / "m.bin")
    assert not list(tmp_path.glob("*.txt"))          # the training file is removed either way
    model, lr = refclass.fit(train, {**tc, "lr": 0.2}, tmp_path / "ok.bin")
    assert lr == 0.2 and (tmp_path / "ok.bin").exists()
    assert fasttext_ref_prob(model, "the quick brown fox") > 0.5
