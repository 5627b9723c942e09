"""Loading AS's per-language pair (a SentencePiece model and a KenLM binary) and the driver's check of it.

A cut-off or overwritten model file must stop the run before any work, naming the file: a KenLM binary that
does not load would otherwise fail every Python worker at its first batch, and a SentencePiece model that
loads but cuts text into nothing would give every document the same perplexity. `check_pair` loads both
and scores a smoke sentence (the language-ID model's, one per language) to a finite perplexity.
"""
from __future__ import annotations

import math
from typing import Mapping

from dataflow.core import fs
from dataflow.models.langid.model import SMOKE_SENTENCES
from dataflow.models.lm.normalize import normalize_line

REBUILD = "a truncated or wrong file? Rebuild it with `make models` or point score.models at a working pair"


def load_sp(path: str):
    """A SentencePiece model, read through the filesystem layer (a local path or a URI)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=fs.read_bytes(str(path)))


# the first bytes of a KenLM binary (lm/binary_format.cc kMagicBeforeVersion) and of an ARPA file
KENLM_MAGIC = b"mmap lm http://kheafield.com/code"
ARPA_MAGIC = b"\\data\\"


def load_kenlm(path: str, lazy: bool = False):
    """A KenLM model (binary or ARPA) from a local file; `lazy` maps a binary without reading it (the driver's
    check touches a few pages of a model that may be gigabytes)."""
    import kenlm

    config = kenlm.Config()
    config.show_progress = False
    if lazy:
        config.load_method = kenlm.LoadMethod.LAZY
    return kenlm.Model(fs.local_path(str(path)), config)


def kenlm_format(path: str) -> str | None:
    """`binary`, `arpa`, or None for a file that is neither (KenLM would parse garbage as ARPA text)."""
    with fs.open_input(str(path)) as f:
        head = f.read(len(KENLM_MAGIC))
    if head == KENLM_MAGIC:
        return "binary"
    return "arpa" if head.lstrip().startswith(ARPA_MAGIC) else None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def check_pair(lang: str, sp_path: str, lm_path: str, norm: Mapping | None = None) -> None:
    """Load the pair of `lang` and score its smoke sentence; raise ValueError naming the file that fails."""
    text = normalize_line(SMOKE_SENTENCES.get(lang, SMOKE_SENTENCES["en"]), **dict(norm or {}))
    try:
        sp = load_sp(sp_path)
    except Exception as e:     # sentencepiece raises RuntimeError/OSError with the protobuf parser's words
        raise ValueError(f"score: SentencePiece model {sp_path} for {lang!r} does not load "
                         f"({_first_line(e)}): {REBUILD}") from None
    pieces = sp.encode(text, out_type=str)
    if not pieces:
        raise ValueError(f"score: SentencePiece model {sp_path} for {lang!r} cuts its smoke sentence into no "
                         f"pieces: {REBUILD}")
    if kenlm_format(lm_path) is None:
        raise ValueError(f"score: KenLM model {lm_path} for {lang!r} is neither a KenLM binary nor an ARPA file: "
                         f"{REBUILD}")
    try:
        lm = load_kenlm(lm_path, lazy=True)
    except Exception as e:     # a cut binary: OSError (FormatLoadException); a cut ARPA file: its parser's error
        raise ValueError(f"score: KenLM model {lm_path} for {lang!r} does not load ({_first_line(e)}): "
                         f"{REBUILD}") from None
    ppl = lm.perplexity(" ".join(pieces))
    if not math.isfinite(ppl) or ppl <= 0:
        raise ValueError(f"score: KenLM model {lm_path} for {lang!r} gives its smoke sentence perplexity {ppl}: "
                         f"{REBUILD}")
