"""Ingest readers on real WARC/WET/JSONL/Parquet built from the fixture corpus, and on damaged copies.

Each bad-input case must come out as a quarantine row `malformed:<what>` naming the file and offset
(or, for a missing path, an error naming it): nothing may disappear silently.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import gzip_members
from tools.corpus.warc import write_warc, write_wet
from dataflow.ingest import iter_file, list_inputs
from dataflow.ingest.jsonl import iter_jsonl
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
    (tmp_path / "d" / "notes.html").write_text("<p>listed inside a directory, as unknown</p>")
    (tmp_path / "d" / "x.jsonl").write_text("")
    files = list_inputs([tmp_path / "d"])
    assert [(Path(f.path).name, f.fmt) for f in files] == [("notes.html", "unknown"), ("empty.warc.gz", "warc"),
                                                           ("x.jsonl", "jsonl")]
    recs = read(files[1].path, "warc", cfg)
    assert [r["reason"] for r in recs] == ["malformed:empty_file"] and files[1].path in recs[0]["detail"]
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
    from dataflow.stages.preprocess.stage import record_id

    docs = corpus_docs[:30]
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        pq.write_table(table, tmp_path / sub / "train-00000.parquet")
    files = list_inputs([tmp_path])
    assert len(files) == 2 and sorted(f.rel for f in files) == ["a/train-00000.parquet", "b/train-00000.parquet"]

    def ids(listed):
        return [record_id(r, r["meta"]) for f in listed for r in iter_file(f.path, f.fmt, cfg, rel=f.rel)]

    first = ids(files)
    assert len(set(first)) == 2 * len(docs)     # distinct records, distinct ids
    assert ids(files) == first                  # a rerun gives the same ids
    assert ids(list_inputs([f"file://{tmp_path}"])) == first   # a file:// URI is the same input as its path
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
    # every row the footer declares leaves as a row: the 20 of the damaged group quarantined, the next 20 read
    assert len(recs) == 40 and [r["offset"] for r in recs] == list(range(40))
    assert all(r["reason"] == "malformed:parquet_row_group" for r in recs[:20])
    assert "row group 0" in recs[0]["detail"] and str(p) in recs[0]["detail"]
    assert [r["text"] for r in recs[20:]] == [d["text"] for d in docs[20:]]


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
    unsplit = [(r["file"], r["offset"]) for f in (p, q) for r in read(f, "warc", cfg)]
    assert sorted((r.file, r.offset) for r in rows) == sorted(unsplit)   # every record once, as unsplit


# ---------------------------------------------------------------- #25: JSONL names and codecs, listing, encodings
def _jsonl_blob(docs) -> bytes:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def _compressors():
    import bz2
    import lzma

    import zstandard

    return {"": lambda b: b, ".gz": lambda b: gzip.compress(b[:len(b) // 2], mtime=0) + gzip.compress(b[len(b) // 2:], mtime=0),
            ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": zstandard.ZstdCompressor().compress,
            ".zstd": lambda b: zstandard.ZstdCompressor(write_checksum=True).compress(b)}


def test_jsonl_every_name_and_codec_is_listed_and_read(tmp_path, corpus_docs, cfg):
    docs = corpus_docs[:12]
    blob = _jsonl_blob(docs)
    names = []
    for ext in (".jsonl", ".json", ".ndjson"):
        for suffix, comp in _compressors().items():
            names.append(f"d{ext}{suffix}")
            (tmp_path / names[-1]).write_bytes(comp(blob))
    files = list_inputs([tmp_path])
    assert sorted(Path(f.path).name for f in files) == sorted(names)
    assert {f.fmt for f in files} == {"jsonl"}
    for f in files:
        counter = {}
        recs = list(iter_jsonl(f.path, source="t", cfg=cfg, counter=counter))
        assert [r["text"] for r in recs] == [d["text"] for d in docs], f.path
        assert counter["seen"] == len(docs)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst", ".zstd"])
def test_cut_or_corrupt_compressed_jsonl_ends_in_one_row(tmp_path, corpus_docs, cfg, suffix):
    docs = corpus_docs[:40]
    blob = _jsonl_blob(docs)
    c = _compressors()[suffix](blob)
    p = tmp_path / f"cut.jsonl{suffix}"
    p.write_bytes(c[:len(c) * 3 // 4])
    counter = {}
    recs = list(iter_jsonl(str(p), source="t", cfg=cfg, counter=counter))
    good = [r["text"] for r in recs if r["reason"] is None]
    assert good == [d["text"] for d in docs[:len(good)]] and len(good) < len(docs)
    assert [r["reason"] for r in recs[len(good):]] == ["malformed:truncated"]
    lost = len(_jsonl_blob(docs[:len(good)]))   # the first line not read starts here (decompressed offset)
    assert recs[-1]["offset"] == lost and str(p) in recs[-1]["detail"] and str(lost) in recs[-1]["detail"]
    assert counter["seen"] == len(recs)


# codecs that check their data (gzip/bz2 CRC32, xz CRC64, zstd with its content checksum, as zstd(1) writes it);
# a zstd frame without a checksum cannot tell damaged bytes from data
@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zstd"])
def test_corrupt_compressed_jsonl_ends_in_one_row(tmp_path, corpus_docs, cfg, suffix):
    docs = corpus_docs[:40]
    bad = bytearray(_compressors()[suffix](_jsonl_blob(docs)))
    bad[len(bad) // 2: len(bad) // 2 + 64] = bytes(range(64))
    q = tmp_path / f"bad.jsonl{suffix}"
    q.write_bytes(bytes(bad))
    recs = list(iter_jsonl(str(q), source="t", cfg=cfg))
    assert recs[-1]["reason"] == "malformed:corrupt_compression" and str(q) in recs[-1]["detail"]
    good = [r["text"] for r in recs if r["reason"] is None]
    assert good == [d["text"] for d in docs[:len(good)]] and len(good) < len(docs)
    assert all(r["reason"] is None or r["reason"].startswith("malformed:") for r in recs)


def test_jsonl_huge_integer_quarantines_only_its_line(tmp_path, corpus_docs, cfg):
    d0, d1, d2 = corpus_docs[:3]
    lines = [json.dumps(d0, ensure_ascii=False).encode(),
             b'{"text": "x", "n": ' + b"7" * 5000 + b"}",   # Python refuses > 4300 digits with a ValueError
             json.dumps(d1, ensure_ascii=False).encode(),
             b'{"text": "y", "meta": {"n": -' + b"1" * 5000 + b"}}",
             json.dumps(d2, ensure_ascii=False).encode()]
    p = tmp_path / "odd.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    counter = {}
    recs = list(iter_jsonl(str(p), source="t", cfg=cfg, counter=counter))
    assert [r["reason"] for r in recs] == [None, "malformed:json", None, "malformed:json", None]
    assert [r["text"] for r in recs if r["reason"] is None] == [d0["text"], d1["text"], d2["text"]]
    assert "digits" in recs[1]["detail"] and "digits" in recs[3]["detail"]
    starts = [sum(len(ln) + 1 for ln in lines[:i]) for i in range(len(lines))]
    assert [r["offset"] for r in recs] == starts
    assert counter["seen"] == len(lines)


def test_listing_keeps_unknown_files_and_skips_hidden_names_at_every_depth(tmp_path, corpus_docs):
    d = tmp_path / "in"
    blob = _jsonl_blob(corpus_docs[:2])
    for rel in ("a.jsonl", "sub/b.jsonl", "sub/readme.txt", "sub/deep/c.jsonl",
                "_temporary/0/x.jsonl", "sub/.trash/y.jsonl", "sub/_attempt-1/z.jsonl", "sub/.b.jsonl.crc",
                "sub/deep/_SUCCESS", ".hidden.jsonl", "sub/stats.json"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(blob)
    expect = ["a.jsonl", "sub/b.jsonl", "sub/deep/c.jsonl", "sub/readme.txt"]
    files = list_inputs([d])
    assert [f.rel for f in files] == expect
    assert [f.fmt for f in files] == ["jsonl", "jsonl", "jsonl", "unknown"]
    assert {f.root for f in files} == {str(d)}
    globbed = list_inputs([str(d / "**" / "*.jsonl")])
    assert [f.rel for f in globbed] == [r for r in expect if r.endswith(".jsonl")]
    assert {f.root for f in globbed} == {str(d)}
    assert [f.rel for f in list_inputs([str(d / "sub" / "*")])] == ["b.jsonl", "readme.txt"]   # `*` stays in a folder
    assert [f.rel for f in list_inputs([str(d / "*" / "*.jsonl")])] == ["sub/b.jsonl"]
    named = list_inputs([d / "sub" / "deep" / "c.jsonl"])
    assert named[0].root == str(d / "sub" / "deep") and named[0].rel == "c.jsonl"


def test_listing_takes_an_existing_path_literally(tmp_path, corpus_docs, cfg):
    d = tmp_path / "lit"
    d.mkdir()
    blob = _jsonl_blob(corpus_docs[:3])
    (d / "a[1].jsonl").write_bytes(blob)
    (d / "a1.jsonl").write_bytes(_jsonl_blob(corpus_docs[3:4]))   # what `a[1].jsonl` means as a pattern
    files = list_inputs([str(d / "a[1].jsonl")])
    assert [Path(f.path).name for f in files] == ["a[1].jsonl"]
    assert [r["text"] for r in read(files[0].path, "jsonl", cfg)] == [x["text"] for x in corpus_docs[:3]]
    (tmp_path / "dir[x]").mkdir()
    (tmp_path / "dir[x]" / "b.jsonl").write_bytes(blob)
    assert [f.rel for f in list_inputs([str(tmp_path / "dir[x]")])] == ["b.jsonl"]


def test_listing_follows_links_without_looping_or_listing_twice(tmp_path, corpus_docs):
    import os

    d = tmp_path / "links"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.jsonl").write_bytes(_jsonl_blob(corpus_docs[:2]))
    (d / "z.jsonl").write_bytes(_jsonl_blob(corpus_docs[2:3]))
    os.symlink("..", d / "sub" / "loop")                  # a directory loop
    os.symlink(d / "sub", d / "alias")                    # the same folder twice
    os.symlink(d / "z.jsonl", d / "sub" / "z-link.jsonl")  # the same file twice
    os.symlink(d / "gone.jsonl", d / "broken.jsonl")       # no bytes behind it
    files = list_inputs([d])
    # first path in sorted order wins: alias/ < sub/, and alias/z-link.jsonl < z.jsonl
    assert [f.rel for f in files] == ["alias/a.jsonl", "alias/z-link.jsonl"]
    assert len(list_inputs([d, d / "sub"])) == 2                        # overlapping inputs: still once each
    assert [f.rel for f in list_inputs([str(d / "**" / "*.jsonl")])] == ["alias/a.jsonl", "alias/z-link.jsonl"]


def _response(url: str, http_block: bytes, length: str | None = None) -> bytes:
    """A WARC response record; `length` replaces its Content-Length value (a lying or odd one)."""
    from tools.corpus.warc import _record

    rec = _record([("WARC-Type", "response"), ("WARC-Date", DATE), ("WARC-Target-URI", url),
                   ("Content-Type", "application/http; msgtype=response")], http_block)
    if length is not None:
        rec = re.sub(rb"Content-Length: \d+", b"Content-Length: " + length.encode("utf-8"), rec, count=1)
    return rec


def _http(body: bytes, coding: str | None) -> bytes:
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
    if coding:
        head += f"Content-Encoding: {coding}\r\n"
    return head.encode("latin-1") + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def _write_records(path: Path, records: list[bytes], gz: bool) -> list[int]:
    """Writes the records (one gzip member each when gz); returns each one's offset."""
    offs, out = [], b""
    for rec in records:
        offs.append(len(out))
        out += gzip.compress(rec, mtime=0) if gz else rec
    path.write_bytes(out)
    return offs


def _encoders():
    import brotli
    import zstandard

    def raw_deflate(b):
        c = zlib.compressobj(wbits=-15)
        return c.compress(b) + c.flush()

    return {"gzip": lambda b: gzip.compress(b[:len(b) // 2], mtime=0) + gzip.compress(b[len(b) // 2:], mtime=0),
            "x-gzip": gzip.compress, "deflate": zlib.compress, "deflate-raw": raw_deflate, "br": brotli.compress,
            "zstd": zstandard.ZstdCompressor().compress,
            "gzip, br": lambda b: brotli.compress(gzip.compress(b, mtime=0))}


def test_http_content_encodings_are_decoded(tmp_path, pages, cfg):
    enc = _encoders()
    body = pages[0]["body"]
    names = list(enc)
    recs = [_response(f"{pages[0]['url']}?{i}", _http(enc[n](body), n.replace("-raw", ""))) for i, n in enumerate(names)]
    p = tmp_path / "enc.warc.gz"
    _write_records(p, recs, gz=True)
    rows = read(p, "warc", cfg)
    assert [r["reason"] for r in rows] == [None] * len(names)
    assert all(r["content"] == body for r in rows)
    assert [r["meta"]["content_encoding"] for r in rows] == [n.replace("-raw", "").replace("x-gzip", "gzip")
                                                             for n in names]


def test_http_bad_encodings_are_quarantined_and_reading_goes_on(tmp_path, pages, cfg):
    body = pages[0]["body"]
    gz = gzip.compress(body, mtime=0)
    bomb = gzip.compress(b" " * (cfg["max_doc_bytes"] + 1), mtime=0)
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    cases = [("compress", body, "malformed:content_encoding"), ("gzip", gz[:len(gz) // 2], "malformed:truncated_body"),
             ("br", _encoders()["br"](body)[:-3], "malformed:truncated_body"), ("gzip", bomb, "malformed:too_large"),
             ("gzip", bytes(flipped), "malformed:corrupt_body")]
    recs = []
    for i, (coding, payload, _) in enumerate(cases):
        recs.append(_response(f"{pages[0]['url']}?bad{i}", _http(payload, coding)))
        recs.append(_response(f"{pages[1]['url']}?good{i}", _http(pages[1]["body"], None)))
    p = tmp_path / "bad-enc.warc"
    offs = _write_records(p, recs, gz=False)
    rows = read(p, "warc", cfg)
    assert [r["reason"] for r in rows] == [x for _, _, why in cases for x in (why, None)]
    assert [r["offset"] for r in rows] == offs
    assert all(r["content"] == pages[1]["body"] for r in rows[1::2])
    assert "compress" in rows[0]["detail"] and str(p) in rows[0]["detail"]
    assert len(rows[6]["text"] or "") == 0 and str(cfg["max_doc_bytes"]) in rows[6]["detail"]


@pytest.mark.parametrize("gz", [True, False], ids=["warc.gz", "warc"])
@pytest.mark.parametrize("length", ["²", "١٢٣", "9" * 5000, "12a"])
def test_non_ascii_or_absurd_content_length_is_a_lying_length(tmp_path, pages, cfg, gz, length):
    recs = [_response(pg["url"], _http(pg["body"], None)) for pg in pages[:3]]
    recs[1] = _response(pages[1]["url"], _http(pages[1]["body"], None), length=length)
    p = tmp_path / ("len.warc.gz" if gz else "len.warc")
    offs = _write_records(p, recs, gz)
    rows = read(p, "warc", cfg)
    assert [r["reason"] for r in rows] == [None, "malformed:content_length", None]
    assert [r["offset"] for r in rows] == offs
    assert [r["content"] for r in rows[::2]] == [pages[0]["body"], pages[2]["body"]]
