"""Models are checked when loaded (#25.4): each model a job loads (score's SentencePiece + KenLM pair per language and
its reference classifier; the tokenizer of encode, pack and mix), cut in half or overwritten with other bytes, stops
the real job on its driver with exit code 2 and one line naming the file, before a JVM starts or any output exists.
The intact models pass the same checks here and in every other test that runs these jobs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import train_test_tokenizer
from dataflow.core.schema import DOC_ARROW_SCHEMA
from dataflow.models import refclass
from dataflow.models.lm.model import check_pair
from dataflow.models.tokenizer import check_model

ROOT = Path(__file__).resolve().parent.parent
# bytes that are no model of any kind: the corpus' own text, so the test needs no random source
GARBAGE = "garbage"
HALF = "half"


def damage(src: Path, dest: Path, how: str, corpus_dir: Path) -> Path:
    """A copy of `src` at `dest`, cut to its first half or replaced by as many bytes of corpus text."""
    data = src.read_bytes()
    if how == HALF:
        dest.write_bytes(data[: len(data) // 2])
    else:
        text = (corpus_dir / "docs.jsonl").read_bytes()
        dest.write_bytes((text * (len(data) // len(text) + 1))[: len(data)])
    assert dest.stat().st_size > 0 and dest.read_bytes() != data
    return dest


def run_job(args: list[str], out: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr
    assert not out.exists()
    return p


def error_lines(p: subprocess.CompletedProcess) -> list[str]:
    return [line for line in p.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def docs_parquet(corpus_docs, tmp_path_factory) -> Path:
    """A few corpus documents in the DP output schema: an input the jobs accept (its contents are never read)."""
    rows = [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": "en", "lang_score": 1.0,
             "meta": []} for d in corpus_docs[:5]]
    path = tmp_path_factory.mktemp("in") / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA), path)
    return path


@pytest.fixture(scope="module")
def tokenizer(corpus_docs, tmp_path_factory) -> Path:
    return train_test_tokenizer(corpus_docs, tmp_path_factory.mktemp("tok"))


# ------------------------------------------------------------------ score: the pair per language, refclass
@pytest.mark.parametrize("name,how", [("en.sp.model", HALF), ("zh.sp.model", GARBAGE), ("en.arpa.bin", HALF),
                                      ("zh.arpa.bin", GARBAGE)])
def test_score_refuses_a_damaged_language_model(models_dir, corpus_dir, docs_parquet, tmp_path, name, how):
    lm_dir = tmp_path / "lm"
    lm_dir.mkdir()
    for f in ("en.sp.model", "en.arpa.bin", "zh.sp.model", "zh.arpa.bin"):
        shutil.copyfile(models_dir / "lm" / f, lm_dir / f)
    bad = damage(models_dir / "lm" / name, lm_dir / name, how, corpus_dir)
    out = tmp_path / "out"
    p = run_job(["jobs.score", "--input", str(docs_parquet), "--output", str(out), "--set",
                 f"score.model_dir={lm_dir}"], out)
    kind = "SentencePiece" if name.endswith(".sp.model") else "KenLM"
    lines = error_lines(p)
    assert len(lines) == 1 and f"score: {kind} model {bad} for '{name[:2]}'" in lines[0], p.stderr


@pytest.mark.parametrize("how", [HALF, GARBAGE])
def test_score_refuses_a_damaged_reference_classifier(models_dir, corpus_dir, docs_parquet, tmp_path, how):
    bad = damage(models_dir / "refclass.bin", tmp_path / "refclass.bin", how, corpus_dir)
    out = tmp_path / "out"
    p = run_job(["jobs.score", "--input", str(docs_parquet), "--output", str(out), "--set",
                 f"score.model_dir={models_dir / 'lm'}", "--set", f"score.ref_model={bad}"], out)
    lines = error_lines(p)
    assert len(lines) == 1 and f"score: reference classifier {bad}" in lines[0], p.stderr


def test_the_intact_models_pass_their_checks(models_dir, tokenizer):
    for lang in ("en", "zh"):
        check_pair(lang, str(models_dir / "lm" / f"{lang}.sp.model"), str(models_dir / "lm" / f"{lang}.arpa.bin"))
    refclass.check_model(str(models_dir / "refclass.bin"))
    check_model(str(tokenizer))
    # the LM's own SentencePiece model lower-cases (cc_net): it is no tokenizer, and the round trip says so
    with pytest.raises(ValueError, match="does not round-trip its en smoke sentence"):
        check_model(str(models_dir / "lm" / "en.sp.model"))


# ------------------------------------------------------------------ the tokenizer of encode, pack and mix
@pytest.mark.parametrize("how", [HALF, GARBAGE])
def test_encode_refuses_a_damaged_tokenizer(tokenizer, corpus_dir, tmp_path, how):
    bad = damage(tokenizer, tmp_path / "tokenizer.model", how, corpus_dir)
    out = tmp_path / "out"
    p = run_job(["jobs.encode", "--input", str(corpus_dir / "docs.jsonl"), "--output", str(out), "--model", str(bad)],
                out)
    lines = error_lines(p)
    assert len(lines) == 1 and f"tokenizer model {bad} does not load" in lines[0], p.stderr


def test_pack_refuses_a_damaged_tokenizer(tokenizer, corpus_dir, docs_parquet, tmp_path):
    bad = damage(tokenizer, tmp_path / "tokenizer.model", HALF, corpus_dir)
    out = tmp_path / "out"
    p = run_job(["jobs.pack", "--input", str(docs_parquet), "--output", str(out), "--mode", "pretrain",
                 "--tokenizer", str(bad)], out)
    lines = error_lines(p)
    assert len(lines) == 1 and f"tokenizer model {bad} does not load" in lines[0], p.stderr


def test_mix_refuses_a_damaged_tokenizer(tokenizer, corpus_dir, tmp_path):
    bad = damage(tokenizer, tmp_path / "tokenizer.model", GARBAGE, corpus_dir)
    inputs = tmp_path / "tokenized"
    inputs.mkdir()
    out = tmp_path / "out"
    p = run_job(["jobs.mix", "--conf", str(ROOT / "conf" / "mixer.yaml"), "--output", str(out), "--tokenizer", str(bad),
                 "--input", f"pretrain={inputs}", f"supervised={inputs}"], out)
    lines = error_lines(p)
    assert len(lines) == 1 and f"tokenizer model {bad} does not load" in lines[0], p.stderr
