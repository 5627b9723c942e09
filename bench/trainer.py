"""Trainer engine overhead on CPU: `trainer.train` (DeepSpeed engine, spike guard, metrics) against a plain PyTorch
loop, the same bf16 scheme on both sides, whole processes interleaved by the bench harness (bench/harness.py).

The same work on both sides:
- the same tiny LLaMA (conf/model/tiny.yaml), the same initial weights (seed), the same packed batches (the
  trainer's loader and collate over one demo mix), the same token-weighted loss (the model's fused chunked
  cross-entropy, trainer/step.py), AdamW with the same parameter groups, LR schedule and clipping at 1.0;
- the same precision scheme: bf16 weights, activations and gradients, fp32 master weights and AdamW states
  (what DeepSpeed's bf16 mode does; the plain loop keeps fp32 masters itself and copies them back to bf16).
Each side runs >= 100 optimizer steps in its own process; every step is timed end to end (batch fetch,
forward, loss, backward, clip, update) and the median after a warm-up is the per-step figure. The harness runs
the sides A B, B A, ... (order rotating) for 3 repetitions and measures each whole process's wall and CPU time.
Goal (issue #16): engine per-step time <= 1.2x the plain loop's.

python -m bench.trainer --side engine|plain --mix MIX --steps N --out RESULT.json   (one side, one process)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from . import BenchContext

PATHS = ["trainer"]
STEPS, STEPS_QUICK = 120, 12      # issue #16: >= 100 steps per side
WARMUP, WARMUP_QUICK = 10, 2
REPS, REPS_QUICK = 3, 1
SEQ_LEN, MICRO_BATCH, ROWS = 256, 4, 64


def _config(mix: Path, out: Path, steps: int):
    from trainer.config import load_config
    epochs = -(-steps * MICRO_BATCH // ROWS) + 1  # enough passes over stage 1 for `steps` steps
    return load_config("conf/train/tiny.yaml", [
        f"data.root={mix}", f"checkpoint.dir={out / 'ckpt'}", f"metrics.dir={out}", "metrics.progress_bar=false",
        "metrics.tensorboard=false", "metrics.plot=false", "checkpoint.at_exit=false", "checkpoint.resume=false",
        "deepspeed=conf/deepspeed/zero2.json", "precision=bf16", f"max_steps={steps}", "data.steps_per_stage=0",
        f"micro_batch_size={MICRO_BATCH}", "data.stages=[1]", f"data.epochs=[{epochs}]", "guard.enabled=true"])


def engine_step_times(cfg) -> list[float]:
    from trainer.train import train
    train(cfg)
    records = [json.loads(line) for line in open(Path(cfg.metrics.dir) / "metrics.jsonl")]
    return [r["step_time_s"] for r in records if "step_time_s" in r]   # validation records carry no step time


def plain_step_times(cfg) -> list[float]:
    """nanoGPT-style loop with DeepSpeed's bf16 scheme: bf16 model, fp32 masters + AdamW states, clip on fp32."""
    import torch

    from trainer.data import StageLoader, read_mix
    from trainer.schedule import scheduler
    from trainer.step import label_tokens, lm_loss_sum
    from trainer.train import build_model, make_plan, param_groups
    stage = read_mix(cfg.data.root)[0]
    loader = StageLoader(stage, cfg.data.seed, cfg.micro_batch_size, epochs=cfg.data.epochs[0])
    plan = make_plan(cfg, [loader])
    model, _ = build_model(cfg, int(stage.tokenizer["vocab_size"]))
    groups = param_groups(model, cfg.optim.weight_decay)
    masters = [{"params": [torch.nn.Parameter(p.detach().float().clone()) for p in g["params"]],
                "weight_decay": g["weight_decay"]} for g in groups]
    pairs = [(p, m) for g, mg in zip(groups, masters) for p, m in zip(g["params"], mg["params"])]
    model.to(torch.bfloat16)
    opt = torch.optim.AdamW(masters, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    sched = scheduler(opt, cfg.optim, plan.total)
    device = torch.device("cpu")
    times, consumed = [], 0
    model.train()
    for _ in range(plan.total):
        t0 = time.perf_counter()
        b = loader.batch(consumed)
        consumed += loader.samples_per_micro_step
        loss = lm_loss_sum(model, b, device) / max(1, label_tokens(b))
        loss.backward()
        for p, m in pairs:
            m.grad = p.grad.float()
            p.grad = None
        torch.nn.utils.clip_grad_norm_([m for _, m in pairs], cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        with torch.no_grad():
            for p, m in pairs:
                p.copy_(m)
        times.append(time.perf_counter() - t0)
    return times


def one_side(side: str, mix: Path, work: Path, steps: int, out: Path) -> None:
    import torch
    torch.set_num_threads(1)  # both sides alike, on a shared machine
    cfg = _config(mix, work, steps)
    times = engine_step_times(cfg) if side == "engine" else plain_step_times(cfg)
    out.write_text(json.dumps({"side": side, "step_times": times}))


def run(ctx: BenchContext) -> str:
    from dataflow.trainset.demo import build

    from .harness import Side, compare, git_commit
    work = ctx.sub("trainer")
    mix = build(ctx.fixture / "docs.jsonl", work / "mix", seq_len=SEQ_LEN, rows_per_stage=ROWS)
    steps, warmup, reps = (STEPS_QUICK, WARMUP_QUICK, REPS_QUICK) if ctx.quick else (STEPS, WARMUP, REPS)
    results: dict[str, list[float]] = {"engine": [], "plain": []}

    def side(name: str) -> Side:
        def command(rep: int):
            return [sys.executable, "-m", "bench.trainer", "--side", name, "--mix", str(mix), "--steps", str(steps),
                    "--work", str(work / f"{name}-{rep}"), "--out", str(work / f"{name}-{rep}.json")]

        def check(r):
            times = json.loads((work / f"{name}-{r.rep}.json").read_text())["step_times"]
            if len(times) != steps:
                raise RuntimeError(f"{name} ran {len(times)} steps, not {steps}")
            results[name].append(statistics.median(times[warmup:]))
        return Side(name, command, env={"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}, check=check)

    comp = compare([side("engine"), side("plain")], reps=reps)
    eng, plain = statistics.median(results["engine"]), statistics.median(results["plain"])
    fmt = lambda xs: f"{statistics.median(xs) * 1e3:.1f} [{min(xs) * 1e3:.1f}-{max(xs) * 1e3:.1f}]"  # noqa: E731
    ratio = eng / plain
    return "\n".join([
        "## Trainer: engine overhead (CPU)",
        "",
        "`trainer.train` (DeepSpeed ZeRO-2 bf16 engine on CPU/gloo, spike guard, metrics) against a plain PyTorch loop",
        "with the same bf16 scheme (bf16 weights and gradients, fp32 master weights and AdamW states), the same tiny",
        f"LLaMA (conf/model/tiny.yaml), initial weights, batches ({MICRO_BATCH} packed rows of {SEQ_LEN} tokens from the",
        "fixture corpus), token-weighted chunked loss, AdamW groups, LR schedule and clipping. Each side is a whole",
        f"process running {steps} optimizer steps (1 thread); per-step time is the median after {warmup} warm-up",
        f"steps, each timed end to end including the batch fetch. {reps} repetitions, sides interleaved with the",
        f"order rotating (bench/harness.py), at commit {git_commit()}.",
        "",
        "| side | ms/step, median [min-max] of the repetitions' medians | process wall s | process CPU s |",
        "|---|---:|---:|---:|",
        f"| trainer engine | {fmt(results['engine'])} | {comp.spread('engine', 'wall_s')} | {comp.spread('engine', 'cpu_s')} |",
        f"| plain torch | {fmt(results['plain'])} | {comp.spread('plain', 'wall_s')} | {comp.spread('plain', 'cpu_s')} |",
        "",
        f"Engine / plain per step: **{ratio:.2f}x** (goal <= 1.2x: {'met' if ratio <= 1.2 else f'missed by {ratio / 1.2 - 1:.0%}'}).",
        "Process wall and CPU include start-up (DeepSpeed import and engine set-up on the engine side).",
        "",
        comp.load_line(),
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.trainer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", required=True, choices=["engine", "plain"])
    ap.add_argument("--mix", required=True, type=Path, help="a mix root (dataflow.trainset.demo)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--work", required=True, type=Path, help="scratch directory of this run")
    ap.add_argument("--out", required=True, type=Path, help="JSON with the per-step times")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    one_side(a.side, a.mix, a.work, a.steps, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
