"""Train the AS stage's per-language models, CCNet style: normalise the reference text
(`normalize.normalize_line`), train a SentencePiece model on it, encode it to pieces, and fit a 5-gram
KenLM on the pieces (`lmplz -o 5`, then `build_binary`). Writes `<lang>.sp.model` and `<lang>.arpa.bin`.

The training text is a Wikipedia plain-text dump when `score.train.wiki.<lang>` names one (what Ziya2
and CCNet use), otherwise the sample corpus' reference prose (`score.train.labels`), minus a seeded
held-out share so quality checks can run on text the model never saw.

Inputs (the corpus, the wiki dumps) are read and products written by URI through `dataflow.core.fs` (a path or
s3://, ...; DESIGN §9). SentencePiece, lmplz and build_binary read and write local files only, so each language
is trained in a private temporary directory and its products are streamed to the output from there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

import xxhash

from dataflow.core import fs, fsio
from dataflow.ingest.decode import codec_for_name, open_decoded
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


_CHUNK = 1 << 20   # decoded bytes read at a time from an input file


def text_lines(uri: str | os.PathLike) -> Iterator[str]:
    """The lines (without their newline) of a UTF-8 text file at `uri` (any store), decompressed by its name
    (.gz, .zst, .bz2, .xz) through dataflow.ingest.decode, streamed."""
    uri = str(uri)
    with open_decoded(fs.open_stream(uri), codec_for_name(uri), cap=None) as f:
        rest = b""
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")   # b"\n" never occurs inside a UTF-8 sequence
            for line in lines:
                yield line.decode("utf-8")
        if rest:
            yield rest.decode("utf-8")


def wiki_texts(uri: str | os.PathLike) -> Iterator[str]:
    """A Wikipedia dump (a path or URI) as plain text (one paragraph per line) or JSONL with a `text` field
    (cc_net's cirrus dumps, wikiextractor --json)."""
    for line in text_lines(uri):
        if line.startswith("{"):
            try:
                yield json.loads(line).get("text") or ""
                continue
            except json.JSONDecodeError:
                pass
        yield line


def corpus_texts(docs_jsonl: str | os.PathLike, lang: str, labels: Iterable[str], heldout_fraction: float,
                 seed: int, counts: dict) -> Iterator[str]:
    """Reference docs of one language from the sample corpus (docs.jsonl, a path or URI), minus the held-out
    share."""
    labels = set(labels)
    for line in text_lines(docs_jsonl):
        if not line.strip():
            continue
        d = json.loads(line)
        if pipeline_lang(d.get("lang")) != lang or d.get("label") not in labels:
            continue
        if is_heldout(d["id"], heldout_fraction, seed):
            counts["heldout_docs"] = counts.get("heldout_docs", 0) + 1
            continue
        counts["train_docs"] = counts.get("train_docs", 0) + 1
        yield d.get("text") or ""


def write_normalized(texts: Iterable[str], out: str | os.PathLike, norm: dict) -> int:
    """The normalised lines of `texts` into the file `out` (SentencePiece's and lmplz's local input); the lines."""
    n = 0
    with fs.open_output(str(out)) as f:
        for t in texts:
            for line in paragraph_lines(t, norm):
                f.write((line + "\n").encode("utf-8"))
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
    with open(text_file, encoding="utf-8") as f, fs.open_output(str(out)) as o:
        for line in f:
            pieces = sp.encode(line.rstrip("\n"), out_type=str)
            n += len(pieces)
            o.write((" ".join(pieces) + "\n").encode("utf-8"))
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


def portable_model(sp_model: str | os.PathLike, lang: str) -> bytes:
    """The SentencePiece model without the local paths its trainer recorded (`trainer_spec.input` and
    `model_prefix` name the temporary directory): the same text gives the same bytes wherever it was trained."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    with open(sp_model, "rb") as f:
        proto.ParseFromString(f.read())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.input.append("text.txt")
    proto.trainer_spec.model_prefix = f"{lang}.sp"
    return proto.SerializeToString()


def train_language(lang: str, texts: Iterable[str], out_dir: str, scfg: dict, log=print) -> dict:
    """Normalise -> SentencePiece -> pieces -> lmplz -> build_binary for one language, in a private temporary
    directory; `<lang>.sp.model`, `<lang>.arpa.bin` (and with keep_arpa `<lang>.arpa`) are then written to
    `out_dir` (a path or any URI) through fs."""
    import sentencepiece as spm

    tcfg = scfg["train"]
    norm = normalize_settings(scfg)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"ziya2-lm-{lang}-") as work:
        tmp = Path(work)
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
        model = portable_model(sp_model, lang)
        fs.write_bytes(fs.join(out_dir, f"{lang}.sp.model"), model)
        fsio.from_local(str(tmp / f"{lang}.arpa.bin"), fs.join(out_dir, f"{lang}.arpa.bin"))
        if tcfg.get("keep_arpa"):
            fsio.from_local(str(arpa), fs.join(out_dir, f"{lang}.arpa"))
    vocab = spm.SentencePieceProcessor(model_proto=model).get_piece_size()
    return {"lines": n_lines, "pieces": n_pieces, "sp_vocab": vocab, "order": int(tcfg["order"]),
            "ngrams": counts, "discount_fallback": fallback, "train_s": round(time.time() - t0, 1),
            "sp_model": fs.join(out_dir, f"{lang}.sp.model"), "lm": fs.join(out_dir, f"{lang}.arpa.bin")}


def train_all(corpus: str | os.PathLike, out: str | os.PathLike, scfg: dict,
              langs: Iterable[str] | None = None) -> dict:
    """jobs.train_lm: for each language, train on `score.train.wiki.<lang>` when set, else on the corpus'
    docs.jsonl records with a label in `score.train.labels` minus the seeded held-out share. Writes
    OUT/<lang>.sp.model, OUT/<lang>.arpa.bin and OUT/report.json (OUT, the corpus and the dumps: paths or
    any URI); returns the report."""
    tcfg, out = scfg["train"], fs.normalize(str(out))
    docs = fs.join(fs.normalize(str(corpus)), "docs.jsonl")
    report = {"corpus": str(corpus), "normalize": scfg.get("normalize"), "langs": {}}
    t0 = time.time()
    for lang in langs or scfg["langs"]:
        wiki = (tcfg.get("wiki") or {}).get(lang)
        counts: dict = {}
        if wiki:
            if not fs.exists(str(wiki)):
                raise FileNotFoundError(f"score.train.wiki.{lang} = {wiki} does not exist")
            texts, source = wiki_texts(wiki), f"wiki:{wiki}"
        else:
            if not fs.exists(docs):
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
    fs.write_text(fs.join(out, "report.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"[train_lm] wrote {fs.join(out, 'report.json')}", flush=True)
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
