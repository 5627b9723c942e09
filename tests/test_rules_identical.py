"""RF decisions and signals stay identical to the rule engine as it was before its speed work (issue #27 item 4).

`tests/golden/rules_identical.json` was written once, by this file's `write_golden` run on the code of commit
55099ff (before the shared per-document analysis existed); it is never regenerated from changed code (the
writer refuses to overwrite it). For every text it holds:

- the engine's outcome with the configured rules: reason, detail, removed units and characters per rule, and
  a digest of the rewritten text and of the removed units kept for audit;
- every document/final rule's signal: the rule run alone with its configured thresholds (its decision), and run
  with a probe threshold that makes it always report the value it measured (`PROBES`; for the n-gram rules, one
  probe per n), with the threshold itself cut from the detail;
- every paragraph/sentence rule run alone on every non-blank line / sentence: how many it removes and a digest
  of their details.

The texts are real: every fixture document (build/corpus/out/fixture/docs.jsonl), the fixture's HTML pages as
DP extracts them, every 400th langid sample (build/corpus/out/langid/samples.jsonl, ~100 languages), and the
texts and units of tests/test_rules.py's fire/quiet cases, plus the empty text and CRLF line endings.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from dataflow.pipeline.conf import load_conf
from dataflow.stages.filter.rules import REGISTRY, all_rules
from dataflow.stages.filter.rules.engine import RuleEngine
from dataflow.stages.filter.rules.registry import rule_conf
from dataflow.stages.filter.rules.text import Doc, split_sentences

GOLDEN = Path(__file__).parent / "golden" / "rules_identical.json"
BUILD = Path(__file__).resolve().parents[1] / "build" / "corpus" / "out"
ZH_MAP = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh"}
LANGID_EVERY = 400
KEEP_REMOVED = 3

NEVER = 10 ** 9
# rule -> the parameters that make it always report what it measured (a floor no text reaches, a ceiling every
# value passes); the rule's other parameters stay as configured
PROBES = {
    "length.min_chars": {"min_chars": {"default": NEVER}},
    "gopher_quality.word_count": {"min_words": NEVER},
    "gopher_quality.mean_word_length": {"min_mean": NEVER},
    "gopher_quality.hash_ratio": {"max_ratio": -1},
    "gopher_quality.ellipsis_ratio": {"max_ratio": -1},
    "gopher_quality.bullet_lines": {"max_ratio": -1},
    "gopher_quality.ellipsis_lines": {"max_ratio": -1},
    "gopher_quality.alpha_words": {"min_ratio": 2},
    "gopher_quality.stop_words": {"min_stop_words": NEVER},
    "gopher_repetition.dup_line_frac": {"max_frac": {"default": -1}},
    "gopher_repetition.dup_para_frac": {"max_frac": -1},
    "gopher_repetition.dup_line_char_frac": {"max_frac": -1},
    "gopher_repetition.dup_para_char_frac": {"max_frac": -1},
    **{f"gopher_repetition.top_ngram@{n}": {"max_frac": {"default": {n: -1}}} for n in (1, 2, 3, 4)},
    **{f"gopher_repetition.dup_ngram@{n}": {"max_frac": {"default": {n: -1}}} for n in range(5, 11)},
    "fineweb.line_punct_ratio": {"min_ratio": {"default": 2}},
    "fineweb.short_line_ratio": {"max_ratio": -1},
    "fineweb.char_dup_ratio": {"max_ratio": -1},
    "fineweb.list_ratio": {"max_ratio": {"default": -1}},
    "c4.curly_bracket": {"min_words": 0},
    "c4.min_sentences": {"min_sentences": NEVER},
    "zh.cjk_ratio": {"min_ratio": 2},
    "zh.char_ngram_repetition": {"max_ratio": -1},
    "zh.mean_line_length": {"min_chars": NEVER},
    "zh.function_words": {"min_chars_to_apply": 0, "min_distinct": NEVER},
    "garbled.char_ratio": {"max_ratio": -1},
    "boilerplate.url_density": {"max_char_share": -1},
    "boilerplate.email_density": {"min_lines": 0, "max_line_share": -1},
    "boilerplate.phone_density": {"max_char_share": -1},
    **{f"content.{c}_density": {"min_hits": 1, "max_char_share": -1}
       for c in ("porn", "violence", "gambling", "extremism")},
}
# the threshold a probe put at the end of a detail ("... > -1", "... < 1000000000", "outside [1e9, 10]")
_PROBE_TAIL = re.compile(r"\s*(?:[<>]=?\s*-?[\d.e+]+|outside \[[^\]]*\])$")


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:10]


def _params(cfg, name):
    p = rule_conf(cfg["rules"], name)
    p.pop("enabled", None)
    p.pop("langs", None)
    return p


def signals(cfg, text: str, lang: str | None) -> dict:
    """Every rule's measurement of one text (see the module doc), rule name -> value."""
    doc, out = Doc(text, lang), {}
    for r in all_rules(cfg["rules"]):
        p = _params(cfg, r.name)
        if r.level in ("document", "final"):
            out[r.name] = r.fn(doc, p)          # the decision: stored as fired or not, the numbers are the probe's
            for key in [k for k in PROBES if k == r.name or k.startswith(r.name + "@")]:
                d = r.fn(doc, {**p, **PROBES[key]})
                out[key + "~"] = _PROBE_TAIL.sub("", d) if d else d
        elif r.level == "paragraph":
            hits = [d for ln in text.split("\n") if ln.strip() for d in [r.fn(ln, doc, p)] if d]
            out[r.name] = _units(hits)
        else:
            hits = [d for ln in text.split("\n") if ln.strip() for s in split_sentences(ln) if s.strip()
                    for d in [r.fn(s, doc, p)] if d]
            out[r.name] = _units(hits)
    return out


def _units(hits: list[str]) -> str:
    return f"{len(hits)}:{_digest(hits)[:6]}" if hits else "0"


def outcome(engine: RuleEngine, text: str, lang: str | None) -> dict:
    o = engine.filter_text(text, lang, KEEP_REMOVED)
    return {"reason": o.reason, "detail": o.detail, "units": o.units, "chars": o.chars,
            "text": _digest(o.text), "removed": _digest(o.removed)}


def _langid_samples() -> list[tuple[str, str, str]]:
    out = []
    with open(BUILD / "langid" / "samples.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % LANGID_EVERY == 0:
                d = json.loads(line)
                out.append((f"langid:{i}", d["text"], d["lang"]))
    return out


def _dp_pages() -> list[tuple[str, str, str]]:
    from tools.corpus.text import read_text
    from tools.quality.sources import dp_text

    out = []
    for line in open(BUILD / "fixture" / "html_manifest.jsonl", encoding="utf-8"):
        m = json.loads(line)
        html = read_text(str(BUILD / "fixture" / m["path"]))
        out.append((f"dp:{m['path']}", dp_text(html), ZH_MAP.get(m["lang"], m["lang"])))
    return out


def _case_texts(docs) -> list[tuple[str, str, str]]:
    from test_rules import CASES, Texts

    T, out = Texts(docs), []
    for name, cases in sorted(CASES.items()):
        for kind, case in zip(("fires", "quiet"), cases):
            text, lang, *unit = case(T)
            out.append((f"case:{name}:{kind}", text, lang))
            if unit:
                out.append((f"case:{name}:{kind}:unit", unit[0], lang))
    moby = T.moby_wrapped
    out += [("edge:empty", "", "en"), ("edge:blank", " \n\n \t\n", "en"), ("edge:crlf", moby.replace("\n", "\r\n"), "en"),
            ("edge:zh-crlf", T.zh.replace("\n", "\r\n"), "zh"), ("edge:nolang", moby, None)]
    return out


def corpus_texts() -> list[tuple[str, str, str | None]]:
    """(id, text, lang) of every text the golden file covers, in a fixed order."""
    with open(BUILD / "fixture" / "docs.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    fixture = [(f"fixture:{d['id']}", d["text"], ZH_MAP.get(d["lang"], d["lang"])) for d in docs]
    return fixture + _dp_pages() + _langid_samples() + _case_texts(docs)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _compact(name: str, value: str | None) -> str:
    """A signal as stored: the numbers in a probe's detail ("" for none measured; a short digest for a detail
    without one), "x" for a configured rule that fires, a unit rule's count and digest as they are."""
    if value is None:
        return ""
    if REGISTRY.get(name) and REGISTRY[name].level in ("paragraph", "sentence"):
        return value
    if not name.endswith("~"):
        return "x"
    nums = _NUMBER.findall(value)
    return ",".join(nums) if nums else "#" + _digest(value)[:6]


def entry(engine, cfg, text, lang) -> list:
    """One text's golden entry: [lang, outcome, the signals' numbers ("|"-joined in `signal_names` order), a digest
    of the signals' whole details (an n-gram, a line quoted in a detail)]. A kept, unchanged text's outcome is
    just the digest of its text."""
    sig = signals(cfg, text, lang)
    o = outcome(engine, text, lang)
    o = [o["reason"], o["detail"], o["units"], o["chars"], o["text"], o["removed"]] if o["reason"] or o["units"] \
        else [o["text"]]
    return [lang, o, "|".join(_compact(k, v) for k, v in sig.items()), _digest(list(sig.values()))]


def signal_names(cfg) -> list[str]:
    return list(signals(cfg, "", "en"))


def write_golden() -> None:
    """Write the golden file from the code as it is now. Run once, before the rules change; never again."""
    if GOLDEN.exists():
        raise SystemExit(f"{GOLDEN} exists: it records the code before the change and is never regenerated")
    cfg = load_conf()["filter"]
    engine = RuleEngine(cfg)
    rows = corpus_texts()
    GOLDEN.parent.mkdir(exist_ok=True)
    with open(GOLDEN, "w", encoding="utf-8") as f:
        f.write('{"signal_names": ' + json.dumps(signal_names(cfg)) + ',\n"texts": {\n')
        for i, (key, text, lang) in enumerate(rows):
            rec = entry(engine, cfg, text, lang)
            f.write(json.dumps(key, ensure_ascii=False) + ": " + json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
                    + ("," if i < len(rows) - 1 else "") + "\n")
        f.write("}}\n")


@pytest.fixture(scope="module")
def golden() -> dict:
    with open(GOLDEN, encoding="utf-8") as f:
        return json.load(f)


def test_golden_covers_every_rule_and_the_whole_corpus(golden, corpus_docs):
    texts = golden["texts"]
    assert [k for k, _, _ in corpus_texts()] == list(texts)
    assert sum(k.startswith("fixture:") for k in texts) == len(corpus_docs)
    names = golden["signal_names"]
    assert names == signal_names(load_conf()["filter"])
    assert {n.split("@")[0].rstrip("~") for n in names} == set(REGISTRY)
    # the probes report a value: every fixture document has a measured word count and mean line length
    fixture = [v for k, v in texts.items() if k.startswith("fixture:")]
    for probe in ("gopher_quality.word_count~", "zh.mean_line_length~"):
        i = names.index(probe)
        assert all(v[2].split("|")[i] for v in fixture), probe
    # many rules decide somewhere in the corpus, and many documents are kept
    assert len({v[1][0] for v in texts.values() if len(v[1]) > 1}) > 15
    assert sum(len(v[1]) == 1 or v[1][0] is None for v in fixture) > 100


def test_decisions_and_signals_are_identical_to_the_golden_file(golden):
    cfg = load_conf()["filter"]
    engine, names, diffs = RuleEngine(copy.deepcopy(cfg)), golden["signal_names"], []
    for key, text, lang in corpus_texts():
        want = golden["texts"][key]
        got = entry(engine, cfg, text, lang)
        if got[1] != want[1]:
            diffs.append(f"{key}: outcome {got[1]} != {want[1]}")
        for name, g, w in zip(names, got[2].split("|"), want[2].split("|")):
            if g != w:
                diffs.append(f"{key}: {name} {g!r} != {w!r}")
        if got[3] != want[3] and got[2] == want[2]:
            diffs.append(f"{key}: a detail's text changed (digest {got[3]} != {want[3]})")
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:30])


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).resolve().parents[1])]
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_rules_identical.py --write   (once, on the code before a change)")
    write_golden()
