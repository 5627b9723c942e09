"""#26 / DESIGN §9: ids do not depend on where the data lives. The same corpus under two roots (different
absolute paths, one given as a `file://` URI) gives identical ids and identical decisions at every stage of
DP -> AS -> RF -> CD; a second file with the same relative path under another root is refused before any work.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from dataflow.pipeline.job import run

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ["preprocess", "score", "filter", "dedup"]


def decisions(out: Path) -> dict:
    """id -> reason (None for kept) of one stage's output, plus the kept rows' text (the decision and its result)."""
    kept = ds.dataset(out / "data").to_table(columns=["id", "text"]).to_pylist()
    rej = ds.dataset(out / "rejected").to_table(columns=["id", "reason"]).to_pylist()
    got = {r["id"]: (None, r["text"]) for r in kept}
    for r in rej:
        assert r["id"] not in got, f"{r['id']} both kept and rejected in {out}"
        got[r["id"]] = (r["reason"], None)
    return got


def run_chain(inputs: list[str], out: Path, models_dir: Path) -> dict:
    sets = [f"preprocess.langid_model={models_dir / 'langid.bin'}", "score.relative_error=0"]
    found, prev = {}, inputs
    for i, name in enumerate(CHAIN):
        d = out / f"{i}-{name}"
        argv = ["--input", *map(str, prev), "--output", str(d)]
        for s in sets:
            argv += ["--set", s]
        run(name, argv)
        found[name] = decisions(d)
        prev = [str(d)]
    return found


def test_same_corpus_under_two_roots_gives_the_same_ids_and_decisions(corpus_dir, models_dir, tmp_path):
    a, b = tmp_path / "disk-a" / "crawl", tmp_path / "elsewhere" / "mirror" / "copy"
    for root in (a, b):
        for w in sorted((corpus_dir / "warc").glob("*.warc.gz"))[:2]:
            (root / "warc").mkdir(parents=True, exist_ok=True)
            shutil.copy(w, root / "warc" / w.name)
        (root / "jsonl").mkdir(parents=True)
        lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()[::4]
        (root / "jsonl" / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = run_chain([str(a)], tmp_path / "run-a", models_dir)
    second = run_chain([f"file://{b}"], tmp_path / "run-b", models_dir)
    for name in CHAIN:
        assert first[name] == second[name], name
    assert len(first["preprocess"]) > 100 and len(first["dedup"]) > 50


def test_two_files_with_one_relative_path_are_refused(corpus_dir, models_dir, tmp_path):
    """Two inputs named as files, `x/docs.jsonl` and `y/docs.jsonl`: relative to their roots both are
    `docs.jsonl`, so their records would share ids. Refused before any work, naming both."""
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    d = tmp_path / "in"
    for sub, part in (("x", lines[:10]), ("y", lines[10:20])):
        (d / sub).mkdir(parents=True)
        (d / sub / "docs.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x/docs\.jsonl.*y/docs\.jsonl.*same path 'docs\.jsonl'"):
        run("preprocess", ["--input", str(d / "x" / "docs.jsonl"), str(d / "y" / "docs.jsonl"),
                           "--output", str(tmp_path / "out"),
                           "--set", f"preprocess.langid_model={models_dir / 'langid.bin'}"])
    assert not (tmp_path / "out").exists()
    # their common parent as the root: x/docs.jsonl and y/docs.jsonl are told apart
    st = run("preprocess", ["--input", str(d), "--output", str(tmp_path / "out2"),
                            "--set", f"preprocess.langid_model={models_dir / 'langid.bin'}"])
    assert st["input"] == 20
