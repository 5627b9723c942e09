"""Loss-spike guard: decide, before backward, whether this step's update should be skipped.

A step is skipped on a non-finite loss, or when the loss exceeds mean + k·std of a rolling window of
accepted losses (Ziya2 reports loss spikes in continual pretraining; skipping the batch is the cheap
remedy PaLM used). The caller skips by making the gradient non-finite, which DeepSpeed's ZeRO/bf16
optimizers already treat as an overflow: no update, no scheduler step, gradients cleared, on every rank.
"""
from __future__ import annotations

import math
from collections import deque

from .config import GuardConfig


class SpikeGuard:
    def __init__(self, cfg: GuardConfig):
        self.cfg = cfg
        self.window: deque[float] = deque(maxlen=cfg.window)

    def verdict(self, loss: float) -> str | None:
        """None to train on this loss, else the reason to skip ('nonfinite_loss' or 'loss_spike')."""
        if not self.cfg.enabled:
            return None
        if not math.isfinite(loss):
            return "nonfinite_loss"
        if len(self.window) >= self.cfg.min_history:
            n = len(self.window)
            mean = sum(self.window) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in self.window) / n)
            if loss > mean + self.cfg.k_sigma * std:
                return "loss_spike"
        return None

    def accept(self, loss: float) -> None:
        self.window.append(loss)

    def state_dict(self) -> dict:
        return {"window": list(self.window)}

    def load_state_dict(self, d: dict) -> None:
        self.window = deque(d.get("window", []), maxlen=self.cfg.window)
