"""Language ID: the model `make models` trains (jobs/train_langid.py -> dataflow/models/langid/train.py) on the
translation catalogues of `make data` (tools/corpus/langid_sources.py), checked on held-out real text."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from dataflow.core.config import section
from dataflow.pipeline.conf import load_conf
from dataflow.models.langid.train import catalogue_units, clean, holdout, paragraphs, split
from dataflow.models.langid.model import load_model, predict
from tools.corpus.langid_sources import PACKAGES, RESERVED, clean_string, locale_lang, read_mo

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = ROOT / "build" / "corpus" / "out" / "langid"
# the languages issue 14 saw mislabelled (it, id, es, cs, ca, pt -> en; ru, el -> zh), the kept ones, and
# the sample corpus's others
# Old English (ang, 2k characters of GNOME strings: too little to train) shares much of its vocabulary with
# en; 1 of its 8 paragraphs scores en 0.57 (docs/preprocess.md). It is no language of today's web.
HISTORICAL = {"ang"}
CHECKED = ["en", "zh", "it", "id", "es", "cs", "ca", "pt", "ru", "el", "de", "fr", "ja", "ko", "vi", "pl"]


@pytest.fixture(scope="module")
def cfg():
    return section(load_conf(), "preprocess")


@pytest.fixture(scope="module")
def model(models_dir):
    return load_model(str(models_dir / "langid.bin"))


@pytest.fixture(scope="module")
def rows():
    path = CATALOGUES / "samples.jsonl"
    if not path.exists():
        pytest.exit(f"the language-ID catalogues are missing at {path}: run `make data` first", returncode=2)
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def data(rows, model, cfg):
    """The trainer's own split of the checked languages and of every language the model does not know."""
    known = {lb[len("__label__"):] for lb in model.get_labels()}
    chosen = [r for r in rows if r["lang"] in CHECKED or r["lang"] not in known]
    tc = cfg["langid_train"]
    units = clean(catalogue_units(chosen, dict(cfg["lang_map"] or {}), cfg["unicode_form"]),
                  set(tc["require_cjk"]), float(tc["min_cjk_share"]))
    return split(units, cfg["langid_train"])


def test_held_out_text_is_not_training_text(data, rows, cfg):
    tc = cfg["langid_train"]
    for lang in ("en", "zh", "it"):
        assert data["holdout"][lang] and not set(data["holdout"][lang]) & set(data["train"][lang])
    # a group (one msgid) is held out in every language at once, so no translation of it is trained on
    groups = {r["group"] for r in rows if r["lang"] == "it"}
    held = {g for g in groups if holdout(g, float(tc["holdout_fraction"]), int(tc["seed"]))}
    assert 0.1 < len(held) / len(groups) < 0.3  # holdout_fraction 0.2 of the msgids


def test_held_out_paragraphs_per_language(data, model, cfg):
    """Paragraph-length held-out text of each checked language gets its own label with a passing score."""
    threshold, pc = float(cfg["lang_threshold"]), int(cfg["langid_train"]["paragraph_chars"])
    for lang in CHECKED:
        paras = paragraphs(data["holdout"][lang], pc)
        assert len(paras) >= 20, lang
        preds = [predict(model, p) for p in paras]
        right = sum(c == lang and s >= threshold for c, s in preds)
        assert right / len(paras) >= 0.97, (lang, Counter(c for c, _ in preds))


def test_en_and_zh_f1_on_held_out_paragraphs(data, model, cfg):
    """F1 >= 0.99 for the kept languages, counting every other checked language's paragraphs as negatives."""
    threshold, pc = float(cfg["lang_threshold"]), int(cfg["langid_train"]["paragraph_chars"])
    pred = {lang: [predict(model, p) for p in paragraphs(data["holdout"][lang], pc)] for lang in CHECKED}
    for kept in ("en", "zh"):
        tp = sum(c == kept and s >= threshold for c, s in pred[kept])
        fp = sum(c == kept and s >= threshold for lang in CHECKED if lang != kept for c, s in pred[lang])
        precision, recall = tp / max(1, tp + fp), tp / len(pred[kept])
        assert 2 * precision * recall / (precision + recall) >= 0.99, (kept, precision, recall)


def test_untrained_languages_do_not_pass_as_kept(data, model, cfg):
    """Real text of languages left out of training (conf exclude_langs, and those with too little text) is
    never labelled zh or en with a score at or above lang_threshold."""
    unknown = data["unknown"]
    assert set(cfg["langid_train"]["exclude_langs"]) <= set(unknown)
    threshold, pc = float(cfg["lang_threshold"]), int(cfg["langid_train"]["paragraph_chars"])
    checked = 0
    for lang, texts in unknown.items():
        if lang in HISTORICAL:
            continue
        for p in paragraphs(texts, pc):
            code, score = predict(model, p)
            checked += 1
            assert not (code in cfg["keep_langs"] and score >= threshold), (lang, code, score, p[:120])
    assert checked >= 200


def test_short_real_lines_of_the_sample_corpus(model, corpus_docs):
    poem = next(d for d in corpus_docs if d["source"] == "fortunes-zh")["text"]
    line = next(ln for ln in poem.split("\n") if len(ln.strip()) >= 10)
    assert predict(model, line)[0] == "zh"
    devil = next(d for d in corpus_docs if d["source"] == "dict-devil")["text"]
    assert predict(model, " ".join(devil.split()[:12]))[0] == "en"
    assert predict(model, "  \n ") == ("und", 0.0)


def test_training_is_deterministic(rows, tmp_path):
    """Same data and seed, two fresh processes (as `make models`): the same model file and predictions."""
    some = [r for r in rows if r["lang"] in ("en", "zh", "it", "es", "ru")]
    sub = tmp_path / "cat"
    sub.mkdir()
    (sub / "samples.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in some[::4]))
    outs = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for p in outs:
        subprocess.run([sys.executable, "-m", "jobs.train_langid", "--catalogues", str(sub), "--output", str(p),
                        "--set", "preprocess.langid_train.epoch=2", "--set", "preprocess.langid_train.bucket=20000",
                        "--set", "preprocess.langid_train.min_lang_chars=1000"],
                       cwd=ROOT, check=True, capture_output=True)
    assert outs[0].read_bytes() == outs[1].read_bytes() and outs[0].stat().st_size > 0
    report = json.loads(Path(str(outs[0]) + ".json").read_text())
    assert report["labels"] == ["en", "es", "it", "ru", "zh"]
    a, b = load_model(str(outs[0])), load_model(str(outs[1]))
    texts = [r["text"] for r in some[1::50]]
    assert [predict(a, t) for t in texts] == [predict(b, t) for t in texts]
    # --assess reports on an existing model with the same split: the trained model's own numbers come back
    from jobs.train_langid import main as train

    again = train(["--catalogues", str(sub), "--assess", str(outs[0]), "--output", str(tmp_path / "assess.json"),
                   "--set", "preprocess.langid_train.min_lang_chars=1000"])
    assert again["holdout"] == report["holdout"] and set(again["holdout"]) == set(report["labels"])


def _han_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(unicodedata.name(c, "").startswith("CJK UNIFIED") for c in letters) / len(letters)


def test_clean_drops_text_under_two_labels_and_mostly_latin_zh(rows):
    it = next(r for r in rows if r["lang"] == "it" and len(r["text"]) > 30)
    zh = next(r for r in rows if r["lang"] == "zh" and "文件" in r["text"] and _han_share(r["text"]) > 0.5)
    # a real zh catalogue string that is mostly an option list, with a few Han characters
    latin_zh = next(r for r in rows if r["lang"] == "zh" and 0 < _han_share(r["text"]) < 0.15)
    units = [("g1", "it", it["text"]), ("g2", "es", it["text"]), ("g3", "zh", "GNU Emacs and Vim"),
             ("g4", "zh", zh["text"]), ("g5", "zh", latin_zh["text"])]
    assert clean(units, {"zh", "ja"}, 0.3) == [("g4", "zh", zh["text"])]
    assert clean(units, {"zh", "ja"}) == [("g4", "zh", zh["text"]), ("g5", "zh", latin_zh["text"])]


def test_catalogue_reader_and_locale_codes():
    assert not [p for p in PACKAGES if RESERVED.match(p)]
    assert RESERVED.match("installation-guide-amd64") and RESERVED.match("manpages-zh")
    assert RESERVED.match("debian-handbook") and RESERVED.match("libreoffice-help-zh-cn")
    assert [locale_lang(x) for x in ("zh_TW", "zh_HK", "pt_BR", "sr@latin", "en_GB", "ca@valencia", "de")] == \
        ["zh", "zh", "pt", None, None, "ca", "de"]
    mo = next((CATALOGUES.parent.parent / "x" / "langid").glob("coreutils/usr/share/locale/it/LC_MESSAGES/*.mo"))
    pairs = dict(read_mo(str(mo)))
    note = next(v for k, v in pairs.items() if k.startswith("\nNOTE: [ honors the --help and --version"))
    assert note.startswith("\nNOTA: [ gestisce le opzioni --help e --version")
    assert clean_string("Usare \"%s --help\" per <b>ulteriori</b> _informazioni.\\n") == \
        'Usare " --help" per ulteriori informazioni.'


def test_missing_inputs_are_a_clear_error(tmp_path):
    from jobs.train_langid import main as train

    with pytest.raises(FileNotFoundError, match="docs.jsonl"):
        train(["--corpus", str(tmp_path / "nowhere"), "--output", str(tmp_path / "m.bin")])
    with pytest.raises(FileNotFoundError, match="samples.jsonl"):
        train(["--catalogues", str(tmp_path / "nowhere"), "--output", str(tmp_path / "m.bin")])


def test_held_out_zh_lines_with_latin_words_stay_zh(model, cfg):
    """Chinese documentation names programs, options and paths in Latin letters. Held-out zh catalogue strings
    that mix such words with Chinese (>= 8 Han characters and a Latin word of >= 3 letters) are labelled zh
    at a passing score (character 1-grams: a Han character on its own is evidence, conf langid_train.minn);
    held-out ja strings with kanji are not labelled zh."""
    tc = cfg["langid_train"]
    rows = [json.loads(line) for line in open(CATALOGUES / "samples.jsonl", encoding="utf-8")]
    rows = [r for r in rows if r["lang"] in ("zh", "ja")]
    units = clean(catalogue_units(rows, dict(cfg["lang_map"] or {}), cfg["unicode_form"]),
                  set(tc["require_cjk"]), float(tc["min_cjk_share"]))
    held = split(units, tc)["holdout"]
    latin, han = re.compile(r"[A-Za-z]{3,}"), re.compile("[\u4e00-\u9fff]")
    threshold = float(cfg["lang_threshold"])
    mixed = [t for t in held["zh"] if latin.search(t) and len(han.findall(t)) >= 8]
    assert len(mixed) >= 100
    right = sum(c == "zh" and s >= threshold for c, s in (predict(model, t) for t in mixed))
    assert right / len(mixed) >= 0.97, right / len(mixed)
    ja = [t for t in held["ja"] if len(han.findall(t)) >= 4]
    assert len(ja) >= 100
    assert sum(predict(model, t)[0] == "zh" for t in ja) / len(ja) <= 0.01
