"""Source types through DP: dumps of every kind in one input folder, read by `jobs.preprocess`, each record
typed, processed by its type's recipe and counted by type in stats.json.

One DP run (local[2]) covers the cases; every expected count is the number of units this test wrote.
Inputs are real text: mwparserfromhell's source files and MIT licence (installed distribution), Debian's
GPL-3 text and HumanEval programs, a Debian LaTeX document with user macros (fixjfm), Devil's Dictionary
entries (Q&A answers, wiki pages, web records), CHAMP problems and the Gutenberg Moby Dick.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile

import pyarrow.dataset as ds
import pytest
import yaml

from dataflow.ingest import list_inputs
from dataflow.core.recipes import READER_KINDS, TypeResolver
from dataflow.ingest.sources import READERS
from tools.corpus import recipe_sources as rs

from conftest import ROOT

TEX = "tex/texlive-lang-cjk/usr/share/doc/texlive-doc/generic/fixjfm/fixjfm-doc.tex"
INPUTS = ('sources.inputs=[{match: "*.tar.gz", type: code}, {match: "*.tex", type: paper}, '
          '{match: "*Posts.xml", type: qa}, {match: "*pages-articles*.xml.bz2", type: wiki}, '
          '{match: "*.txt", type: book}]')
BY_SOURCE = "sources.by_source={champ: supervised, human-eval: supervised}"


def _conf(*sets):
    from dataflow.core.config import DEFAULT_CONF
    from dataflow.pipeline.conf import load_conf

    return load_conf(DEFAULT_CONF, list(sets))


def _tar_gz(files: dict[str, bytes], cut_before: int | None = None) -> bytes:
    """A .tar.gz of `files`; `cut_before=k`: the tar stops where member k's header would start (a download
    that ended at a member boundary: members 0..k-1 whole, no end-of-archive marker), gzip intact."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for i, (name, data) in enumerate(files.items()):
            if i == cut_before:
                cut = buf.tell()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), rs.MTIME
            t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw[:cut] if cut_before is not None else raw, mtime=0)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, corpus_dir, corpus_docs):
    """(input folder, expected {type: {input, kept, reasons}}, named texts) written here."""
    d = tmp_path_factory.mktemp("mixed")
    mw = rs.distribution_files("mwparserfromhell")
    mit_text = next(v for k, v in mw.items() if k.endswith("/LICENSE"))
    init_py = next(v for k, v in mw.items() if k.endswith("mwparserfromhell/__init__.py"))
    defs_py = next(v for k, v in mw.items() if k.endswith("mwparserfromhell/definitions.py"))
    gpl_text = next(x["text"] for x in corpus_docs if x.get("id") == "common-licenses:GPL-3").encode()
    prog = next(x["text"] for x in corpus_docs if x["source"] == "human-eval").encode()
    (d / "code").mkdir()
    (d / "code" / "proj.tar.gz").write_bytes(_tar_gz({
        "proj/mit/LICENSE": mit_text, "proj/mit/mwparser_init.py": init_py,
        "proj/gpl/COPYING": gpl_text, "proj/gpl/humaneval_prog.py": prog}))
    # truncated at member 3: LICENSE, __init__, definitions read, then one corrupt_archive row
    (d / "code" / "cut.tar.gz").write_bytes(_tar_gz({
        "cut/LICENSE": mit_text, "cut/a.py": init_py, "cut/b.py": defs_py, "cut/c.py": prog, "cut/d.py": prog},
        cut_before=3))
    (d / "paper").mkdir()
    (d / "paper" / "fixjfm-doc.tex").write_bytes((corpus_dir / TEX).read_bytes())

    devil = rs.dictionary_entries(corpus_docs)
    rows = rs.qa_rows(devil, 3, 2)
    rows.append({"Id": 999, "PostTypeId": 4, "Score": 0, "Body": f"<p>{devil[40]}</p>",   # a tag wiki excerpt
                 "CreationDate": "2011-01-03T00:00:00.000", "ContentLicense": "CC BY-SA 4.0"})
    (d / "qa" / "english.stackexchange.com").mkdir(parents=True)
    (d / "qa" / "english.stackexchange.com" / "Posts.xml").write_bytes(rs.posts_xml(rows))

    pages = [(e.split()[0].strip(",.").title(), 0, rs.wiki_page_text(e, i)) for i, e in enumerate(devil[10:13])]
    pages.append(("Talk:" + pages[0][0], 1, devil[13]))
    rs.mediawiki_dump(str(d / "wiki" / "enwiki-a-pages-articles.xml.bz2"), pages)
    bad = d / "wiki" / "enwiki-b-pages-articles.xml.bz2"
    rs.mediawiki_dump(str(bad), [(f"P{i}", 0, rs.wiki_page_text(e, i)) for i, e in enumerate(devil[20:170])])
    data = bytearray(bad.read_bytes())
    first_pages = data.find(b"BZh9", 10)            # stream 0 is the header; stream 1 holds pages 0..99
    data[first_pages + 200:first_pages + 240] = b"\x00" * 40
    bad.write_bytes(bytes(data))

    (d / "books").mkdir()
    book = next(x["text"] for x in corpus_docs if x["source"] == "r-cran-tokenizers")
    (d / "books" / "mobydick.txt").write_text(book, encoding="utf-8")

    web = [e for e in devil[170:] if len(e) > 300][:4]
    champ = [x for x in corpus_docs if x["source"] == "champ"][:3]
    he = [x for x in corpus_docs if x["source"] == "human-eval"][:2]
    lines = [{"text": t, "source": "dict-devil"} for t in web]
    lines += [{"text": x["text"], "source": x["source"], "id": x["id"]} for x in champ + he]
    lines.append({"text": devil[6], "source": "arxiv-abstracts", "source_type": "paper"})
    lines.append({"text": devil[7], "source": "novels", "source_type": "novel"})
    with open(d / "docs.jsonl", "w", encoding="utf-8") as f:
        for x in lines:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")

    expect = {
        # proj: LICENSE, COPYING (licence files), GPL program, MIT file kept; cut: LICENSE, a.py, b.py, damage row
        "code": {"input": 4 + 4, "kept": 1 + 2,
                 "reasons": {"code.license": 1, "code.license_file": 3, "malformed:corrupt_archive": 1}},
        "paper": {"input": 2, "kept": 2, "reasons": {}},
        "qa": {"input": 4, "kept": 3, "reasons": {"qa.post_type": 1}},
        "wiki": {"input": 4 + 1, "kept": 3, "reasons": {"wiki.namespace": 1, "malformed:corrupt_compression": 1}},
        "book": {"input": 1, "kept": 1, "reasons": {}},
        "supervised": {"input": 5, "kept": 5, "reasons": {}},
        "web": {"input": 4 + 1, "kept": 4, "reasons": {"malformed:source_type": 1}},
    }
    return d, expect, {"gpl_prog": prog.decode(), "mit_py": init_py.decode(), "web": web}


def test_reader_kinds_agree():
    assert set(READER_KINDS) == set(READERS)


def test_dumps_are_opt_in(mixed):
    d, _, _ = mixed
    plain = list_inputs([d])                               # no conf: only the JSONL is read (the dumps listed as unknown)
    assert [f.fmt for f in plain if f.fmt != "unknown"] == ["jsonl"]
    typed = {f.path.rsplit("/", 1)[-1]: f.fmt for f in list_inputs([d], _conf(INPUTS))}
    assert typed == {"proj.tar.gz": "code_archive", "cut.tar.gz": "code_archive", "fixjfm-doc.tex": "arxiv",
                     "Posts.xml": "stackexchange", "enwiki-a-pages-articles.xml.bz2": "mediawiki",
                     "enwiki-b-pages-articles.xml.bz2": "mediawiki", "mobydick.txt": "gutenberg",
                     "docs.jsonl": "jsonl"}


def test_type_resolution_order():
    r = TypeResolver(_conf(BY_SOURCE, 'sources.inputs=[{match: "*/code/*.jsonl", type: code}]'))
    assert r("qa", "champ", "/x/code/a.jsonl") == ("qa", None)                    # declared wins
    assert r(None, "champ", "/x/code/a.jsonl") == ("supervised", None)            # then by_source
    assert r(None, "stack", "/x/code/a.jsonl") == ("code", None)                  # then the file's entry
    assert r(None, "stack", "/x/web/a.jsonl") == ("web", None)                    # then the default
    t, why = r("novel", "x", "/x/a.jsonl")
    assert t == "web" and "novel" in why


def test_mixed_folder_through_dp(spark, mixed, models_dir, tmp_path):
    from jobs.preprocess import main

    d, expect, texts = mixed
    out = tmp_path / "dp"
    main(["--input", str(d), "--output", str(out), "--set", f"preprocess.langid_model={models_dir / 'langid.bin'}",
          "--set", INPUTS, "--set", BY_SOURCE])
    st = json.loads((out / "stats.json").read_text())
    kept = ds.dataset(out / "data").to_table().to_pylist()
    rej = ds.dataset(out / "rejected").to_table().to_pylist()
    total = sum(e["input"] for e in expect.values())
    assert st["input"] == total == len(kept) + len(rej)
    assert all(r["source_type"] for r in kept + rej)

    # stats.json by type equals the counts this test wrote
    bt = st["by_type"]
    assert set(bt) == set(expect)
    for t, e in expect.items():
        assert (bt[t]["input"], bt[t]["kept"]) == (e["input"], e["kept"]), (t, bt[t])
        for reason, n in e["reasons"].items():
            assert bt[t]["rejected_by_reason"].get(reason) == n, (t, reason, bt[t])
        assert sum(bt[t]["rejected_by_reason"].values()) == e["input"] - e["kept"], (t, bt[t])

    def file_of(r):
        return dict(r["meta"])["file"]

    # every record has the type of what it is
    by_name = {"proj.tar.gz": "code", "cut.tar.gz": "code", "fixjfm-doc.tex": "paper", "Posts.xml": "qa",
               "enwiki-a-pages-articles.xml.bz2": "wiki", "enwiki-b-pages-articles.xml.bz2": "wiki",
               "mobydick.txt": "book"}
    jsonl_type = {"dict-devil": "web", "champ": "supervised", "human-eval": "supervised", "arxiv-abstracts": "paper",
                  "novels": "web"}
    for r in kept + rej:
        name = file_of(r).rsplit("/", 1)[-1]
        want = jsonl_type[r["source"]] if name == "docs.jsonl" else by_name[name]
        assert r["source_type"] == want, (name, r["source"], r["source_type"])

    # the GPL file is rejected with its licence, the MIT one kept with its header comment stripped
    gpl = [r for r in rej if dict(r["meta"]).get("path") == "proj/gpl/humaneval_prog.py"]
    assert len(gpl) == 1 and gpl[0]["reason"] == "code.license" and "GPL-3.0" in gpl[0]["detail"]
    mit = [r for r in kept if dict(r["meta"]).get("path") == "proj/mit/mwparser_init.py"]
    assert len(mit) == 1 and dict(mit[0]["meta"])["license"] == "MIT"
    assert "Permission is hereby granted" in texts["mit_py"] and "Permission is hereby granted" not in mit[0]["text"]
    assert "    " in mit[0]["text"]                     # code keeps its indentation through normalization

    # the macro is expanded in the kept paper
    paper = next(r for r in kept if file_of(r).endswith("fixjfm-doc.tex"))
    assert "{\\protect\\normalfont\\sffamily jsclasses}" in paper["text"] and "\\newcommand" not in paper["text"]

    # supervised records are kept whatever their language score; the invalid type is a reject naming it
    sup = [r for r in kept if r["source_type"] == "supervised"]
    assert sorted(r["source"] for r in sup) == ["champ"] * 3 + ["human-eval"] * 2
    bad = next(r for r in rej if r["reason"] == "malformed:source_type")
    assert "'novel'" in bad["detail"] and "docs.jsonl" in bad["detail"] and "offset" in bad["detail"]

    # damage: the truncated archive and the corrupt bz2 give quarantine rows naming file and offset;
    # what came before the damage and the other files are read
    cut = sorted(dict(r["meta"]).get("path", "") for r in kept + rej if file_of(r).endswith("cut.tar.gz"))
    assert cut == ["", "cut/LICENSE", "cut/a.py", "cut/b.py"]
    q = next(r for r in rej if r["reason"] == "malformed:corrupt_archive")
    assert "cut.tar.gz" in q["detail"] and "offset" in q["detail"]
    q = next(r for r in rej if r["reason"] == "malformed:corrupt_compression")
    assert "enwiki-b-pages-articles.xml.bz2" in q["detail"] and "offset" in q["detail"]
    assert not [r for r in kept if file_of(r).endswith("enwiki-b-pages-articles.xml.bz2")]
    assert len([r for r in kept if file_of(r).endswith("enwiki-a-pages-articles.xml.bz2")]) == 3


def test_with_source_type_fills_old_frames(spark):
    from dataflow.core.recipes import with_source_type

    conf = _conf("sources.default_type=web")
    old = spark.createDataFrame([("a", "x"), ("b", "y")], "id string, text string")
    assert {r["source_type"] for r in with_source_type(old, conf).collect()} == {"web"}
    mixed = spark.createDataFrame([("a", "code"), ("b", None)], "id string, source_type string")
    assert sorted((r["id"], r["source_type"]) for r in with_source_type(mixed, conf).collect()) == [
        ("a", "code"), ("b", "web")]


def test_conf_thresholds_reach_the_processors():
    """sources.code / sources.qa / sources.wiki in conf are the values the processors use (DP passes them)."""
    from dataflow.core.recipes import source_settings
    from dataflow.ingest.sources.code import heuristics, process_code

    conf = yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))
    code = source_settings(conf, "code")
    assert set(code["allowed_licenses"]) == {"Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "MIT"}
    line = "x = 1  # " + "y" * 1200
    assert heuristics(line, code) == "code.max_line_length"
    assert heuristics(line, {**code, "max_line_length": 5000, "max_avg_line_length": 5000}) is None
    meta = {"path": "a.py", "language": "Python", "license": "MPL-2.0"}
    assert process_code("import os\n", meta, code) == (None, "code.license:MPL-2.0")
    assert process_code("import os\n", meta, {**code, "allowed_licenses": ["MPL-2.0"]})[1] is None


def test_demo_inputs_cover_every_type(corpus_dir, corpus_docs, models_dir):
    """The demo's DP inputs and settings (dataflow/pipeline/demo.py), record by record through ingest and DP's per-record
    logic (no Spark: the Spark path is test_mixed_folder_through_dp): every type has kept records, and CHAMP
    and HumanEval all pass as supervised."""
    from dataflow.pipeline.demo import SOURCE_SETS, chain_inputs
    from dataflow.ingest import iter_file
    from dataflow.stages.preprocess.stage import Preprocessor
    from dataflow.core.recipes import SOURCE_TYPES

    if not (corpus_dir / "sources" / "COUNTS.json").exists():
        pytest.exit(f"{corpus_dir}/sources is missing: run `make data` first", returncode=2)
    conf = _conf(f"preprocess.langid_model={models_dir / 'langid.bin'}", *SOURCE_SETS)
    pre = Preprocessor(conf["preprocess"], conf=conf)
    kept: dict[str, int] = {}
    sup: dict[str, list] = {}
    for f in list_inputs(chain_inputs(corpus_dir), conf):
        for r in iter_file(f.path, f.fmt, conf["preprocess"], sources=conf["sources"]):
            o = pre(r)
            if o["reason"] is None:
                kept[o["source_type"]] = kept.get(o["source_type"], 0) + 1
            if o["source"] in ("champ", "human-eval"):
                sup.setdefault(o["source"], []).append((o["source_type"], o["reason"]))
    assert set(kept) == set(SOURCE_TYPES), kept
    for name in ("champ", "human-eval"):
        n = sum(d["source"] == name for d in corpus_docs)
        assert sup[name] == [("supervised", None)] * n


def test_dp_passes_conf_settings_to_the_processor(tmp_path, corpus_docs, models_dir):
    """DP's per-record logic applies `sources.code.allowed_licenses` from conf: the GPL program is rejected
    under the default list and kept when conf allows GPL-3.0."""
    from dataflow.ingest import iter_file
    from dataflow.stages.preprocess.stage import Preprocessor

    gpl = next(x["text"] for x in corpus_docs if x.get("id") == "common-licenses:GPL-3").encode()
    prog = next(x["text"] for x in corpus_docs if x["source"] == "human-eval").encode()
    (tmp_path / "g.tar.gz").write_bytes(_tar_gz({"g/COPYING": gpl, "g/prog.py": prog}))
    outcome = {}
    for allowed in ("[MIT]", "[MIT, GPL-3.0]"):
        conf = _conf(f"preprocess.langid_model={models_dir / 'langid.bin'}", INPUTS,
                     f"sources.code.allowed_licenses={allowed}")
        pre = Preprocessor(conf["preprocess"], conf=conf)
        rows = [pre(r) for r in iter_file(str(tmp_path / "g.tar.gz"), "code_archive", conf["preprocess"],
                                          sources=conf["sources"])]
        outcome[allowed] = next(r["reason"] for r in rows if dict(r["meta"])["path"] == "g/prog.py")
    assert outcome == {"[MIT]": "code.license", "[MIT, GPL-3.0]": None}
