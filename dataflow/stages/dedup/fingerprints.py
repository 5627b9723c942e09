"""One pass over the texts: every fingerprint the configured steps need, computed once per record.

The text of a record is prepared once (NFKC, Chinese folding, symbols stripped, words; dataflow.core.text.Shingled)
and every key is derived from that: the hash of the raw text (the same-text test of repeated ids), the exact
key (exact.py), the SimHash (simhash.py), the MinHash band keys and signature (minhash.py) and, for the
steps that verify their candidates by Jaccard, the shingle sets (verify.py). The steps
then work on a narrow frame of these columns, without the text (stage.py); each step's own function of one
text (`exact_key`, `record_simhash`, `record_minhash`) gives the same value, which the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass

from dataflow.core.hashing import xxh3_128_hex
from dataflow.stages.dedup.components import Context
from dataflow.stages.dedup.minhash import check_bands, shingled_minhash
from dataflow.stages.dedup.simhash import shingled_simhash
from dataflow.stages.dedup.verify import MH_SET, SH_SET, arrow_sets, ngrams, set_type

TEXT_HASH = "_text_hash"   # xxh3-128 of the raw text: equal texts, equal hashes (collisions negligible)
EXACT = "_exact"           # exact.py's key
SIMHASH = "_simhash"       # simhash.py's signed SimHash
MH_SIG = "_mh_sig"         # minhash.py's signature (only when `verify: signature`)
MH_BANDS = "_mh_bands"     # minhash.py's band keys
COLUMNS = (TEXT_HASH, EXACT, SIMHASH, MH_SIG, MH_BANDS, MH_SET, SH_SET)
SETS = (MH_SET, SH_SET)


@dataclass(frozen=True)
class Plan:
    """Which fingerprints to compute (cfg = the `dedup` section)."""
    exact: bool
    simhash: dict | None
    minhash: dict | None
    signature: bool
    mh_set: bool = False
    sh_set: bool = False

    @classmethod
    def for_steps(cls, steps, cfg: dict) -> "Plan":
        mh = cfg["minhash"] if "minhash" in steps else None
        if mh is not None:
            check_bands(mh)
        sh = cfg["simhash"] if "simhash" in steps else None
        return cls("exact" in steps, sh, mh, mh is not None and mh.get("verify", "none") == "signature",
                   mh is not None and mh.get("verify", "none") == "jaccard",
                   sh is not None and sh.get("verify_jaccard") is not None)


def record_fingerprints(text: str | None, plan: Plan, ctx: Context) -> dict:
    """The fingerprints of one text (None where a step would find it empty or too short)."""
    out = {c: None for c in COLUMNS}
    if text is None:
        return out
    out[TEXT_HASH] = xxh3_128_hex(text)
    sh = ctx.shingled(text)
    if plan.exact and sh.form:
        out[EXACT] = xxh3_128_hex(sh.form)
    if plan.simhash is not None:
        out[SIMHASH] = shingled_simhash(sh, plan.simhash)
    if plan.minhash is not None:
        r = shingled_minhash(sh, plan.minhash)
        if r is not None:
            out[MH_BANDS] = r[1]
            if plan.signature:
                out[MH_SIG] = r[0]
    if plan.mh_set:
        out[MH_SET] = sh.hash_set(*ngrams(plan.minhash))
    if plan.sh_set and not (plan.mh_set and sh.n(*ngrams(plan.simhash)) == sh.n(*ngrams(plan.minhash))):
        out[SH_SET] = sh.hash_set(*ngrams(plan.simhash))
    return out


PLAN_KEY = "_fp_plan"      # which plan and settings the fingerprint columns a fused pass carried were made with
CARRIED = (*COLUMNS, PLAN_KEY)


def plan_key(plan: Plan, cfg: dict) -> str:
    """The key of fingerprints made by `plan` under the `dedup` section `cfg`: equal keys, equal values for the
    same text (every setting the shingling and the steps' fingerprints read is in the section)."""
    from dataflow.core.config import conf_hash

    return conf_hash({"plan": repr(plan), "dedup": cfg})


def arrow_columns(texts: list, plan: Plan, ctx: Context) -> list:
    """The fingerprint columns (`COLUMNS`, in order) of a list of texts, as Arrow arrays."""
    import pyarrow as pa

    arrow = {TEXT_HASH: pa.string(), EXACT: pa.string(), SIMHASH: pa.int64(),
             MH_SIG: pa.list_(pa.int64()), MH_BANDS: pa.list_(pa.int64())}
    rows = [record_fingerprints(t, plan, ctx) for t in texts]
    return [arrow_sets([r[c] for r in rows]) if c in SETS else pa.array([r[c] for r in rows], arrow[c])
            for c in COLUMNS]


def carry(plan: Plan, cfg: dict, ctx: Context):
    """batch -> the batch with the fingerprint columns and their plan key added: what a fused pass computes while
    the text is in its worker's memory, so CD after it does not shingle the text again (`stage.run`)."""
    key = plan_key(plan, cfg)

    def add(batch):
        import pyarrow as pa

        cols = arrow_columns(batch.column("text").to_pylist(), plan, ctx)
        names = [n for n in batch.schema.names if n not in CARRIED]
        return pa.RecordBatch.from_arrays([*(batch.column(n) for n in names), *cols,
                                           pa.array([key] * batch.num_rows, pa.string())],
                                          names=[*names, *COLUMNS, PLAN_KEY])

    add.key = key   # recorded in the pass's stats.json: what CD checks before it trusts the columns
    return add


def with_fingerprints(df, plan: Plan, ctx: Context):
    """`df` without `text` but with the fingerprint columns, from one Python pass over the texts
    (mapInArrow: the other columns pass through as Arrow arrays, untouched)."""
    from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

    types = {TEXT_HASH: StringType(), EXACT: StringType(), SIMHASH: LongType(),
             MH_SIG: ArrayType(LongType()), MH_BANDS: ArrayType(LongType()), MH_SET: set_type(), SH_SET: set_type()}
    keep = [f for f in df.schema.fields if f.name != "text"]
    schema = StructType(keep + [StructField(c, types[c]) for c in COLUMNS])
    names = [f.name for f in keep]

    def compute(batches):
        import pyarrow as pa

        for b in batches:
            cols = [b.column(n) for n in names] + arrow_columns(b.column("text").to_pylist(), plan, ctx)
            yield pa.RecordBatch.from_arrays(cols, names=[*names, *COLUMNS])

    return df.mapInArrow(compute, schema)
