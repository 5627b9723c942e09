"""Train the AS stage's per-language models, CCNet style: normalise the reference text
(`normalize.normalize_line`), train a SentencePiece model on it, encode it to pieces, and fit a 5-gram
KenLM on the pieces (`lmplz -o 5`, then `build_binary`). Writes `<lang>.sp.model` and `<lang>.arpa.bin`.

The training text is a Wikipedia plain-text dump when `score.train.wiki.<lang>` names one (what Ziya2
and CCNet use), otherwise the sample corpus' reference prose (`score.train.labels`), minus a seeded
held-out share so quality checks can run on text the model never saw.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterable, Iterator

import xxhash

from dataflow.models.lm.normalize import normalize_line, normalize_settings
from dataflow.core.confschema import Bool, Count, Dir, File, Float, Int, List, Map, OneOf, Str, optional_section

# corpus codes -> pipeline codes (DP maps every Chinese variant to zh)
_LANG_ALIASES = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh", "zh-hk": "zh", "zh-sg": "zh"}


class LmplzError(RuntimeError):
    pass


def pipeline_lang(code: str | None) -> str | None:
    if code is None:
        return None
    c = code.strip().lower()
    return _LANG_ALIASES.get(c, c)


def is_heldout(doc_id: str, fraction: float, seed: int) -> bool:
    """Deterministic train/held-out split by a seeded hash of the document id."""
    if fraction <= 0:
        return False
    return xxhash.xxh64_intdigest(f"{seed}:{doc_id}".encode("utf-8")) < fraction * 2**64


def paragraph_lines(text: str, norm: dict) -> Iterator[str]:
    for raw in (text or "").split("\n"):
        line = normalize_line(raw, **norm)
        if line:
            yield line


def _open_text(path: Path):
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if str(path).endswith(".zst"):
        import io

        import zstandard

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8")
    return open(path, encoding="utf-8")


def wiki_texts(path: Path) -> Iterator[str]:
    """A Wikipedia dump as plain text (one paragraph per line) or JSONL with a `text` field
    (cc_net's cirrus dumps, wikiextractor --json)."""
    with _open_text(path) as f:
        for line in f:
            if line.startswith("{"):
                try:
                    yield json.loads(line).get("text") or ""
                    continue
                except json.JSONDecodeError:
                    pass
            yield line


def corpus_texts(docs_jsonl: Path, lang: str, labels: Iterable[str], heldout_fraction: float,
                 seed: int, counts: dict) -> Iterator[str]:
    """Reference docs of one language from the sample corpus, minus the held-out share."""
    labels = set(labels)
    with open(docs_jsonl, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if pipeline_lang(d.get("lang")) != lang or d.get("label") not in labels:
                continue
            if is_heldout(d["id"], heldout_fraction, seed):
                counts["heldout_docs"] = counts.get("heldout_docs", 0) + 1
                continue
            counts["train_docs"] = counts.get("train_docs", 0) + 1
            yield d.get("text") or ""


def write_normalized(texts: Iterable[str], out: Path, norm: dict) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for t in texts:
            for line in paragraph_lines(t, norm):
                f.write(line + "\n")
                n += 1
    return n


def train_sentencepiece(text_file: Path, prefix: Path, tcfg: dict, lang: str) -> Path:
    import sentencepiece as spm

    vocab = tcfg["sp_vocab_size"]
    vocab = vocab.get(lang, max(vocab.values())) if isinstance(vocab, dict) else int(vocab)
    spm.set_random_generator_seed(int(tcfg["seed"]))
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(prefix), vocab_size=int(vocab),
        model_type=tcfg["sp_model_type"], character_coverage=float(tcfg["sp_character_coverage"]),
        input_sentence_size=int(tcfg["sp_input_sentence_size"]), shuffle_input_sentence=True,
        hard_vocab_limit=False, num_threads=1, minloglevel=2)
    return Path(f"{prefix}.model")


def encode_pieces(sp_model: Path, text_file: Path, out: Path) -> int:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    n = 0
    with open(text_file, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
        for line in f:
            pieces = sp.encode(line.rstrip("\n"), out_type=str)
            n += len(pieces)
            o.write(" ".join(pieces) + "\n")
    return n


def kenlm_bin(tcfg: dict, tool: str) -> str:
    """KENLM_BIN (exported by the Makefile) first, then score.train.kenlm_bin, then PATH."""
    for d in (os.environ.get("KENLM_BIN"), tcfg.get("kenlm_bin")):
        if d and os.access(Path(d) / tool, os.X_OK):
            return str(Path(d) / tool)
    found = shutil.which(tool)
    if found:
        return found
    raise FileNotFoundError(f"KenLM's {tool} was not found (KENLM_BIN, score.train.kenlm_bin, PATH): "
                            f"run `make kenlm-tools`")


def run_lmplz(pieces: Path, arpa: Path, tcfg: dict, tmp: Path, log=print) -> bool:
    """`lmplz -o N`; retried with --discount_fallback only when lmplz itself asks for it (tiny or
    very regular corpora make a Kneser-Ney discount fall out of range). Returns whether it was used."""
    cmd = [kenlm_bin(tcfg, "lmplz"), "-o", str(int(tcfg["order"])), "-S", str(tcfg["lmplz_memory"]),
           "-T", str(tmp), "--text", str(pieces), "--arpa", str(arpa)]
    if tcfg.get("prune"):
        cmd += ["--prune", *map(str, tcfg["prune"])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode == 0:
        return False
    if "--discount_fallback" not in p.stderr:
        raise LmplzError(f"lmplz failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    log(f"lmplz asked for --discount_fallback ({_last_error_line(p.stderr)}); retrying with it")
    p = subprocess.run(cmd + ["--discount_fallback"], capture_output=True, text=True)
    if p.returncode != 0:
        raise LmplzError(f"lmplz --discount_fallback failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return True


def _last_error_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if "Exception" in l or "discount" in l.lower()]
    return (lines[0] if lines else stderr.strip().splitlines()[-1]).strip()[:300]


def build_binary(arpa: Path, out: Path, tcfg: dict) -> None:
    p = subprocess.run([kenlm_bin(tcfg, "build_binary"), str(arpa), str(out)], capture_output=True, text=True)
    if p.returncode != 0:
        raise LmplzError(f"build_binary failed ({p.returncode}): {p.stderr.strip()[-2000:]}")


def arpa_counts(arpa: Path) -> dict:
    """n-gram counts from the ARPA header (`ngram 1=...`)."""
    out = {}
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                k, v = line[6:].strip().split("=")
                out[k] = int(v)
            elif line.startswith("\\1-grams"):
                break
    return out


def train_language(lang: str, texts: Iterable[str], out_dir: Path, scfg: dict, log=print) -> dict:
    """Normalise -> SentencePiece -> pieces -> lmplz -> build_binary for one language."""
    tcfg = scfg["train"]
    norm = normalize_settings(scfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # a fixed scratch name: the SentencePiece model records its input path and prefix, so a random
    # temporary name would make reruns differ byte for byte
    tmp = out_dir / f".train-{lang}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        text_file = tmp / "text.txt"
        n_lines = write_normalized(texts, text_file, norm)
        if n_lines == 0:
            raise ValueError(f"no training text for {lang!r}: set score.train.wiki.{lang} or check the corpus labels")
        sp_model = train_sentencepiece(text_file, tmp / f"{lang}.sp", tcfg, lang)
        pieces_file = tmp / "pieces.txt"
        n_pieces = encode_pieces(sp_model, text_file, pieces_file)
        arpa = tmp / f"{lang}.arpa"
        fallback = run_lmplz(pieces_file, arpa, tcfg, tmp, log=log)
        counts = arpa_counts(arpa)
        build_binary(arpa, tmp / f"{lang}.arpa.bin", tcfg)
        shutil.move(str(sp_model), out_dir / f"{lang}.sp.model")
        shutil.move(str(tmp / f"{lang}.arpa.bin"), out_dir / f"{lang}.arpa.bin")
        if tcfg.get("keep_arpa"):
            shutil.move(str(arpa), out_dir / f"{lang}.arpa")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(out_dir / f"{lang}.sp.model")).get_piece_size()
    return {"lines": n_lines, "pieces": n_pieces, "sp_vocab": vocab, "order": int(tcfg["order"]),
            "ngrams": counts, "discount_fallback": fallback, "train_s": round(time.time() - t0, 1),
            "sp_model": str(out_dir / f"{lang}.sp.model"), "lm": str(out_dir / f"{lang}.arpa.bin")}


def train_all(corpus: str | Path, out: str | Path, scfg: dict, langs: Iterable[str] | None = None) -> dict:
    """jobs.train_lm: for each language, train on `score.train.wiki.<lang>` when set, else on the corpus'
    docs.jsonl records with a label in `score.train.labels` minus the seeded held-out share. Writes
    OUT/<lang>.sp.model, OUT/<lang>.arpa.bin and OUT/report.json; returns the report."""
    tcfg, out, docs = scfg["train"], Path(out), Path(corpus) / "docs.jsonl"
    report = {"corpus": str(corpus), "normalize": scfg.get("normalize"), "langs": {}}
    t0 = time.time()
    for lang in langs or scfg["langs"]:
        wiki = (tcfg.get("wiki") or {}).get(lang)
        counts: dict = {}
        if wiki:
            if not Path(wiki).exists():
                raise FileNotFoundError(f"score.train.wiki.{lang} = {wiki} does not exist")
            texts, source = wiki_texts(Path(wiki)), f"wiki:{wiki}"
        else:
            if not docs.exists():
                raise FileNotFoundError(f"{docs} does not exist (run `make data`)")
            texts = corpus_texts(docs, lang, tcfg["labels"], float(tcfg["heldout_fraction"]), int(tcfg["seed"]), counts)
            source = f"corpus:{docs} labels={list(tcfg['labels'])}"
        print(f"[train_lm] {lang}: training on {source}", flush=True)
        info = train_language(lang, texts, out, scfg, log=lambda m: print(f"[train_lm] {lang}: {m}", flush=True))
        info.update(source=source, **counts)
        if not wiki:
            info.update(heldout_fraction=float(tcfg["heldout_fraction"]), seed=int(tcfg["seed"]))
        report["langs"][lang] = info
        print(f"[train_lm] {lang}: {info['lines']} lines, {info['pieces']} pieces, vocab {info['sp_vocab']}, "
              f"ngrams {info['ngrams']}, discount_fallback={info['discount_fallback']}, {info['train_s']} s", flush=True)
    report["wall_s"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"[train_lm] wrote {out}/report.json", flush=True)
    return report


# score.train
TRAIN_SPEC = optional_section({
    "wiki": Map(File(), nullable=True),
    "labels": List(Str(non_empty=True)),
    "heldout_fraction": Float(0, 1),
    "seed": Int(),
    "sp_vocab_size": OneOf(Count(1), Map(Count(1))),
    "sp_model_type": Str(["unigram", "bpe", "char", "word"]),
    "sp_character_coverage": Float(0, 1, min_exclusive=True),
    "sp_input_sentence_size": Count(1),
    "order": Count(1),
    "lmplz_memory": Str(non_empty=True),
    "prune": List(Count(0)),
    "keep_arpa": Bool(),
    "kenlm_bin": Dir(nullable=True),
})
