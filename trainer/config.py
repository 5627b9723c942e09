"""Training configuration: frozen dataclasses loaded from YAML, with dotted CLI overrides.

`load_config("conf/train/tiny.yaml", ["optim.lr=3e-4", "model.n_layers=4"])`. The `model:` key of a
train config may name a model YAML (conf/model/*.yaml); keys given next to it override that file.
Nothing here is global: the loaded TrainConfig is passed to every function that needs it.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path


from dataflow.core.overrides import apply_overrides, load_yaml


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    dim: int                      # hidden_size
    n_layers: int                 # num_hidden_layers
    n_heads: int                  # num_attention_heads
    n_kv_heads: int | None = None # num_key_value_heads; None = n_heads (no GQA)
    ffn_dim: int = 0              # intermediate_size; 0 = LLaMA's 2/3·4·dim rounded up to multiple_of
    multiple_of: int = 256
    norm_eps: float = 1e-5        # LLaMA-2 rms_norm_eps
    rope_theta: float = 10000.0   # LLaMA-2 rope base
    max_seq_len: int = 4096
    activation_checkpointing: bool = False
    init_std: float = 0.02        # HF LlamaConfig.initializer_range

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        if self.ffn_dim:
            return self.ffn_dim
        h = int(2 * 4 * self.dim / 3)
        return self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)


@dataclass(frozen=True)
class DataConfig:
    root: str = "build/runs/demo/mix"   # the mixer's output dir holding manifest.json
    seed: int = 1234                    # seeds the global (shard, row) permutation of every stage
    stages: tuple[int, ...] = ()        # stage numbers to train on; () = all in manifest order
    epochs: tuple[float, ...] = ()      # passes over each stage; () = one pass each
    steps_per_stage: int = 0            # >0 caps every stage's optimizer steps (demos: a taste of each stage)
    cache_row_groups: int = 8           # decoded Parquet row groups kept in memory per loader


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4                    # peak LR (Ziya2 stage 1: 1e-4 for 13B; small models train higher)
    min_lr_ratio: float = 0.1           # LLaMA: cosine decay to 10% of peak
    warmup_steps: int = 2000            # LLaMA: 2,000 warmup steps
    betas: tuple[float, float] = (0.9, 0.95)  # LLaMA AdamW betas
    eps: float = 1e-8
    weight_decay: float = 0.1           # LLaMA
    grad_clip: float = 1.0              # LLaMA


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    window: int = 50                    # rolling window of accepted losses
    k_sigma: float = 6.0                # a loss above mean + k·std of the window is a spike
    min_history: int = 10               # no outlier test until this many losses are in the window


@dataclass(frozen=True)
class CheckpointConfig:
    dir: str = "build/runs/train/ckpt"
    every_steps: int = 0                # 0 = only at the end and on SIGTERM
    resume: bool = True                 # load the latest checkpoint in dir if there is one
    at_exit: bool = True
    at_start: bool = False              # also save the starting weights (imported or initialised) as global_step0


@dataclass(frozen=True)
class MetricsConfig:
    dir: str = "build/runs/train"       # metrics.jsonl, tensorboard/, loss.png
    log_every: int = 1
    tensorboard: bool = True
    progress_bar: bool = True
    peak_tflops: float = 0.0            # 0 = look up the GPU's dense bf16 peak; MFU is n/a on CPU unless set
    plot: bool = True
    run_name: str = ""                  # TensorBoard folder tensorboard/<run_name>/; "" = the start time, YYYYmmdd-HHMMSS


@dataclass(frozen=True)
class EvalConfig:
    """The validation loop (trainer/evaluate.py): every `every` steps, the no-gradient, document-masked loss on
    held-out packed rows. They come from `path` (a mix root or a stage dir with manifest.json; all its rows are
    evaluated) or, without a path, from the training mix itself: the rows whose hash falls under `fraction`
    (trainer/data.py `heldout_rows`), which the training order then never contains."""
    every: int = 0                      # optimizer steps between evaluations; 0 = off
    path: str = ""                      # packed rows to evaluate on; "" = the held-out `fraction` of data.root
    fraction: float = 0.0               # share of each stage's rows held out of training (only without `path`)
    max_batches: int = 8                # micro-batches evaluated per stage and evaluation (bounds the cost)

    def __post_init__(self):
        if self.every < 0:
            raise ValueError(f"eval.every {self.every}: steps between evaluations, 0 = off")
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"eval.fraction {self.fraction}: a share of the rows, 0 <= fraction < 1")
        if self.max_batches < 1:
            raise ValueError(f"eval.max_batches {self.max_batches}: at least 1")
        if self.path and self.fraction > 0:
            raise ValueError("eval.path and eval.fraction are alternatives: rows held out of a mix that is "
                             "evaluated from elsewhere would be lost to training for nothing")
        if self.every > 0 and not self.path and self.fraction == 0:
            raise ValueError("eval.every > 0 needs rows to evaluate: eval.path or eval.fraction > 0")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    deepspeed: str = "conf/deepspeed/zero2.json"
    precision: str = "bf16"             # bf16 | fp32
    attention: str = "auto"             # auto | varlen | flash_attn | sdpa_mask
    micro_batch_size: int = 1
    grad_accum: int = 1
    max_steps: int = 0                  # 0 = run every stage to its end; >0 caps the total optimizer steps
    run_steps: int = 0                  # >0: stop (and checkpoint) after this many steps of this run, schedule unchanged
    seed: int = 42                      # model init and dropout-free RNG state
    init_from: str = ""                 # HF LLaMA dir (config.json + safetensors) to continue from
    init_map: str = ""                  # init_map.json of the vocabulary expansion (needs init_from)
    vocab_multiple: int = 128           # pad the vocabulary to a multiple of this
    build_shm_comm: bool = False        # CPU only: JIT-build DeepSpeed's shm all-reduce (~60 s); gloo otherwise
    loss_chunk_tokens: int = 1024       # tokens per chunk of the fused lm_head + cross-entropy; 0 = whole logits.
                                        # 1024 × 39,424 fp32 logits = 161 MB, vs 2.6 GB for 4 rows of 4096 at once
    compile: bool = False               # torch.compile each transformer block (torchtitan's per-block compile)
    partition_init: bool = True         # ZeRO-3: build inside deepspeed.zero.Init and import init_from tensor by
                                        # tensor (trainer/partition.py); false = the whole model in every process


def _coerce(tp, value):
    """Turn YAML/CLI values into the dataclass field's type (tuples, nested dataclasses, numbers)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = load_yaml(value) if value.strip() else []
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else str
        return tuple(_coerce(inner, v) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or value == "":   # `--set model.n_kv_heads=` clears an optional value
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _coerce(inner, value)
    if tp is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if tp in (int, float, str) and value is not None:
        return tp(value)
    return value


def _build(cls, raw: dict):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**{k: _coerce(hints[k], v) for k, v in raw.items()})


def load_config(path: str | Path | None = None, overrides: list[str] = (), raw: dict | None = None) -> TrainConfig:
    """Load a TrainConfig from YAML (or a dict), then apply `key.path=value` overrides (YAML-parsed, through
    `dataflow.core.overrides`, the pipeline's `--set` parser)."""
    d = dict(raw or {})
    if path is not None:
        d = load_yaml(Path(path).read_text()) or {}
    model = d.get("model")
    if isinstance(model, str):
        d["model"] = load_yaml(Path(model).read_text())
    elif isinstance(model, dict) and "preset" in model:
        preset = load_yaml(Path(model.pop("preset")).read_text())
        d["model"] = {**preset, **model}
    # the pipeline's parser (YAML values, sections created, ValueError for a malformed item); a train config
    # has no maps with dotted keys
    d = apply_overrides(d, overrides, dotted_maps=())
    return _build(TrainConfig, d)


def load_model_config(path: str | Path) -> ModelConfig:
    return _build(ModelConfig, load_yaml(Path(path).read_text()))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
