"""RF keep-rate on clean reference documentation (issue #14: >= 0.90 per language), and on web junk built
from the same pages (<= 0.10 kept per class). Pure Python, no Spark: the rule engine on one core.

    python -m tools.rf_keeprate --html en:build/corpus/x/fixture/debian-reference-en/usr/share/debian-reference \
        --html zh:build/corpus/x/fixture/debian-reference-zh-cn/usr/share/debian-reference [--set k=v ...] [--show N]

Each `--html LANG:DIR` names a directory of HTML pages; every page is extracted the way DP does
(resiliparse main content, `preprocess.html_main_content`/`html_list_bullets`) and becomes one clean
document (`clean:page`); pages also split at <h2> into section documents (`clean:section`: a crawl sees
both sizes, and short sections are where length and repetition rules bite). Junk classes are
made from the same real text (no invented words): navigation (headings joined as a menu), repeated
paragraphs, keyword stuffing (one page's words repeated as tag lists), number dumps (the page's digits and
version strings as a table), and porn/gambling spam (lexicon terms spread through real sentences).
Never point this at the reserved evaluation packages (docs/filter.md lists them).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from dataflow.core.config import apply_overrides
from dataflow.pipeline.conf import load_conf
from dataflow.stages.preprocess.html import html_to_text
from dataflow.stages.filter.rules.engine import RuleEngine
from dataflow.stages.filter.rules.lexicon import read_terms
from dataflow.stages.filter.rules.text import TERMINAL_PUNCT

_H2 = re.compile(r"(?=<h2[\s>])", re.IGNORECASE)
_SKIP = re.compile(r"(genindex|py-modindex|search|contents|objects|index)[^/]*\.html$")


def _pages(root: Path):
    for p in sorted(root.rglob("*.html")):
        if _SKIP.search(p.name) or "_static" in p.parts:
            continue
        yield p


def clean_docs(root: Path, pcfg: dict) -> list[tuple[str, str]]:
    """(name, text) per page and per <h2> section of each page."""
    out = []
    for p in _pages(root):
        raw = p.read_bytes()
        kw = dict(charset="utf-8", main_content=pcfg["html_main_content"], list_bullets=pcfg["html_list_bullets"])
        out.append((str(p.relative_to(root)), html_to_text(raw, **kw)))
        parts = _H2.split(raw.decode("utf-8", "replace"))
        if len(parts) > 2:
            for i, part in enumerate(parts[1:], 1):
                out.append((f"{p.relative_to(root)}#{i}", html_to_text(part.encode(), **kw)))
    return [(n, t) for n, t in out if t.strip()]


def junk_docs(clean: list[tuple[str, str]], lang: str, cfg: dict) -> dict[str, list[str]]:
    """Five junk classes made from real page text (one document per source page)."""
    lex = cfg["filter"]["rules"]["content"]
    terms = {c: read_terms(lex[f"{c}_density"]["lexicons"][lang]) for c in ("porn", "gambling")}
    out: dict[str, list[str]] = {k: [] for k in ("navigation", "repeated", "stuffing", "numbers", "spam")}
    pages = [t for n, t in clean if "#" not in n]
    for k, text in enumerate(pages):
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        short = [ln for ln in lines if len(ln) <= 24 and not ln.endswith(TERMINAL_PUNCT)][:60]
        if len(short) >= 8:   # a menu: the page's headings and labels (short, no final stop) as "a | b | c" rows
            out["navigation"].append("\n".join(" | ".join(short[i:i + 6]) for i in range(0, len(short), 6)))
        paras = [ln for ln in lines if len(ln) >= 80][:6]
        if len(paras) >= 2:   # a spun page: its first paragraphs, each repeated four times
            out["repeated"].append("\n\n".join(p for p in paras for _ in range(4)))
        words = re.findall(r"\w+", text)[:40]
        if len(words) >= 20:  # SEO stuffing: the page's words as comma-separated tag lines, repeated
            out["stuffing"].append("\n".join(", ".join(words[i:i + 10]) for i in range(0, 40, 10)) * 1 + "\n"
                                   + ("\n".join(", ".join(words[:10]) for _ in range(12))))
        nums = re.findall(r"\d[\d.,:-]*", text)
        if len(nums) >= 30:   # a number dump: the page's numbers as a table
            out["numbers"].append("\n".join("\t".join(nums[i:i + 8]) for i in range(0, len(nums), 8)))
        sents = re.split(r"(?<=[.!?。！？])\s*", " ".join(paras))
        if len(sents) >= 6:   # spam: real sentences, each followed by lexicon terms
            pool = terms["porn" if k % 2 else "gambling"]
            sep = "" if lang == "zh" else " "
            out["spam"].append(sep.join(s + sep + " ".join(pool[(k * 7 + j * 3 + i) % len(pool)] for i in range(3))
                                        + ("。" if lang == "zh" else ".") for j, s in enumerate(sents[:12]) if s))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", action="append", required=True, help="LANG:DIR (pipeline language code)")
    ap.add_argument("--conf", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--show", type=int, default=0, help="print the first N rejected clean documents' details")
    args = ap.parse_args(argv)
    cfg = apply_overrides(load_conf(args.conf) if args.conf else load_conf(), args.overrides)
    engine = RuleEngine(cfg["filter"])
    print("| set | lang | documents | kept | keep-rate | top rejecting rules |")
    print("|---|---|---:|---:|---:|---|")
    for spec in args.html:
        lang, d = spec.split(":", 1)
        clean = clean_docs(Path(d), cfg["preprocess"])
        groups = {"clean:page": [t for n, t in clean if "#" not in n], "clean:section": [t for n, t in clean if "#" in n],
                  **{f"junk:{k}": v for k, v in junk_docs(clean, lang, cfg).items()}}
        for name, texts in groups.items():
            reasons = Counter(engine.filter_text(t, lang).reason for t in texts)
            kept = reasons.pop(None, 0)
            top = ", ".join(f"{r} {c}" for r, c in reasons.most_common(4))
            rate = kept / len(texts) if texts else float("nan")
            print(f"| {name} | {lang} | {len(texts)} | {kept} | {rate:.3f} | {top} |")
        if args.show:
            shown = 0
            for n, t in clean:
                o = engine.filter_text(t, lang)
                if o.reason and shown < args.show:
                    shown += 1
                    print(f"  {n}: {o.reason}: {o.detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
