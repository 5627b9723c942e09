"""MinHash LSH dedup (Broder 1997; datatrove/text-dedup layout).

Input hash (`dedup.shingle_hash`, text.Shingled.hash_set): `fast64` (the default) takes the low 32 bits of
each shingle's 64-bit n-gram hash, computed by array operations over the text's word or character hashes
(dataflow.core.hashing); `sha1` takes the first 4 bytes of each shingle string's SHA-1, and the signatures then
equal `datasketch.MinHash(num_perm, seed, scheme)` fed the UTF-8 bytes of each shingle. Either way the
permutations are datasketch's: the same parameters drawn from `np.random.RandomState(seed)` and the same
arithmetic ("affine32": MurmurHash3 fmix32, then a*h+b mod 2^32; "legacy": (a*h+b) mod (2^61-1), truncated to 32
bits), applied to the whole shingle set at once (`hashed_signature`); the tests check both against datasketch.

Shingles: character n-grams of the fingerprint form for text written mostly in spaceless scripts, word
n-grams otherwise (dataflow.core.text.shingles).

LSH: the signature is cut into `bands` bands of `rows` values; records that share a band (same index, same
64-bit band key, `band_keys`) are candidates. Candidates are linked as stars (verify.star_edges, on numeric keys
only): every member of a bucket is checked against one centre, the member with the smallest node key, never
against every other member, so the work stays linear in the bucket sizes even where many near-copies of one
document share a bucket. With `verify: none` every collision is a duplicate (one round: each member links to
the centre, as datatrove links to its bucket's first); with `verify: signature` a member is linked when its
estimated Jaccard (share of equal signature values) with the centre reaches `jaccard`; with `verify: jaccard`
when the Jaccard of the two records' shingle sets does, computed in the JVM on the 32-bit hashes of the
shingles that the fingerprint pass kept (verify.check_pairs; equal to the exact shingle Jaccard up to hash
collisions, bound in docs/dedup.md). Members that fail are checked again among themselves, up to
`verify_rounds` rounds. Connected components then pick the earliest (date, id) per cluster; a removed
record's `_dup_of` is a record it passed the check against directly (components.verified_parents).
"""
from __future__ import annotations

import pandas as pd  # pandas_udf type hints are resolved against module globals

from functools import lru_cache

import numpy as np

from dataflow.core.hashing import fold_rows, mix64, sha1_32
from dataflow.core.text import Shingled
from dataflow.stages.dedup.components import ORDER, Context, checkpoint, checkpoint_rows, clusters, mark_from_components
from dataflow.stages.dedup.verify import (check_pairs, first_pairs_only, ngrams, star_edges, step_sets,
                                          with_shingle_sets)
from dataflow.core.confschema import Count, Float, Int, Str, optional_section
from dataflow.stages.dedup.step import Step

VERIFY = ("none", "signature", "jaccard")

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH32 = np.uint64((1 << 32) - 1)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) exactly as datasketch.MinHash._init_permutations draws them."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        ab = np.array([(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64),
                        gen.randint(0, MERSENNE_PRIME, dtype=np.uint64)) for _ in range(num_perm)],
                      dtype=np.uint64).T
        return ab[0], ab[1]
    if scheme != "affine32":
        raise ValueError(f"minhash scheme must be affine32 or legacy, got {scheme!r}")
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def signature(features: list[str], num_perm: int, seed: int, scheme: str = "affine32") -> np.ndarray:
    """MinHash values (uint64 array of length num_perm) of the set of features."""
    return hashed_signature(sha1_32(dict.fromkeys(features)), num_perm, seed, scheme)


def hashed_signature(hv: np.ndarray, num_perm: int, seed: int, scheme: str = "affine32") -> np.ndarray:
    """`signature` of a feature set given as its features' `sha1_32` hashes (repeats do not change a min)."""
    a, b = permutations(num_perm, seed, scheme)
    empty = MAX_HASH32 if scheme == "legacy" else np.uint32((1 << 32) - 1)
    out = np.full(num_perm, empty, dtype=np.uint64 if scheme == "legacy" else np.uint32)
    step = 1 << 15                         # bounded memory: step x num_perm values at a time
    with np.errstate(over="ignore"):
        for i in range(0, len(hv), step):
            if scheme == "legacy":
                phv = np.bitwise_and((np.outer(hv[i:i + step].astype(np.uint64), a) + b) % MERSENNE_PRIME, MAX_HASH32)
            else:
                phv = np.outer(_fmix32(hv[i:i + step].astype(np.uint32)), a) + b   # uint32 wraparound is the mod 2^32
            out = np.minimum(out, phv.min(axis=0))
    return out.astype(np.uint64)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[int]:
    """One signed 64-bit LSH bucket key per band: mix64 of the band's `rows` values folded in order
    (hashing.fold_rows), all bands at once. Two different bands collide with probability about 2^-64."""
    m = np.asarray(sig, dtype=np.uint64)[:bands * rows].reshape(bands, rows)
    with np.errstate(over="ignore"):
        return mix64(fold_rows(m)).view(np.int64).tolist()


def record_minhash(text, mcfg: dict, ctx: Context):
    """(signature as list[int], band keys) or None when the record has too few shingles."""
    return shingled_minhash(ctx.shingled(text), mcfg)


def shingled_minhash(sh: Shingled, mcfg: dict):
    """`record_minhash` of an already prepared text (dataflow.core.text.Shingled)."""
    num_perm, bands, rows = int(mcfg["num_perm"]), int(mcfg["bands"]), int(mcfg["rows"])
    char_n, word_n = ngrams(mcfg)
    if sh.count(char_n, word_n) < int(mcfg["min_features"]):
        return None
    sig = hashed_signature(sh.hash_set(char_n, word_n), num_perm, int(mcfg["seed"]), mcfg.get("scheme", "affine32"))
    return sig.astype(np.int64).tolist(), band_keys(sig, bands, rows)


def check_bands(cfg: dict) -> None:
    if int(cfg["bands"]) * int(cfg["rows"]) > int(cfg["num_perm"]):
        raise ValueError(f"bands x rows ({cfg['bands']} x {cfg['rows']}) exceeds num_perm ({cfg['num_perm']})")


def mark(df, cfg: dict, ctx: Context, step: str = "minhash", sets=None):
    """cfg = the `dedup` section; the step's parameters are `cfg[step]` (book.py reuses this with its own).
    sets: the fingerprint frame (fingerprints.py) with the records' shingle sets, for `verify: jaccard`
    when `df` carries the precomputed `_mh_bands` (and `_mh_sig`) instead of text."""
    return mark_section(df, cfg[step], ctx, step, sets)


def mark_section(df, mcfg: dict, ctx: Context, step: str, sets=None):
    from pyspark.sql import functions as F

    check_bands(mcfg)
    verify = mcfg.get("verify", "none")
    if verify not in VERIFY:
        raise ValueError(f"dedup.{step}.verify must be one of {VERIFY}, got {verify!r}")
    num_perm = int(mcfg["num_perm"])

    @F.pandas_udf("sig array<long>, bands array<long>")
    def sketch(text: pd.Series) -> pd.DataFrame:
        sigs, bks = [], []
        for t in text:
            r = record_minhash(t, mcfg, ctx)
            sigs.append(r[0] if r else None)
            bks.append(r[1] if r else None)
        return pd.DataFrame({"sig": sigs, "bands": bks})

    if step == "minhash" and "_mh_bands" in df.columns:    # computed once with the other fingerprints
        sig = F.col("_mh_sig") if "_mh_sig" in df.columns else F.lit(None).cast("array<long>")
        sk = df.select(ORDER, sig.alias("sig"), F.col("_mh_bands").alias("bands"))
    else:
        sk = df.select(ORDER, sketch("text").alias("m")).select(ORDER, "m.sig", "m.bands")
    sk, sketched = checkpoint_rows(sk.where(F.col("bands").isNotNull()), ctx.scratch)
    buckets = sk.select(ORDER, F.posexplode("bands").alias("band", "key"))
    if verify == "none":
        check = lambda pairs: pairs.withColumn("ok", F.lit(True))   # noqa: E731 (every collision links)
    elif verify == "signature":
        est = F.aggregate(F.zip_with("sa", "sb", lambda x, y: F.when(x == y, 1).otherwise(0)),
                          F.lit(0), lambda acc, x: acc + x) / F.lit(num_perm)

        def by_signature(pairs, sigs):
            return (pairs.join(sigs.select(F.col(ORDER).alias("a"), F.col("sig").alias("sa")), "a")
                    .join(sigs.select(F.col(ORDER).alias("b"), F.col("sig").alias("sb")), "b")
                    .select("a", "b", (est >= F.lit(float(mcfg["jaccard"]))).alias("ok")))
        check = first_pairs_only(by_signature, sk.select(ORDER, "sig"), ctx.scratch)
    else:
        src = (step_sets(sets, step) if sets is not None else
               checkpoint(with_shingle_sets(df, ORDER, *ngrams(mcfg), ctx), ctx.scratch))
        check = first_pairs_only(lambda pairs, s: check_pairs(pairs, s, float(mcfg["jaccard"])), src, ctx.scratch)
    rounds = int(mcfg.get("verify_rounds", 1)) if verify != "none" else 1
    edges, star = star_edges(sk.select(ORDER), buckets, check, rounds, ctx.scratch)
    labels, parents, cc = clusters(edges, int(mcfg["max_iterations"]), ctx.scratch, ctx.one_task_edges)
    out = mark_from_components(df, labels, step, parents)

    def stats(annotated) -> dict:
        return {"sketched": sketched, "too_short": annotated.count() - sketched, **star, "edges": cc["edges"],
                "cc_rounds": cc["cc_rounds"], "components": cc["cc"], "verify": verify}

    return out, stats


SCHEMES = ["affine32", "legacy"]
# the MinHash keys `minhash` and `book` share
SPEC_FIELDS = {
    "num_perm": Count(1), "bands": Count(1), "rows": Count(1), "seed": Int(), "scheme": Str(SCHEMES),
    "char_ngram": Count(1), "word_ngram": Count(1), "min_features": Count(0), "max_iterations": Count(1),
    "jaccard": Float(0, 1),
}


def bands_rows(v: dict, key: str) -> list[str]:
    b, r, n = v.get("bands"), v.get("rows"), v.get("num_perm")
    if all(isinstance(x, int) for x in (b, r, n)) and b * r > n:
        return [f"{key}.bands: expected bands x rows <= num_perm ({n}), got {b} x {r}"]
    return []


STEP = Step("minhash", mark, summary="datasketch-compatible MinHash LSH (bands x rows), connected components",
            verifies=True,
            spec=optional_section({**SPEC_FIELDS, "verify": Str(["none", "signature", "jaccard"]),
                                   "verify_rounds": Count(1)}, extra=bands_rows))
