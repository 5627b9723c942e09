"""Checkpoints: DeepSpeed's own state (sharded weights, optimizer, scheduler) plus the trainer's client state.

Layout under checkpoint.dir: `latest` (the newest tag), `global_stepN/` (DeepSpeed files: mp_rank_00_model_states.pt,
*_optim_states.pt per ZeRO rank). The client state inside holds step, stage index, consumed_samples of that
stage, the spike guard window and the RNG states, so a resumed run continues the exact sample stream.
"""
from __future__ import annotations

import random
import zipfile
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


class CheckpointError(RuntimeError):
    """A checkpoint that `latest` points to is missing, incomplete or unreadable; the message names the path."""


def model_states_file(tag_dir: Path) -> Path:
    """mp_rank_00_model_states.pt (ZeRO 0-2) or zero_pp_rank_0_mp_rank_00_model_states.pt (ZeRO-3)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (tag_dir / name).exists():
            return tag_dir / name
    raise CheckpointError(f"checkpoint {tag_dir} has no model-states file (mp_rank_00_model_states.pt or "
                          f"zero_pp_rank_0_mp_rank_00_model_states.pt): missing or incomplete")


def resolve(ckpt_dir: str | Path, tag: str | None = None) -> Path:
    """The directory of a checkpoint tag (default: the one `latest` names), checked to exist and to hold its
    files, each a complete torch archive. Raises CheckpointError naming the path otherwise."""
    ckpt_dir = Path(ckpt_dir)
    if tag is None:
        latest = ckpt_dir / "latest"
        if not latest.exists():
            raise CheckpointError(f"{latest} does not exist: no checkpoint in {ckpt_dir}")
        tag = latest.read_text().strip()
        if not tag:
            raise CheckpointError(f"{latest} is empty")
    tag_dir = ckpt_dir / tag
    if not tag_dir.is_dir():
        raise CheckpointError(f"checkpoint {tag_dir} does not exist (named by {ckpt_dir / 'latest'})")
    model_states_file(tag_dir)
    for f in sorted(tag_dir.glob("*.pt")):
        if not zipfile.is_zipfile(f):  # torch.save writes a zip archive; a cut-off file has no central directory
            raise CheckpointError(f"checkpoint file {f} is truncated or not a torch archive ({f.stat().st_size} bytes)")
    return tag_dir


def load(engine, ckpt_dir: str | Path) -> dict | None:
    """Load the latest checkpoint into the engine; returns the client state, or None when the directory holds
    no checkpoint (no `latest`). A `latest` whose checkpoint is missing or damaged raises CheckpointError."""
    if not (Path(ckpt_dir) / "latest").exists():
        return None
    tag_dir = resolve(ckpt_dir)
    try:
        path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag_dir.name)
    except Exception as e:  # DeepSpeed asserts without naming the file
        raise CheckpointError(f"loading checkpoint {tag_dir} failed: {type(e).__name__}: {e}") from e
    if path is None:
        raise CheckpointError(f"DeepSpeed found no loadable checkpoint in {tag_dir}")
    if "rng" in client:
        set_rng_state(client["rng"])
    return client
