"""One optimizer step: forward and backward over the step's micro-batches, the spike guard, the update.

Every label token of the global batch weighs the same. The loss of a step is
    Σ over micro-batches and ranks of Σ token losses  ÷  number of label tokens in the global batch,
not the mean of per-micro-batch means (which over-weights a micro-batch with few label tokens, such as a row of
prompts with short answers). The token count of the whole step is known before the first backward: every
micro-batch of the step is collated first and the label counts are summed over ranks. Each micro-batch then
backpropagates its token-loss sum × grad_accum · world ÷ N, which DeepSpeed's own scaling (÷ grad_accum for the
accumulation, the mean over data-parallel ranks) turns into exactly Σ losses ÷ N.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .guard import SpikeGuard
from .metrics import pairs_from_cu_seqlens
from .model import IGNORE


def lm_loss_sum(model, batch: dict, device) -> torch.Tensor:
    """The summed fp32 token cross-entropy of one micro-batch (the model computes it in chunks)."""
    return model(batch["input_ids"].to(device), batch["position_ids"].to(device), batch["cu_seqlens"].to(device),
                 batch["max_seqlen"], labels=batch["labels"].to(device))


def label_tokens(batch: dict) -> int:
    return int((batch["labels"] != IGNORE).sum())


@dataclass
class StepResult:
    loss: float            # token mean over the global batch
    label_tokens: int      # trained-on tokens of the global batch (all ranks)
    tokens: int            # tokens this rank processed (rows × seq_len)
    attn_pairs: int        # document-masked attention pairs of this rank's rows (for the FLOP count)
    applied: bool
    reason: str | None     # why the update was skipped: nonfinite_loss, loss_spike, nonfinite_grad


def _all_reduce(t: torch.Tensor, dist) -> torch.Tensor:
    if dist is not None and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def train_step(engine, batches: list[dict], guard: SpikeGuard, loss_fn=lm_loss_sum, dist=None) -> StepResult:
    """Forward/backward every micro-batch of the step, then let DeepSpeed apply (or skip) the update.

    `loss_fn(model, batch, device)` returns a micro-batch's summed token loss (injectable for tests). A loss the
    guard rejects poisons the gradient with NaN, which DeepSpeed treats as an overflow on every rank: no update,
    no scheduler step."""
    device = engine.device
    world = dist.get_world_size() if dist is not None and dist.is_initialized() else 1
    accum = len(batches)
    n_global = int(_all_reduce(torch.tensor([sum(label_tokens(b) for b in batches)], dtype=torch.float64,
                                            device=device), dist).item())
    scale = accum * world / max(1, n_global)
    engine.train()
    total, reason = 0.0, None
    for b in batches:
        loss_sum = loss_fn(engine, b, device)
        seen = _all_reduce(torch.stack([loss_sum.detach().double(),
                                        torch.tensor(float(label_tokens(b)), dtype=torch.float64, device=device)]),
                           dist)
        total += float(seen[0])
        why = guard.verdict(float(seen[0]) / max(1.0, float(seen[1])))
        if why and not reason:
            reason = why
        loss = loss_sum * scale
        if reason:  # poison the gradient: DeepSpeed then skips the update on every rank
            loss = loss * float("nan")
        engine.backward(loss)
        engine.step()
    applied = engine.was_step_applied() and reason is None
    if reason is None and not applied:
        reason = "nonfinite_grad"
    loss = total / max(1, n_global)
    if applied:
        guard.accept(loss)
    tokens = sum(int(b["input_ids"].numel()) for b in batches)
    pairs = sum(pairs_from_cu_seqlens(b["cu_seqlens"]) for b in batches)
    return StepResult(loss, n_global, tokens, pairs, applied, reason)
