"""Ingest readers on real WARC/WET/JSONL/Parquet built from the fixture corpus, and on damaged copies.

Each bad-input case must come out as a quarantine row `malformed:<what>` naming the file and offset
(or, for a missing path, an error naming it): nothing may disappear silently.
"""
from __future__ import annotations

import gzip
import io
import json
import re
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


# ---------------------------------------------------------------- #11: hostile inputs
def plain_record_starts(data: bytes) -> list[int]:
    """Start offsets of the records of an uncompressed WARC, found by the record separator (test-side)."""
    return [0] + [m.start() + 4 for m in re.finditer(rb"\r\n\r\nWARC/1\.0\r\n", data)]


def lie_about_length(record: bytes, delta: int) -> bytes:
    """The record with its WARC Content-Length header changed by delta (the block itself untouched)."""
    head, sep, rest = record.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    head = head[:m.start(1)] + str(int(m.group(1)) + delta).encode() + head[m.end(1):]
    return head + sep + rest


@pytest.mark.parametrize("gz", [True, False], ids=["warc.gz", "warc"])
@pytest.mark.parametrize("delta", [300, -300], ids=["too-many", "too-few"])
def test_warc_content_length_lie_keeps_every_later_record(tmp_path, pages, cfg, gz, delta):
    src = tmp_path / ("good.warc.gz" if gz else "good.warc")
    write_warc(str(src), pages[:5], gzip_records=gz)
    data = src.read_bytes()
    starts = gzip_members(src) if gz else plain_record_starts(data)
    a, b = starts[4], starts[5]          # the 2nd page's response record (warcinfo, req, resp, req, resp, ...)
    rec = gzip.decompress(data[a:b]) if gz else data[a:b]
    bad = lie_about_length(rec, delta)
    bad = gzip.compress(bad, mtime=0) if gz else bad
    p = tmp_path / ("lie.warc.gz" if gz else "lie.warc")
    p.write_bytes(data[:a] + bad + data[b:])
    end = a + len(bad)                    # where the damaged record really ends (the next record's start)
    recs = read(p, "warc", cfg)
    assert [r["url"] for r in recs if r["reason"] is None] == [pg["url"] for i, pg in enumerate(pages[:5]) if i != 1]
    assert [r["content"] for r in recs if r["reason"] is None] == [pg["body"] for i, pg in enumerate(pages[:5]) if i != 1]
    q = [r for r in recs if r["reason"]]
    assert len(q) == 1 and q[0]["reason"] == "malformed:content_length", q
    assert q[0]["offset"] == a and int(q[0]["meta"]["span_end"]) == end > a
    assert f"{a}-{end}" in q[0]["detail"] and str(p) in q[0]["detail"]


def test_doc_ids_unique_across_folders_and_stable(tmp_path, corpus_docs, cfg):
    from dataflow.stages.preprocess.stage import doc_id

    docs = corpus_docs[:30]
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        pq.write_table(table, tmp_path / sub / "train-00000.parquet")
    files = list_inputs([tmp_path])
    assert len(files) == 2

    def ids():
        return [doc_id(r["file"], r["offset"]) for f in files for r in read(f.path, f.fmt, cfg)]

    first = ids()
    assert len(set(first)) == 2 * len(docs)     # distinct records, distinct ids
    assert ids() == first                       # a rerun gives the same ids
    again = [doc_id(r["file"], r["offset"]) for r in read("file://" + files[0].path, "parquet", cfg)]
    assert again == first[:len(docs)]           # a file:// URI is the same input as its path
    recs = read(files[0].path, "parquet", cfg)
    assert [r["meta"]["id"] for r in recs] == [d["id"] for d in docs]


def test_lone_surrogates_are_quarantined_not_fatal(tmp_path, corpus_docs, cfg):
    d = corpus_docs[0]
    lines = [json.dumps(d), json.dumps(dict(d, url="https://x.invalid/\ud800")),
             json.dumps(dict(d, license="MIT\udfff")), json.dumps(dict(d, text=d["text"] + "\ud83d"))]
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="ascii")  # json.dumps escapes: \\ud800 in the file
    recs = read(p, "jsonl", cfg)
    assert [r["reason"] for r in recs] == [None, "malformed:lone_surrogate", "malformed:lone_surrogate", None]
    assert "`url`" in recs[1]["detail"] and "`license`" in recs[2]["detail"] and str(p) in recs[1]["detail"]
    assert recs[3]["text"] == d["text"]
    to_batch(recs)  # Arrow takes every row (a surrogate would raise UnicodeEncodeError here)


def corrupt_first_data_page(path: Path, column: str) -> None:
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(0)
    col = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == column)
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    size = col.total_compressed_size     # counted from the first page of the chunk
    data = bytearray(path.read_bytes())
    mid = start + size // 2
    data[mid: mid + 64] = bytes(64)
    path.write_bytes(bytes(data))


def test_corrupt_parquet_data_page_is_one_row_group_quarantine(tmp_path, corpus_docs, cfg):
    docs = corpus_docs[:40]
    p = tmp_path / "z.parquet"
    pq.write_table(pa.table({"text": [d["text"] for d in docs]}), p, row_group_size=20, compression="zstd")
    corrupt_first_data_page(p, "text")
    recs = read(p, "parquet", cfg)
    assert recs[0]["reason"] == "malformed:parquet_row_group" and recs[0]["offset"] == 0
    assert "row group 0" in recs[0]["detail"] and str(p) in recs[0]["detail"]
    assert [r["text"] for r in recs[1:]] == [d["text"] for d in docs[20:]]
    assert [r["offset"] for r in recs[1:]] == list(range(20, 40))


def test_jsonl_bom_and_cr_only_line_ends(tmp_path, corpus_docs, cfg):
    docs = corpus_docs[:5]
    body = [json.dumps(d, ensure_ascii=False).encode() for d in docs]
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(body) + b"\n")
    assert [r["text"] for r in read(tmp_path / "bom.jsonl", "jsonl", cfg)] == [d["text"] for d in docs]
    (tmp_path / "cr.jsonl").write_bytes(b"\r".join(body) + b"\r")
    recs = read(tmp_path / "cr.jsonl", "jsonl", cfg)
    assert [r["text"] for r in recs] == [d["text"] for d in docs]
    starts = [0]
    for ln in body[:-1]:
        starts.append(starts[-1] + len(ln) + 1)
    assert [r["offset"] for r in recs] == starts


@pytest.mark.parametrize("kind", ["dictionary", "large_string", "string_view"])
def test_parquet_text_of_any_string_type(tmp_path, corpus_docs, cfg, kind):
    texts = [d["text"] for d in corpus_docs[:10]]
    arr = pa.array(texts, pa.large_string()) if kind == "large_string" else pa.array(texts)
    if kind == "dictionary":
        arr = arr.dictionary_encode()
    elif kind == "string_view":
        arr = arr.cast(pa.string_view())
    p = tmp_path / f"{kind}.parquet"
    pq.write_table(pa.table({"text": arr}), p, use_dictionary=kind == "dictionary")
    assert [r["text"] for r in read(p, "parquet", cfg)] == texts


def test_provenance_wins_over_input_meta(tmp_path, corpus_docs, cfg):
    d = corpus_docs[0]
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(dict(d, meta={"file": "/elsewhere.jsonl", "offset": 99}, file="x")) + "\n")
    r = read(p, "jsonl", cfg)[0]
    assert r["meta"]["file"] == str(p) and r["meta"]["offset"] == "0"
    assert r["meta"]["src_offset"] == "99" and r["meta"]["src_file"] in ("/elsewhere.jsonl", "x")
    q = tmp_path / "m.parquet"
    pq.write_table(pa.table({"text": [d["text"]], "offset": [7], "meta": [[("file", "/e.parquet")]]},
                            schema=pa.schema([("text", pa.string()), ("offset", pa.int64()),
                                              ("meta", pa.map_(pa.string(), pa.string()))])), q)
    r = read(q, "parquet", cfg)[0]
    assert r["meta"]["file"] == str(q) and r["meta"]["offset"] == "0" and r["meta"]["src_offset"] == "7"
    assert r["meta"]["src_file"] == "/e.parquet"


def test_chunked_transfer_encoding_is_removed(tmp_path, pages, cfg):
    body = pages[0]["body"]
    pieces = [body[i:i + 4000] for i in range(0, len(body), 4000)]
    chunked = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in pieces) + b"0\r\n\r\n"
    p = tmp_path / "c.warc.gz"
    write_warc(str(p), [dict(pages[0], body=chunked)])
    raw = p.read_bytes()
    offs = gzip_members(p)
    rec = gzip.decompress(raw[offs[2]:]).replace(b"Content-Type: text/html; charset=utf-8\r\n",
                                                 b"Transfer-Encoding: chunked\r\nContent-Type: text/html; charset=utf-8\r\n", 1)
    rec = lie_about_length(rec, len(b"Transfer-Encoding: chunked\r\n"))
    p.write_bytes(raw[:offs[2]] + gzip.compress(rec, mtime=0))
    r = read(p, "warc", cfg)
    assert len(r) == 1 and r[0]["reason"] is None and r[0]["content"] == body
    assert r[0]["meta"]["dechunked"] == "true"


def test_listing_and_reading_take_file_uris(tmp_path, pages, cfg):
    (tmp_path / "d").mkdir()
    write_warc(str(tmp_path / "d" / "a.warc.gz"), pages[:2])
    files = list_inputs([f"file://{tmp_path}/d"])
    assert [f.path for f in files] == [str(tmp_path / "d" / "a.warc.gz")]
    assert [f.path for f in list_inputs([f"file://{tmp_path}/d/*.warc.gz"])] == [files[0].path]
    recs = read(f"file://{tmp_path}/d/a.warc.gz", "warc", cfg)
    assert [r["url"] for r in recs] == [pg["url"] for pg in pages[:2]]


# ---------------------------------------------------------------- #13: byte-range splits of big WARC files
@pytest.mark.parametrize("gz", [True, False], ids=["warc.gz", "warc"])
def test_byte_range_splits_read_each_record_once(tmp_path, pages, cfg, gz):
    p = tmp_path / ("s.warc.gz" if gz else "s.warc")
    write_warc(str(p), pages, gzip_records=gz)
    whole = read(p, "warc", cfg)
    assert [r["url"] for r in whole] == [pg["url"] for pg in pages]
    size = p.stat().st_size
    for n in (2, 3, 7, 50):
        step = -(-size // n)
        parts = [list(iter_file(str(p), "warc", cfg, start=a, end=min(a + step, size))) for a in range(0, size, step)]
        got = [(r["offset"], r["url"]) for part in parts for r in part]
        assert got == [(r["offset"], r["url"]) for r in whole], n
        assert sum(1 for part in parts if part) > 1


def test_split_read_on_spark_uses_several_tasks(spark, tmp_path, pages, cfg):
    from pyspark.sql import functions as F

    from dataflow import ingest
    from dataflow.stages.preprocess.stage import doc_id

    p, q = tmp_path / "big.warc.gz", tmp_path / "big.warc"
    write_warc(str(p), pages)
    write_warc(str(q), pages, gzip_records=False)
    expect = sorted((str(f), o) for f, offs in ((p, gzip_members(p)[2::2]),) for o in offs)
    split = dict(cfg, split_bytes=p.stat().st_size // 4, files_per_task=1)
    df, files = ingest.read(spark, [f"file://{p}", str(q)], split)
    rows = df.select("file", "offset", "url", "reason", F.spark_partition_id().alias("task")).collect()
    assert len(rows) == 2 * len(pages) and all(r.reason is None for r in rows)
    assert sorted((r.file, r.offset) for r in rows if r.file == str(p)) == expect
    assert sorted(r.url for r in rows if r.file == str(q)) == sorted(pg["url"] for pg in pages)
    assert len({r.task for r in rows if r.file == str(p)}) > 1 and len({r.task for r in rows if r.file == str(q)}) > 1
    unsplit = [doc_id(r["file"], r["offset"]) for f in (p, q) for r in read(f, "warc", cfg)]
    assert sorted(doc_id(r.file, r.offset) for r in rows) == sorted(unsplit)
