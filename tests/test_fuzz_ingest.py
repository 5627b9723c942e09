"""Fuzzing the ingest readers with real files built from the sample corpus, damaged at random (seeded).

Each example builds a WARC (Common Crawl layout or plain), WET, JSONL or Parquet file from the fixture
corpus, damages it (bit flips, truncation, lying Content-Length, spliced foreign members, garbage between
records, wrong encodings, odd types), and keeps its own account of what it did: which records are intact
and where each damaged unit starts. Damage is placed on non-adjacent units, so each damaged unit must
come back as exactly one quarantine row at its start offset. The reader must not crash, must return every
intact record unchanged and in order, and its row count (the stage's `input`) must equal intact + damaged.

Whether a flipped bit damaged a gzip member is decided by zlib on that member alone (a flip in the gzip
header's mtime or OS byte changes nothing), not by the reader under test.

`FUZZ_EXAMPLES=N` sets the examples per format (default 12: the whole file runs well under 2 minutes);
`FUZZ_SEED` changes the seed.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from dataflow.ingest import iter_file
from dataflow.ingest.records import to_batch
from tools.corpus.warc import write_warc, write_wet

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("FUZZ_SEED", "20231122"))
DATE = "2024-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def cfg():
    return yaml.safe_load(open(ROOT / "conf" / "pipeline.yaml"))["preprocess"]


def members(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every gzip member (test-side, with zlib on the clean file)."""
    out, i = [], 0
    while i < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[i:])
        end = len(data) - len(d.unused_data)
        out.append((i, end))
        i = end
    return out


def member_ok(orig: bytes, damaged: bytes) -> bool:
    """True when the damaged member still decompresses, on its own, to the original bytes."""
    try:
        d = zlib.decompressobj(31)
        out = d.decompress(damaged)
        return d.eof and not d.unused_data and out == gzip.decompress(orig)
    except zlib.error:
        return False


def lie(record: bytes, delta: int) -> bytes:
    head, sep, rest = record.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    n = max(0, int(m.group(1)) + delta)
    if n == int(m.group(1)):
        n += 1
    return head[:m.start(1)] + str(n).encode() + head[m.end(1):] + sep + rest


def garbage(rng: random.Random, corpus_text: str) -> bytes:
    """Bytes that are no WARC record: random binary, or text of the corpus, never a gzip member start."""
    if rng.random() < 0.5:
        g = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    else:
        a = rng.randrange(max(1, len(corpus_text) - 500))
        g = corpus_text[a:a + rng.randrange(1, 500)].encode("utf-8")
    return g.replace(b"\x1f\x8b", b"\x1f\x00").replace(b"WARC/", b"warc/") or b"\x00"


def plan(rng: random.Random, n: int, k: int) -> list[int]:
    """Up to k indices in [0, n) with no two adjacent (each damaged unit stays its own span)."""
    free = list(range(n))
    rng.shuffle(free)
    out: list[int] = []
    for i in free:
        if len(out) == k:
            break
        if all(abs(i - j) > 1 for j in out):
            out.append(i)
    return sorted(out)


def check(rows, *, path: str, intact: list[tuple], damaged: list[int], key):
    """The reader's rows against the test's own account."""
    to_batch(rows)  # every row fits the Arrow schema (no lone surrogate, right types)
    good = [key(r) for r in rows if r["reason"] is None]
    bad = [r for r in rows if r["reason"] is not None]
    assert good == intact, (len(good), len(intact))
    assert sorted(r["offset"] for r in bad) == sorted(damaged), ([r["detail"] for r in bad], damaged)
    for r in bad:
        assert r["reason"].startswith("malformed:") and path in r["detail"] and str(r["offset"]) in r["detail"]
        if "span_end" in r["meta"]:
            assert int(r["meta"]["span_end"]) > r["offset"]
    assert len(rows) == len(intact) + len(damaged)   # `input` equals the independent count


# ---------------------------------------------------------------- WARC / WET, one gzip member per record
def build_gz(rng, tmp: Path, pages, docs, wet: bool):
    """A damaged CC-layout file; returns (path, intact [(url, content)], damaged unit offsets)."""
    src = tmp / ("src.warc.wet.gz" if wet else "src.warc.gz")
    if wet:
        chosen = rng.sample(docs, rng.randrange(3, 8))
        items = [{"url": f"https://fixture.invalid/{d['id']}", "text": d["text"], "date": DATE} for d in chosen]
        write_wet(str(src), items)
        payload = [(it["url"], it["text"].encode("utf-8")) for it in items]
        first_doc, per = 1, 1          # warcinfo, then one conversion member per document
    else:
        chosen = rng.sample(pages, rng.randrange(3, 7))
        write_warc(str(src), chosen)
        payload = [(p["url"], p["body"]) for p in chosen]
        first_doc, per = 2, 2          # warcinfo, then request + response per page
    data = src.read_bytes()
    spans = members(data)
    units = [data[a:b] for a, b in spans]
    doc_of = {first_doc + per * i: i for i in range(len(payload))}
    foreign = tmp / "foreign.warc.gz"
    if wet:                       # a member of another file of the same kind
        od = rng.choice(docs)
        write_wet(str(foreign), [{"url": f"https://fixture.invalid/{od['id']}?foreign", "text": od["text"], "date": DATE}])
        other = {"url": f"https://fixture.invalid/{od['id']}", "body": od["text"].encode("utf-8")}
    else:
        other = rng.choice(pages)
        write_warc(str(foreign), [dict(other, url=other["url"] + "?foreign")])
    fdata = foreign.read_bytes()
    fresp = fdata[members(fdata)[-1][0]:]
    ops = {i: rng.choice(["flip", "lie", "garbage", "splice", "flip"]) for i in plan(rng, len(units), rng.randrange(1, 4))}
    out, intact, damaged, pos = [], [], [], 0
    for i, unit in enumerate(units):
        op = ops.get(i)
        if op == "garbage":       # junk before this member: the junk is the damaged unit
            g = garbage(rng, chosen[0]["text"] if wet else chosen[0]["body"].decode("utf-8", "replace"))
            damaged.append(pos)
            out.append(g)
            pos += len(g)
        if op == "splice":        # a foreign (intact) response member inserted before this one
            out.append(fresp)
            pos += len(fresp)
            intact.append((other["url"] + "?foreign", other["body"]))
        if op == "flip":
            b = bytearray(unit)
            bit = rng.randrange(len(b) * 8)
            b[bit // 8] ^= 1 << (bit % 8)
            b = bytes(b)
            if member_ok(unit, b):
                if i in doc_of:
                    intact.append(payload[doc_of[i]])
            else:
                damaged.append(pos)
            unit = b
        elif op == "lie":
            unit = gzip.compress(lie(gzip.decompress(unit), rng.choice([-1, 1]) * rng.randrange(1, 500)), mtime=0)
            damaged.append(pos)
        elif i in doc_of:
            intact.append(payload[doc_of[i]])
        out.append(unit)
        pos += len(unit)
    blob = b"".join(out)
    if rng.random() < 0.3:       # truncate inside the last member (unless it is already damaged)
        last_start = pos - len(out[-1])
        if last_start not in damaged and len(out) > 1 and (len(units) - 1) not in ops and (len(units) - 2) not in ops:
            blob = blob[:last_start + rng.randrange(1, len(out[-1]))]
            if (len(units) - 1) in doc_of:
                intact.pop()
            damaged.append(last_start)
    p = tmp / ("f.warc.wet.gz" if wet else "f.warc.gz")
    p.write_bytes(blob)
    return p, intact, damaged


@pytest.mark.parametrize("wet", [False, True], ids=["warc.gz", "wet.gz"])
def test_fuzz_gzip_warc_and_wet(tmp_path, pages, corpus_docs, cfg, wet):
    rng = random.Random(SEED + wet)
    docs = [d for d in corpus_docs if 200 < len(d["text"]) < 20000]
    for n in range(EXAMPLES):
        d = tmp_path / str(n)
        d.mkdir()
        p, intact, damaged = build_gz(rng, d, pages, docs, wet)
        rows = list(iter_file(str(p), "wet" if wet else "warc", cfg))
        check(rows, path=str(p), intact=intact, damaged=damaged, key=lambda r: (r["url"], r["content"]))
        # and read in byte ranges: the same rows
        size = p.stat().st_size
        step = max(1, size // rng.randrange(2, 6))
        split = [r for a in range(0, size, step) for r in iter_file(str(p), "wet" if wet else "warc", cfg,
                                                                      start=a, end=a + step)]
        assert [(r["offset"], r["reason"], r["url"]) for r in split] == [(r["offset"], r["reason"], r["url"]) for r in rows]


# ---------------------------------------------------------------- plain WARC
def test_fuzz_plain_warc(tmp_path, pages, cfg):
    rng = random.Random(SEED + 7)
    for n in range(EXAMPLES):
        chosen = rng.sample(pages, rng.randrange(3, 7))
        src = tmp_path / f"{n}.src.warc"
        write_warc(str(src), chosen, gzip_records=False)
        data = src.read_bytes()
        starts = [0] + [m.start() + 4 for m in re.finditer(rb"\r\n\r\nWARC/1\.0\r\n", data)] + [len(data)]
        units = [data[a:b] for a, b in zip(starts, starts[1:])]
        doc_of = {2 + 2 * i: i for i in range(len(chosen))}
        ops = {i: rng.choice(["lie", "garbage"]) for i in plan(rng, len(units), rng.randrange(1, 3)) if i > 0}
        out, intact, damaged, pos = [], [], [], 0
        for i, unit in enumerate(units):
            op = ops.get(i)
            if op == "garbage":
                g = garbage(rng, chosen[0]["body"].decode("utf-8", "replace")).lstrip(b"\r\n") or b"\x00"
                damaged.append(pos)
                out.append(g)
                pos += len(g)
            if op == "lie":
                unit = lie(unit, rng.choice([-1, 1]) * rng.randrange(1, 500))
                damaged.append(pos)
            elif i in doc_of:
                intact.append((chosen[doc_of[i]]["url"], chosen[doc_of[i]]["body"]))
            out.append(unit)
            pos += len(unit)
        if rng.random() < 0.3 and (len(units) - 1) not in ops and (len(units) - 2) not in ops:
            cut = pos - len(units[-1]) + rng.randrange(1, len(units[-1]) - 4)  # inside the last record's block/header
            out = [b"".join(out)[:cut]]
            intact.pop()
            damaged.append(pos - len(units[-1]))
        p = tmp_path / f"{n}.warc"
        p.write_bytes(b"".join(out))
        rows = list(iter_file(str(p), "warc", cfg))
        check(rows, path=str(p), intact=intact, damaged=damaged, key=lambda r: (r["url"], r["content"]))


# ---------------------------------------------------------------- JSONL
def test_fuzz_jsonl(tmp_path, corpus_docs, cfg):
    rng = random.Random(SEED + 11)
    docs = [d for d in corpus_docs if len(d["text"]) < 50000]
    for n in range(EXAMPLES):
        chosen = rng.sample(docs, rng.randrange(5, 20))
        eol = rng.choice([b"\n", b"\r\n", b"\r"])
        lines = [json.dumps(d, ensure_ascii=rng.random() < 0.5).encode("utf-8") for d in chosen]
        bad = set(plan(rng, len(lines), rng.randrange(0, 4)))
        intact, damaged, out, pos = [], [], [], 0
        bom = rng.random() < 0.3
        if bom:
            out.append(b"\xef\xbb\xbf")
        for i, (d, line) in enumerate(zip(chosen, lines)):
            start = pos
            if i in bad:
                kind = rng.choice(["utf8", "cut", "type", "surrogate", "notobj", "missing"])
                if kind == "utf8":      # a GBK/latin-1 byte in a UTF-8 line: the line is wrong bytes
                    j = rng.randrange(1, len(line) - 1)
                    line = line[:j] + b"\xff" + line[j + 1:]
                elif kind == "cut":
                    line = line[:rng.randrange(1, len(line) - 1)].rstrip(b"\r\n") or b"{"
                elif kind == "type":
                    line = json.dumps(dict(d, text=rng.choice([1, 2.5, True, ["a"], {"t": "x"}]))).encode()
                elif kind == "surrogate":
                    line = json.dumps(dict(d, url="https://x.invalid/\udc80")).encode()
                elif kind == "notobj":
                    line = json.dumps([d["text"][:20]]).encode()
                else:
                    line = json.dumps({k: v for k, v in d.items() if k != "text"}).encode()
                damaged.append(start)
            else:
                intact.append((d["id"], d["text"]))
            out.append(line + eol)
            pos += len(line) + len(eol) + (3 if bom and i == 0 else 0)
            if rng.random() < 0.1:    # blank lines are no records
                out.append(eol)
                pos += len(eol)
        p = tmp_path / f"{n}.jsonl"
        p.write_bytes(b"".join(out))
        rows = list(iter_file(str(p), "jsonl", cfg))
        check(rows, path=str(p), intact=intact, damaged=damaged, key=lambda r: (r["meta"]["id"], r["text"]))


def test_fuzz_compressed_jsonl_truncated(tmp_path, corpus_docs, cfg):
    """A cut .jsonl.gz/.zst: the lines before the damage come through unchanged, then one quarantine row."""
    import zstandard

    rng = random.Random(SEED + 13)
    for n in range(max(2, EXAMPLES // 3)):
        chosen = rng.sample(corpus_docs, 30)
        blob = b"".join(json.dumps(d, ensure_ascii=False).encode() + b"\n" for d in chosen)
        for suffix, comp in ((".jsonl.gz", lambda b: gzip.compress(b, mtime=0)),
                             (".jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b))):
            c = comp(blob)
            p = tmp_path / f"{n}{suffix}"
            p.write_bytes(c[:rng.randrange(len(c) // 4, len(c) - 8)])
            rows = list(iter_file(str(p), "jsonl", cfg))
            good = [r["text"] for r in rows if r["reason"] is None]
            assert good == [d["text"] for d in chosen[:len(good)]] and len(good) < 30
            assert rows[-1]["reason"] in ("malformed:corrupt_compression", "malformed:truncated")
            assert all(str(p) in r["detail"] for r in rows if r["reason"])


# ---------------------------------------------------------------- Parquet
def test_fuzz_parquet(tmp_path, corpus_docs, cfg):
    rng = random.Random(SEED + 17)
    docs = [d for d in corpus_docs if len(d["text"]) < 50000]
    for n in range(EXAMPLES):
        chosen = rng.sample(docs, rng.randrange(10, 60))
        texts = [d["text"] for d in chosen]
        kind = rng.choice(["string", "large_string", "dictionary", "string_view", "binary", "int"])
        if kind == "binary":
            arr = pa.array([t.encode() for t in texts], pa.binary())
        elif kind == "int":
            arr = pa.array([len(t) for t in texts], pa.int64())
        else:
            arr = pa.array(texts, pa.large_string() if kind == "large_string" else pa.string())
            if kind == "dictionary":
                arr = arr.dictionary_encode()
            elif kind == "string_view":
                arr = arr.cast(pa.string_view())
        group = rng.randrange(3, 20)
        p = tmp_path / f"{n}.parquet"
        pq.write_table(pa.table({"id": [d["id"] for d in chosen], "text": arr}), p, row_group_size=group,
                       compression=rng.choice(["zstd", "snappy", "gzip"]), use_dictionary=kind == "dictionary")
        md = pq.ParquetFile(p).metadata
        groups = list(range(md.num_row_groups))
        hit = set(plan(rng, len(groups), rng.randrange(0, 3)))
        data = bytearray(p.read_bytes())
        for g in hit:                 # zero 32 bytes in the middle of the text column's pages
            col = md.row_group(g).column(1)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            mid = start + col.total_compressed_size // 2
            data[mid:mid + 32] = bytes(32)
        p.write_bytes(bytes(data))
        truncated = rng.random() < 0.15
        if truncated:
            p.write_bytes(bytes(data[:rng.randrange(8, len(data) - 8)]))
        rows = list(iter_file(str(p), "parquet", cfg))
        to_batch(rows)
        if truncated:                 # the footer is gone: one row for the file
            assert [r["reason"] for r in rows] == ["malformed:parquet"] and str(p) in rows[0]["detail"]
            continue
        oracle = pq.ParquetFile(p)
        intact, damaged, row = [], [], 0
        for g in groups:              # pyarrow's whole-group read decides what is damaged
            nrows = md.row_group(g).num_rows
            try:
                t = oracle.read_row_group(g).to_pylist()
            except Exception:  # noqa: BLE001 - the bare codec errors the reader must survive
                damaged.extend(range(row, row + nrows))   # each row the footer declares: a row of its own
            else:
                for i, r in enumerate(t):
                    ok = isinstance(r["text"], str) and r["text"].strip()
                    (intact if ok else damaged).append((r["id"], r["text"]) if ok else row + i)
            row += nrows
        check(rows, path=str(p), intact=intact, damaged=damaged, key=lambda r: (r["meta"]["id"], r["text"]))


# ---------------------------------------------------------------- compressed JSONL: every name and codec
def _codecs():
    import bz2
    import lzma

    import zstandard

    def halves(f):   # two members/streams/frames, as parallel compressors (pigz, pbzip2, pzstd) write them
        return lambda b: f(b[:len(b) // 2]) + f(b[len(b) // 2:])

    return {".gz": halves(lambda b: gzip.compress(b, mtime=0)), ".bz2": halves(bz2.compress),
            ".xz": halves(lzma.compress), ".zst": zstandard.ZstdCompressor().compress,
            ".zstd": halves(zstandard.ZstdCompressor(write_checksum=True).compress)}


def test_fuzz_compressed_jsonl_every_codec(tmp_path, corpus_docs, cfg):
    """Whole files read exactly; a file cut anywhere gives the lines wholly before the cut, then one
    `malformed:truncated` row at the first line not read (counted here from the lines written)."""
    rng = random.Random(SEED + 19)
    codecs = _codecs()
    docs = [d for d in corpus_docs if len(d["text"]) < 20000]
    for n in range(EXAMPLES):
        chosen = rng.sample(docs, rng.randrange(4, 16))
        lines = [json.dumps(d, ensure_ascii=rng.random() < 0.5).encode("utf-8") + b"\n" for d in chosen]
        suffix = rng.choice(sorted(codecs))
        c = codecs[suffix](b"".join(lines))
        p = tmp_path / f"{n}{rng.choice(['.jsonl', '.json', '.ndjson'])}{suffix}"
        cut = rng.random() < 0.5
        if cut:
            c = c[:rng.randrange(1, len(c))]
        p.write_bytes(c)
        rows = list(iter_file(str(p), "jsonl", cfg))
        to_batch(rows)
        if not cut:
            check(rows, path=str(p), intact=[(d["id"], d["text"]) for d in chosen], damaged=[],
                  key=lambda r: (r["meta"]["id"], r["text"]))
            continue
        good = [(r["meta"]["id"], r["text"]) for r in rows if r["reason"] is None]
        k = len(good)
        assert good == [(d["id"], d["text"]) for d in chosen[:k]] and k < len(chosen)
        assert [r["reason"] for r in rows[k:]] == ["malformed:truncated"], [r["detail"] for r in rows[k:]]
        assert rows[-1]["offset"] == sum(map(len, lines[:k])) and str(p) in rows[-1]["detail"]


# ---------------------------------------------------------------- HTTP Content-Encoding in WARC responses
def _http_encoders():
    import brotli
    import zstandard

    def raw_deflate(b):
        c = zlib.compressobj(wbits=-15)
        return c.compress(b) + c.flush()

    return [("gzip", lambda b: gzip.compress(b, mtime=0)), ("x-gzip", lambda b: gzip.compress(b, mtime=0)),
            ("gzip", lambda b: gzip.compress(b[:len(b) // 3], mtime=0) + gzip.compress(b[len(b) // 3:], mtime=0)),
            ("deflate", zlib.compress), ("deflate", raw_deflate), ("br", brotli.compress),
            ("zstd", zstandard.ZstdCompressor().compress), ("gzip, br", lambda b: brotli.compress(gzip.compress(b, mtime=0))),
            (None, lambda b: b)]


def test_fuzz_http_content_encodings(tmp_path, pages, cfg):
    """Responses with random codings, some bodies cut short: every intact body comes back decoded, every cut
    one is exactly one `malformed:truncated_body` row at its record's offset (never a shortened page)."""
    from tools.corpus.warc import _record

    rng = random.Random(SEED + 23)
    encoders = _http_encoders()
    for n in range(EXAMPLES):
        chosen = rng.sample(pages, rng.randrange(3, 8))
        gz = rng.random() < 0.5
        out, intact, damaged, pos = [], [], [], 0
        for i, pg in enumerate(chosen):
            coding, enc = rng.choice(encoders)
            payload = enc(pg["body"])
            cut = coding is not None and rng.random() < 0.3
            if cut:
                payload = payload[:rng.randrange(1, len(payload))]
            head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            head += f"Content-Encoding: {coding}\r\n" if coding else ""
            block = head.encode() + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
            url = f"{pg['url']}?{n}-{i}"
            rec = _record([("WARC-Type", "response"), ("WARC-Date", DATE), ("WARC-Target-URI", url),
                           ("Content-Type", "application/http; msgtype=response")], block)
            unit = gzip.compress(rec, mtime=0) if gz else rec
            (damaged.append(pos) if cut else intact.append((url, pg["body"])))
            out.append(unit)
            pos += len(unit)
        p = tmp_path / (f"{n}.warc.gz" if gz else f"{n}.warc")
        p.write_bytes(b"".join(out))
        rows = list(iter_file(str(p), "warc", cfg))
        check(rows, path=str(p), intact=intact, damaged=damaged, key=lambda r: (r["url"], r["content"]))
        assert all(r["reason"] == "malformed:truncated_body" for r in rows if r["reason"])
