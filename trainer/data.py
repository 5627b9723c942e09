"""Packed-shard loader: the mixer's manifests and Parquet shards -> document-masked micro-batches.

Contract (written by jobs/mix.py): `<root>/manifest.json` {"stages": [paths of stage manifests, in order]};
each stage manifest has seq_len, seed, tokenizer{vocab_size, bos_id, eos_id, pad_id, ...}, and
shards [{"path" (relative to the stage manifest's dir), "rows"}]. Rows: input_ids list<int32> (seq_len),
doc_lens list<int32> (sums to seq_len; end padding is its own last segment), source, loss_mask list<int8>
or null (= all ones; 0 on prompts and padding), num_pad int32.

Order: a seeded permutation over every (shard, row) of a stage, one per epoch; the k-th global micro-batch
takes samples [k·mb·world, (k+1)·mb·world) of it and rank r the slice [r·mb, (r+1)·mb). The only resume
state is (stage index, consumed_samples), so a restart reproduces the exact sample stream.

Held out: with `eval.fraction`, `heldout_rows` picks each stage's validation rows by a hash of where they lie;
the permutation is then over the other rows only, so no held-out row reaches a training batch.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from .model import IGNORE  # one definition of the ignored label


@dataclass(frozen=True)
class Stage:
    stage: int
    dir: Path
    seq_len: int
    tokenizer: dict
    shards: tuple[tuple[Path, int], ...]   # (absolute path, rows)
    rows: int
    manifest: dict


def read_stage(mpath: Path, listed_in: Path | None = None) -> Stage:
    """One stage manifest. A stage that lists no shards (or no rows) is an error, never skipped."""
    if not mpath.exists():
        where = f" (listed in {listed_in})" if listed_in else ""
        raise FileNotFoundError(f"stage manifest {mpath}{where} does not exist")
    m = json.loads(mpath.read_text())
    shards = tuple((mpath.parent / s["path"], int(s["rows"])) for s in m.get("shards") or [])
    rows = sum(n for _, n in shards)
    if not shards or rows == 0:
        raise ValueError(f"{mpath}: stage {m.get('stage')} lists {len(shards)} shards with {rows} rows; "
                         "a stage with no data would be skipped silently")
    if int(m.get("rows", rows)) != rows:
        raise ValueError(f"{mpath}: rows {m['rows']} != sum of shard rows {rows}")
    return Stage(int(m["stage"]), mpath.parent, int(m["seq_len"]), dict(m.get("tokenizer", {})), shards, rows, m)


def read_mix(root: str | Path) -> list[Stage]:
    """The stages of a mix, in order."""
    root = Path(root)
    top_path = root / "manifest.json"
    if not top_path.exists():
        raise FileNotFoundError(f"no mix manifest at {top_path} (data.root must be the mixer's output)")
    top = json.loads(top_path.read_text())
    if not top.get("stages"):
        raise ValueError(f"{top_path} lists no stages")
    stages = []
    for rel in top["stages"]:
        mpath = Path(rel) if Path(rel).is_absolute() else root / rel
        if mpath.is_dir():
            mpath = mpath / "manifest.json"
        stages.append(read_stage(mpath, top_path))
    return stages


def read_eval_stages(path: str | Path) -> list[Stage]:
    """`eval.path`: a mix root (its manifest.json lists stages) or one stage's dir (its manifest.json lists shards)."""
    path = Path(path)
    mpath = path / "manifest.json" if path.is_dir() else path
    if not mpath.exists():
        raise FileNotFoundError(f"eval.path {path}: no manifest.json (a mix root or a packed stage dir)")
    if "stages" in json.loads(mpath.read_text()):
        return read_mix(mpath.parent)
    return [read_stage(mpath)]


def heldout_rows(stage: Stage, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the stage's rows held out of training: xxh64(seed; shard path relative to the stage dir,
    row inside the shard) / 2^64 < fraction. The hash names the row by where the mixer wrote it, so the split is
    the same in every process, every rerun and every resume, whatever the manifest's shard order."""
    import os

    import xxhash

    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    cut, out, start = int(fraction * 2 ** 64), [], 0
    for path, n in stage.shards:
        rel = os.path.relpath(path, stage.dir)
        out.extend(start + i for i in range(n) if xxhash.xxh64_intdigest(f"{rel}:{i}".encode(), seed=seed) < cut)
        start += n
    return np.asarray(out, dtype=np.int64)


SHARD_COLUMNS = ("input_ids", "doc_lens", "loss_mask", "num_pad")  # what the loader reads


def check_shards(stages: list[Stage]) -> None:
    """Every shard of every stage exists, is a readable Parquet file with the loader's columns and holds the
    rows its manifest says: checked from the footers before training, so stage 3's missing shard fails at
    start and not hours later. All problems are reported together."""
    problems = []
    for st in stages:
        for path, rows in st.shards:
            if not path.exists():
                problems.append(f"stage {st.stage}: shard {path} does not exist")
                continue
            try:
                meta = pq.ParquetFile(path).metadata
            except Exception as e:  # truncated or not Parquet: pyarrow names no path
                problems.append(f"stage {st.stage}: shard {path} is not readable Parquet ({e})")
                continue
            names = set(meta.schema.to_arrow_schema().names)
            if not set(SHARD_COLUMNS) <= names:
                problems.append(f"stage {st.stage}: shard {path} lacks columns {sorted(set(SHARD_COLUMNS) - names)}")
            elif meta.num_rows != rows:
                problems.append(f"stage {st.stage}: shard {path} holds {meta.num_rows} rows, its manifest says {rows}")
    if problems:
        raise ValueError("the mix's shards do not match their manifests:\n  " + "\n  ".join(problems))


class ShardReader:
    """Random access to rows of one stage's shards, decoding whole Parquet row groups into a small LRU."""

    def __init__(self, stage: Stage, cache_row_groups: int = 8):
        self.stage = stage
        self.cache: OrderedDict = OrderedDict()
        self.capacity = max(1, cache_row_groups)
        self.starts = np.cumsum([0] + [n for _, n in stage.shards])
        self._files: dict[int, tuple[pq.ParquetFile, np.ndarray]] = {}

    def _file(self, s: int):
        if s not in self._files:
            f = pq.ParquetFile(self.stage.shards[s][0])
            rg_starts = np.cumsum([0] + [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)])
            self._files[s] = (f, rg_starts)
        return self._files[s]

    def _row_group(self, s: int, g: int) -> dict:
        key = (s, g)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        f, _ = self._file(s)
        t = f.read_row_group(g, columns=list(SHARD_COLUMNS))
        cols = {}
        for name in ("input_ids", "doc_lens", "loss_mask"):
            arr = t.column(name).combine_chunks()
            cols[name] = (arr.is_null().to_numpy(zero_copy_only=False),
                          arr.offsets.to_numpy(), arr.values.to_numpy(zero_copy_only=False))
        cols["num_pad"] = t.column("num_pad").to_numpy()
        self.cache[key] = cols
        if len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        return cols

    def row(self, index: int) -> dict:
        s = int(np.searchsorted(self.starts, index, side="right") - 1)
        local = index - self.starts[s]
        _, rg_starts = self._file(s)
        g = int(np.searchsorted(rg_starts, local, side="right") - 1)
        cols = self._row_group(s, g)
        i = local - rg_starts[g]
        out = {}
        for name in ("input_ids", "doc_lens", "loss_mask"):
            nulls, off, vals = cols[name]
            out[name] = None if nulls[i] else vals[off[i]:off[i + 1]]
        out["num_pad"] = int(cols["num_pad"][i])
        return out


def row_sources(stage: Stage, rows: np.ndarray) -> list[str | None]:
    """The `source` column (the mixer's source with the most tokens in the row) of the given rows; None for every
    row when the shards do not carry it."""
    starts = np.cumsum([0] + [n for _, n in stage.shards])
    out: list[str | None] = [None] * len(rows)
    for s, (path, _) in enumerate(stage.shards):
        sel = [(k, int(r - starts[s])) for k, r in enumerate(rows) if starts[s] <= r < starts[s + 1]]
        if not sel:
            continue
        f = pq.ParquetFile(path)
        if "source" not in f.schema_arrow.names:
            continue
        col = f.read(columns=["source"]).column("source").to_pylist()
        for k, local in sel:
            out[k] = col[local]
    return out


def stage_order(stage: Stage, seed: int, epochs: float = 1.0, heldout: np.ndarray | None = None) -> np.ndarray:
    """The global sample order of a stage: one seeded permutation of its training rows (all rows but `heldout`)
    per (partial) epoch. Without held-out rows this is a permutation of range(rows), as before the split existed."""
    train = np.setdiff1d(np.arange(stage.rows), heldout) if heldout is not None and len(heldout) else None
    n_rows = stage.rows if train is None else len(train)
    n_total = int(round(epochs * n_rows))
    parts, e = [], 0
    while sum(len(p) for p in parts) < n_total:
        perm = np.random.default_rng([seed, stage.stage, e]).permutation(n_rows)
        parts.append(perm if train is None else train[perm])
        e += 1
    return np.concatenate(parts)[:n_total] if parts else np.zeros(0, dtype=np.int64)


def collate(rows: list[dict], seq_len: int) -> dict:
    """tokens, labels (-100 where the next token is in another document, is padding or is masked),
    position_ids (restart at 0 in every document) and flattened cu_seqlens / max_seqlen."""
    B, S = len(rows), seq_len
    ids = np.zeros((B, S), dtype=np.int64)
    labels = np.full((B, S), IGNORE, dtype=np.int64)
    pos = np.zeros((B, S), dtype=np.int64)
    cu, max_len = [0], 0
    for b, r in enumerate(rows):
        x = np.asarray(r["input_ids"], dtype=np.int64)
        lens = np.asarray(r["doc_lens"], dtype=np.int64)
        if len(x) != S or lens.sum() != S:
            raise ValueError(f"row has {len(x)} tokens and doc_lens summing to {lens.sum()}, expected {S}")
        ids[b] = x
        ok = np.ones(S, dtype=bool)        # ok[t]: position t may be trained to predict token t+1
        start = 0
        for n in lens:
            pos[b, start:start + n] = np.arange(n)
            ok[start + n - 1] = False      # the last token of a document must not predict the next document
            start += n
            cu.append(b * S + start)
            max_len = max(max_len, int(n))
        num_pad = int(r.get("num_pad") or 0)
        if num_pad:
            ok[S - num_pad - 1:] = False   # nothing predicts padding, padding predicts nothing
        mask = r.get("loss_mask")
        if mask is not None:
            ok[:-1] &= np.asarray(mask, dtype=bool)[1:]   # loss_mask marks the target tokens
        labels[b, :-1] = np.where(ok[:-1], x[1:], IGNORE)
    return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(pos), "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
            "max_seqlen": max_len}


class StageLoader:
    """Micro-batches of one stage for one rank, from `consumed_samples` on."""

    def __init__(self, stage: Stage, seed: int, micro_batch_size: int, rank: int = 0, world_size: int = 1,
                 epochs: float = 1.0, cache_row_groups: int = 8, heldout: np.ndarray | None = None):
        self.stage, self.mb, self.rank, self.world = stage, micro_batch_size, rank, world_size
        self.order = stage_order(stage, seed, epochs, heldout)
        self.reader = ShardReader(stage, cache_row_groups)

    @property
    def samples_per_micro_step(self) -> int:
        return self.mb * self.world

    def num_micro_steps(self) -> int:
        return len(self.order) // self.samples_per_micro_step

    def batch(self, consumed_samples: int) -> dict:
        lo = consumed_samples + self.rank * self.mb
        idx = self.order[lo:lo + self.mb]
        if len(idx) < self.mb:
            raise IndexError(f"stage {self.stage.stage}: sample {lo} beyond its {len(self.order)} samples")
        return collate([self.reader.row(int(i)) for i in idx], self.stage.seq_len)
