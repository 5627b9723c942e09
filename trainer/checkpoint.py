"""Checkpoints: DeepSpeed's own state (sharded weights, optimizer, scheduler) plus the trainer's client state.

Layout under checkpoint.dir: `latest` (the newest tag), `global_stepN/` (DeepSpeed files: mp_rank_00_model_states.pt,
*_optim_states.pt per ZeRO rank). The client state inside holds step, stage index, consumed_samples of that
stage, the spike guard window and the RNG states, so a resumed run continues the exact sample stream.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state()
    return s


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])


def save(engine, ckpt_dir: str | Path, step: int, client_state: dict) -> str:
    tag = f"global_step{step}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={**client_state, "rng": rng_state()})
    return tag


def load(engine, ckpt_dir: str | Path) -> dict | None:
    """Load the latest checkpoint into the engine; returns the client state, or None when there is none."""
    if not (Path(ckpt_dir) / "latest").exists():
        return None
    path, client = engine.load_checkpoint(str(ckpt_dir))
    if path is None:
        return None
    if "rng" in client:
        set_rng_state(client["rng"])
    return client
