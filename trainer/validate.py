"""The validation loop: the loss on held-out packed rows, without gradient, per source and per stage.

The rows are those `trainer/data.py` held out of training (`eval.fraction`) or every row of `eval.path`. They are
collated by the training collate, so the loss goes through the same document-masked attention (packed documents
never see each other) and the same labels (prompts and padding ignored) as training. The set is fixed at setup:
at most `eval.max_batches` micro-batches per stage, each holding rows of one source (the row's `source` column,
the mixer's source with the most tokens in it), taken round-robin over the sources so each one is measured.
Every rank evaluates the same batches: under ZeRO-3 a forward is collective, so no rank may skip one, and the
result needs no all-reduce.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .data import ShardReader, Stage, collate, row_sources
from .step import label_tokens, lm_loss_sum

UNKNOWN = "unknown"   # the source key of rows whose shards carry no `source` column


@dataclass
class EvalBatch:
    stage: int
    source: str
    rows: tuple[int, ...]  # row indices inside the stage (what the test checks against the training order)
    batch: dict


def plan_batches(stage: Stage, rows: np.ndarray, micro_batch_size: int, max_batches: int) -> list[tuple[str, np.ndarray]]:
    """(source, rows) of at most `max_batches` micro-batches: rows grouped by source, cut into micro-batches,
    then taken round-robin over the sources (sorted by name)."""
    by_source: dict[str, list[int]] = {}
    for r, src in zip(rows, row_sources(stage, rows)):
        by_source.setdefault(src or UNKNOWN, []).append(int(r))
    chunks = [[(src, np.asarray(idx[i:i + micro_batch_size])) for i in range(0, len(idx), micro_batch_size)]
              for src, idx in sorted(by_source.items())]
    interleaved = (c for group in itertools.zip_longest(*chunks) for c in group if c is not None)
    return list(itertools.islice(interleaved, max_batches))


class Validator:
    """The fixed held-out batches of every stage, and `evaluate`, which returns the metrics of one evaluation."""

    def __init__(self, stages: list[Stage], heldout: list[np.ndarray], micro_batch_size: int, max_batches: int):
        self.batches: list[EvalBatch] = []
        for st, rows in zip(stages, heldout):
            reader = ShardReader(st, cache_row_groups=2)
            for src, idx in plan_batches(st, rows, micro_batch_size, max_batches):
                self.batches.append(EvalBatch(st.stage, src, tuple(int(i) for i in idx),
                                              collate([reader.row(int(i)) for i in idx], st.seq_len)))

    @property
    def rows(self) -> int:
        return sum(len(b.rows) for b in self.batches)

    def evaluate(self, engine, loss_fn=lm_loss_sum) -> dict:
        """Token-mean loss overall, per source and per stage; the model is in eval mode under no_grad, and back
        in its previous mode afterwards (even when a forward raises)."""
        sums: dict[tuple[int, str], list] = {}
        was_training = engine.training
        engine.eval()
        try:
            with torch.no_grad():
                for b in self.batches:
                    loss = float(loss_fn(engine, b.batch, engine.device))
                    acc = sums.setdefault((b.stage, b.source), [0.0, 0])
                    acc[0] += loss
                    acc[1] += label_tokens(b.batch)
        finally:
            engine.train(was_training)
        return {"eval_loss": _mean(sums.values()),
                "eval_loss_by_type": _grouped(sums, lambda k: k[1]),
                "eval_loss_by_stage": _grouped(sums, lambda k: str(k[0])),
                "eval_tokens": sum(n for _, n in sums.values()), "eval_rows": self.rows}


def _mean(parts) -> float | None:
    """Σ loss ÷ Σ label tokens; None when no row had a label token (never a division by zero)."""
    parts = list(parts)
    n = sum(p[1] for p in parts)
    return sum(p[0] for p in parts) / n if n else None


def _grouped(sums: dict, key) -> dict:
    groups: dict[str, list] = {}
    for k, v in sums.items():
        groups.setdefault(key(k), []).append(v)
    return {g: _mean(v) for g, v in sorted(groups.items())}
