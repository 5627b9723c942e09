"""Building the model under ZeRO-3 without ever holding it whole in one process.

With `partition_init` on and a ZeRO-3 DeepSpeed config, the model is constructed inside `deepspeed.zero.Init`:
each module's parameters are split across the ranks as soon as that module exists, so a process holds its
1/world share of the weights plus, briefly, one module's full tensors. The initial values are then written one
module at a time (`init_weights`: gathered, set on rank 0, re-partitioned), or, for continual pretraining,
`import_hf` streams the Hugging Face checkpoint tensor by tensor: rank 0 reads one tensor from its safetensors
shard (the vocabulary matrices grown by the init map's mean-of-pieces rows, trainer/hf.py), the parameter is
gathered, set from rank 0 and re-partitioned. A process never holds more than its share plus the largest
single tensor (twice on rank 0: the file's copy and the gathered parameter).

Without it (ZeRO 0-2, or `partition_init: false`) the model is built whole in every process, as before: the
memory test (tests/test_trainer_memory.py) switches it off to show that run exceeding its cap.
The model (trainer/model.py) stays plain PyTorch: only this module and train.py know about DeepSpeed.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from .config import ModelConfig, TrainConfig
from .hf import VOCAB_KEYS, init_tensor, weight_files
from .model import Llama, init_module


def zero_stage(ds_config: dict) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def partitioned(cfg: TrainConfig, ds_config: dict) -> bool:
    """Whether the model is built partitioned: ZeRO-3 and `partition_init` (ZeRO 1-2 keep every weight on
    every rank anyway)."""
    return cfg.partition_init and zero_stage(ds_config) == 3


def numel(p: torch.nn.Parameter) -> int:
    """A parameter's full element count, also once ZeRO-3 has partitioned it (its data is then empty)."""
    return int(getattr(p, "ds_numel", p.numel()))


def ndim(p: torch.nn.Parameter) -> int:
    return len(getattr(p, "ds_shape", p.shape))


def construct(mcfg: ModelConfig, cfg: TrainConfig, ds_config: dict) -> Llama:
    """The model built inside `deepspeed.zero.Init`: its weights exist only as per-rank partitions."""
    import deepspeed

    with deepspeed.zero.Init(config_dict_or_path=ds_config):
        return Llama(mcfg, cfg.attention, loss_chunk=cfg.loss_chunk_tokens)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


@torch.no_grad()
def init_weights(model: Llama, seed: int) -> None:
    """The initial values, one module at a time: gathered, drawn on rank 0 from the seeded RNG in `modules()`
    order (the values `Llama.reset_parameters` gives an unpartitioned model), broadcast and re-partitioned."""
    import deepspeed

    torch.manual_seed(seed)
    rank = _rank()
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if not own:
            continue
        with deepspeed.zero.GatheredParameters(own, modifier_rank=0):
            if rank == 0:
                init_module(m, model.cfg.init_std)


@torch.no_grad()
def import_hf(model: Llama, init_from: str, init_map: dict[int, list[int]]) -> None:
    """The HF checkpoint streamed into the partitions, one tensor at a time (only rank 0 reads tensors).
    Every rank first checks the checkpoint's names and shapes (safetensors headers only) against the model, so a
    mismatched checkpoint fails on all ranks at once, naming the tensors, before any collective starts."""
    import deepspeed

    rank = _rank()
    files = weight_files(init_from)
    check_checkpoint(model, files, init_from)
    for name, p in model.named_parameters():
        with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
            if rank == 0:
                p.copy_(init_tensor(files, name, model.cfg, init_map))


def check_checkpoint(model: Llama, files: dict, init_from: str) -> None:
    """Names equal; shapes equal, except that the vocabulary matrices may have fewer rows (grown on import)."""
    ours = {n: tuple(getattr(p, "ds_shape", p.shape)) for n, p in model.named_parameters()}
    missing, extra = sorted(set(ours) - set(files)), sorted(set(files) - set(ours))
    if missing or extra:
        raise ValueError(f"{init_from} does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    bad = [f"{n} {theirs} vs {ours[n]}" for n, theirs in header_shapes(files).items()
           if theirs != ours[n] and not (n in VOCAB_KEYS and theirs[1:] == ours[n][1:] and theirs[0] <= ours[n][0])]
    if bad:
        raise ValueError(f"{init_from}: tensor shapes differ from the model's: {bad[:5]}")


def header_shapes(files: dict[str, Path]) -> dict[str, tuple]:
    """Every tensor's shape from the safetensors headers, no tensor read."""
    out = {}
    for path in sorted(set(files.values())):
        with safe_open(str(path), framework="pt") as f:
            out.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k in files})
    return out
