"""Payload bytes -> text: HTML main-content extraction with resiliparse, plain text decoded strictly.

resiliparse instead of Trafilatura: Trafilatura is ~95% of datatrove's extraction runtime (datatrove#182).
Charsets: the declared one is tried strictly, then resiliparse's detector; an unknown label (`utf8mb4` is
UTF-8, `none`/`binary`/`x-user-defined`/`x-garbage` name nothing; Python's own codecs such as `undefined`,
`idna` or `unicode_escape` are no charsets) never raises, the bytes decide, and `meta.charset_ignored` keeps
the label that was passed over.
"""
from __future__ import annotations

import codecs
import re

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

# magic numbers of formats that turn up as WARC payloads but are not text (file(1)/libmagic)
_BINARY_MAGIC = (b"\x89PNG", b"%PDF", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b",
                 b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\x7fELF", b"wOFF", b"wOF2", b"\xd0\xcf\x11\xe0",
                 b"7z\xbc\xaf", b"Rar!", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


def binary_reason(body: bytes, sniff: int) -> str | None:
    """Why a payload is binary (a known magic number, or NUL bytes in its head), or None for text."""
    head = body[:sniff]
    for magic in _BINARY_MAGIC:
        if head.startswith(magic):
            return f"starts with {magic!r}"
    if b"\x00" in head:
        return "NUL bytes in the first bytes"
    return None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# charset labels Python does not know that mean UTF-8 (MySQL's names for it, seen in HTTP headers)
_UTF8_LABELS = {"utf8mb4", "utf8mb3", "utf-8mb4", "utf8mb"}
# Python codecs that are text encodings to Python but no web charset (WHATWG Encoding Standard): `undefined`
# raises on any input, idna/punycode/escape codecs turn bytes into something else; UTF-7 is refused by browsers
_NOT_CHARSETS = {"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7", "mbcs", "oem"}
_LABEL_KEEP = 64   # chars of an ignored label kept in meta
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# WHATWG MIME Sniffing §7.1 "identifying a resource with an unknown MIME type": the HTML tag patterns
# (case-insensitive, after leading whitespace, followed by a space or `>`)
_HTML_SNIFF = re.compile(rb"\s*<(?:!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p|!--)"
                         rb"[ >\t\n\r\f]", re.I)


_XML_DECL = re.compile(rb"\s*<\?xml[^>]{0,200}\?>", re.I)
_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def looks_like_html(body: bytes, sniff: int) -> bool:
    """A payload without a declared type is HTML when its head matches WHATWG's HTML sniffing patterns."""
    head = body[:sniff]
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    m = _XML_DECL.match(head)  # XHTML: an XML declaration before the HTML patterns is skipped
    return _HTML_SNIFF.match(head, m.end() if m else 0) is not None


def charset_label(label: str | None) -> str | None:
    """A Python codec name for an HTTP/meta charset label, or None when the label names no known codec
    (`none`, `binary`, `unicode`, `x-user-defined`, typos): then the bytes decide, not the label."""
    if not label:
        return None
    label = label.strip().strip("'\"").lower()
    if label in _UTF8_LABELS:
        return "utf-8"
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError, TypeError):
        return None
    # codecs that are not text encodings (rot13, base64, zlib ...) and UTF-16/32 without BOM are not trusted
    if not codecs.lookup(name)._is_text_encoding or name.startswith(("utf-16", "utf-32")) or name in _NOT_CHARSETS:
        return None
    return name


def damaged_utf8(body: bytes) -> bool:
    """UTF-8 with some bad bytes (its valid multi-byte sequences outnumber the invalid ones), as opposed
    to another encoding: a majority vote, so a detector is not asked to explain a few broken bytes."""
    s = body.decode("utf-8", "replace")
    bad = s.count("\ufffd")
    return len(_NON_ASCII.findall(s)) > bad  # valid multi-byte characters vs invalid sequences


def decode(body: bytes, declared: str | None, *, html: bool, detect: bool = True) -> tuple[str | None, dict]:
    """(text, info) with info = {charset, charset_from} or {error}. Strict decoding with the BOM's or the
    declared charset (UTF-8 when none); when that fails, resiliparse's detector (uchardet; for HTML the
    page's own meta charset first) names the encoding, again decoded strictly. Bytes that are damaged
    UTF-8 stay an error for plain text; HTML is then decoded leniently (U+FFFD for bad bytes).
    `detect=False`: the bytes are UTF-8 by their format's definition (WET), no detector.
    A declared label that names no usable charset is passed over (the bytes decide) and kept in
    info["charset_ignored"]; no label, however odd, raises."""
    text, info = _decode(body, declared, html=html, detect=detect)
    if declared and declared.strip().strip("'\"") and charset_label(declared) is None:
        info["charset_ignored"] = declared.strip()[:_LABEL_KEEP]
    return text, info


def _strict(body: bytes, name: str) -> tuple[str | None, Exception | None]:
    """body decoded strictly with a codec, or the error (any codec failure, not only UnicodeDecodeError)."""
    try:
        return body.decode(name), None
    except (UnicodeError, LookupError, ValueError) as e:
        return None, e


def _decode(body: bytes, declared: str | None, *, html: bool, detect: bool) -> tuple[str | None, dict]:
    for bom, name in _BOMS:
        if body.startswith(bom):
            try:
                return body[len(bom):].decode(name if name != "utf-16" else ("utf-16-le" if bom == codecs.BOM_UTF16_LE else "utf-16-be")), \
                    {"charset": name, "charset_from": "bom"}
            except UnicodeDecodeError:
                break
    label = charset_label(declared)
    first = label or "utf-8"
    text, err = _strict(body, first)
    if text is not None:
        return text, {"charset": first, "charset_from": "declared" if label else "default"}
    if first == "utf-8" and (not detect or damaged_utf8(body)):
        if html:
            return bytes_to_str(body, "utf-8"), {"charset": "utf-8", "charset_from": "lenient"}
        return None, {"error": f"not UTF-8: {err}", "what": "invalid_utf8"}
    detected = None
    for how in (("meta", "detected") if html else ("detected",)):  # the page's meta charset, then uchardet
        cand = charset_label(detect_encoding(body, from_html_meta=how == "meta"))
        if cand and cand != first:
            detected = detected or cand
            text, _ = _strict(body, cand)
            if text is not None:
                return text, {"charset": cand, "charset_from": how}
    if html:
        enc = detected or first
        return bytes_to_str(body, enc), {"charset": enc, "charset_from": "lenient"}
    what = "invalid_utf8" if first == "utf-8" else "encoding"
    return None, {"error": f"declared {declared or 'no charset'}, detected {detected or 'nothing'}: {err}", "what": what}


def html_to_text(body: bytes, *, charset: str | None, main_content: bool, list_bullets: bool,
                 info: dict | None = None) -> str:
    """Main text of an HTML page with block structure kept (blank line between paragraphs).

    Decoding as `decode(html=True)`; `info` (if given) receives the charset used and where it came from."""
    text_html, how = decode(body, charset, html=True)
    if info is not None:
        info.update(how)
    tree = HTMLTree.parse(text_html)
    return extract_plain_text(tree, main_content=main_content, preserve_formatting=True,
                              list_bullets=list_bullets, alt_texts=False)


def decode_text(body: bytes, charset: str | None) -> str:
    """Plain-text payloads (WET, text/plain) are decoded strictly (`decode(html=False)`): bytes that no
    charset explains raise UnicodeDecodeError."""
    text, how = decode(body, charset, html=False)
    if text is None:
        raise UnicodeDecodeError("utf-8", body[:1], 0, 1, how["error"])
    return text
