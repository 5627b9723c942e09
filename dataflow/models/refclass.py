"""The reference classifier (CCNet §3.3 / LLaMA §2.1): a linear fastText classifier of "pages used as
references" (`__label__ref`) against crawl pages (`__label__other`); AS writes its probability of the
reference label as `ref_score`.

Training data (`score.ref_train`): positives and negatives are each a selection of the sample corpus's
`docs.jsonl` records (by `label` and/or `source`) plus any JSONL files (one document per line, a `text`
field) named under `paths`. A document becomes samples of up to `chunk_chars` characters (consecutive lines,
whitespace folded, one fastText line each), so a long word list and a short dictionary entry both yield
samples the size the model later sees. Documents are split train/held-out by a seeded hash of their id
(every chunk of a held-out document is held out); `<model>.json` next to the model holds the held-out
precision/recall of the reference label (per chunk and per document) and the mean score of each class.

A document's `ref_score` is the mean reference probability over its first `max_chunks` chunks (null for a
document with no words).
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Iterable, Iterator, Mapping

from dataflow.core import fs, fsio
from dataflow.core.confschema import Count, File, Float, Int, List, Prob, Str, optional_section

LABEL_REF = "__label__ref"
LABEL_OTHER = "__label__other"


# ------------------------------------------------------------------ text -> samples
def chunks(text: str | None, chunk_chars: int, max_chunks: int | None = None) -> list[str]:
    """Consecutive lines (whitespace folded) joined until a chunk reaches `chunk_chars`; a line longer than
    that is cut. Empty for text without words."""
    out: list[str] = []
    buf: list[str] = []
    size = 0
    for raw in (text or "").split("\n"):
        line = " ".join(raw.split())
        while line:
            take, line = line[:chunk_chars - size], line[chunk_chars - size:]
            buf.append(take)
            size += len(take) + 1
            if size >= chunk_chars:
                out.append(" ".join(buf))
                buf, size = [], 0
                if max_chunks and len(out) >= max_chunks:
                    return out
    if buf:
        out.append(" ".join(buf))
    return out[:max_chunks] if max_chunks else out


def is_heldout(doc_id: str, fraction: float, seed: int) -> bool:
    h = int.from_bytes(hashlib.sha1(f"{seed}\x1f{doc_id}".encode("utf-8")).digest()[:8], "big")
    return h / 2 ** 64 < fraction


# ------------------------------------------------------------------ training data
def selected(doc: Mapping, sel: Mapping) -> bool:
    """A corpus record matches a selection when its label or its source is listed."""
    return doc.get("label") in (sel.get("labels") or ()) or doc.get("source") in (sel.get("sources") or ())


def documents(corpus: str | None, sel: Mapping) -> Iterator[tuple[str, str]]:
    """(id, text) of the selection: matching docs.jsonl records of `corpus`, then every record of the
    JSONL files under `sel.paths` (id = file:line when a record has none)."""
    if corpus and (sel.get("labels") or sel.get("sources")):
        path = fs.join(str(corpus), "docs.jsonl")
        if not fs.exists(path):
            raise FileNotFoundError(f"{path} does not exist (run `make data`)")
        for line in fs.read_text(path).splitlines():
            if line.strip():
                d = json.loads(line)
                if selected(d, sel) and isinstance(d.get("text"), str):
                    yield str(d["id"]), d["text"]
    for p in sel.get("paths") or ():
        if not fs.exists(p):
            raise FileNotFoundError(f"refclass training file {p} does not exist")
        for i, line in enumerate(fs.read_text(p).splitlines()):
            if line.strip():
                d = json.loads(line)
                if not isinstance(d.get("text"), str):
                    raise ValueError(f"{p}:{i + 1}: a training record needs a string `text` field")
                yield str(d.get("id") or f"{p}:{i + 1}"), d["text"]


def dataset(corpus: str | None, tc: Mapping) -> dict:
    """{'train': [(label, chunk)], 'heldout': [(label, doc_id, [chunks])], 'docs': {label: n}}; a document
    selected as both positive and negative is label noise and is left out of both."""
    pos = dict(documents(corpus, tc["positives"]))
    neg = dict(documents(corpus, tc["negatives"]))
    both = set(pos) & set(neg)
    frac, seed, cc = float(tc["heldout_fraction"]), int(tc["seed"]), int(tc["chunk_chars"])
    train, held = [], []
    counts = {LABEL_REF: 0, LABEL_OTHER: 0}
    for label, docs in ((LABEL_REF, pos), (LABEL_OTHER, neg)):
        for doc_id in sorted(docs):
            if doc_id in both:
                continue
            cs = chunks(docs[doc_id], cc)
            if not cs:
                continue
            counts[label] += 1
            if is_heldout(doc_id, frac, seed):
                held.append((label, doc_id, cs))
            else:
                train += [(label, c) for c in cs]
    return {"train": train, "heldout": held, "docs": counts, "overlap": len(both)}


# ------------------------------------------------------------------ model
# fastText trains in a child process: the same data and seed then give the same model whatever the calling
# process has loaded (in the full test suite, in-process training diverged where `make models` on the same
# data did not). A child that still diverges (fastText's "Encountered NaN") exits with DIVERGED and the fit
# is retried at half the learning rate, up to MAX_HALVINGS times; the report records the rate used.
DIVERGED = 3
MAX_HALVINGS = 3
_CHILD = """
import json, sys
import fasttext
p = json.loads(sys.argv[1])
try:
    model = fasttext.train_supervised(**p["args"])
except RuntimeError as e:
    if "NaN" in str(e):
        sys.exit(%d)
    raise
model.save_model(p["out"])
""" % DIVERGED


def _train_child(args: dict, out: str) -> bool:
    """Train in a fresh interpreter into the local file `out`; False when fastText diverged."""
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps({"args": args, "out": out})],
                       capture_output=True, text=True)
    if r.returncode == DIVERGED:
        return False
    if r.returncode != 0:
        raise RuntimeError(f"refclass: fastText training failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
    return True


def fit(train: list[tuple[str, str]], tc: Mapping, out: str):
    """Write the fastText model to `out`, a path or any URI (seeded shuffle, one thread: the same data give the
    same model); returns (model, learning rate used). fastText reads and writes local files only: the training
    file and the model live in a private temporary directory, and the model is streamed to `out` through fs."""
    rows = sorted((f"{label} {text}" for label, text in train),
                  key=lambda r: hashlib.sha1(f"{tc['seed']}\x1f{r}".encode("utf-8")).digest())
    lr = float(tc["lr"])
    with tempfile.TemporaryDirectory(prefix="ziya2-refclass-") as work:
        name, local = os.path.join(work, "train.txt"), os.path.join(work, "model.bin")
        fs.write_text(name, "\n".join(rows) + "\n")
        args = {"input": name, "dim": int(tc["dim"]), "minn": int(tc["minn"]), "maxn": int(tc["maxn"]),
                "wordNgrams": int(tc["word_ngrams"]), "epoch": int(tc["epoch"]), "bucket": int(tc["bucket"]),
                "loss": "softmax", "thread": 1, "seed": int(tc["seed"]), "verbose": 0}
        for _ in range(MAX_HALVINGS + 1):
            if _train_child({**args, "lr": lr}, local):
                model = load_model(local)
                fsio.from_local(local, fs.normalize(str(out)))
                return model, lr
            print(f"refclass: fastText diverged (NaN) at lr {lr}; retrying at {lr / 2}", file=sys.stderr)
            lr /= 2
    raise RuntimeError(f"refclass: fastText diverged (NaN) down to lr {lr * 2}; "
                       "lower score.ref_train.lr or check the training data")


def load_model(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None   # the load-time deprecation notice, once per worker
    return fasttext.load_model(path)


def chunk_probabilities(model, cs: list[str]) -> list[float]:
    """P(reference) of each chunk (fastText's softmax, clipped to [0, 1])."""
    if not cs:
        return []
    labels, probs = model.predict(cs, k=2, threshold=0.0)
    out = []
    for ls, ps in zip(labels, probs):
        p = dict(zip(ls, (float(x) for x in ps))).get(LABEL_REF)
        if p is None:                 # only the other label came back: its complement
            p = 1.0 - dict(zip(ls, (float(x) for x in ps))).get(LABEL_OTHER, 1.0)
        out.append(min(1.0, max(0.0, p)))
    return out


def ref_score(model, text: str | None, chunk_chars: int, max_chunks: int) -> float | None:
    """A document's reference probability: the mean over its first `max_chunks` chunks (None: no words)."""
    ps = chunk_probabilities(model, chunks(text, chunk_chars, max_chunks))
    return sum(ps) / len(ps) if ps else None


def _pr(pairs: Iterable[tuple[bool, float]], threshold: float) -> dict:
    pairs = list(pairs)
    tp = sum(1 for y, s in pairs if y and s >= threshold)
    fp = sum(1 for y, s in pairs if not y and s >= threshold)
    pos = sum(1 for y, _ in pairs if y)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / pos if pos else 0.0
    return {"n": len(pairs), "positives": pos, "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def evaluate(model, heldout: list, max_chunks: int, threshold: float = 0.5) -> dict:
    """Held-out precision/recall of the reference label at `threshold`, per chunk and per document
    (the document score AS writes), and the mean document score of each class."""
    per_chunk, per_doc = [], []
    for label, _id, cs in heldout:
        y = label == LABEL_REF
        per_chunk += [(y, p) for p in chunk_probabilities(model, cs)]
        ps = chunk_probabilities(model, cs[:max_chunks])
        per_doc.append((y, sum(ps) / len(ps)))
    ref = [s for y, s in per_doc if y]
    other = [s for y, s in per_doc if not y]
    return {"threshold": threshold, "chunks": _pr(per_chunk, threshold), "documents": _pr(per_doc, threshold),
            "mean_score": {"ref": round(statistics.fmean(ref), 4) if ref else None,
                           "other": round(statistics.fmean(other), 4) if other else None}}


def train(corpus: str | None, output: str, cfg: Mapping) -> dict:
    """Select, split, fit, evaluate; writes the model and `<output>.json` to `output` (a path or any URI) through
    fs. `cfg` is the `score` section."""
    tc = cfg["ref_train"]
    data = dataset(corpus, tc)
    labels = {lb for lb, _ in data["train"]}
    if labels != {LABEL_REF, LABEL_OTHER}:
        raise ValueError(f"refclass: training data needs both classes, got {sorted(labels)} "
                         f"(documents per class {data['docs']}); check score.ref_train positives/negatives")
    out = fs.normalize(str(output))
    model, lr_used = fit(data["train"], tc, out)
    report = {"lr_used": lr_used, "labels": [LABEL_REF, LABEL_OTHER], "documents": data["docs"], "overlap_left_out": data["overlap"],
              "train_chunks": {lb: sum(1 for x, _ in data["train"] if x == lb) for lb in (LABEL_REF, LABEL_OTHER)},
              "heldout_documents": {lb: sum(1 for x, _i, _c in data["heldout"] if x == lb)
                                    for lb in (LABEL_REF, LABEL_OTHER)},
              "heldout": evaluate(model, data["heldout"], int(cfg["ref_max_chunks"])),
              "corpus": str(corpus) if corpus else None, "config": dict(tc)}
    fs.write_text(out + ".json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


# ------------------------------------------------------------------ the driver's check
def model_path(cfg: Mapping) -> str | None:
    """The reference model AS loads, or None when there is none to load: `ref_model` null, or absent while
    `ref_required` is false. Absent while required is a configuration error, raised on the driver before
    any task runs (`make models` trains it)."""
    path = cfg.get("ref_model")
    if not path:
        if cfg.get("ref_required"):
            raise FileNotFoundError("score.ref_required is true but score.ref_model is null")
        return None
    if fs.exists(path):
        return str(path)
    if cfg.get("ref_required"):
        raise FileNotFoundError(f"score: reference classifier {path} does not exist (run `make models`, or set "
                                f"score.ref_required=false to write ref_score as null)")
    return None


# Two texts any working reference model scores apart: plain prose and a word list. A model file cut short
# still loads (fastText reads a zero output matrix) and gives every text P(reference) = 0.5.
SMOKE_TEXTS = ("The children walked along the river after school and talked about the books they had read.",
               "aardvark abacus abandon abandoned abase abash abate abbey abbot abbreviate abdicate abdomen")


def check_model(path: str) -> None:
    """Load the reference model and score SMOKE_TEXTS; raise ValueError naming the file when it does not load,
    lacks the two labels, or scores both texts alike."""
    hint = "a truncated or wrong file? Rebuild it with `make models` (or set score.ref_model)"
    try:
        model = load_model(fs.local_path(path))
    except Exception as e:          # fastText: ValueError "... has wrong file format!"
        raise ValueError(f"score: reference classifier {path} does not load ({str(e).strip()[:200]}): {hint}") from None
    labels = set(model.get_labels())
    if labels != {LABEL_REF, LABEL_OTHER}:
        raise ValueError(f"score: reference classifier {path} has labels {sorted(labels)}, not "
                         f"{[LABEL_OTHER, LABEL_REF]}: {hint}")
    a, b = chunk_probabilities(model, list(SMOKE_TEXTS))
    if a == b:
        raise ValueError(f"score: reference classifier {path} gives prose and a word list the same score ({a:.4f}): "
                         f"{hint}")


_EXAMPLES = optional_section({"labels": List(Str(non_empty=True)), "sources": List(Str(non_empty=True)),
                              "paths": List(File())})
# score.ref_train
TRAIN_SPEC = optional_section({
    "positives": _EXAMPLES,
    "negatives": _EXAMPLES,
    "chunk_chars": Count(50),
    "heldout_fraction": Prob(),
    "seed": Int(),
    "dim": Count(1), "epoch": Count(1), "lr": Float(0, min_exclusive=True), "word_ngrams": Count(1),
    "minn": Count(0), "maxn": Count(0), "bucket": Count(0),
})
