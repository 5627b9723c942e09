"""The bounded decode layer (`dataflow.ingest.decode`) on the fixture corpus's real text: every codec round-trips,
every member is read, a cut stream is `truncated` (never a short read), bad data is `corrupt`, and a bomb stops at
the cap having held about the cap."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tracemalloc
import zlib

import brotli
import pytest
import zstandard

from dataflow.ingest.decode import DecodeError, codec_for_name, content_codings, decode_bytes, open_decoded


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


# each codec's compressor, as the tool that writes it in the wild would (two members where the format has them)
COMPRESS = {
    "gzip": lambda d: gzip.compress(d[: len(d) // 3]) + gzip.compress(d[len(d) // 3:]),
    "bz2": lambda d: bz2.compress(d[: len(d) // 2]) + bz2.compress(d[len(d) // 2:]),
    "xz": lambda d: lzma.compress(d[: len(d) // 2]) + lzma.compress(d[len(d) // 2:]),
    "zstd": lambda d: (zstandard.ZstdCompressor(write_checksum=True).compress(d[:1000])
                       + zstandard.ZstdCompressor().compress(d[1000:])),
    "br": brotli.compress,
    "deflate": zlib.compress,
}


@pytest.fixture(scope="module")
def text(corpus_docs) -> bytes:
    data = "\n".join(d["text"] for d in corpus_docs[:60]).encode("utf-8")
    assert len(data) > 200_000  # several zstd blocks and zlib steps
    return data


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_round_trip_every_member_streamed_and_whole(text, codec):
    blob = COMPRESS[codec](text)
    assert decode_bytes(blob, codec, cap=len(text)) == text
    d = open_decoded(io.BytesIO(blob), codec, cap=None)
    parts = []
    while chunk := d.read(777):
        assert len(chunk) <= 777
        parts.append(chunk)
    assert b"".join(parts) == text


def test_raw_deflate_and_identity(text):
    assert decode_bytes(_raw_deflate(text), "deflate", cap=len(text)) == text
    assert decode_bytes(text, "identity", cap=len(text)) == text
    assert open_decoded(io.BytesIO(text), None, cap=len(text)).read(-1) == text


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_truncated_stream_raises_never_a_short_read(text, codec):
    blob = COMPRESS[codec](text)
    for cut in (len(blob) - 1, len(blob) - 7, len(blob) // 2, 12):
        with pytest.raises(DecodeError) as e:
            decode_bytes(blob[:cut], codec, cap=len(text))
        assert e.value.what == "truncated", (cut, str(e.value))
        d = open_decoded(io.BytesIO(blob[:cut]), codec, cap=None)
        with pytest.raises(DecodeError, match="truncat|cut short"):
            while d.read(4096):
                pass


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_corrupt_data_is_corrupt(text, codec):
    with pytest.raises(DecodeError) as e:
        decode_bytes(text[:5000], codec, cap=len(text))  # plain text is no codec's stream
    assert e.value.what == "corrupt" and codec.split("-")[0] in str(e.value)


def test_gzip_crc_mismatch_and_garbage_after_member_are_corrupt(text):
    blob = bytearray(gzip.compress(text))
    blob[-6] ^= 0xFF  # the CRC32 of the member
    with pytest.raises(DecodeError) as e:
        decode_bytes(bytes(blob), "gzip", cap=len(text))
    assert e.value.what == "corrupt"
    with pytest.raises(DecodeError) as e:
        decode_bytes(gzip.compress(text) + b"not another member", "gzip", cap=len(text))
    assert e.value.what == "corrupt"
    # zero padding after a member (gzip(1) and tape tools write it) is not data
    assert decode_bytes(gzip.compress(text) + b"\x00" * 1000, "gzip", cap=len(text)) == text


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_bomb_stops_at_cap_with_memory_about_cap(codec):
    bomb = COMPRESS[codec](b"\x00" * (64 << 20))
    assert len(bomb) < 1 << 20
    cap = 1 << 20
    window = 8 << 20 if codec == "xz" else 0  # the format's own dictionary (xz preset 6: 8 MiB), not output
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError) as e:
            decode_bytes(bomb, codec, cap=cap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.what == "too_large" and str(cap) in str(e.value)
    assert peak < 8 * cap + window  # whole would be 64 MiB


def test_cap_exact_and_stream_returns_bytes_up_to_cap(text):
    blob = gzip.compress(text)
    assert decode_bytes(blob, "gzip", cap=len(text)) == text
    with pytest.raises(DecodeError) as e:
        decode_bytes(blob, "gzip", cap=len(text) - 1)
    assert e.value.what == "too_large"
    d = open_decoded(io.BytesIO(blob), "gzip", cap=1000)
    assert d.read(600) == text[:600] and d.read(600) == text[600:1000]
    with pytest.raises(DecodeError):
        d.read(600)


def test_empty_payload_is_empty_and_unknown_codec_is_named():
    for codec in [*COMPRESS, "identity"]:
        assert decode_bytes(b"", codec, cap=10) == b""
    with pytest.raises(DecodeError) as e:
        decode_bytes(b"abc", "compress", cap=10)
    assert e.value.what == "unknown_encoding" and "compress" in str(e.value)


def test_codec_for_name_and_content_codings():
    assert [codec_for_name(n) for n in ("a.jsonl.GZ", "b.gzip", "c.bz2", "d.xz", "e.lzma", "f.zst", "g.ZSTD",
                                         "h.br", "i.jsonl", "noext")] == \
        ["gzip", "gzip", "bz2", "xz", "xz", "zstd", "zstd", "br", None, None]
    assert content_codings("gzip, br") == ["gzip", "br"]
    assert content_codings(" X-Gzip ") == ["gzip"]
    assert content_codings("identity") == [] and content_codings("") == [] and content_codings(None) == []
    assert content_codings("deflate, x-Unknown") == ["deflate", "x-unknown"]


# ---------------------------------------------------------------- charset labels of HTML/plain payloads
@pytest.mark.parametrize("label", ["undefined", "x-garbage", "idna", "unicode_escape", "utf-7", "x" * 5000,
                                   "utf\x00-8"])
def test_odd_charset_label_never_raises_and_is_recorded(pages, label):
    from dataflow.stages.preprocess.html import decode, html_to_text

    page = next(pg for pg in pages if pg["lang"].startswith("zh") or pg["lang"] == "ja")   # non-ASCII UTF-8
    body = page["body"]
    text, info = decode(body, label, html=True)
    assert text == body.decode("utf-8") and info["charset"] == "utf-8"   # the bytes decide: they are UTF-8
    assert info["charset_ignored"] == label[:64]
    plain, pinfo = decode(body, label, html=False)
    assert plain == body.decode("utf-8") and pinfo["charset_ignored"] == label[:64]
    meta: dict = {}
    assert html_to_text(body, charset=label, main_content=True, list_bullets=True, info=meta).strip()
    assert meta["charset_ignored"] == label[:64]
