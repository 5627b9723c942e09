"""Checkpoints: DeepSpeed's own state (sharded weights, optimizer, scheduler) plus the trainer's client state.

Layout under checkpoint.dir: `latest` (the newest tag), `global_stepN/` (DeepSpeed files: mp_rank_00_model_states.pt,
*_optim_states.pt per ZeRO rank). The client state inside holds step, stage index, consumed_samples of that
stage, the spike guard window and the RNG states, so a resumed run continues the exact sample stream.

A checkpoint is a pickle, and a pickle can run code. Every file is read with `torch.load(weights_only=True)`,
which builds tensors, containers and the few types in `allowed_types()` (what DeepSpeed's files hold: its loss
scaler, ZeRO stage enum and fragment addresses, and numpy's RNG state) and refuses anything else before calling
it. `resolve` reads every file of a tag that way, so a crafted file fails there, naming it, before DeepSpeed's
own loader (which unpickles without that guard) sees it; `fp32_state_dict` consolidates the ZeRO fp32 masters
from those safe reads (DeepSpeed's zero_to_fp32 arithmetic, without its unguarded loads).
"""
from __future__ import annotations

import math
import pickle
import random
import re
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


def allowed_types() -> list:
    """The non-tensor types DeepSpeed 0.19 checkpoints pickle (found with torch.serialization.
    get_unsafe_globals_in_checkpoint on ZeRO-1/2/3, bf16 and fp32 runs): nothing here runs code when unpickled."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    reconstruct = np.empty(0).__reduce__()[0]    # numpy._core.multiarray._reconstruct (np.core before numpy 2)
    return [LossScaler, ZeroStageEnum, fragment_address, reconstruct, np.ndarray, np.dtype,
            type(np.dtype(np.uint32))]


def load_file(path: Path) -> dict:
    """One checkpoint file, unpickled with weights_only=True over `allowed_types()` (storages memory-mapped).
    A file that asks for any other callable is refused before it is called; a damaged one names itself."""
    try:
        with torch.serialization.safe_globals(allowed_types()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        why = (str(e).strip().splitlines() or ["?"])[0][:300]
        raise CheckpointError(f"checkpoint file {path} asks to unpickle something other than tensors and "
                              f"DeepSpeed's state types; refused, nothing in it was run ({why})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is not a readable torch archive ({type(e).__name__}: "
                              f"{str(e).strip()[:200]})") from None


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
        load_file(f)                   # every pickle safe before anything else unpickles it (memory-mapped: cheap)
    return tag_dir


def _rank(path: Path) -> list:
    """Natural order of the per-rank files (zero_pp_rank_10 after zero_pp_rank_9)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def fp32_state_dict(tag_dir: Path, model_states: dict) -> dict[str, torch.Tensor] | None:
    """The consolidated fp32 master weights of a ZeRO checkpoint, from safe reads of its optimizer shards, or
    None when it has none (ZeRO disabled: the module state is the model). `model_states` is the rank-0
    model-states file's content (param_shapes, buffer_names, shared_params)."""
    files = sorted(tag_dir.glob("*_optim_states.pt"), key=_rank)
    if not files:
        return None
    if model_states.get("frozen_param_shapes"):
        raise CheckpointError(f"checkpoint {tag_dir} has frozen parameters; the trainer never freezes any")
    states = [load_file(f)["optimizer_state_dict"] for f in files]
    world = states[0]["partition_count"]
    world = max(world) if isinstance(world, list) else int(world)
    if world != len(files):
        raise CheckpointError(f"checkpoint {tag_dir} holds {len(files)} optimizer shards, its ZeRO partition count "
                              f"is {world}: a rank's file is missing or left from another run")
    shapes = model_states["param_shapes"]   # one {name: torch.Size} per parameter group, in flat order
    if int(states[0]["zero_stage"]) <= 2:
        sd = _zero12_params(tag_dir, states, shapes, world)
    else:
        sd = _zero3_params(tag_dir, [torch.cat(s["fp32_flat_groups"]) for s in states], shapes, world)
    names = model_states.get("buffer_names") or []
    sd.update({k: v.float() if v.is_floating_point() else v for k, v in model_states["module"].items() if k in names})
    for alias, name in (model_states.get("shared_params") or {}).items():
        sd[alias] = sd[name]
    return sd


def _zero12_params(tag_dir: Path, states: list, shapes: list, world: int) -> dict:
    """ZeRO-1/2: each group's flat fp32 vector is the ranks' partitions end to end; parameters follow in order,
    each followed by its alignment padding; the group ends padded to a multiple of 2 x world."""
    paddings = states[0].get("param_alignment_paddings")
    sd = {}
    for g, group in enumerate(shapes):
        flat = torch.cat([s["single_partition_of_fp32_groups"][g] for s in states])
        offset = 0
        for i, (name, shape) in enumerate(group.items()):
            n = math.prod(shape)
            sd[name] = flat.narrow(0, offset, n).view(shape).clone()
            offset += n + (paddings[g][i] if paddings else 0)
        align = 2 * world
        if math.ceil(offset / align) != math.ceil(flat.numel() / align):
            raise CheckpointError(f"checkpoint {tag_dir}: group {g} holds {flat.numel()} values, its parameters "
                                  f"{offset}: the shards do not belong to this model")
    return sd


def _zero3_params(tag_dir: Path, flats: list, shapes: list, world: int) -> dict:
    """ZeRO-3: every parameter is cut into `world` equal parts (the last padded), rank r holding part r of each
    parameter in order in its flat vector."""
    sd, offset = {}, 0
    for name, shape in ((k, v) for group in shapes for k, v in group.items()):
        n = math.prod(shape)
        part = math.ceil(n / world)
        sd[name] = torch.cat([f.narrow(0, offset, part) for f in flats])[:n].view(shape).clone()
        offset += part
    if offset != flats[0].numel():
        raise CheckpointError(f"checkpoint {tag_dir}: a rank holds {flats[0].numel()} values, the parameters "
                              f"{offset}: the shards do not belong to this model")
    return sd


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
