"""Learning rate: linear warmup to the peak, then cosine decay to min_lr_ratio × peak (LLaMA: 2,000 steps, 10%).

lr(s) = peak·(s+1)/warmup                          for s < warmup (so step 0 already trains, and lr(warmup-1) = peak)
lr(s) = min + ½(peak−min)(1 + cos(π·p)),  p = (s−warmup)/(total−warmup), clipped to [0, 1]
"""
from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    lo = peak * min_ratio
    p = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return lo + 0.5 * (peak - lo) * (1.0 + math.cos(math.pi * p))


def scheduler(optimizer, cfg: OptimConfig, total_steps: int) -> LambdaLR:
    """A LambdaLR over the optimizer's peak lr; DeepSpeed steps it only on applied (not skipped) steps."""
    return LambdaLR(optimizer, lambda s: lr_at(s, cfg.lr, cfg.warmup_steps, total_steps, cfg.min_lr_ratio) / cfg.lr)
