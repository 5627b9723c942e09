"""Test inputs for the non-web source readers (`dataflow.ingest.sources`), in the formats the real dumps use, built
from package files and the sample corpus's real text:

- code: repository archives of installed PyPI distributions with their real licence files:
  `mwparserfromhell` (MIT, `.tar.gz`) and `py7zr` (LGPL-2.1, `.zip`); plus a GPL-3 archive of HumanEval
  programs (fixture docs.jsonl) with Debian's GPL-3 text (base-files `common-licenses`) as COPYING;
- papers: an arXiv-style `.tar` of per-paper `.gz` (one `.tex`) and `.tar.gz` (a tree) members, from the
  LaTeX documentation Debian ships in texlive-lang-cjk and latex2html (fixture tex/);
- encyclopedia: a MediaWiki `export-0.10` dump, bz2 multistream (a new bz2 stream every PAGES_PER_STREAM
  pages, as Wikimedia writes them). No package ships real wikitext, so the page text is real prose from
  the fixture (The Devil's Dictionary entries) with wikitext markup (templates, links, a table, references)
  added around it: the markup is ours, the prose is not;
- Q&A: a StackExchange `Posts.xml` in the published schema (plain and inside a `.7z`). No registry ships a
  StackExchange dump; questions and answers are real text from the fixture (Devil's Dictionary entries as
  answers to a question about their head word), scores and ids ours;
- books: the Project Gutenberg Moby Dick file R's `tokenizers` package ships (fixture docs.jsonl).

  python -m tools.corpus.recipe_sources --fixture build/corpus/out/fixture --out build/corpus/out/fixture/sources

`make data` runs it after the fixture is built. The output is byte-for-byte deterministic (fixed archive
timestamps, gzip headers without a time) and carries COUNTS.json (units written per file) and SHA256SUMS.
"""
from __future__ import annotations

import argparse
import bz2
import datetime as dt
import gzip
import hashlib
import html
import importlib.metadata as md
import io
import json
import os
import tarfile
import zipfile
from xml.sax.saxutils import quoteattr

MTIME = 1700000000       # every archive member's timestamp (2023-11-14): the files are reproducible
PAGES_PER_STREAM = 100   # Wikimedia's multistream dumps hold 100 pages per bz2 stream
MW_NS = "http://www.mediawiki.org/xml/export-0.10/"


def fixture_docs(fixture: str) -> list[dict]:
    with open(os.path.join(fixture, "docs.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------- code
def distribution_files(dist: str) -> dict[str, bytes]:
    """{path inside a source tree: bytes} of an installed distribution's Python files and licence files."""
    d = md.distribution(dist)
    root = f"{d.metadata['Name']}-{d.version}"
    out = {}
    for f in d.files or ():
        p = str(f)
        name = p.rsplit("/", 1)[-1]
        if p.endswith(".py") or "/licenses/" in p or name.upper().startswith(("LICENSE", "COPYING")):
            if ".dist-info/" in p and "/licenses/" in p:
                arc = f"{root}/{name}"          # the licence file at the tree's root, as in the sdist
            elif ".dist-info/" in p:
                continue
            else:
                arc = f"{root}/{p}"
            out[arc] = f.locate().read_bytes()
    return out


def write_archive(path: str, files: dict[str, bytes]) -> int:
    """A `.tar.gz`/`.tgz`/`.tar` or `.zip` of `files`; returns the number of regular files written."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if path.endswith(".zip"):
        stamp = dt.datetime.fromtimestamp(MTIME, dt.timezone.utc).timetuple()[:6]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(zipfile.ZipInfo(name, date_time=stamp), data, compress_type=zipfile.ZIP_DEFLATED)
    else:
        with open(path, "wb") as f:
            f.write(tar_bytes(files, gz=path.endswith((".gz", ".tgz"))))
    return len(files)


def tar_bytes(files: dict[str, bytes], gz: bool) -> bytes:
    """A tar of `files` (fixed mtime, mode, owner), gzipped without a timestamp when `gz`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
            t.addfile(ti, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def gpl_tree(docs: list[dict], n: int = 5) -> dict[str, bytes]:
    gpl = next(d["text"] for d in docs if d.get("id") == "common-licenses:GPL-3")
    progs = [d for d in docs if d["source"] == "human-eval"][:n]
    files = {"humaneval-gpl/COPYING": gpl.encode()}
    for d in progs:
        files[f"humaneval-gpl/src/{d['id'].split('/')[-1]}.py"] = d["text"].encode()
    return files


# ---------------------------------------------------------------- papers
def arxiv_tar(path: str, papers: dict[str, list[str]]) -> int:
    """An outer `.tar` of per-paper members: one .tex -> `<id>.gz`, several -> `<id>.tar.gz`."""
    members = {}
    for pid, tex_paths in papers.items():
        if len(tex_paths) == 1:
            members[f"{pid}.gz"] = gzip.compress(open(tex_paths[0], "rb").read(), mtime=0)
        else:
            members[f"{pid}.tar.gz"] = tar_bytes({os.path.basename(p): open(p, "rb").read() for p in tex_paths},
                                                 gz=True)
    return write_archive(path, members)


# ---------------------------------------------------------------- encyclopedia
def dictionary_entries(docs: list[dict]) -> list[str]:
    """The Devil's Dictionary entries proper (a head word in capitals), not the dict file's header records."""
    return [d["text"] for d in docs if d["source"] == "dict-devil" and not d["text"].startswith("00-")
            and d["text"].split()[0].strip(",.").isupper() and len(d["text"]) > 80]


def wiki_page_text(entry: str, n: int) -> str:
    """Real prose with the wikitext constructs a dump page carries around it (the markup is ours)."""
    words = entry.split()
    head = words[0].strip(",.") if words else "Entry"
    body = " ".join(words[1:]) or entry
    return (f"{{{{Short description|Entry {n} of The Devil's Dictionary}}}}\n"
            f"{{{{Infobox entry|name={head}|number={n}|source={{{{cite book|title=The Devil's Dictionary}}}}}}}}\n"
            f"'''{head}''' {body}<ref name=\"bierce\">{{{{cite book|last=Bierce|first=Ambrose|year=1911}}}}</ref>\n\n"
            f"== See also ==\n* [[Ambrose Bierce|Bierce]]\n\n"
            f"{{| class=\"wikitable\"\n|-\n! Edition !! Year\n|-\n| First || 1906\n|}}\n\n"
            f"[[File:Devil.jpg|thumb|Illustration]]\n[[Category:Satire]]\n")


def mediawiki_dump(path: str, pages: list[tuple[str, int, str]], lang: str = "en") -> int:
    """`pages-articles` XML (export-0.10 schema) for [(title, ns, wikitext)], bz2 multistream when `.bz2`."""
    head = (f'<mediawiki xmlns="{MW_NS}" version="0.10" xml:lang="{lang}">\n  <siteinfo>\n'
            f"    <sitename>Wikipedia</sitename>\n    <dbname>{lang}wiki</dbname>\n  </siteinfo>\n")
    chunks = [head]
    for i, (title, ns, text) in enumerate(pages):
        chunks.append(f"  <page>\n    <title>{html.escape(title, quote=False)}</title>\n    <ns>{ns}</ns>\n"
                      f"    <id>{i + 1}</id>\n    <revision>\n      <id>{1000 + i}</id>\n"
                      f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
                      f'      <text bytes="{len(text.encode())}" xml:space="preserve">{html.escape(text, quote=False)}</text>\n'
                      f"    </revision>\n  </page>\n")
    chunks.append("</mediawiki>\n")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not path.endswith(".bz2"):
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(chunks))
        return len(pages)
    with open(path, "wb") as f:   # stream 0: header; then PAGES_PER_STREAM pages per stream; last: footer
        f.write(bz2.compress(chunks[0].encode()))
        body = chunks[1:-1]
        for i in range(0, len(body), PAGES_PER_STREAM):
            f.write(bz2.compress("".join(body[i:i + PAGES_PER_STREAM]).encode()))
        f.write(bz2.compress(chunks[-1].encode()))
    return len(pages)


# ---------------------------------------------------------------- Q&A
def posts_xml(rows: list[dict]) -> bytes:
    """Posts.xml bytes in the dump's schema: one `<row .../>` per post, attributes as published."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<posts>\n']
    for r in rows:
        attrs = " ".join(f"{k}={quoteattr(str(v))}" for k, v in r.items() if v is not None)
        out.append(f"  <row {attrs} />\n")
    out.append("</posts>\n")
    return "".join(out).encode("utf-8")


def qa_rows(entries: list[str], n_questions: int, answers_per_q: int) -> list[dict]:
    """Questions about a head word, answered by real dictionary entries; scores chosen so that file order
    and score order differ (the reader must sort)."""
    rows, next_id, k = [], 1, 0
    for q in range(n_questions):
        head = entries[k].split()[0].strip(",.")
        qid = next_id
        rows.append({"Id": qid, "PostTypeId": 1, "CreationDate": "2011-01-01T00:00:00.000", "Score": 3,
                     "ViewCount": 10, "Body": f"<p>How is <em>{html.escape(head)}</em> defined?</p>",
                     "OwnerUserId": 1, "Title": f"What does {head} mean?", "Tags": "|english|definitions|",
                     "AnswerCount": answers_per_q, "CommentCount": 0, "ContentLicense": "CC BY-SA 4.0"})
        next_id += 1
        for a in range(answers_per_q):
            text = entries[k % len(entries)]
            k += 1
            rows.append({"Id": next_id, "PostTypeId": 2, "ParentId": qid, "CreationDate": "2011-01-02T00:00:00.000",
                         "Score": (a * 7) % (answers_per_q + 2) - 1,
                         "Body": "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip()),
                         "OwnerUserId": 2, "CommentCount": 0, "ContentLicense": "CC BY-SA 4.0"})
            next_id += 1
    return rows


def posts_7z(path: str, xml_bytes: bytes) -> None:
    import py7zr
    from py7zr.helpers import ArchiveTimestamp

    class Fixed(py7zr.SevenZipFile):   # py7zr stamps members with the current time; ours are fixed
        @staticmethod
        def _make_file_info_from_name(bio, size, arcname):
            info = py7zr.SevenZipFile._make_file_info_from_name(bio, size, arcname)
            ts = ArchiveTimestamp.from_datetime(MTIME)   # takes seconds since the epoch
            info.update(creationtime=ts, lastwritetime=ts, lastaccesstime=ts)
            return info

    with Fixed(path, "w") as z:
        z.writestr(xml_bytes, "Posts.xml")


def write_sums(out: str) -> None:
    """SHA256SUMS of every file under `out` (relative paths, sorted), as the fixture's own."""
    paths = sorted(os.path.join(dp, f) for dp, _, fs_ in os.walk(out) for f in fs_ if f != "SHA256SUMS")
    with open(os.path.join(out, "SHA256SUMS"), "w") as f:
        for p in paths:
            f.write(hashlib.sha256(open(p, "rb").read()).hexdigest() + "  " + os.path.relpath(p, out) + "\n")


# ---------------------------------------------------------------- main
def build(fixture: str, out: str) -> dict:
    docs = fixture_docs(fixture)
    counts = {}
    counts["code/mwparserfromhell-mit.tar.gz"] = write_archive(f"{out}/code/mwparserfromhell-mit.tar.gz",
                                                               distribution_files("mwparserfromhell"))
    counts["code/py7zr-lgpl.zip"] = write_archive(f"{out}/code/py7zr-lgpl.zip", distribution_files("py7zr"))
    counts["code/humaneval-gpl.tar.gz"] = write_archive(f"{out}/code/humaneval-gpl.tar.gz", gpl_tree(docs))
    tex = os.path.join(fixture, "tex")
    texs = sorted(os.path.join(dp, f) for dp, _, fs_ in os.walk(tex) for f in fs_ if f.endswith(".tex"))
    l2h = [p for p in texs if "latex2html" in p]
    papers = {f"tex.{i:05d}": [p] for i, p in enumerate(x for x in texs if "latex2html" not in x)}
    if l2h:
        papers["l2h.00001"] = l2h
    counts["arxiv/arXiv_src_fixture.tar"] = arxiv_tar(f"{out}/arxiv/arXiv_src_fixture.tar", papers)
    devil = dictionary_entries(docs)
    pages = [(e.split()[0].strip(",.").title(), 0, wiki_page_text(e, i)) for i, e in enumerate(devil)]
    counts["wiki/enwiki-fixture-pages-articles-multistream.xml.bz2"] = mediawiki_dump(
        f"{out}/wiki/enwiki-fixture-pages-articles-multistream.xml.bz2", pages)
    rows = qa_rows(devil, 40, 3)
    os.makedirs(f"{out}/qa/english.stackexchange.com", exist_ok=True)
    with open(f"{out}/qa/english.stackexchange.com/Posts.xml", "wb") as f:
        f.write(posts_xml(rows))
    posts_7z(f"{out}/qa/english.stackexchange.com.7z", posts_xml(rows))
    counts["qa/english.stackexchange.com/Posts.xml"] = sum(r["PostTypeId"] == 1 for r in rows)
    book = next(d["text"] for d in docs if d["source"] == "r-cran-tokenizers")
    os.makedirs(f"{out}/books", exist_ok=True)
    with open(f"{out}/books/mobydick.txt", "w", encoding="utf-8") as f:
        f.write(book)
    counts["books/mobydick.txt"] = 1
    with open(f"{out}/COUNTS.json", "w") as f:   # units written per file: the independent count tests check
        json.dump(counts, f, indent=1, sort_keys=True)
    write_sums(out)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixture", default="build/corpus/out/fixture")
    ap.add_argument("--out", default="build/corpus/out/fixture/sources")
    a = ap.parse_args()
    print(json.dumps(build(a.fixture, a.out), indent=1))


if __name__ == "__main__":
    main()
