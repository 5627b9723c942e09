"""Ingest readers on real WARC/WET/JSONL/Parquet built from the fixture corpus, and on damaged copies.

Each bad-input case must come out as a quarantine row `malformed:<what>` naming the file and offset
(or, for a missing path, an error naming it): nothing may disappear silently.
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import gzip_members
from tools.corpus.warc import write_warc, write_wet
from dataflow.ingest import iter_file, list_inputs
from dataflow.ingest.records import RAW_SCHEMA, to_batch

ROOT = Path(__file__).resolve().parent.parent
DATE = "2024-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def cfg():
    return yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))["preprocess"]


@pytest.fixture(scope="module")
def pages(corpus_dir):
    out = []
    for line in open(corpus_dir / "html_manifest.jsonl", encoding="utf-8"):
        m = json.loads(line)
        out.append({"url": m["url"], "body": (corpus_dir / m["path"]).read_bytes(),
                    "content_type": "text/html; charset=utf-8", "date": DATE, "lang": m["lang"]})
    return out


def read(path, fmt, cfg):
    return list(iter_file(str(path), fmt, cfg))


def test_warc_reads_every_page_with_offsets_and_payload(tmp_path, pages, cfg):
    p = tmp_path / "a.warc.gz"
    assert write_warc(str(p), pages) == len(pages)
    recs = read(p, "warc", cfg)
    assert [r["url"] for r in recs] == [pg["url"] for pg in pages]
    assert all(r["reason"] is None for r in recs)
    assert [r["content"] for r in recs] == [pg["body"] for pg in pages]
    # members: warcinfo, then request/response per page; each response is the 2nd member of its pair
    offs = gzip_members(p)
    assert [r["offset"] for r in recs] == offs[2::2]
    assert recs[0]["meta"]["warc_date"] == DATE and recs[0]["content_type"] == "text/html"


def test_uncompressed_warc_and_wet(tmp_path, pages, cfg, corpus_docs):
    p = tmp_path / "plain.warc"
    write_warc(str(p), pages[:4], gzip_records=False)
    recs = read(p, "warc", cfg)
    assert [r["content"] for r in recs] == [pg["body"] for pg in pages[:4]]
    docs = [{"url": f"https://fixture.invalid/{d['id']}", "text": d["text"], "date": DATE} for d in corpus_docs[:5]]
    w = tmp_path / "t.warc.wet.gz"
    write_wet(str(w), docs)
    recs = read(w, "wet", cfg)
    assert [r["content"].decode("utf-8") for r in recs] == [d["text"] for d in docs]
    assert recs[0]["meta"]["warc_type"] == "conversion"


def test_corrupt_gzip_member_is_quarantined_and_reading_resyncs(tmp_path, pages, cfg):
    good = tmp_path / "good.warc.gz"
    write_warc(str(good), pages[:6])
    offs = gzip_members(good)
    data = bytearray(good.read_bytes())
    bad_member = offs[4]  # the 2nd page's response
    data[bad_member + 40: bad_member + 80] = b"\x00" * 40
    p = tmp_path / "corrupt.warc.gz"
    p.write_bytes(bytes(data))
    recs = read(p, "warc", cfg)
    bad = [r for r in recs if r["reason"]]
    assert len(bad) == 1 and bad[0]["reason"] == "malformed:corrupt_gzip"
    assert bad[0]["offset"] == bad_member
    assert str(p) in bad[0]["detail"] and str(bad_member) in bad[0]["detail"]
    # every page after the damaged one is still read
    assert [r["url"] for r in recs if not r["reason"]] == [pg["url"] for i, pg in enumerate(pages[:6]) if i != 1]


def test_garbage_between_members_is_quarantined(tmp_path, pages, cfg):
    good = tmp_path / "good.warc.gz"
    write_warc(str(good), pages[:3])
    offs = gzip_members(good)
    data = good.read_bytes()
    junk = (ROOT / ".venv/lib/python3.11/site-packages/matplotlib/mpl-data/images/back.png").read_bytes()
    p = tmp_path / "junk.warc.gz"
    p.write_bytes(data[:offs[3]] + junk + data[offs[3]:])
    recs = read(p, "warc", cfg)
    assert [r["reason"] for r in recs].count("malformed:corrupt_gzip") == 1
    assert [r["url"] for r in recs if not r["reason"]] == [pg["url"] for pg in pages[:3]]


def test_truncated_record(tmp_path, pages, cfg):
    good = tmp_path / "good.warc.gz"
    write_warc(str(good), pages[:3])
    offs = gzip_members(good)
    p = tmp_path / "trunc.warc.gz"
    p.write_bytes(good.read_bytes()[: offs[6] + 300])  # cut inside the 3rd page's response member
    recs = read(p, "warc", cfg)
    assert [r["reason"] for r in recs] == [None, None, "malformed:truncated_record"]
    assert recs[2]["offset"] == offs[6] and str(p) in recs[2]["detail"]
    plain = tmp_path / "plain.warc"
    write_warc(str(plain), pages[:2], gzip_records=False)
    q = tmp_path / "trunc.warc"
    q.write_bytes(plain.read_bytes()[:-5000])
    recs = read(q, "warc", cfg)
    assert recs[0]["reason"] is None and recs[-1]["reason"] == "malformed:truncated_record"


def test_too_large_warc_payload_keeps_a_bounded_prefix(tmp_path, pages, cfg):
    p = tmp_path / "a.warc.gz"
    write_warc(str(p), pages[:2])
    small = dict(cfg, max_doc_bytes=len(pages[0]["body"]) - 1)
    recs = read(p, "warc", small)
    assert recs[0]["reason"] == "malformed:too_large"
    assert str(len(pages[0]["body"])) in recs[0]["detail"]
    assert len(recs[0]["text"]) <= cfg["quarantine_prefix_chars"]
    assert recs[1]["reason"] is None or len(pages[1]["body"]) > small["max_doc_bytes"]


def test_jsonl_bad_lines(tmp_path, corpus_docs, cfg):
    d = corpus_docs[0]
    lines = [json.dumps(d, ensure_ascii=False).encode(),
             json.dumps({k: v for k, v in d.items() if k != "text"}).encode(),   # missing text
             json.dumps(dict(d, text=12345)).encode(),                            # wrong type
             json.dumps(dict(d, text=d["text"].split("\n\n")[:3])).encode(),      # a list
             json.dumps(dict(d, text="  \n ")).encode(),                          # empty
             json.dumps(dict(d, text=corpus_docs[1]["text"]), ensure_ascii=False).encode().replace(
                 corpus_docs[1]["text"][:4].encode(), b"\xff\xfe" + corpus_docs[1]["text"][2:4].encode(), 1),
             json.dumps(d, ensure_ascii=False).encode()[:-10],                    # cut JSON
             b"[1, 2]"]
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    recs = read(p, "jsonl", cfg)
    assert [r["reason"] for r in recs] == [None, "malformed:missing_text", "malformed:text_type",
                                           "malformed:text_type", "malformed:empty_text",
                                           "malformed:invalid_utf8", "malformed:json", "malformed:json_not_object"]
    starts = [0]
    for ln in lines[:-1]:
        starts.append(starts[-1] + len(ln) + 1)
    assert [r["offset"] for r in recs] == starts
    assert all(str(p) in r["detail"] for r in recs[1:])
    assert recs[0]["text"] == d["text"] and recs[0]["meta"]["license"] == d["license"]
    assert recs[0]["source"] == d["source"]


def test_jsonl_50mb_line_is_quarantined_without_loading_it(tmp_path, corpus_docs, cfg):
    text = corpus_docs[0]["text"]
    big = (text + "\n\n") * (50 * 2**20 // len(text.encode()) + 1)
    p = tmp_path / "big.jsonl"
    with open(p, "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "big", "text": big}, ensure_ascii=False) + "\n")
        f.write(json.dumps(corpus_docs[1], ensure_ascii=False) + "\n")
    size = p.stat().st_size
    recs = read(p, "jsonl", cfg)
    assert recs[0]["reason"] == "malformed:too_large"
    assert len(recs[0]["text"]) <= cfg["quarantine_prefix_chars"]
    assert str(size - len(json.dumps(corpus_docs[1], ensure_ascii=False).encode()) - 1) in recs[0]["detail"]
    assert recs[1]["reason"] is None and recs[1]["text"] == corpus_docs[1]["text"]
    assert recs[1]["offset"] == size - len(json.dumps(corpus_docs[1], ensure_ascii=False).encode()) - 1


def test_compressed_jsonl_and_corrupt_gzip(tmp_path, corpus_docs, cfg):
    import zstandard

    blob = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus_docs[:50]).encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(blob))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(blob))
    for name in ("a.jsonl.gz", "a.jsonl.zst"):
        recs = read(tmp_path / name, "jsonl", cfg)
        assert [r["text"] for r in recs] == [d["text"] for d in corpus_docs[:50]]
    gz = bytearray(gzip.compress(blob))
    gz[len(gz) // 2: len(gz) // 2 + 64] = b"\x00" * 64
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(gz))
    recs = read(tmp_path / "bad.jsonl.gz", "jsonl", cfg)
    assert recs[-1]["reason"] == "malformed:corrupt_compression"
    assert "bad.jsonl.gz" in recs[-1]["detail"]
    # the lines before the damage come through intact; garbage decoded from the damaged block (if any)
    # is quarantined line by line, never passed on as text
    good = [r["text"] for r in recs if r["reason"] is None]
    assert 0 < len(good) < 50 and good == [d["text"] for d in corpus_docs[:len(good)]]
    assert all(r["reason"].startswith("malformed:") for r in recs if r["reason"])


def test_parquet_text_and_wrong_type(tmp_path, corpus_docs, cfg):
    docs = corpus_docs[:20]
    pq.write_table(pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs],
                             "url": [f"https://fixture.invalid/{i}" for i in range(20)],
                             "lang": [d["lang"] for d in docs]}), tmp_path / "a.parquet")
    recs = read(tmp_path / "a.parquet", "parquet", cfg)
    assert [r["text"] for r in recs] == [d["text"] for d in docs]
    assert [r["offset"] for r in recs] == list(range(20)) and recs[3]["meta"]["lang"] == docs[3]["lang"]
    pq.write_table(pa.table({"text": [len(d["text"]) for d in docs]}), tmp_path / "b.parquet")
    assert {r["reason"] for r in read(tmp_path / "b.parquet", "parquet", cfg)} == {"malformed:text_type"}
    pq.write_table(pa.table({"body": [d["text"] for d in docs]}), tmp_path / "c.parquet")
    assert {r["reason"] for r in read(tmp_path / "c.parquet", "parquet", cfg)} == {"malformed:missing_text"}


def test_zero_byte_file_and_listing(tmp_path, cfg):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "empty.warc.gz").write_bytes(b"")
    (tmp_path / "d" / "notes.html").write_text("<p>skipped inside a directory</p>")
    (tmp_path / "d" / "x.jsonl").write_text("")
    files = list_inputs([tmp_path / "d"])
    assert [(Path(f.path).name, f.fmt) for f in files] == [("empty.warc.gz", "warc"), ("x.jsonl", "jsonl")]
    recs = read(files[0].path, "warc", cfg)
    assert [r["reason"] for r in recs] == ["malformed:empty_file"] and files[0].path in recs[0]["detail"]
    assert [f.fmt for f in list_inputs([str(tmp_path / "d" / "**" / "*.warc.gz")])] == ["warc"]
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        list_inputs([tmp_path / "does-not-exist"])
    with pytest.raises(ValueError, match="notes.html"):
        list_inputs([tmp_path / "d" / "notes.html"])


def test_raw_batch_round_trip(cfg, corpus_docs, tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus_docs[:3]), encoding="utf-8")
    b = to_batch(read(p, "jsonl", cfg))
    assert b.schema == RAW_SCHEMA and b.num_rows == 3
    assert dict(b.column("meta").to_pylist()[0])["domain"] == corpus_docs[0]["domain"]
