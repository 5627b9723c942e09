"""Trainer engine overhead on CPU: trainer.train (DeepSpeed engine, spike guard, metrics) vs a plain PyTorch loop
over the same tiny LLaMA, the same packed batches (same loader and collate) and the same AdamW + schedule + clipping.

Both loops time every optimizer step end to end (batch fetch, forward, loss, backward, clip, step); the median
of the steps after a warm-up is reported. Goal: engine overhead <= 1.2x.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from . import BenchContext

STEPS, WARMUP = 20, 4


def _config(mix: Path, out: Path, zero: int, precision: str, steps: int):
    from trainer.config import load_config
    return load_config("conf/train/tiny.yaml", [
        f"data.root={mix}", f"checkpoint.dir={out / 'ckpt'}", f"metrics.dir={out}", "metrics.progress_bar=false",
        "metrics.tensorboard=false", "metrics.plot=false", "checkpoint.at_exit=false",
        f"deepspeed=conf/deepspeed/zero{zero}.json", f"precision={precision}", f"max_steps={steps}",
        "data.steps_per_stage=0", "micro_batch_size=4", "data.stages=[1]", "data.epochs=[4]"])


def engine_step_times(cfg) -> list[float]:
    from trainer.train import train
    train(cfg)
    recs = [json.loads(line) for line in open(Path(cfg.metrics.dir) / "metrics.jsonl")]
    return [r["step_time_s"] for r in recs]


def plain_step_times(cfg, bf16: bool) -> list[float]:
    """nanoGPT-style loop: fp32 master weights, bf16 autocast when bf16, torch AdamW, clip_grad_norm_."""
    from trainer.data import StageLoader, read_mix
    from trainer.model import causal_lm_loss
    from trainer.schedule import scheduler
    from trainer.train import build_model, make_plan, param_groups
    stage = read_mix(cfg.data.root)[0]
    loader = StageLoader(stage, cfg.data.seed, cfg.micro_batch_size, epochs=cfg.data.epochs[0])
    plan = make_plan(cfg, [loader])
    model, _ = build_model(cfg, int(stage.tokenizer["vocab_size"]))
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas,
                            eps=cfg.optim.eps)
    sched = scheduler(opt, cfg.optim, plan.total)
    times, consumed = [], 0
    model.train()
    for _ in range(plan.total):
        t0 = time.perf_counter()
        b = loader.batch(consumed)
        consumed += loader.samples_per_micro_step
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(b["input_ids"], b["position_ids"], b["cu_seqlens"], b["max_seqlen"])
        loss = causal_lm_loss(logits, b["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        times.append(time.perf_counter() - t0)
    return times


def run(ctx: BenchContext) -> str:
    from trainer.demo_shards import build
    work = ctx.sub("trainer")
    mix = build(ctx.fixture / "docs.jsonl", work / "mix", seq_len=256, rows_per_stage=64)
    steps = 12 if ctx.quick else STEPS
    med = lambda xs: statistics.median(xs[WARMUP:])  # noqa: E731
    rows, load0 = [], os.getloadavg()[0]
    for label, zero, precision in (("fp32, ZeRO-1", 1, "fp32"), ("bf16, ZeRO-2", 2, "bf16")):
        cfg = _config(mix, work / f"z{zero}-{precision}", zero, precision, steps)
        eng = med(engine_step_times(cfg))
        plain = med(plain_step_times(cfg, bf16=precision == "bf16"))
        rows.append(f"| {label} | {eng * 1e3:.1f} | {plain * 1e3:.1f} | {eng / plain:.2f}x |")
    return "\n".join([
        "## Trainer: engine overhead (CPU)",
        "",
        "`trainer.train` (DeepSpeed engine on CPU/gloo, spike-guard all-reduce, metrics) against a plain PyTorch",
        "loop (AdamW, the same LR schedule, clip_grad_norm_, bf16 autocast with fp32 master weights for bf16) over",
        f"the same tiny LLaMA (conf/model/tiny.yaml: 2 layers, d 128, GQA 4/2) and the same batches: 4 packed rows",
        f"of 256 tokens from the fixture corpus, SentencePiece vocab 4,000 (padded to 4,096). Median of {steps - WARMUP}",
        f"steps after {WARMUP} warm-up steps, each timed end to end including the batch fetch.",
        "",
        "| precision, engine | trainer ms/step | plain torch ms/step | ratio (goal <= 1.2x) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"Load average (1 min) on this shared 2-core machine: {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at",
        "the end. Other jobs ran concurrently, so absolute times are inflated and the ratio carries their noise;",
        "rerun on an idle machine for clean figures. GPU throughput (tokens/s, MFU) is not measured: no GPU was lent.",
    ])
