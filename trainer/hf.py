"""HF LLaMA interop: a state-dict adapter (names already match, see model.py) plus config.json translation,
and the vocabulary-expansion init.

- `load_hf(dir)`  -> (ModelConfig, state_dict) from config.json and model.safetensors or a sharded index
- `save_hf(dir, cfg, state_dict, tokenizer=...)` writes config.json + safetensors (sharded with an index above
  max_shard_bytes), and with a SentencePiece model also tokenizer.model, tokenizer_config.json,
  special_tokens_map.json and generation_config.json, so `AutoTokenizer` and `AutoModelForCausalLM` both load
  the directory; every file is world-readable (0644), whatever the umask or the writer's temp files
- `expand_vocab(sd, init_map, multiple)` grows embed_tokens and lm_head: each new id's row is the mean of the
  rows of the old ids it used to split into (init_map.json: {new_id: [old ids]}); rows added only to pad the
  vocabulary to a multiple of `multiple` get the mean of all old rows (they are never produced by the tokenizer).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import fp32_state_dict, load_file, model_states_file, resolve
from .config import ModelConfig

VOCAB_KEYS = ("model.embed_tokens.weight", "lm_head.weight")


def config_to_hf(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std, "tie_word_embeddings": False, "attention_bias": False,
        "mlp_bias": False, "torch_dtype": str(dtype).removeprefix("torch."),
    }


def config_from_hf(hf: dict, **overrides) -> ModelConfig:
    if hf.get("tie_word_embeddings"):
        raise ValueError("tied embeddings are not LLaMA-2; this model has an untied lm_head")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ValueError(f"rope scaling {rope} is not supported")
    theta = hf.get("rope_theta", rope.get("rope_theta", 10000.0))
    return ModelConfig(vocab_size=hf["vocab_size"], dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                       n_heads=hf["num_attention_heads"],
                       n_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
                       ffn_dim=hf["intermediate_size"], norm_eps=hf.get("rms_norm_eps", 1e-5), rope_theta=theta,
                       max_seq_len=hf.get("max_position_embeddings", 4096),
                       init_std=hf.get("initializer_range", 0.02), **overrides)


def read_hf_config(path: str | Path) -> ModelConfig:
    return config_from_hf(json.loads((Path(path) / "config.json").read_text()))


def weight_files(path: str | Path) -> dict[str, Path]:
    """{tensor name: safetensors file} of an HF dir, from its index (sharded) or its one model.safetensors.
    Old exports' rotary inv_freq buffers are left out (the model computes RoPE itself)."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        names = json.loads(index.read_text())["weight_map"]
        files = {k: path / f for k, f in names.items()}
    else:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            files = {k: path / "model.safetensors" for k in f.keys()}
    return {k: f for k, f in files.items() if "rotary_emb" not in k}


def read_tensor(files: dict[str, Path], name: str) -> torch.Tensor:
    """One tensor of an HF checkpoint, read alone (safetensors reads only that tensor's bytes)."""
    if name not in files:
        raise KeyError(f"tensor {name} is not in the checkpoint ({len(files)} tensors)")
    with safe_open(str(files[name]), framework="pt") as f:
        return f.get_tensor(name)


def load_hf(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The whole checkpoint in memory (export checks, small models); the trainer's ZeRO-3 import streams it
    tensor by tensor instead (trainer/partition.py)."""
    files = weight_files(path)
    return read_hf_config(path), {k: read_tensor(files, k) for k in files}


FILE_MODE, DIR_MODE = 0o644, 0o755  # an export is shared: readable by the serving user, not only its writer


def write_tokenizer(path: str | Path, model_file: str | Path, max_len: int) -> None:
    """tokenizer.model plus the configs transformers' LlamaTokenizer reads (SentencePiece BPE, LLaMA's
    <s>/</s>/<unk> layout; BOS prepended, no EOS appended, as LLaMA-2), and generation_config.json."""
    import sentencepiece as spm
    path = Path(path)
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    shutil.copyfile(model_file, path / "tokenizer.model")
    piece = lambda i: sp.id_to_piece(i) if i >= 0 else None  # noqa: E731
    special = {"bos_token": piece(sp.bos_id()), "eos_token": piece(sp.eos_id()), "unk_token": piece(sp.unk_id()),
               "pad_token": piece(sp.pad_id())}
    special = {k: v for k, v in special.items() if v is not None}
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", **special, "add_bos_token": True, "add_eos_token": False,
         "legacy": False, "model_max_length": max_len, "clean_up_tokenization_spaces": False}, indent=2))
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    gen = {"bos_token_id": sp.bos_id(), "eos_token_id": sp.eos_id()}
    if sp.pad_id() >= 0:
        gen["pad_token_id"] = sp.pad_id()
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2))


def make_readable(path: Path) -> None:
    os.chmod(path, DIR_MODE)
    for f in path.iterdir():
        if f.is_file():
            os.chmod(f, FILE_MODE)


def save_hf(path: str | Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor],
            dtype: torch.dtype | None = None, max_shard_bytes: int = 5 * 2**30,
            tokenizer: str | Path | None = None) -> Path:
    """An HF LlamaForCausalLM directory; `tokenizer` (a SentencePiece .model) makes it AutoTokenizer-loadable."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer:
        write_tokenizer(path, tokenizer, cfg.max_seq_len)
    _save_weights(path, cfg, state_dict, dtype, max_shard_bytes)
    make_readable(path)
    return path


def _save_weights(path: Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor], dtype, max_shard_bytes) -> None:
    sd = {k: (v.to(dtype) if dtype else v).detach().cpu().contiguous() for k, v in state_dict.items()}
    out_dtype = dtype or next(iter(sd.values())).dtype
    (path / "config.json").write_text(json.dumps(config_to_hf(cfg, out_dtype), indent=2))
    shards, cur, size = [], {}, 0
    for k, v in sd.items():
        n = v.numel() * v.element_size()
        if cur and size + n > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += n
    shards.append(cur)
    if len(shards) == 1:
        save_file(shards[0], str(path / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, s in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(s, str(path / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in s})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def read_init_map(path: str | Path) -> dict[int, list[int]]:
    return {int(k): [int(i) for i in v] for k, v in json.loads(Path(path).read_text()).items()}


def padded_vocab(n: int, multiple: int) -> int:
    return ((n + multiple - 1) // multiple) * multiple


def check_init_map(init_map: dict[int, list[int]], old: int) -> None:
    for new_id, olds in init_map.items():
        if new_id < old:
            raise ValueError(f"init_map id {new_id} is not new (old vocabulary has {old})")
        if not olds or max(olds) >= old or min(olds) < 0:
            raise ValueError(f"init_map {new_id}: {olds} must be non-empty ids in [0, {old})")


def expanded_size(old: int, init_map: dict[int, list[int]], multiple: int) -> int:
    return padded_vocab(max([old] + [i + 1 for i in init_map]), multiple)


def expand_rows(w: torch.Tensor, init_map: dict[int, list[int]], new: int) -> torch.Tensor:
    """One vocabulary matrix [old, dim] grown to [new, dim]: old rows kept, each init_map id the mean of its
    pieces' rows, the other added rows the mean of all old rows. The arithmetic is fp32, the result w's dtype."""
    check_init_map(init_map, w.shape[0])
    wf = w.float()
    grown = wf.mean(0, keepdim=True).repeat(new, 1)
    grown[:w.shape[0]] = wf
    for new_id, olds in init_map.items():
        grown[new_id] = wf[olds].mean(0)
    return grown.to(w.dtype)


def expand_vocab(sd: dict[str, torch.Tensor], init_map: dict[int, list[int]], multiple: int = 128
                 ) -> tuple[dict[str, torch.Tensor], int]:
    """Grow the vocabulary rows of embed_tokens and lm_head; returns (new state dict, new vocab size)."""
    new = expanded_size(sd[VOCAB_KEYS[0]].shape[0], init_map, multiple)
    return {**sd, **{key: expand_rows(sd[key], init_map, new) for key in VOCAB_KEYS}}, new


def init_config(init_from: str, init_map: str = "", multiple: int = 128) -> tuple[ModelConfig, dict]:
    """The model config of continual pretraining from an HF LLaMA (vocabulary grown by the init map and padded
    to `multiple`) and the init map itself ({} without one); reads config.json only."""
    cfg = read_hf_config(init_from)
    ids = read_init_map(init_map) if init_map else {}
    return replace(cfg, vocab_size=expanded_size(cfg.vocab_size, ids, multiple)), ids


def init_tensor(files: dict[str, Path], name: str, cfg: ModelConfig, init_map: dict[int, list[int]]
                ) -> torch.Tensor:
    """One starting tensor of continual pretraining: read alone, and for the two vocabulary matrices grown to
    `cfg.vocab_size` rows (`expand_rows`)."""
    t = read_tensor(files, name)
    if name in VOCAB_KEYS and t.shape[0] != cfg.vocab_size:
        t = expand_rows(t, init_map, cfg.vocab_size)
    return t


def init_state(init_from: str, init_map: str = "", multiple: int = 128) -> tuple[ModelConfig, dict]:
    """The starting weights of continual pretraining, whole: an HF LLaMA, with its vocabulary expanded."""
    cfg, ids = init_config(init_from, init_map, multiple)
    files = weight_files(init_from)
    return cfg, {k: init_tensor(files, k, cfg, ids) for k in files}


def export_checkpoint(ckpt_dir: str | Path, out: str | Path, tag: str | None = None,
                      dtype: torch.dtype | None = torch.bfloat16, tokenizer: str | Path | None = None) -> Path:
    """A trainer checkpoint (any ZeRO stage) -> an HF LLaMA dir with its tokenizer. Weights are DeepSpeed's
    fp32 masters, consolidated across ZeRO partitions; the model config and the tokenizer (the mix manifest's)
    come from the checkpoint's client state unless `tokenizer` is given. Every file is read with weights_only
    unpickling (checkpoint.load_file): a checkpoint that would run code on load is refused, naming the file."""
    tag_dir = resolve(ckpt_dir, tag)
    client = load_file(model_states_file(tag_dir))
    cfg = ModelConfig(**{k: v for k, v in client["model_config"].items()})
    tokenizer = tokenizer or (client.get("tokenizer") or {}).get("path")
    if not tokenizer or not Path(tokenizer).exists():
        raise FileNotFoundError(f"tokenizer {tokenizer!r} (from {tag_dir}'s client state) does not exist: pass "
                                "--tokenizer the SentencePiece model the shards were encoded with")
    sd = fp32_state_dict(tag_dir, client)
    if sd is None:  # ZeRO disabled: the module state is the full model
        sd = client["module"]
    return save_hf(out, cfg, sd, dtype=dtype, tokenizer=tokenizer)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m trainer.hf",
                                 description="Export a trainer checkpoint as an HF LlamaForCausalLM directory. "
                                             "(Import needs no command: set init_from/init_map in the train config.)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="checkpoint dir -> config.json + safetensors")
    ex.add_argument("--checkpoint", required=True, help="checkpoint.dir of a run (holds `latest`)")
    ex.add_argument("--tag", default=None, help="global_stepN; default: the `latest` one")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--tokenizer", default=None,
                    help="SentencePiece tokenizer.model; default: the one the checkpoint's mix manifest names")
    ex.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                    help="dtype of the exported weights (LLaMA-2 releases use float16/bfloat16)")
    a = ap.parse_args(argv)
    print(export_checkpoint(a.checkpoint, a.out, a.tag, getattr(torch, a.dtype), a.tokenizer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
