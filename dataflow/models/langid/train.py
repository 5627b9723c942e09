"""Training and evaluation of the fastText language-ID model (`make models`; jobs/train_langid.py wires it).

Text comes from two labelled sets that `make data` builds from packages:
- the translation catalogues (tools/corpus/langid_sources.py: samples.jsonl, one string per line, ~110
  languages), where each translation of one source string shares a `group`;
- the sample corpus's docs.jsonl (paragraphs of debian-reference, fortunes, ...), one group per paragraph.

Per language, units (strings, paragraphs) are split train/holdout by a seeded hash of their group, so every
translation of a held-out string is held out in every language. A language is trained when it has at least
`min_lang_chars` of training text; the others (and `exclude_langs`) are *unknown* languages whose text checks
that an untrained language does not pass as a kept one. Training samples are each unit (short text) and
paragraphs of consecutive units (>= `paragraph_chars`), capped per language at `max_train_chars` (balance).

Inputs are read and the model and its report written by URI through `dataflow.core.fs` (a path or s3://, ...;
DESIGN §9); fastText itself trains on local files in a private temporary directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter, defaultdict
from typing import Iterator

from dataflow.core import fs, fsio
from dataflow.models.langid.model import LABEL_PREFIX, load_model, predict
from dataflow.core.normalize import normalize
from dataflow.core.text import CJK_RE, cjk_count
from dataflow.core.confschema import Count, Float, Int, Langs, List, Prob, Str, optional_section


def holdout(group: str, fraction: float, seed: int) -> bool:
    """Seeded, stable split: the same group is held out in every language and every run."""
    h = int.from_bytes(hashlib.sha1(f"{seed}\x1f{group}".encode("utf-8")).digest()[:8], "big")
    return h / 2 ** 64 < fraction


def corpus_units(docs, lang_map: dict, form: str | None, domains: set):
    """(group, label, text) per paragraph of the sample corpus's labelled documents of prose `domains`
    (code, math and word lists carry the corpus's language label but are not samples of that language)."""
    for d in docs:
        lang, text = d.get("lang"), d.get("text")
        if not lang or not isinstance(text, str) or d.get("domain") not in domains:
            continue
        for para in normalize(text, form=form).split("\n\n"):
            para = " ".join(para.split())
            if para:
                yield hashlib.sha1(para.encode("utf-8")).hexdigest()[:16], lang_map.get(lang, lang), para


def catalogue_units(rows, lang_map: dict, form: str | None):
    """(group, label, text) per translated catalogue string (samples.jsonl of tools/corpus/langid_sources)."""
    for r in rows:
        text = " ".join(normalize(r["text"], form=form).split())
        if text:
            yield r["group"], lang_map.get(r["lang"], r["lang"]), text


def cjk_share(text: str) -> float:
    """Share of CJK characters (dataflow.core.text.CJK_RANGES) among the letters of `text` (0.0 without letters)."""
    letters = sum(c.isalpha() for c in text)
    return cjk_count(text) / letters if letters else 0.0


def clean(units, require_cjk: set, min_cjk_share: float = 0.0) -> list[tuple[str, str, str]]:
    """Drop label noise: a text that occurs under two languages (an untranslated passage, a command line)
    teaches nothing, and a zh/ja unit whose letters are mostly Latin (an English passage left in a
    translated manual, an option list) is not a zh/ja sample."""
    units = list(units)
    labels: dict = defaultdict(set)
    for _g, label, text in units:
        labels[text].add(label)
    return [(g, label, text) for g, label, text in units
            if len(labels[text]) == 1 and (label not in require_cjk
                                           or (CJK_RE.search(text) is not None
                                               and cjk_share(text) >= min_cjk_share))]


def _runs(texts: list[str], paragraph_chars: int):
    """Consecutive texts grouped until a group reaches paragraph_chars (a trailing short group is dropped)."""
    buf: list[str] = []
    size = 0
    for t in texts:
        buf.append(t)
        size += len(t) + 1
        if size >= paragraph_chars:
            yield buf
            buf, size = [], 0


def samples(texts: list[str], min_chars: int, paragraph_chars: int) -> list[str]:
    """Each text of >= min_chars (short-text samples) and paragraphs joined from consecutive texts."""
    return [t for t in texts if len(t) >= min_chars] + \
        [" ".join(run) for run in _runs(texts, paragraph_chars) if len(run) > 1]


def paragraphs(texts: list[str], paragraph_chars: int) -> list[str]:
    """Paragraph-length evaluation text: consecutive texts joined until >= paragraph_chars."""
    return [" ".join(run) for run in _runs(texts, paragraph_chars)]


def split(units, tc: dict) -> dict:
    """{'train': {lang: [text]}, 'holdout': {lang: [text]}, 'unknown': {lang: [text]}} (texts capped,
    in group-hash order so the choice is stable)."""
    seed, frac = int(tc["seed"]), float(tc["holdout_fraction"])
    by_lang: dict = defaultdict(list)
    for g, label, text in units:
        by_lang[label].append((hashlib.sha1(f"{seed}\x1f{g}".encode("utf-8")).digest(), g, text))
    out: dict = {"train": {}, "holdout": {}, "unknown": {}}
    exclude = set(tc["exclude_langs"])
    for lang in sorted(by_lang):
        rows = sorted(by_lang[lang])
        train = [t for _h, g, t in rows if not holdout(g, frac, seed)]
        hold = [t for _h, g, t in rows if holdout(g, frac, seed)]
        train = _cap(train, int(tc["max_train_chars"]))
        hold = _cap(hold, int(tc["max_holdout_chars"]))
        if lang in exclude or sum(map(len, train)) < int(tc["min_lang_chars"]):
            out["unknown"][lang] = _cap(train + hold, int(tc["max_holdout_chars"]))
        else:
            out["train"][lang], out["holdout"][lang] = train, hold
    return out


def _cap(texts: list[str], max_chars: int) -> list[str]:
    out, used = [], 0
    for t in texts:
        if used >= max_chars:
            break
        out.append(t)
        used += len(t)
    return out


def jsonl_records(uri: str) -> Iterator[dict]:
    """The records of a JSONL file at `uri` (any store), streamed line by line through fs."""
    import io

    if not fs.exists(uri):
        raise FileNotFoundError(f"{uri} does not exist (run `make data`)")
    with fs.open_stream(uri) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        for ln in f:
            if ln.strip():
                yield json.loads(ln)


def load_units(corpus: str | None, catalogues: str | None, lang_map: dict, form: str | None,
               require_cjk: set, domains: set, min_cjk_share: float = 0.0) -> list:
    """Labelled units of `corpus`/docs.jsonl and `catalogues`/samples.jsonl (directories: paths or URIs)."""
    units: list = []
    if corpus:
        units += corpus_units(jsonl_records(fs.join(str(corpus), "docs.jsonl")), lang_map, form, domains)
    if catalogues:
        units += catalogue_units(jsonl_records(fs.join(str(catalogues), "samples.jsonl")), lang_map, form)
    return clean(units, require_cjk, min_cjk_share)


def fit(train: dict, tc: dict, out: str):
    """Write the fastText model to `out` (a path or any URI; seeded, one thread: the same data give the same
    model). fastText reads and writes local files only: it trains in a private temporary directory and the
    model is streamed to `out` through fs."""
    import fasttext

    rows = []
    for lang, texts in train.items():
        rows += [f"{LABEL_PREFIX}{lang} {s}" for s in samples(texts, int(tc["min_sample_chars"]),
                                                             int(tc["paragraph_chars"]))]
    rows.sort(key=lambda r: hashlib.sha1(f"{tc['seed']}\x1f{r}".encode("utf-8")).digest())  # seeded shuffle
    with tempfile.TemporaryDirectory(prefix="ziya2-langid-") as work:
        train_file, model_file = os.path.join(work, "train.txt"), os.path.join(work, "model.bin")
        fs.write_text(train_file, "\n".join(rows) + "\n")
        model = fasttext.train_supervised(input=train_file, dim=int(tc["dim"]), minn=int(tc["minn"]),
                                          maxn=int(tc["maxn"]), wordNgrams=int(tc["word_ngrams"]),
                                          epoch=int(tc["epoch"]), lr=float(tc["lr"]), bucket=int(tc["bucket"]),
                                          loss=str(tc["loss"]), thread=int(tc["thread"]), seed=int(tc["seed"]),
                                          verbose=0)
        model.save_model(model_file)
        fsio.from_local(model_file, fs.normalize(str(out)))
    return model, len(rows)


def evaluate(model, data: dict, tc: dict, threshold: float, keep: list[str]) -> dict:
    """Per-language precision/recall/F1 on held-out paragraphs (a prediction under `threshold` counts as no
    answer), short-text accuracy on held-out single units, and for unknown languages the share of paragraphs
    that pass as a kept language (label in `keep`, score >= threshold)."""
    pc = int(tc["paragraph_chars"])
    tp, fp, n = Counter(), Counter(), Counter()
    line_ok, line_n = Counter(), Counter()
    for lang, texts in data["holdout"].items():
        for p in paragraphs(texts, pc):
            pred, score = predict(model, p)
            n[lang] += 1
            if score >= threshold:
                if pred == lang:
                    tp[lang] += 1
                else:
                    fp[pred] += 1
        for t in texts:
            if len(t) >= int(tc["min_sample_chars"]):
                line_n[lang] += 1
                line_ok[lang] += predict(model, t)[0] == lang
    per = {}
    for lang in sorted(n):
        p = tp[lang] / (tp[lang] + fp[lang]) if tp[lang] + fp[lang] else 0.0
        r = tp[lang] / n[lang]
        per[lang] = {"paragraphs": n[lang], "precision": round(p, 4), "recall": round(r, 4),
                     "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                     "lines": line_n[lang], "line_accuracy": round(line_ok[lang] / max(1, line_n[lang]), 4)}
    unknown = {}
    for lang, texts in data["unknown"].items():
        paras = paragraphs(texts, pc)
        if not paras:
            continue
        preds = [predict(model, p) for p in paras]
        passed = [(c, s) for c, s in preds if c in keep and s >= threshold]
        unknown[lang] = {"paragraphs": len(paras), "passed_as_kept": len(passed),
                         "max_kept_score": round(max((s for c, s in preds if c in keep), default=0.0), 4),
                         "top": Counter(c for c, _ in preds).most_common(3)}
    return {"holdout": per, "unknown": unknown}


def markdown(report: dict) -> str:
    """The per-language table for docs/preprocess.md."""
    rows = ["| lang | held-out paragraphs | precision | recall | F1 | lines | line accuracy |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for lang, m in report["holdout"].items():
        rows.append(f"| {lang} | {m['paragraphs']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
                    f"| {m['lines']} | {m['line_accuracy']:.3f} |")
    rows += ["", "| untrained language | paragraphs | passed as a kept language | highest kept-language score |"
             " top labels |", "|---|---:|---:|---:|---|"]
    for lang, m in report["unknown"].items():
        top = ", ".join(f"{c} {k}" for c, k in m["top"])
        rows.append(f"| {lang} | {m['paragraphs']} | {m['passed_as_kept']} | {m['max_kept_score']:.3f} | {top} |")
    return "\n".join(rows) + "\n"


def _data(corpus: str | None, catalogues: str | None, cfg: dict) -> dict:
    tc = cfg["langid_train"]
    units = load_units(corpus, catalogues, dict(cfg.get("lang_map") or {}), cfg.get("unicode_form") or None,
                       set(tc["require_cjk"]), set(tc["corpus_domains"]), float(tc["min_cjk_share"]))
    return split(units, tc)


def assess(corpus: str | None, catalogues: str | None, model_path: str, cfg: dict) -> dict:
    """The held-out report for an existing model (e.g. lid.176.ftz) on the same split; `lang_map` applies."""

    lang_map = dict(cfg.get("lang_map") or {})
    if fs.is_local(model_path):
        model = load_model(fs.local_path(model_path))
    else:   # fastText loads local files only: a private copy, read into memory, then removed
        with tempfile.TemporaryDirectory(prefix="ziya2-langid-") as work:
            local = os.path.join(work, fs.basename(model_path))
            fsio.to_local([model_path], local)
            model = load_model(local)

    class Mapped:  # predict() folds codes with lang_map; evaluate() calls it without one
        def predict(self, text, k=1):
            labels, probs = model.predict(text, k=k)
            return [LABEL_PREFIX + lang_map.get(lb[len(LABEL_PREFIX):], lb[len(LABEL_PREFIX):]) for lb in labels], probs

    return evaluate(Mapped(), _data(corpus, catalogues, cfg), cfg["langid_train"], float(cfg["lang_threshold"]),
                    list(cfg["keep_langs"]))


def train(corpus: str | None, catalogues: str | None, output: str, cfg: dict) -> dict:
    """Load, split, fit, evaluate; writes the model and `<output>.json` (the report) to `output`, a path or any
    URI, through fs. `cfg` is `preprocess`."""
    tc = cfg["langid_train"]
    data = _data(corpus, catalogues, cfg)
    if len(data["train"]) < 2 or not any(data["holdout"].values()):
        raise ValueError(f"too few labelled languages to train on ({sorted(data['train'])})")
    out = fs.normalize(str(output))
    model, n_rows = fit(data["train"], tc, out)
    ev = evaluate(model, data, tc, float(cfg["lang_threshold"]), list(cfg["keep_langs"]))
    report = {"labels": sorted(lb[len(LABEL_PREFIX):] for lb in model.get_labels()), "train_samples": n_rows,
              "train_chars": {lang: sum(map(len, t)) for lang, t in data["train"].items()},
              **ev, "sources": {"corpus": corpus, "catalogues": catalogues}, "config": tc}
    fs.write_text(out + ".json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _minn_le_maxn(v: dict, key: str) -> list[str]:
    if "minn" in v and "maxn" in v and v["minn"] > v["maxn"]:
        return [f"{key}.minn: expected <= maxn ({v['maxn']}), got {v['minn']}"]
    return []


# preprocess.langid_train
TRAIN_SPEC = optional_section({
    "require_cjk": Langs(), "min_sample_chars": Count(1), "holdout_fraction": Float(0, 1, min_exclusive=True),
    "seed": Int(), "dim": Count(1), "minn": Count(0), "maxn": Count(0), "word_ngrams": Count(1),
    "epoch": Count(1), "lr": Float(0, min_exclusive=True), "bucket": Count(1), "thread": Count(1),
    "loss": Str(["softmax", "ova", "hs"]), "paragraph_chars": Count(1), "max_train_chars": Count(1),
    "max_holdout_chars": Count(1), "min_lang_chars": Count(0), "exclude_langs": Langs(),
    "corpus_domains": List(Str(non_empty=True)), "min_cjk_share": Prob(),
}, extra=_minn_le_maxn)
