"""Measure each stage on the labelled set through its public functions, so the numbers are those of the
code and models committed when it runs:
  DP   dataflow.stages.preprocess.stage.Preprocessor on each paragraph (normalization, fastText, lang_map,
       lang_threshold, keep_langs): per-language precision/recall/F1 of the top label, and of the stage's
       decision for the kept languages (kept as X = labelled X and not rejected).
  RF   dataflow.stages.filter.rules.engine.RuleEngine with the configured rules: keep-rate of clean pages, reject-rate
       of every junk kind, and which rule decided.
  CD   dataflow.stages.dedup.stage.run (its Spark transform, default steps) on a local session: recall per duplicate
       kind, merge precision against the truth groups.
  AS   dataflow.stages.score.stage.score_record with the `make models` KenLM models: share of pages whose original has
       a lower perplexity than its shuffled twin.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict

from .labelled import CD_CLASSES, JUNK_CLASSES


def _base(code: str | None) -> str:
    if not code:
        return "und"
    return "zh" if code.startswith("zh") else code.split("-")[0]


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n": tp + fn}


def lid(records: list[dict], cfg: dict, model=None) -> dict:
    from dataflow.stages.preprocess.stage import Preprocessor

    pre = Preprocessor(cfg["preprocess"], model=model)
    keep = set(cfg["preprocess"]["keep_langs"])
    top, kept, gold = [], [], []
    t0 = time.time()
    for i, r in enumerate(records):
        out = pre({"content": None, "text": r["text"], "source": "quality", "url": None, "file": "quality",
                   "offset": i, "meta": {}, "reason": None, "detail": None, "content_type": None})
        top.append(_base(out["lang"]))
        kept.append(out["lang"] if out["reason"] is None else None)
        gold.append(r["lang"])
    labels = set(getattr(pre.model, "labels", None) or [])
    model_langs = {_base(cfg["preprocess"].get("lang_map", {}).get(l[len("__label__"):], l[len("__label__"):]))
                   for l in labels}
    per = {}
    for lang in sorted(set(gold)):
        tp = sum(1 for g, t in zip(gold, top) if g == lang and t == lang)
        fp = sum(1 for g, t in zip(gold, top) if g != lang and t == lang)
        fn = sum(1 for g, t in zip(gold, top) if g == lang and t != lang)
        confused = Counter(t for g, t in zip(gold, top) if g == lang and t != lang).most_common(3)
        per[lang] = {**_prf(tp, fp, fn), "in_model": lang in model_langs, "confused_with": confused}
    decision = {}
    for lang in sorted(keep):
        tp = sum(1 for g, k in zip(gold, kept) if g == lang and k == lang)
        fp = sum(1 for g, k in zip(gold, kept) if g != lang and k == lang)
        fn = sum(1 for g, k in zip(gold, kept) if g == lang and k != lang)
        intruders = Counter(g for g, k in zip(gold, kept) if g != lang and k == lang).most_common(5)
        decision[lang] = {**_prf(tp, fp, fn), "intruders": intruders}
    return {"paragraphs": len(records), "languages": len(per), "per_lang": per, "kept": decision,
            "model_langs": len(model_langs), "seconds": round(time.time() - t0, 1)}


def rf(records: list[dict], cfg: dict) -> dict:
    from dataflow.stages.filter.rules.engine import RuleEngine

    engine = RuleEngine(cfg["filter"])
    t0 = time.time()
    counts: dict[tuple, Counter] = defaultdict(Counter)   # (kind, lang) -> reason (None = kept) -> n
    outcomes = []
    for r in records:
        o = engine.filter_text(r["text"], r["lang"])
        counts[(r["kind"], r["lang"])][o.reason] += 1
        outcomes.append(o.reason)
    out = {"clean": {}, "junk": {}, "seconds": None}
    for (kind, lang), c in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        n = sum(c.values())
        row = {"n": n, "kept": c[None] / n, "by_rule": {k: v for k, v in c.most_common() if k is not None}}
        if kind == "clean":
            by_src = Counter(r["source"] for r in records if r["kind"] == "clean" and r["lang"] == lang)
            kept_src = Counter(r["source"] for r, o in zip(records, outcomes) if r["kind"] == "clean"
                               and r["lang"] == lang and o is None)
            row["by_source"] = {s: {"n": n, "kept": kept_src[s] / n} for s, n in sorted(by_src.items())}
            out["clean"][lang] = row
        else:
            out["junk"].setdefault(kind, {})[lang] = row
    for kind, by_lang in out["junk"].items():
        n = sum(v["n"] for v in by_lang.values())
        by_lang["all"] = {"n": n, "kept": sum(v["kept"] * v["n"] for v in by_lang.values()) / n}
    out["junk_kept_max"] = max((v["all"]["kept"] for v in out["junk"].values()), default=1.0)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def _dedup_rows(records: list[dict]) -> list[dict]:
    return [{"id": r["id"], "source": r["source"], "url": f"https://quality.invalid/{r['id']}", "text": r["text"],
             "lang": r["lang"], "lang_score": 1.0, "meta": [("warc_date", r["date"])]} for r in records]


def cd(spark, records: list[dict], cfg: dict, work: str) -> dict:
    """Run the CD stage (its configured default steps) and score its rejections against the truth groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflow.stages.dedup.stage import run as dedup_run
    from dataflow.core.schema import DOC_ARROW_SCHEMA

    t0 = time.time()
    path = f"{work}/cd_input.parquet"
    pq.write_table(pa.Table.from_pylist(_dedup_rows(records), schema=DOC_ARROW_SCHEMA), path)
    df = spark.read.parquet(path)
    res = dedup_run(df, cfg["dedup"])
    # the evaluation set is ~1.5k rows: the rejections are collected to score them here
    rej = {r["id"]: (r["reason"], r["dup_of"]) for r in res.rejected.select("id", "reason", "dup_of").collect()}
    kept_n = res.kept.count()
    group = {r["id"]: r["group"] for r in records}
    recall = {}
    for kind in (*CD_CLASSES, "zh-hant"):
        mine = [r for r in records if r["kind"] == kind]
        if kind == "zh-hant":
            # the pair is found when either side is removed as a duplicate of the other's group
            orig_of = {}
            for r in mine:
                orig_of[r["id"]] = [o["id"] for o in records if o["kind"] == "original" and o["group"] == r["group"]]
            found = sum(1 for r in mine if _found(r["id"], rej, group) or any(_found(o, rej, group) for o in orig_of[r["id"]]))
        else:
            found = sum(1 for r in mine if _found(r["id"], rej, group))
        recall[kind] = {"n": len(mine), "found": found, "recall": found / len(mine) if mine else 0.0}
    merges = [(i, d) for i, (reason, d) in rej.items() if reason and reason.startswith("dedup:") and reason != "dedup:id"]
    correct = sum(1 for i, d in merges if group.get(d) == group[i])
    false = [(i, d) for i, d in merges if group.get(d) != group[i]]
    originals = [r for r in records if r["kind"] == "original"]
    return {"records": len(records), "kept": kept_n, "rejected": len(rej), "steps": res.stats.get("steps"),
            "recall": recall, "merges": len(merges), "merge_precision": correct / len(merges) if merges else 1.0,
            "false_merges": false[:10], "originals": len(originals),
            "truth_groups": len({r["group"] for r in originals}), "seconds": round(time.time() - t0, 1)}


def _found(rid: str, rej: dict, group: dict) -> bool:
    r = rej.get(rid)
    return bool(r and r[0] and r[0].startswith("dedup:") and group.get(r[1]) == group[rid])


def as_(records: list[dict], cfg: dict) -> dict:
    from dataflow.stages.score.stage import load_kenlm, load_sp, model_paths, normalize_settings, score_record

    s = cfg["score"]
    models = {l: (load_sp(sp), load_kenlm(lm)) for l, (sp, lm) in model_paths(s).items()}
    norm = normalize_settings(s)
    t0 = time.time()
    per = defaultdict(lambda: [0, 0])
    for r in records:
        a, _ = score_record(r["text"], r["lang"], models, norm, s["max_paragraph_chars"], s["max_paragraph_pieces"])
        b, _ = score_record(r["shuffled"], r["lang"], models, norm, s["max_paragraph_chars"], s["max_paragraph_pieces"])
        per[r["lang"]][1] += 1
        per[r["lang"]][0] += int(a is not None and b is not None and a < b)
    return {"per_lang": {l: {"n": n, "original_lower": k / n if n else 0.0} for l, (k, n) in sorted(per.items())},
            "seconds": round(time.time() - t0, 1)}
