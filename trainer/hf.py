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
from safetensors.torch import load_file, save_file

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


def load_hf(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    path = Path(path)
    cfg = config_from_hf(json.loads((path / "config.json").read_text()))
    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(path / f)))
    sd = {k: v for k, v in sd.items() if "rotary_emb" not in k}  # old exports carry inv_freq buffers
    return cfg, sd


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


def expand_vocab(sd: dict[str, torch.Tensor], init_map: dict[int, list[int]], multiple: int = 128
                 ) -> tuple[dict[str, torch.Tensor], int]:
    """Grow the vocabulary rows of embed_tokens and lm_head; returns (new state dict, new vocab size)."""
    old = sd[VOCAB_KEYS[0]].shape[0]
    need = max([old] + [i + 1 for i in init_map])
    new = padded_vocab(need, multiple)
    out = dict(sd)
    for key in VOCAB_KEYS:
        w = sd[key]
        wf = w.float()
        grown = wf.mean(0, keepdim=True).repeat(new, 1)
        grown[:old] = wf
        for new_id, olds in init_map.items():
            if new_id < old:
                raise ValueError(f"init_map id {new_id} is not new (old vocabulary has {old})")
            if not olds or max(olds) >= old:
                raise ValueError(f"init_map {new_id}: {olds} must be non-empty ids < {old}")
            grown[new_id] = wf[olds].mean(0)
        out[key] = grown.to(w.dtype)
    return out, new


def init_state(init_from: str, init_map: str = "", multiple: int = 128) -> tuple[ModelConfig, dict]:
    """The starting weights of continual pretraining: an HF LLaMA, with its vocabulary expanded if init_map."""
    cfg, sd = load_hf(init_from)
    if init_map:
        sd, vocab = expand_vocab(sd, read_init_map(init_map), multiple)
    else:
        vocab = padded_vocab(cfg.vocab_size, multiple)
        if vocab != cfg.vocab_size:
            sd, vocab = expand_vocab(sd, {}, multiple)
    return replace(cfg, vocab_size=vocab), sd


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
