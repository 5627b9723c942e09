"""The schema of conf/pipeline.yaml and conf/mixer.yaml (types, ranges, allowed keys, list vs scalar).

`config.load_conf` checks the whole pipeline configuration against `PIPELINE` on the driver, `--set`
overrides included, before any Spark work; every mistake is one line naming the dotted key and what it
expects. The values of the YAML files are the defaults (and their sources are cited there); this module
only says what a value may be.

`File` and `Dir` mark paths. `config.load_conf` resolves the relative ones against the configuration
file's repository root (the parent of `conf/`), so a job started from any directory finds them, and
`missing_files` lists the `File`s that do not exist (a job checks its own sections before any task runs).

A section a helper extends gains its keys here too: tests/test_config.py validates the shipped YAMLs.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from dataflow.core.confschema import (Any_, Bool, Float, Int, List, Map, OneOf, Path, Section, Spec, Str)


class File(Path):
    """A file that must exist when the section that names it runs (a model, a lexicon)."""

    @property
    def expected(self):
        return "a file path or URI"


class Dir(Path):
    """A directory path or URI (model directories, lexicon folders); resolved like `File`."""

    @property
    def expected(self):
        return "a directory path or URI"


def _s(fields: Mapping[str, Spec], **kw) -> Section:
    """A section whose keys are all optional (the shipped YAML supplies every default) but never unknown."""
    return Section(fields, required=kw.pop("required", ()), **kw)


Prob = lambda **kw: Float(0, 1, **kw)          # noqa: E731 - a share, a probability, a ratio
Count = lambda lo=0, **kw: Int(lo, **kw)        # noqa: E731
Langs = lambda **kw: List(Str(non_empty=True), **kw)  # noqa: E731 - pipeline language codes
Scalar = OneOf(Str(), Int(), Float(), Bool())

# ---------------------------------------------------------------- spark
SPARK = _s({
    "master": Str(non_empty=True),
    "driver_memory": Str(non_empty=True, nullable=True),
    "log_level": Str(["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE"], nullable=True),
    "conf": Map(Scalar, nullable=True),      # Spark keys with dots: --set spark.conf.spark.sql.x=1 sets one key
    "local_java_options": Str(nullable=True),
})

# ---------------------------------------------------------------- DP
LANGID_TRAIN = _s({
    "require_cjk": Langs(), "min_sample_chars": Count(1), "holdout_fraction": Float(0, 1, min_exclusive=True),
    "seed": Int(), "dim": Count(1), "minn": Count(0), "maxn": Count(0), "word_ngrams": Count(1),
    "epoch": Count(1), "lr": Float(0, min_exclusive=True), "bucket": Count(1), "thread": Count(1),
    "loss": Str(["softmax", "ova", "hs"]), "paragraph_chars": Count(1), "max_train_chars": Count(1),
    "max_holdout_chars": Count(1), "min_lang_chars": Count(0), "exclude_langs": Langs(),
    "corpus_domains": List(Str(non_empty=True)), "min_cjk_share": Prob(),
})


def _minn_le_maxn(v: dict, key: str) -> list[str]:
    if "minn" in v and "maxn" in v and v["minn"] > v["maxn"]:
        return [f"{key}.minn: expected <= maxn ({v['maxn']}), got {v['minn']}"]
    return []


LANGID_TRAIN.extra = _minn_le_maxn

PREPROCESS = _s({
    "source": Str(nullable=True),
    "max_doc_bytes": Count(1),
    "quarantine_prefix_chars": Count(0),
    "files_per_task": Count(1),
    "split_bytes": Count(1),
    "batch_rows": Count(1),
    "batch_bytes": Count(1),
    "warc_record_types": List(Str(["response", "resource", "conversion", "request", "metadata", "revisit",
                                   "warcinfo"]), min_len=1),
    "html_content_types": List(Str(non_empty=True)),
    "binary_sniff_bytes": Count(0),
    "html_main_content": Bool(),
    "html_list_bullets": Bool(),
    "unicode_form": Str(["NFC", "NFKC", "NFD", "NFKD"], nullable=True),
    "opencc": Str(non_empty=True, nullable=True),
    "langid_model": File(),
    "lang_threshold": Prob(),
    "keep_langs": Langs(min_len=1),
    "lang_map": Map(Str(non_empty=True), nullable=True),
    "min_chars": Count(0),
    "langid_train": LANGID_TRAIN,
}, required=("langid_model", "lang_threshold", "keep_langs", "max_doc_bytes"))

# ---------------------------------------------------------------- AS
QUALITIES = ["high", "medium", "low", "unscored"]


def _p_order(v: dict, key: str) -> list[str]:
    hi, lo = v.get("percentile_high"), v.get("percentile_low")
    if isinstance(hi, (int, float)) and isinstance(lo, (int, float)) and hi > lo:
        return [f"{key}.percentile_high: expected <= percentile_low ({lo}), got {hi}"]
    return []


CUTOFF = Section({"p30": Float(0), "p60": Float(0)})
SCORE = _s({
    "langs": Langs(),
    "model_dir": Dir(),
    "models": Map(_s({"sp": File(), "lm": File()}), nullable=True),
    "percentile_high": Prob(),
    "percentile_low": Prob(),
    "relative_error": Float(0, 1),
    "drop": List(Str(QUALITIES), unique=True),
    "cutoffs_file": File(nullable=True),
    "max_paragraph_chars": Count(1),
    "max_paragraph_pieces": Count(1),
    "normalize": _s({"accent": Bool(), "case": Bool(), "numbers": Bool(), "punct": Bool()}),
    "ccnet_cutoffs": Map(CUTOFF, nullable=True),
    "ref_model": Path(nullable=True),   # not File: optional unless ref_required (refclass.model_path)
    "ref_required": Bool(),
    "ref_min": Prob(nullable=True),
    "ref_max_chunks": Count(1),
    "ref_train": _s({
        "positives": _s({"labels": List(Str(non_empty=True)), "sources": List(Str(non_empty=True)),
                         "paths": List(File())}),
        "negatives": _s({"labels": List(Str(non_empty=True)), "sources": List(Str(non_empty=True)),
                         "paths": List(File())}),
        "chunk_chars": Count(50),
        "heldout_fraction": Prob(),
        "seed": Int(),
        "dim": Count(1), "epoch": Count(1), "lr": Float(0, min_exclusive=True), "word_ngrams": Count(1),
        "minn": Count(0), "maxn": Count(0), "bucket": Count(0),
    }),
    "train": _s({
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
    }),
}, required=("langs", "model_dir"), extra=_p_order)

# ---------------------------------------------------------------- RF


def _rules_spec() -> Spec:
    """filter.rules: each rule declares its parameters (`rules.registry.rules_spec()`) once that exists;
    until then the mapping is accepted as is and the rule engine checks it when it builds the rules."""
    try:
        from dataflow.stages.filter.rules.registry import rules_spec
    except ImportError:   # group -> check -> parameters; only lexicon paths are known (and resolved) here
        return Map(Map(Section({"lexicons": Map(File(), nullable=True)}, open=True, required=())))
    return rules_spec()


def filter_spec() -> Section:
    from dataflow.stages.filter.rules.registry import settings_spec   # the engine's own keys (min_chars_left)

    return _s({
        "seed": Int(),
        "examples_per_rule": Count(0),
        "example_max_chars": Count(1),
        "example_removed_units": Count(0),
        **settings_spec(),
        "rules": _rules_spec(),
    }, required=("rules", *settings_spec()))


# ---------------------------------------------------------------- CD
DEDUP_STEPS = ["url", "exact", "simhash", "minhash", "book", "lines"]
_SCHEMES = ["affine32", "legacy"]
_MINHASH = {
    "num_perm": Count(1), "bands": Count(1), "rows": Count(1), "seed": Int(), "scheme": Str(_SCHEMES),
    "char_ngram": Count(1), "word_ngram": Count(1), "min_features": Count(0), "max_iterations": Count(1),
    "jaccard": Prob(),
}


def _bands_rows(v: dict, key: str) -> list[str]:
    b, r, n = v.get("bands"), v.get("rows"), v.get("num_perm")
    if all(isinstance(x, int) for x in (b, r, n)) and b * r > n:
        return [f"{key}.bands: expected bands x rows <= num_perm ({n}), got {b} x {r}"]
    return []


DEDUP = _s({
    "steps": List(Str(DEDUP_STEPS), unique=True),
    "date_keys": List(Str(non_empty=True)),
    "shuffle_partitions": Count(1, nullable=True),
    "zh_fold": List(Str(non_empty=True)),
    "char_script_share": Prob(),
    "url": _s({"initial_capacity": Count(1), "error_rate": Float(0, 1, min_exclusive=True),
               "tracking_params": List(Str(non_empty=True)), "sort_query": Bool()}),
    "exact": _s({"hash": Str(["xxh3_128"])}),
    "simhash": _s({"bits": Int(8, 64), "max_distance": Count(0), "blocks": Count(1), "char_ngram": Count(1),
                   "word_ngram": Count(1), "min_features": Count(0), "verify_jaccard": Prob(nullable=True), "verify_rounds": Count(1),
                   "max_iterations": Count(1)}),
    "minhash": _s({**_MINHASH, "verify": Str(["none", "signature", "jaccard"]), "verify_rounds": Count(1)},
                  extra=_bands_rows),
    "book": _s({**_MINHASH, "sources": List(Str(non_empty=True)), "min_chars": Count(0)}, extra=_bands_rows),
    "lines": _s({"max_docs": Count(1), "min_line_chars": Count(0), "min_doc_chars": Count(0)}),
}, required=("steps",))

# ---------------------------------------------------------------- DE
_WEIGHT = _s({"limit": Float(0, min_exclusive=True), "weight": Float(0)})
EVALUATE = _s({
    "seed": Int(),
    "sample_share": Float(0, 1, min_exclusive=True),
    "min_per_stratum": Count(0),
    "strata": List(Str(non_empty=True), min_len=1),
    "gate_threshold": Prob(),
    "gate_on": Str(["upper", "point"]),
    "confidence": Float(0, 1, min_exclusive=True),
    "qualified_labels": List(Str(non_empty=True)),
    "unqualified_labels": List(Str(non_empty=True)),
    "lexicons": Dir(nullable=True),
    "lexicon_glob": Str(non_empty=True),
    "sheet_text_chars": Count(1),
    "quantiles": List(Prob()),
    "quantile_accuracy": Count(1),
    "hist_bins_per_decade": Count(1),
    "suspicion": Map(OneOf(Float(0), _WEIGHT, Map(Float(0)))),
})

# ---------------------------------------------------------------- tokenizer, packing
TOKENIZER = _s({
    "model": File(),
    # SentencePiece TrainerSpec keys pass through (open); the ones the pipeline relies on are typed
    "train": Section({
        "model_type": Str(["bpe", "unigram", "char", "word"]), "vocab_size": Count(1),
        "character_coverage": Float(0, 1, min_exclusive=True), "split_digits": Bool(), "byte_fallback": Bool(),
        "max_sentence_length": Count(1), "input_sentence_size": Count(0), "shuffle_input_sentence": Bool(),
        "num_threads": Count(1), "sample_fraction": Float(0, 1, min_exclusive=True), "max_docs": Count(1),
        "hash_buckets": Count(1), "seed": Int(),
    }, open=True, required=()),
    "expand": _s({"num_chars": Count(1), "min_count": Count(1), "new_piece_score": Float()}),
    "encode": _s({"add_bos": Bool(), "add_eos": Bool(), "mask_prompt": Bool(),
                  "supervised_sources": Map(Section({"type": Str(non_empty=True), "split": Str(non_empty=True)}),
                                            nullable=True)}),
}, required=("model",))

PACK = _s({
    "seq_len": Count(1),
    "seed": Int(),
    "group_tokens": Count(1),
    "supervised_buckets": Count(1),
    "rows_per_shard": Count(1),
    "pad_id": Count(0, nullable=True),
}, required=("seq_len", "seed"))

# ---------------------------------------------------------------- orchestration (H3 owns its meaning)
PIPELINE_SECTION = _s({
    "stages": List(Section({"name": Str(non_empty=True), "dir": Str(non_empty=True)}), min_len=1),
    "runner": Str(["python", "spark-submit"]),
    "spark_submit": Str(non_empty=True),
    "cluster": _s({   # --print-submit (dataflow/pipeline/chain.py); paths stay as written: printed relative to the cwd
        "master": Str(non_empty=True), "deploy_mode": Str(["client", "cluster"]), "client_stages": List(Str()),
        "py_files": Str(non_empty=True), "archives": List(Str(non_empty=True)),
        "python": Str(non_empty=True, nullable=True), "driver_python": Str(non_empty=True, nullable=True),
        "conf": Map(Scalar, nullable=True), "model_suffixes": List(Str(non_empty=True)),
        "model_dirs": List(Str(non_empty=True)), "models_dist": Str(non_empty=True),
        "zip_python": Str(non_empty=True), "skip_keys": List(Str(non_empty=True)),
    }, nullable=True),
})


# ---------------------------------------------------------------- source types (dataflow/core/recipes.py)
def _types():
    from dataflow.core.recipes import SOURCE_TYPES
    return SOURCE_TYPES


def _kinds():
    from dataflow.core.recipes import READER_KINDS
    return READER_KINDS


SOURCES = _s({
    "default_type": Str(_types()),
    "inputs": List(Section({"match": Str(non_empty=True), "type": Str(_types()),
                            "kind": Str(_kinds(), nullable=True)}, required=("match", "type"))),
    "by_source": Map(Str(_types()), nullable=True),
    "code": _s({"allowed_licenses": List(Str(non_empty=True), unique=True), "max_line_length": Count(1),
                "max_avg_line_length": Count(1), "min_alphanum_fraction": Prob()}),
    "qa": _s({"sites": List(Str(non_empty=True), unique=True), "min_answers": Count(0),
              "spill_bytes": Count(1), "spill_partitions": Count(1)}),
    "wiki": _s({"namespaces": List(Str(non_empty=True), unique=True, min_len=1)}),
    "book": _s({"max_book_bytes": Count(1)}),
})
_ALL_OR_LIST = OneOf(Str(["all"]), List(Str(non_empty=True), unique=True))
RECIPE = _s({"rules": _ALL_OR_LIST, "dedup": OneOf(Str(["all"]), List(Str(DEDUP_STEPS), unique=True)),
             "score": Str(["lm", "none"]), "ref_score": Bool(), "lid": Str(["filter", "label"]),
             "whitespace": Str(["collapse", "keep"])})
RECIPES = Section({t: RECIPE for t in _types()})


def pipeline_spec() -> Section:
    """The whole conf/pipeline.yaml. Built on call so `filter.rules` picks up the rule registry's spec."""
    return Section({
        "spark": SPARK, "preprocess": PREPROCESS, "score": SCORE, "filter": filter_spec(), "dedup": DEDUP,
        "evaluate": EVALUATE, "tokenizer": TOKENIZER, "pack": PACK, "pipeline": PIPELINE_SECTION,
        "sources": SOURCES, "recipes": RECIPES,
    }, required=("spark", "preprocess", "score", "filter", "dedup", "evaluate", "tokenizer", "pack"))


# ---------------------------------------------------------------- conf/mixer.yaml
_VALUE = OneOf(Str(), Int(), Float(), Bool(), nullable=True)    # `where` values; null matches null
_PICK = {"name": Str(non_empty=True), "input": Str(non_empty=True),
         "where": Map(OneOf(List(_VALUE), _VALUE, nullable=True), nullable=True)}
MIX_SOURCE = Section({**_PICK, "sample": Float(0, min_exclusive=True), "epochs": Float(0, min_exclusive=True)},
                     required=("name", "input"))
MIX_UNSUP = Section({**_PICK, "weight": Float(0, min_exclusive=True)}, required=("name", "input", "weight"))
MIX_STAGE = Section({
    "stage": Int(1),
    "sources": List(MIX_SOURCE, nullable=True),
    "supervised": List(MIX_SOURCE, nullable=True),
    "unsupervised_ratio": Float(0, nullable=True),
    "unsupervised": List(MIX_UNSUP, nullable=True),
}, required=("stage",))
MIXER = Section({
    "seed": Int(),
    "cut_buckets": Count(1),
    "pipeline_conf": File(),          # its `pack` section (seq_len, group_tokens, ...) applies: one seq_len
    "tokenizer": File(),
    "inputs": Map(Dir()),
    "stages": List(MIX_STAGE, min_len=1),
}, required=("seed", "pipeline_conf", "inputs", "stages"))


# ---------------------------------------------------------------- walking paths
def path_keys(spec: Spec, value: Any, key: str = "") -> Iterator[tuple[str, Spec, Any, Any, Any]]:
    """(dotted key, spec, value, container, index) for every File/Dir value in a validated `value`."""
    if isinstance(spec, Path) and isinstance(value, str):
        yield key, spec, value, None, None
        return
    if isinstance(spec, OneOf):
        for alt in spec.alternatives:
            if not alt.check(value, key):
                yield from path_keys(alt, value, key)
                return
        return
    if isinstance(spec, Section) and isinstance(value, Mapping):
        for k, v in value.items():
            sub = spec.fields.get(str(k))
            if sub is not None:
                yield from _child(sub, v, f"{key}.{k}" if key else str(k), value, k)
    elif isinstance(spec, Map) and isinstance(value, Mapping):
        for k, v in value.items():
            yield from _child(spec.values, v, f"{key}.{k}", value, k)
    elif isinstance(spec, List) and isinstance(value, list):
        for i, v in enumerate(value):
            yield from _child(spec.item, v, f"{key}[{i}]", value, i)


def _child(spec, v, key, container, index):
    if isinstance(spec, Path) and isinstance(v, str):
        yield key, spec, v, container, index
    else:
        yield from path_keys(spec, v, key)
