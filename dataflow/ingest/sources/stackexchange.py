"""Q&A: StackExchange data dumps (`Posts.xml`, plain or inside the published `<site>.7z`) -> one record per
question with its answers, and the Q&A recipe.

Schema (archive.org `stackexchange` dumps): `<posts><row Id=.. PostTypeId=.. ParentId=.. Score=.. Title=..
Body=(HTML) Tags=.. .../></posts>`; PostTypeId 1 is a question, 2 an answer (ParentId names its question),
other types (tag wikis, moderator nominations, ...) are rows of their own that the recipe rejects
(`qa.post_type`). An answer whose question is not in the file is quarantined (`malformed:orphan_answer`).

Answers follow their question anywhere in the file, so a question is complete only at the end of the
file. A per-site dump is held in memory; past `spill_bytes` of rows (conf `sources.qa.spill_bytes`) the rows
go to `spill_partitions` temporary files by question id (a question by its Id, an answer by its ParentId),
and each partition is then assembled on its own: memory stays ~file/partitions, so Stack Overflow's own
~100 GB Posts.xml reads like a small site (a grace hash join on disk). Records keep their row-number offsets
either way; only their order differs when spilled. Bodies are HTML, converted to text
with resiliparse (the HTML extractor `dataflow.stages.preprocess` uses), answers sorted by score high to low,
laid out as `Q: title\\n\\nquestion\\n\\nA: answer ...` (RedPajama-Data rp_v1 stack_exchange layout).
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import zlib
import xml.etree.ElementTree as ET
from typing import Iterator

from dataflow.core import fs
from dataflow.ingest.decode import DecodeError, codec_for_name, open_decoded
from dataflow.ingest.sources._base import MAX_DOC_BYTES, bad, guarded, kept
from dataflow.core.confschema import Count, List, Str, optional_section

QUESTION, ANSWER = "1", "2"
# defaults when no cfg is passed; DP passes conf/pipeline.yaml `sources.qa`
MIN_ANSWERS = 0        # questions kept with at least this many answers; conf: sources.qa.min_answers
SITES: tuple = ()      # sites kept (empty: all); LLaMA §2.1 kept "the 28 largest websites"; conf: sources.qa.sites
_CHUNK = 1 << 20


def html_to_text(html: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    if not html:
        return ""
    text = extract_plain_text(html, main_content=False, preserve_formatting=True, alt_texts=False,
                              links=False, list_bullets=True)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def site_of(uri: str) -> str:
    name = posixpath.basename(uri.rstrip("/"))
    if name.lower() == "posts.xml":
        return posixpath.basename(posixpath.dirname(uri.rstrip("/"))) or ""
    return re.sub(r"(-posts)?\.(7z|xml)$", "", name, flags=re.I)


def layout(title: str, question_html: str, answers: list[dict]) -> str:
    parts = [f"Q: {title}".rstrip(), html_to_text(question_html)]
    for a in answers:
        parts.append("A: " + html_to_text(a.get("Body", "")))
    return "\n\n".join(p for p in parts if p)


def _score(row: dict) -> int:
    try:
        return int(row.get("Score", "0"))
    except ValueError:
        return 0


TOO_LARGE = "\0too_large"   # key of a row's stub when the row passed max_doc_bytes (no XML attribute has a NUL)
MAX_DUMP_BYTES = 1 << 40     # decoded bytes of one Posts.xml (Stack Overflow's is ~100 GB); conf: sources.qa.max_dump_bytes
SPILL_BYTES = 256 << 20   # rows held in memory before spilling; conf: sources.qa.spill_bytes
SPILL_PARTITIONS = 64     # spill files by question id; conf: sources.qa.spill_partitions


class _Collector:
    """Push-parses Posts.xml bytes (fed in chunks, from a stream or from py7zr's writer) into rows; past
    `spill_bytes` the rows go to `partitions` temporary files keyed by question id."""

    def __init__(self, spill_bytes: int = SPILL_BYTES, partitions: int = SPILL_PARTITIONS,
                 max_row: int = MAX_DOC_BYTES):
        self.parser = ET.XMLPullParser(events=("end",))
        self.max_row = int(max_row)
        self.rows: list[tuple[int, dict]] = []
        self.n = 0
        self.held = 0
        self.spill_bytes, self.partitions = int(spill_bytes), max(1, int(partitions))
        self.spill = None      # temporary directory once spilling
        self.files: list = []

    def _key(self, row: dict) -> int:
        qid = row.get("ParentId") if row.get("PostTypeId") == ANSWER else row.get("Id")
        return zlib.crc32(str(qid).encode()) % self.partitions

    def _write(self, i: int, row: dict) -> None:
        self.files[self._key(row)].write(json.dumps([i, row], ensure_ascii=False) + "\n")

    def _add(self, i: int, row: dict) -> None:
        if self.spill is not None:
            self._write(i, row)
            return
        self.rows.append((i, row))
        self.held += sum(len(v) for v in row.values())
        if self.held > self.spill_bytes:
            import tempfile

            self.spill = tempfile.TemporaryDirectory(prefix="ziya2-se-spill-")
            self.files = [open(os.path.join(self.spill.name, f"{k:05d}.jsonl"), "w", encoding="utf-8")
                          for k in range(self.partitions)]
            for j, r in self.rows:
                self._write(j, r)
            self.rows, self.held = [], 0

    def groups(self) -> Iterator[list[tuple[int, dict]]]:
        """The rows in groups that hold every question with all of its answers: all rows (not spilled), or
        one spill partition at a time, each in file order."""
        if self.spill is None:
            yield self.rows
            return
        try:
            for f in self.files:
                f.close()
            for f in self.files:
                with open(f.name, encoding="utf-8") as g:
                    yield [tuple(json.loads(line)) for line in g]
        finally:
            self.spill.cleanup()

    def feed(self, data: bytes) -> None:
        self.parser.feed(data)
        self._drain()

    def close(self) -> None:
        self.parser.close()
        self._drain()

    def _drain(self):
        for _, el in self.parser.read_events():
            if el.tag == "row":
                row = dict(el.attrib)
                size = sum(len(v) for v in row.values())
                if size > self.max_row:   # kept as a stub naming its size: its row says too_large
                    row = {k: row[k] for k in ("Id", "PostTypeId", "ParentId") if k in row}
                    row[TOO_LARGE] = str(size)
                self._add(self.n, row)
                self.n += 1
                el.clear()


def _collect_7z(uri: str, col: _Collector, cap: int) -> None:
    import py7zr
    from py7zr.io import Py7zIO, WriterFactory

    class Feed(Py7zIO):
        def __init__(self, on):
            self.on, self.n = on, 0

        def write(self, s):
            self.n += len(s)
            if self.n > cap:   # py7zr decompresses into this writer: the cap stops a bomb as it inflates
                raise DecodeError("too_large", f"Posts.xml decodes to more than {cap} bytes")
            if self.on:
                col.feed(bytes(s))
            return len(s)

        def read(self, size=None):
            return b""

        def seek(self, offset, whence=0):
            return self.n

        def flush(self):
            pass

        def size(self):
            return self.n

    class Factory(WriterFactory):
        def create(self, filename):
            return Feed(posixpath.basename(filename).lower() == "posts.xml")

    with fs.open_input(uri) as fh, py7zr.SevenZipFile(fh, mode="r") as z:
        names = [n for n in z.getnames() if posixpath.basename(n).lower() == "posts.xml"]
        if not names:
            raise ValueError(f"no Posts.xml in the archive (members: {z.getnames()[:8]})")
        z.extract(targets=names, factory=Factory())
    col.close()


def _records(rows: list[tuple[int, dict]], common: dict, site: str, max_row: int) -> Iterator[dict]:
    """The records of a group of rows that holds each of its questions with all of their answers."""
    answers: dict[str, list[dict]] = {}
    questions = set()
    for _, row in rows:
        if row.get("PostTypeId") == QUESTION:
            questions.add(row.get("Id"))
        elif row.get("PostTypeId") == ANSWER and TOO_LARGE not in row:
            answers.setdefault(row.get("ParentId"), []).append(row)
    for i, row in rows:
        if row.get("PostTypeId") == ANSWER and row.get("ParentId") in questions and TOO_LARGE not in row:
            continue   # inside its question's row
        yield guarded(lambda: _row(i, row, answers, common, site, max_row), unit=f"row {i} (post {row.get('Id')})",
                      **common, offset=i, post_id=row.get("Id"))


def _row(i: int, row: dict, answers: dict, common: dict, site: str, max_row: int) -> dict:
    """The record of one post row: a question with its answers, an orphan answer, a too-large row, another post."""
    ptype, pid = row.get("PostTypeId"), row.get("Id")
    if TOO_LARGE in row:
        return bad(**common, offset=i, what="too_large", post_id=pid,
                   why=f"row {i}: post {pid} holds {row[TOO_LARGE]} characters, past max_doc_bytes")
    if ptype == ANSWER:
        return bad(**common, offset=i, what="orphan_answer", post_id=pid,
                   why=f"row {i}: answer {pid} names question {row.get('ParentId')}, absent from the file")
    if ptype == QUESTION:
        ans = sorted(answers.get(pid, []), key=_score, reverse=True)   # stable: ties keep file order
        text = layout(row.get("Title", ""), row.get("Body", ""), ans)
        if len(text) > max_row:
            return bad(**common, offset=i, what="too_large", post_id=pid,
                       why=f"row {i}: question {pid} with its {len(ans)} answers holds {len(text)} characters, "
                           f"past max_doc_bytes={max_row}")
        return kept(**common, offset=i, text=text, post_type=ptype, post_id=pid, title=row.get("Title"),
                    score=_score(row), tags=row.get("Tags"), n_answers=len(ans),
                    answer_ids=json.dumps([a.get("Id") for a in ans]),
                    answer_scores=json.dumps([_score(a) for a in ans]),
                    accepted_answer_id=row.get("AcceptedAnswerId"), license=row.get("ContentLicense"),
                    url=f"https://{site}/questions/{pid}" if "." in site else None)
    return kept(**common, offset=i, text=html_to_text(row.get("Body", "")), post_type=ptype, post_id=pid)


def iter_stackexchange(uri: str, *, source: str, cfg: dict) -> Iterator[dict]:
    cfg = cfg or {}
    site = str(cfg.get("site") or site_of(uri))
    max_row, cap = int(cfg.get("max_doc_bytes", MAX_DOC_BYTES)), int(cfg.get("max_dump_bytes", MAX_DUMP_BYTES))
    col = _Collector(cfg.get("spill_bytes", SPILL_BYTES), cfg.get("spill_partitions", SPILL_PARTITIONS), max_row)
    damage = None
    try:
        if uri.lower().endswith(".7z"):
            _collect_7z(uri, col, cap)
        else:
            with fs.open_stream(uri) as raw, open_decoded(raw, codec_for_name(uri), cap=cap) as fh:
                while True:
                    data = fh.read(_CHUNK)
                    if not data:
                        break
                    col.feed(data)
                col.close()
    except ET.ParseError as e:
        damage = ("xml", f"XML unreadable after row {col.n}: {e}")
    except DecodeError as e:
        damage = ("too_large" if e.what == "too_large" else "corrupt_archive",
                  f"Posts.xml unreadable after row {col.n}: {e}")
    except Exception as e:   # py7zr raises its own Bad7zFile/CrcError/DecompressionError, lzma errors, EOFError
        damage = ("corrupt_archive", f"archive unreadable after row {col.n}: {type(e).__name__}: {e}")
    common = dict(source=source, file=uri, source_type="qa", site=site)
    for rows in col.groups():
        yield from _records(rows, common, site, max_row)
    if damage is not None:
        yield bad(**common, offset=col.n, what=damage[0], why=f"{damage[1]}; rest of file unreadable")


def process_qa(text: str, meta: dict, cfg: dict | None = None) -> tuple[str | None, str | None]:
    cfg = cfg or {}
    if meta.get("post_type") != QUESTION:
        return None, "qa.post_type"
    sites = tuple(cfg.get("sites", SITES))
    if sites and meta.get("site") not in sites:
        return None, "qa.site"
    if int(meta.get("n_answers", "0")) < int(cfg.get("min_answers", MIN_ANSWERS)):
        return None, "qa.min_answers"
    return (text, None) if text.strip() else (None, "qa.empty")


# sources.qa
SPEC = optional_section({"sites": List(Str(non_empty=True), unique=True), "min_answers": Count(0),
                         "spill_bytes": Count(1), "spill_partitions": Count(1), "max_dump_bytes": Count(1)})
