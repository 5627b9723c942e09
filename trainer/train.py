"""Continual pretraining loop: DeepSpeed ZeRO + bf16 over the mixer's three stages, in sequence.

GPU:  deepspeed --num_gpus 8 --module trainer.train --config conf/train/llama2-13b.yaml [--set optim.lr=1e-4 ...]
CPU:  python -m trainer.train --config conf/train/tiny.yaml   (gloo, one process; DS_ACCELERATOR=cpu without CUDA)
      deepspeed --num_gpus 1 --module trainer.train --config conf/train/tiny.yaml   (the same through the launcher)
(DeepSpeed's launcher takes `--module`, not python's `-m`.) TensorBoard events go to
<metrics.dir>/tensorboard/<metrics.run_name>/ (default: the start time; `--run-name` sets it), one folder per run.

The model (trainer/model.py) knows nothing of DeepSpeed; this file wires config -> data -> model ->
deepspeed.initialize -> loop, in pieces as torchtitan splits its trainer: `setup` (data, model, engine,
resume), `train_step` (trainer/step.py: forward/backward of the micro-batches, spike guard, update),
`step_record`/`log_step` (metrics), `run_eval` (the held-out loss every eval.every steps, trainer/validate.py),
`save_checkpoint`, and `train`, the loop that strings them together
and handles stages and SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig, TrainConfig, load_config, to_dict
from .data import StageLoader, check_shards, heldout_rows, read_eval_stages, read_mix
from .guard import SpikeGuard
from .hf import init_config, init_state, padded_vocab
from .metrics import MetricsLog, device_peak_tflops, plot_loss, step_flops
from .model import Llama
from .schedule import scheduler
from .step import StepResult, lm_loss_sum, train_step
from .validate import Validator
from . import checkpoint, partition


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_distributed(cfg: TrainConfig):
    """Single-process runs (python -m) get the env the deepspeed launcher would set; CPU uses gloo."""
    if "WORLD_SIZE" not in os.environ and "MASTER_PORT" not in os.environ:
        # a lone process owns its rendezvous: take a free port so two local runs (or test sessions) never collide
        os.environ["MASTER_PORT"] = str(free_port())
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    if not torch.cuda.is_available() and not cfg.build_shm_comm:
        # DeepSpeed JIT-compiles a shared-memory all-reduce for CPU on first use (~60 s). gloo does the same
        # job correctly, so skip the build unless asked for (build_shm_comm: true, cached in TORCH_EXTENSIONS_DIR).
        import deepspeed.comm.torch  # noqa: F401  (the attribute deepspeed.comm.torch is torch itself)
        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    return deepspeed


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """LLaMA/Megatron convention: decay matrices, not norms (1-D) and not the input embedding."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if partition.ndim(p) < 2 or "embed_tokens" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def deepspeed_config(cfg: TrainConfig) -> dict:
    ds = json.loads(Path(cfg.deepspeed).read_text())
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds.pop("train_batch_size", None)
    ds["gradient_clipping"] = cfg.optim.grad_clip
    if cfg.precision == "bf16":
        ds["bf16"] = {**ds.get("bf16", {}), "enabled": True, "check_grad_overflow": True}
    elif cfg.precision == "fp32":
        ds.pop("bf16", None)
        ds.pop("fp16", None)
    else:
        raise ValueError(f"precision {cfg.precision!r}: bf16 or fp32")
    return ds


@dataclass
class Plan:
    """How many optimizer steps each stage gets (a stage's samples ÷ global batch, capped by max_steps)."""
    steps: list[int]

    @property
    def total(self) -> int:
        return sum(self.steps)


def make_plan(cfg: TrainConfig, loaders: list[StageLoader]) -> Plan:
    steps = [l.num_micro_steps() // cfg.grad_accum for l in loaders]
    if cfg.data.steps_per_stage > 0:
        steps = [min(s, cfg.data.steps_per_stage) for s in steps]
    if cfg.max_steps > 0:
        left, capped = cfg.max_steps, []
        for s in steps:
            capped.append(min(s, left))
            left -= capped[-1]
        steps = capped
    return Plan(steps)


def model_config(cfg: TrainConfig, data_vocab: int) -> tuple[ModelConfig, dict]:
    """The model's shape (from the HF config.json when continuing one, grown by the init map) and the init map."""
    mcfg, ids = cfg.model, {}
    if cfg.init_from:
        hf_cfg, ids = init_config(cfg.init_from, cfg.init_map, cfg.vocab_multiple)
        mcfg = replace(hf_cfg, activation_checkpointing=cfg.model.activation_checkpointing,
                       max_seq_len=max(hf_cfg.max_seq_len, cfg.model.max_seq_len))
    elif mcfg.vocab_size == 0:
        mcfg = replace(mcfg, vocab_size=padded_vocab(data_vocab, cfg.vocab_multiple))
    if data_vocab > mcfg.vocab_size:
        raise ValueError(f"tokenizer has {data_vocab} ids but the model only {mcfg.vocab_size}")
    return mcfg, ids


def build_model(cfg: TrainConfig, data_vocab: int, ds_config: dict) -> tuple[Llama, ModelConfig]:
    """Partitioned under ZeRO-3 (trainer/partition.py: never whole in one process), else whole in each process."""
    mcfg, ids = model_config(cfg, data_vocab)
    torch.manual_seed(cfg.seed)
    if partition.partitioned(cfg, ds_config):
        model = partition.construct(mcfg, cfg, ds_config)
        if cfg.init_from:
            partition.import_hf(model, cfg.init_from, ids)
        else:
            partition.init_weights(model, cfg.seed)
        return model, mcfg
    model = Llama(mcfg, cfg.attention, loss_chunk=cfg.loss_chunk_tokens)
    if cfg.init_from:
        model.load_state_dict(init_state(cfg.init_from, cfg.init_map, cfg.vocab_multiple)[1], strict=True)
    return model, mcfg


class Stop:
    """SIGTERM (preemption, scancel) sets a flag; the loop checkpoints after the current step and exits."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


@dataclass
class Run:
    """Everything a running schedule holds; built once by `setup`, then advanced by `train`."""
    cfg: TrainConfig
    mcfg: ModelConfig
    engine: object
    optimizer: torch.optim.Optimizer
    loaders: list[StageLoader]
    plan: Plan
    guard: SpikeGuard
    log: MetricsLog
    dist: object
    rank: int
    world: int
    n_matmul: int            # non-embedding parameters, for the FLOP count
    peak: float | None       # dense bf16 TFLOPS of the device; None = MFU n/a
    tokenizer: dict
    state: dict = field(default_factory=lambda: {"step": 0, "stage_index": 0, "consumed_samples": 0, "tokens": 0})
    skipped: int = 0
    validator: Validator | None = None   # eval.every > 0: the held-out batches
    last_eval: float | None = None       # the latest held-out loss, for the progress bar


def setup(cfg: TrainConfig, run_name: str = "") -> Run:
    """Distributed init, every stage's shards checked, model, DeepSpeed engine, and the resumed state."""
    deepspeed = setup_distributed(cfg)
    import torch.distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    stages = read_mix(cfg.data.root)
    if cfg.data.stages:
        missing = set(cfg.data.stages) - {s.stage for s in stages}
        if missing:
            raise ValueError(f"data.stages asks for {sorted(missing)}, not in {cfg.data.root}/manifest.json")
        stages = [s for s in stages if s.stage in cfg.data.stages]
    check_shards(stages)  # every shard of every stage, before the first step (not when its stage comes up)
    epochs = list(cfg.data.epochs) or [1.0] * len(stages)
    heldout = [heldout_rows(s, cfg.eval.fraction, cfg.data.seed) for s in stages]  # never in a training batch
    loaders = [StageLoader(s, cfg.data.seed, cfg.micro_batch_size, rank, world, e, cfg.data.cache_row_groups, h)
               for s, e, h in zip(stages, epochs, heldout)]
    plan = make_plan(cfg, loaders)
    data_vocab = max(int(s.tokenizer.get("vocab_size", 0)) for s in stages)
    ds_config = deepspeed_config(cfg)
    model, mcfg = build_model(cfg, data_vocab, ds_config)
    seq_len = max(s.seq_len for s in stages)
    if seq_len > mcfg.max_seq_len:
        raise ValueError(f"shards have seq_len {seq_len} > model max_seq_len {mcfg.max_seq_len}")
    n_matmul = sum(map(partition.numel, model.parameters())) - partition.numel(model.model.embed_tokens.weight)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    sched = scheduler(optimizer, cfg.optim, plan.total)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=sched,
                                           config=ds_config)
    if cfg.compile:
        engine.module.compile_blocks()
    run = Run(cfg, mcfg, engine, optimizer, loaders, plan, SpikeGuard(cfg.guard), None, dist, rank, world,
              n_matmul, device_peak_tflops(cfg.metrics.peak_tflops), dict(stages[0].tokenizer))
    run.validator = make_validator(cfg, stages, heldout, mcfg)
    client = checkpoint.load(engine, cfg.checkpoint.dir) if cfg.checkpoint.resume else None
    if client:
        run.state = {k: client[k] for k in run.state}
        run.guard.load_state_dict(client.get("guard", {}))
    run.log = MetricsLog(cfg.metrics.dir, cfg.metrics.tensorboard, enabled=rank == 0, resume=bool(client),
                         run_name=run_name or cfg.metrics.run_name)
    if rank == 0:
        Path(cfg.metrics.dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.metrics.dir) / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))
    return run


def make_validator(cfg: TrainConfig, stages, heldout, mcfg: ModelConfig) -> Validator | None:
    """The held-out batches when eval.every > 0: every row of eval.path, else the rows held out of data.root."""
    if cfg.eval.every <= 0:
        return None
    if cfg.eval.path:
        stages = read_eval_stages(cfg.eval.path)
        check_shards(stages)
        heldout = [np.arange(s.rows) for s in stages]
        too_long = [s.stage for s in stages if s.seq_len > mcfg.max_seq_len]
        if too_long:
            raise ValueError(f"eval.path stages {too_long} have seq_len > model max_seq_len {mcfg.max_seq_len}")
    if not any(len(h) for h in heldout):
        raise ValueError(f"eval.every={cfg.eval.every} but no row is held out (eval.fraction {cfg.eval.fraction} "
                         f"of {sum(s.rows for s in stages)} rows): raise eval.fraction or give eval.path")
    return Validator(stages, heldout, cfg.micro_batch_size, cfg.eval.max_batches)


def run_eval(run: Run, stage: int, bar) -> dict:
    """One evaluation after the current step: metrics.jsonl, TensorBoard and the progress bar."""
    rec = {"step": run.state["step"], "stage": stage, **run.validator.evaluate(run.engine)}
    run.log.log_eval(rec)
    run.last_eval = rec["eval_loss"]
    if bar is not None:
        bar.write(f"step {rec['step']} stage {stage}: held-out loss {_fmt(rec['eval_loss'])} "
                  + " ".join(f"{k}={_fmt(v)}" for k, v in rec["eval_loss_by_type"].items()))
    return rec


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def next_batches(run: Run, loader: StageLoader) -> list[dict]:
    """The step's micro-batches (all collated before the first forward, so the step's token count is known)."""
    out = []
    for _ in range(run.cfg.grad_accum):
        out.append(loader.batch(run.state["consumed_samples"]))
        run.state["consumed_samples"] += loader.samples_per_micro_step
    return out


def step_record(run: Run, stage: int, res: StepResult, dt: float) -> dict:
    """The metrics of one step; FLOPs count attention over the document-masked area (trainer/metrics.py)."""
    tflops = step_flops(run.mcfg, run.n_matmul, res.tokens, res.attn_pairs) / dt / 1e12
    gn = run.engine.get_global_grad_norm()
    return {"step": run.state["step"], "stage": stage, "loss": res.loss,
            "grad_norm": float(gn) if gn is not None else None, "lr": run.optimizer.param_groups[0]["lr"],
            "tokens": run.state["tokens"], "label_tokens": res.label_tokens,
            "tokens_per_s": res.tokens * run.world / dt, "tflops_per_gpu": tflops,
            "mfu": (tflops / run.peak) if run.peak else None, "step_time_s": dt,
            "skipped": not res.applied, "skip_reason": res.reason}


def log_step(run: Run, rec: dict, bar) -> None:
    if run.state["step"] % run.cfg.metrics.log_every == 0 or rec["skipped"]:
        run.log.log(rec)
    if bar is not None:
        bar.update(1)
        extra = {} if run.validator is None else {"eval": _fmt(run.last_eval)}
        bar.set_postfix(stage=rec["stage"], loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}",
                        tok_s=f"{rec['tokens_per_s']:.0f}", mfu="n/a" if rec["mfu"] is None else f"{rec['mfu']:.1%}",
                        **extra)


def save_checkpoint(run: Run) -> None:
    """Collective: every rank writes its own ZeRO partition."""
    checkpoint.save(run.engine, run.cfg.checkpoint.dir, run.state["step"],
                    {**run.state, "guard": run.guard.state_dict(), "model_config": to_dict(run.mcfg),
                     "tokenizer": run.tokenizer})


def train(cfg: TrainConfig, loss_fn=lm_loss_sum, run_name: str = ""):
    """Runs the whole schedule (or resumes it); returns (summary, engine). `loss_fn` is injectable for tests."""
    run = setup(cfg, run_name)
    state, stop, start_step = run.state, Stop(), run.state["step"]
    if cfg.checkpoint.at_start and state["step"] == 0:
        save_checkpoint(run)  # the starting weights, e.g. to check an import by exporting them
    bar = None
    if run.rank == 0 and cfg.metrics.progress_bar:
        from tqdm import tqdm
        bar = tqdm(total=run.plan.total, initial=state["step"], desc="train", dynamic_ncols=True)
    try:
        while state["stage_index"] < len(run.loaders) and not stop.requested:
            loader = run.loaders[state["stage_index"]]
            stage_end = sum(run.plan.steps[:state["stage_index"] + 1])
            while state["step"] < stage_end and not stop.requested:
                if cfg.run_steps and state["step"] - start_step >= cfg.run_steps:
                    stop.requested = True  # this run's time slice is used up; the schedule is unchanged
                    break
                t0 = time.perf_counter()
                res = train_step(run.engine, next_batches(run, loader), run.guard, loss_fn, run.dist)
                dt = time.perf_counter() - t0
                run.skipped += not res.applied
                state["tokens"] += res.tokens * run.world
                state["step"] += 1
                log_step(run, step_record(run, loader.stage.stage, res, dt), bar)
                if run.validator is not None and state["step"] % cfg.eval.every == 0:
                    run_eval(run, loader.stage.stage, bar)
                if cfg.checkpoint.every_steps and state["step"] % cfg.checkpoint.every_steps == 0:
                    save_checkpoint(run)
            if state["step"] >= stage_end:
                state["stage_index"] += 1
                state["consumed_samples"] = 0
        if cfg.checkpoint.at_exit or stop.requested:
            save_checkpoint(run)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        run.log.close()
    return summarize(run, stop.requested), run.engine


def summarize(run: Run, stopped: bool) -> dict:
    summary = {"steps": run.state["step"], "skipped": run.skipped, "tokens": run.state["tokens"],
               "plan": run.plan.steps, "stopped": stopped}
    metrics = Path(run.cfg.metrics.dir) / "metrics.jsonl"
    if run.rank == 0 and run.cfg.metrics.plot and run.log.enabled and metrics.exists():
        summary["plot"] = str(plot_loss(metrics, Path(run.cfg.metrics.dir) / "loss.png"))
    return summary


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="train config YAML (conf/train/*.yaml)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a config key (YAML value), repeatable: --set optim.lr=1e-4 --set data.root=...")
    ap.add_argument("--run-name", default="", help="= --set metrics.run_name=NAME. TensorBoard run: events under "
                    "<metrics.dir>/tensorboard/<name>/ "
                    "(default: the start time, YYYYmmdd-HHMMSS; a name already used gets a -2, -3, ... suffix)")
    ap.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    summary, _ = train(cfg, run_name=a.run_name)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
