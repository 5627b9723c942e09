"""The command lines of the jobs that are not stages of the factory: the mixer (`jobs.mix`) and the model
trainers (`jobs.train_tokenizer`, `jobs.expand_vocab`, `jobs.train_langid`, `jobs.train_lm`, `jobs.refclass`).

Each function takes the job's argv and returns what the job's `main` returns; `jobs/<name>.py` is a shim that
calls it. The work itself lives in dataflow.trainset (mixing) and dataflow.models (training); this module only
parses the arguments, loads the pipeline configuration (`dataflow.pipeline.conf.load_conf`) and wires them up,
so neither layer reads the configuration file itself.
"""
from __future__ import annotations

import argparse
import json

from dataflow.core import fs
from dataflow.core.cli import dump, stage_argparser
from dataflow.core.config import DEFAULT_CONF, section
from dataflow.core.recipes import default_type
from dataflow.core.spark import get_session
from dataflow.models import refclass as refclass_model
from dataflow.models.langid import train as langid_train
from dataflow.models.lm.train import train_all
from dataflow.models.tokenizer import read_documents
from dataflow.models.tokenizer.expand import expand
from dataflow.models.tokenizer.train import train
from dataflow.pipeline.conf import load_conf
from dataflow.trainset import mix as mixer

# ---------------------------------------------------------------- jobs.mix
MIX_DOC = """Build the three training stages from tokenized data: per-source sampling and epochs, packing, shards
and manifests (the trainer's input).

  python -m jobs.mix --conf conf/mixer.yaml --output build/runs/demo/mix \
      [--input pretrain=build/runs/demo/tokenized/pretrain supervised=...] [--tokenizer PATH] \
      [--stages 1 2] [--set pack.seq_len=512 ...]

Writes OUT/stage{N}/manifest.json, OUT/stage{N}/shards/part-XXXXX.parquet (rows of exactly pack.seq_len
tokens), OUT/stage{N}/{data,rejected,stats.json,_SUCCESS} (per-example accounting: packed or rejected with a
reason) and OUT/manifest.json listing the stage manifests in order. See docs/pack.md for the contract.
"""


def mix(argv: list[str] | None = None) -> dict:
    """jobs.mix: {"top": the top-level manifest, "stages": {N: stage manifest}}."""
    ap = argparse.ArgumentParser(prog="mix", description=MIX_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", default="conf/mixer.yaml", metavar="YAML", help="mixer configuration (default: conf/mixer.yaml)")
    ap.add_argument("--output", "-o", required=True, metavar="OUT", help="output directory (stage1/ stage2/ stage3/ manifest.json)")
    ap.add_argument("--input", "-i", nargs="*", default=[], metavar="NAME=PATH",
                    help="override a named input of the mixer conf (a jobs.encode output directory)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model the inputs were tokenized with (default: the conf's)")
    ap.add_argument("--pipeline-conf", default=None, help="pipeline YAML whose `pack` and `spark` sections apply (default: the mixer conf's pipeline_conf)")
    ap.add_argument("--stages", nargs="*", type=int, default=None, help="build only these stages (default: all)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a mixer value, e.g. --set seed=7; `pack.<key>=...` (pack.seq_len) and "
                         "`spark.<key>=...` override the pipeline conf")
    ap.add_argument("--verbose", "-v", action="store_true", help="Spark's own log lines and progress bars")
    ap.add_argument("--force", action="store_true", help="accepted for symmetry with `make pipeline`; the job always reruns")
    args = ap.parse_args(argv)

    mcfg, cfg = mixer.load_all(args.conf, args.overrides, args.input, args.tokenizer, args.pipeline_conf,
                               load_pipeline=load_conf)
    spark = get_session(cfg, app_name="ziya2-mix", verbose=args.verbose)
    res = mixer.mix(spark, mcfg, cfg["pack"], args.output, stages=args.stages, default_type=default_type(cfg))
    for n, m in sorted(res["stages"].items()):
        print(f"[mix] stage {n}: {m['rows']} rows x {m['seq_len']}, efficiency {m['efficiency']}, "
              f"tokens {dump(m['tokens']).replace(chr(10), '')}", flush=True)
    return res


# ---------------------------------------------------------------- jobs.train_tokenizer
TRAIN_TOKENIZER_DOC = """Train a SentencePiece BPE tokenizer (LLaMA-2 settings: split_digits, byte_fallback) from a seeded
sample of pipeline output.

  python -m jobs.train_tokenizer --input build/runs/pipeline/dedup --output build/models/tokenizer \
      [--set tokenizer.train.vocab_size=8000]

Writes OUT/tokenizer.model, OUT/tokenizer.vocab, OUT/vocab_report.{json,md} and OUT/train_sentences.txt
(the sampled lines the trainer read); OUT may be a path or any URI (s3://...). Settings: the `tokenizer.train`
section of conf/pipeline.yaml.
"""


def train_tokenizer(argv: list[str] | None = None) -> dict:
    """jobs.train_tokenizer: the vocabulary report."""
    ap = stage_argparser("train_tokenizer", TRAIN_TOKENIZER_DOC,
                         input_help="pipeline output (stage dirs / Parquet with `text`) or JSONL files with `text`")
    args = ap.parse_args(argv)
    cfg = load_conf(args.conf, args.overrides)
    tcfg = section(section(cfg, "tokenizer"), "train")
    spark = get_session(cfg, app_name="ziya2-train-tokenizer", verbose=args.verbose)
    df, _ = read_documents(spark, args.input, allow_incomplete=args.allow_incomplete)
    rep = train(spark, df, args.output, tcfg)
    print(dump({k: rep[k] for k in ("model", "vocab_size", "sample_docs", "languages")}))
    return rep


# ---------------------------------------------------------------- jobs.expand_vocab
EXPAND_VOCAB_DOC = """Expand a SentencePiece model with the most frequent Chinese characters it lacks (Ziya2: 7,400 added to
LLaMA-2's vocabulary).

  python -m jobs.expand_vocab --base llama2/tokenizer.model --input build/runs/pipeline/dedup \
      --output build/models/tokenizer_zh [--set tokenizer.expand.num_chars=7400]

Counts CJK characters of the input's `text` (pipeline output or JSONL; filter it to Chinese first, or pass
--lang zh to keep rows whose `lang` is zh), appends the N most frequent characters that are not single pieces
of the base model, and writes OUT/tokenizer.model, OUT/init_map.json (new id -> the base ids the character
used to split into) and OUT/expand_report.json. Old ids are unchanged. --base and OUT may be paths or any URI
(s3://...). Settings: `tokenizer.expand`.
"""


def expand_vocab(argv: list[str] | None = None) -> dict:
    """jobs.expand_vocab: the expansion report."""
    ap = stage_argparser("expand_vocab", EXPAND_VOCAB_DOC, input_help="the Chinese corpus: pipeline output or JSONL with `text`")
    ap.add_argument("--base", required=True, metavar="MODEL", help="base SentencePiece tokenizer.model (LLaMA-2's, or one from jobs.train_tokenizer)")
    ap.add_argument("--lang", default=None, help="keep only rows whose `lang` maps to this pipeline code (zh-cn, zh-tw, ... -> zh)")
    args = ap.parse_args(argv)
    cfg = load_conf(args.conf, args.overrides)
    from pyspark.sql import functions as F

    if not fs.exists(args.base):
        raise FileNotFoundError(f"base model {args.base} does not exist")
    ecfg = section(section(cfg, "tokenizer"), "expand")
    spark = get_session(cfg, app_name="ziya2-expand-vocab", verbose=args.verbose)
    df, _ = read_documents(spark, args.input, allow_incomplete=args.allow_incomplete)
    if args.lang:
        lang = F.when(F.col("lang").startswith("zh-"), F.lit("zh")).otherwise(F.col("lang"))
        df = df.filter(lang == args.lang)
    rep = expand(spark, df, args.base, args.output, ecfg)
    print(dump(rep))
    return rep


# ---------------------------------------------------------------- jobs.train_langid
TRAIN_LANGID_DOC = """Train the fastText language-ID model (`make models`, langid part); the logic is dataflow/models/langid/train.py.

    python -m jobs.train_langid --catalogues build/corpus/out/langid --corpus build/corpus/out/fixture \
        --output build/models/langid.bin [--markdown FILE]

Writes the model, `<output>.json` (per-language held-out precision/recall, unknown-language check) and,
with --markdown, the report table for docs/preprocess.md. Inputs and outputs may be paths or any URI (s3://...). `--assess MODEL` reports on an existing model
(lid.176.bin / .ftz) on the same held-out split instead of training.
"""


def train_langid(argv: list[str] | None = None) -> dict:
    """jobs.train_langid: the held-out report."""
    ap = argparse.ArgumentParser(prog="python -m jobs.train_langid", description=TRAIN_LANGID_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="sample corpus directory holding docs.jsonl (fields lang, text)")
    ap.add_argument("--catalogues", help="translation-catalogue set holding samples.jsonl (make data)")
    ap.add_argument("--output", required=True, help="model path to write, e.g. build/models/langid.bin "
                                                     "(with --assess: the JSON report)")
    ap.add_argument("--markdown", help="also write the per-language report table here")
    ap.add_argument("--assess", metavar="MODEL", help="only report on an existing model (e.g. lid.176.ftz): no training")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (preprocess.langid_train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set preprocess.langid_train.epoch=10")
    a = ap.parse_args(argv)
    if not a.corpus and not a.catalogues:
        ap.error("give --catalogues and/or --corpus")
    cfg = section(load_conf(a.conf, a.overrides), "preprocess")
    if a.assess:
        report = langid_train.assess(a.corpus, a.catalogues, a.assess, cfg)
        fs.write_text(a.output, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        report = langid_train.train(a.corpus, a.catalogues, a.output, cfg)
    if a.markdown:
        fs.write_text(a.markdown, langid_train.markdown(report))
    if a.assess:
        return report
    worst = min(report["holdout"].items(), key=lambda kv: kv[1]["f1"])
    print(f"langid: {len(report['labels'])} languages, {report['train_samples']} samples -> {a.output}; "
          f"held-out paragraph F1 en {report['holdout']['en']['f1']:.3f}, zh {report['holdout']['zh']['f1']:.3f}, "
          f"lowest {worst[0]} {worst[1]['f1']:.3f}" if {"en", "zh"} <= set(report["holdout"]) else
          f"langid: {len(report['labels'])} languages -> {a.output}")
    return report


# ---------------------------------------------------------------- jobs.train_lm
TRAIN_LM_DOC = """Train the AS stage's per-language SentencePiece + 5-gram KenLM pairs (`make models`, lm part).

    python -m jobs.train_lm --corpus build/corpus/out/fixture --output build/models/lm [--langs zh en]

For each language of `score.langs` (or --langs): the training text is `score.train.wiki.<lang>` (a
Wikipedia dump: plain text, one paragraph per line, or JSONL with "text"; .gz/.zst fine) when set, else the
corpus' docs.jsonl records with label in `score.train.labels`, minus a seeded held-out share
(`score.train.heldout_fraction`). Text is normalised as cc_net does (lower case, accents, digits -> 0,
punctuation), encoded with a freshly trained SentencePiece model, and fitted with `lmplz -o 5` then
`build_binary`. `lmplz --discount_fallback` is used only when lmplz asks for it, and the report says so.

Writes OUTPUT/<lang>.sp.model, OUTPUT/<lang>.arpa.bin and OUTPUT/report.json (OUTPUT, --corpus and the wiki
dumps may be paths or any URI: s3://...). Needs KenLM's tools
(`make kenlm-tools`; found through $KENLM_BIN, score.train.kenlm_bin or PATH).
"""


def train_lm(argv: list[str] | None = None) -> dict:
    """jobs.train_lm: the training report (report.json)."""
    ap = argparse.ArgumentParser(prog="python -m jobs.train_lm", description=TRAIN_LM_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="corpus directory holding docs.jsonl (fields id, lang, label, text)")
    ap.add_argument("--output", required=True, help="model directory, e.g. build/models/lm (the score.model_dir default)")
    ap.add_argument("--langs", nargs="+", default=None, help="languages to train (default: score.langs)")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (section score, score.train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set score.train.wiki.en=/data/enwiki.txt")
    a = ap.parse_args(argv)
    return train_all(a.corpus, a.output, section(load_conf(a.conf, a.overrides), "score"), a.langs)


# ---------------------------------------------------------------- jobs.refclass
REFCLASS_DOC = """Train the reference classifier (`make refclass`, part of `make models`); the logic is dataflow/models/refclass.py.

    python -m jobs.refclass --corpus build/corpus/out/fixture --output build/models/refclass.bin

Positives and negatives come from `score.ref_train` (docs.jsonl labels/sources of --corpus, JSONL paths).
Writes the fastText model and `<output>.json` (a path or any URI: s3://...): held-out precision/recall of the
reference label per chunk and per document, and the mean held-out score of each class.
"""


def refclass(argv: list[str] | None = None) -> dict:
    """jobs.refclass: the held-out report."""
    ap = argparse.ArgumentParser(prog="python -m jobs.refclass", description=REFCLASS_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="sample corpus directory holding docs.jsonl (fields id, label, source, text)")
    ap.add_argument("--output", required=True, help="model path to write, e.g. build/models/refclass.bin")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration (score.ref_train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a configuration value, e.g. --set score.ref_train.epoch=20")
    a = ap.parse_args(argv)
    report = refclass_model.train(a.corpus, a.output, section(load_conf(a.conf, a.overrides), "score"))
    d = report["heldout"]["documents"]
    print(f"refclass: {report['documents']} documents -> {a.output}; held-out documents precision "
          f"{d['precision']:.3f} recall {d['recall']:.3f}, mean score ref {report['heldout']['mean_score']['ref']} "
          f"other {report['heldout']['mean_score']['other']}")
    return report
