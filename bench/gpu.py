"""`make bench-gpu`: the trainer on one CUDA GPU, in under 8 minutes. Prints a Markdown section and writes it
to docs/bench/gpu.md.

1. Numerics: document-masked causal attention of `varlen` (and `flash_attn` where it imports) against
   `sdpa_mask` on the same packed bf16 batch, forward output and the q/k/v gradients. Reference: the same
   sdpa_mask computation in fp32. Criterion (FlashAttention's own test, tests/test_flash_attn.py): a kernel's
   max abs error against the fp32 reference is at most 2x that of the bf16 PyTorch path, plus 1e-5.
2. Throughput: the ~1.1B LLaMA of conf/model/1b.yaml (vocabulary 39,424 = LLaMA-2's 32,000 + Ziya2's 7,400
   characters, padded to 128) on packed 4096-token rows with document masking, DeepSpeed ZeRO-2 bf16, the
   trainer's own `train_step` (fused chunked loss, token-weighted accumulation), activation checkpointing off
   and on, micro-batch sizes climbing until one does not fit. Per configuration: the first step's time alone,
   the median of the steady steps after it, tokens/s per GPU, TFLOPS and MFU against the dense bf16 peak
   (H100/H200 989, A100 312), and the peak allocated memory.

FLOPs per step = 6·N·T + 12·L·d·A (trainer/metrics.py): N non-embedding parameters (lm_head included), T tokens,
L layers, d = heads·head_dim, A = Σ over documents of n(n+1)/2, the (query, key) pairs a causal,
document-masked attention computes, not the full 4096² (PaLM's 12·L·d·S per token is shown alongside).

The rows' document lengths are real: bench/gpu_doc_lens.json holds the doc_lens of 4096-token rows packed by
dataflow.trainset.pack from the fixture corpus (`python -m bench.gpu --write-doc-lens DOCS_JSONL`, on CPU). Token ids
are seeded random (throughput does not depend on them).

The requested backend must exist: on CUDA without it the script stops with an error; it never falls back to
sdpa_mask. On a machine without CUDA it exits with status 2 and says so.

python -m bench.gpu [--attention varlen] [--out docs/bench/gpu.md] [--budget-s 420]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .harness import git_commit, provenance_tag

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["trainer", "bench/gpu.py", "bench/gpu_doc_lens.json", "conf/model/1b.yaml", "conf/train/1b.yaml",
         "conf/deepspeed/zero2.json"]   # the code this section measures (stale marking in BENCHMARKS.md)
DOC_LENS = Path(__file__).resolve().parent / "gpu_doc_lens.json"
SEQ_LEN = 4096                      # Ziya2 / LLaMA-2 context (conf/pipeline.yaml pack.seq_len)
TOLERANCE_FACTOR, TOLERANCE_ABS = 2.0, 1e-5   # FlashAttention tests: err(kernel) <= 2·err(pytorch bf16)
MB_AC_OFF = (1, 2, 4, 8, 16)        # micro-batch sizes tried without activation checkpointing (stop at OOM)
MB_AC_ON = (4, 8, 16, 32)           # and with it
STEPS, WARMUP = 8, 2                # steady steps measured after WARMUP steps (the first is reported alone)


# ---------------------------------------------------------------- CPU-side parts (tested in make test)
def palm_flops(mcfg, n_matmul: int, tokens: int, seq_len: int) -> float:
    """PaLM appendix B: 6N + 12·L·d·S per token (full, non-causal S² attention), for comparison only."""
    return tokens * (6.0 * n_matmul + 12.0 * mcfg.n_layers * mcfg.n_heads * mcfg.head_dim * seq_len)


def load_doc_lens(path: Path = DOC_LENS) -> list[list[int]]:
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        if sum(r) != SEQ_LEN:
            raise ValueError(f"{path}: a row's doc_lens sum to {sum(r)}, not {SEQ_LEN}")
    return rows


def write_doc_lens(corpus: Path, out: Path = DOC_LENS, rows: int = 64, seed: int = 7) -> Path:
    """Document lengths of 4096-token rows packed by `dataflow.trainset.pack.greedy_rows` from every document of the
    fixture corpus (reference prose, Q&A, low-quality pages) in a seeded order, tokenized with the demo tokenizer
    (dataflow.trainset.demo, the pipeline's LLaMA-2 recipe at vocabulary 4,000)."""
    import itertools
    import tempfile

    import sentencepiece as spm

    from dataflow.trainset import pack
    from dataflow.trainset.demo import train_tokenizer
    docs = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    with tempfile.TemporaryDirectory() as d:
        sp = spm.SentencePieceProcessor(model_file=str(train_tokenizer([x["text"] for x in docs], Path(d), 4000)))
    order = np.random.default_rng(seed).permutation(len(docs))
    enc = ((docs[i]["id"], docs[i]["source"], np.asarray(sp.encode(docs[i]["text"]) + [sp.eos_id()], np.int32), None)
           for i in order)
    lens = [[int(n) for n in r["doc_lens"]] for r in itertools.islice(pack.greedy_rows(enc, SEQ_LEN, sp.eos_id()), rows)
            if not r["num_pad"]]
    out.write_text(json.dumps({"source": f"dataflow.trainset.pack.greedy_rows over every document of {corpus} in a seeded "
                                         f"order (seed {seed}), demo tokenizer (vocab 4000), seq_len {SEQ_LEN}",
                               "rows": lens}) + "\n")
    return out


def batch_rows(doc_lens: list[list[int]], start: int, n: int, vocab: int, seed: int) -> list[dict]:
    """n packed rows (the trainer's row dicts) with real document lengths and seeded random ids."""
    rng = np.random.default_rng([seed, start])
    return [{"input_ids": rng.integers(3, vocab, SEQ_LEN, dtype=np.int64),
             "doc_lens": doc_lens[(start + i) % len(doc_lens)], "loss_mask": None, "num_pad": 0} for i in range(n)]


# ---------------------------------------------------------------- CUDA parts
def require_backend(name: str) -> str:
    """The backend to measure; any failure to provide it on CUDA is an error, never a fallback."""
    import torch

    from trainer.attention import resolve_backend
    got = resolve_backend(name, torch.device("cuda"))  # raises RuntimeError when varlen/flash_attn is missing
    if got == "sdpa_mask" and name != "sdpa_mask":
        raise RuntimeError(f"attention {name!r} resolved to sdpa_mask on CUDA: neither torch varlen_attn nor "
                           f"flash_attn is available (torch {torch.__version__}); refusing to fall back")
    return got


def kernels_to_check(device) -> list[str]:
    """varlen always (its absence is an error), flash_attn where it imports."""
    import torch

    from trainer.attention import resolve_backend
    if device.type != "cuda":
        return ["sdpa_mask"]  # --cpu-smoke: exercises the comparison code against itself
    out = ["varlen"]
    try:
        resolve_backend("flash_attn", torch.device("cuda"))
        out.append("flash_attn")
    except RuntimeError as e:
        print(f"flash_attn not measured: {e}", flush=True)
    return out


def attention_numerics(doc_lens: list[list[int]], heads: int, kv_heads: int, head_dim: int, device,
                       backends: list[str]) -> tuple[list[str], bool]:
    import torch

    from trainer.attention import attend, prepare
    from trainer.data import collate
    rows = batch_rows(doc_lens, 0, 2, 100, seed=0)
    b = collate(rows, SEQ_LEN)
    cu, mx = b["cu_seqlens"].to(device), b["max_seqlen"]
    B, S = 2, SEQ_LEN
    g = torch.Generator(device=device).manual_seed(0)
    q0 = torch.randn(B, S, heads, head_dim, device=device, generator=g)
    k0 = torch.randn(B, S, kv_heads, head_dim, device=device, generator=g)
    v0 = torch.randn(B, S, kv_heads, head_dim, device=device, generator=g)
    dout = torch.randn(B, S, heads, head_dim, device=device, generator=g)

    def run(backend, dtype):
        q, k, v = (t.detach().to(dtype).clone().requires_grad_(True) for t in (q0, k0, v0))
        meta = prepare(backend, B, S, q.device, cu, mx)
        out = attend(q, k, v, meta)
        out.backward(dout.to(dtype))
        return [t.float() for t in (out.detach(), q.grad, k.grad, v.grad)]

    ref = run("sdpa_mask", torch.float32)
    pt = run("sdpa_mask", torch.bfloat16)
    lines = ["| backend | tensor | max abs err vs fp32 | sdpa_mask bf16 err | bound | pass |", "|---|---|---:|---:|---:|---|"]
    ok = True
    for name in backends:
        got = run(name, torch.bfloat16)
        for label, a, p, r in zip(("out", "dq", "dk", "dv"), got, pt, ref):
            err, base = (a - r).abs().max().item(), (p - r).abs().max().item()
            bound = TOLERANCE_FACTOR * base + TOLERANCE_ABS
            ok &= err <= bound
            lines.append(f"| {name} | {label} | {err:.3e} | {base:.3e} | {bound:.3e} | {'yes' if err <= bound else '**NO**'} |")
    return lines, ok


def measure(cfg, mcfg, backend: str, ac: bool, mb: int, doc_lens, deepspeed, steps: int, warmup: int,
            device) -> dict:
    import torch
    cuda = device.type == "cuda"

    from trainer.config import GuardConfig
    from trainer.data import collate
    from trainer.guard import SpikeGuard
    from trainer.metrics import attention_pairs, step_flops
    from trainer.model import Llama, num_params
    from trainer.schedule import scheduler
    from trainer.step import train_step
    from trainer.train import deepspeed_config, param_groups
    m = replace(mcfg, activation_checkpointing=ac)
    torch.manual_seed(cfg.seed)
    model = opt = engine = None
    times, pairs = [], []
    try:
        with device:
            model = Llama(m, backend, loss_chunk=cfg.loss_chunk_tokens)
        n_matmul = num_params(model, exclude_embeddings=True)
        opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        ds = deepspeed_config(replace(cfg, micro_batch_size=mb, grad_accum=1))
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds,
                                               lr_scheduler=scheduler(opt, cfg.optim, 10**6))
        guard = SpikeGuard(GuardConfig(enabled=False))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for s in range(warmup + steps):
            rows = batch_rows(doc_lens, s * mb, mb, m.vocab_size, seed=1)
            b = collate(rows, SEQ_LEN)
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = train_step(engine, [b], guard)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            pairs.append(sum(attention_pairs(r["doc_lens"]) for r in rows))
            if not res.applied:
                raise RuntimeError(f"step {s} was not applied ({res.reason}); loss {res.loss}")
        peak_mem = torch.cuda.max_memory_allocated() if cuda else 0
    finally:
        model = opt = engine = None  # noqa: F841  (drop every reference before freeing the cache)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    steady = times[warmup:]
    med = statistics.median(steady)
    tokens = mb * SEQ_LEN
    steady_pairs = statistics.mean(pairs[warmup:])
    flops = step_flops(m, n_matmul, tokens, steady_pairs)
    return {"ac": ac, "mb": mb, "first_s": times[0], "steady_s": med, "steady_min_s": min(steady),
            "steady_max_s": max(steady), "tokens_per_s": tokens / med, "tflops": flops / med / 1e12,
            "palm_tflops": palm_flops(m, n_matmul, tokens, SEQ_LEN) / med / 1e12, "peak_gib": peak_mem / 2**30,
            "n_matmul": n_matmul, "pairs_per_row": steady_pairs / mb, "loss": res.loss}


# --cpu-smoke: the whole flow on CPU with a 1-layer model, sdpa_mask and one micro-batch size per mode, so that a
# lent GPU's minutes are not spent finding a bug in this script (tests/test_trainer_speed.py runs it)
SMOKE_MODEL = ["model.dim=64", "model.n_layers=1", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=176",
               "model.vocab_size=4096"]


def run(args) -> int:
    import torch

    from trainer.config import load_config
    from trainer.metrics import device_peak_tflops
    from trainer.train import setup_distributed
    t_start = time.time()
    smoke = args.cpu_smoke
    device = torch.device("cpu" if smoke else "cuda")
    backend = "sdpa_mask" if smoke else require_backend(args.attention)
    cfg = load_config(ROOT / "conf/train/1b.yaml", [f"attention={backend}", "precision=bf16",
                                                     f"deepspeed={ROOT}/conf/deepspeed/zero2.json",
                                                     *(SMOKE_MODEL if smoke else [])])
    mcfg = cfg.model
    doc_lens = load_doc_lens(args.doc_lens)
    deepspeed = setup_distributed(cfg)
    name = "CPU smoke run (not a measurement)" if smoke else torch.cuda.get_device_name()
    peak = None if smoke else device_peak_tflops(0.0)
    print(f"device {name}, peak {peak} TFLOPS, backend {backend}", flush=True)
    num_lines, num_ok = attention_numerics(doc_lens, mcfg.n_heads, mcfg.kv_heads, mcfg.head_dim, device,
                                           kernels_to_check(device))
    print("\n".join(num_lines), flush=True)
    results, notes = [], []
    plan = ((False, (1,)), (True, (1,))) if smoke else ((False, MB_AC_OFF), (True, MB_AC_ON))
    steps, warmup = (1, 0) if smoke else (args.steps, WARMUP)
    for ac, mbs in plan:
        for mb in mbs:
            if time.time() - t_start > args.budget_s:
                notes.append(f"AC {'on' if ac else 'off'} micro-batch {mb}: not run, the {args.budget_s:.0f} s "
                             "budget was used up")
                continue
            try:
                r = measure(cfg, mcfg, backend, ac, mb, doc_lens, deepspeed, steps, warmup, device)
            except torch.OutOfMemoryError:
                gc.collect()
                torch.cuda.empty_cache()
                notes.append(f"AC {'on' if ac else 'off'} micro-batch {mb}: out of memory; larger ones not tried")
                print(notes[-1], flush=True)
                break
            results.append(r)
            print(json.dumps(r), flush=True)
    md = render(name, peak, backend, mcfg, num_lines, num_ok, results, notes, time.time() - t_start, doc_lens,
                steps, warmup)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(provenance_tag(git_commit(ROOT), PATHS) + "\n" + md + "\n")
    if not num_ok:
        print("bench-gpu: a kernel is outside the numerics tolerance", file=sys.stderr)
        return 1
    return 0 if results else 1


def render(name, peak, backend, mcfg, num_lines, num_ok, results, notes, wall, doc_lens, steps, warmup) -> str:
    import torch
    best = max(results, key=lambda r: r["tokens_per_s"]) if results else None
    pairs = statistics.mean(sum(n * (n + 1) // 2 for n in r) for r in doc_lens)
    docs = statistics.mean(len(r) for r in doc_lens)
    out = [f"## Trainer on one GPU ({name})", "",
           f"`make bench-gpu` (bench/gpu.py) at commit {git_commit(ROOT)}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC;",
           f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}; wall {wall:.0f} s.",
           "", "### Attention numerics (bf16, packed 2 × 4096 rows with document masking)", "",
           f"Criterion (FlashAttention's tests): max |kernel − fp32 sdpa_mask| ≤ {TOLERANCE_FACTOR:g} × max |bf16 sdpa_mask − "
           f"fp32 sdpa_mask| + {TOLERANCE_ABS:g}, for the output and dq, dk, dv. Result: {'pass' if num_ok else '**FAIL**'}.",
           "", *num_lines, "",
           f"### 1.1B LLaMA, ZeRO-2 bf16, attention `{backend}`", "",
           f"conf/model/1b.yaml: {mcfg.n_layers} layers, d {mcfg.dim}, {mcfg.n_heads} heads / {mcfg.kv_heads} kv, "
           f"ffn {mcfg.hidden_dim}, vocab {mcfg.vocab_size}; N = {results[0]['n_matmul']:,} non-embedding parameters."
           if results else "no configuration ran.", "",
           "FLOPs per step = 6·N·T + 12·L·d·A, A = Σ over documents n(n+1)/2 (causal, document-masked area); "
           f"the rows (bench/gpu_doc_lens.json, real fixture prose) hold {docs:.1f} documents on average and "
           f"A = {pairs:,.0f} pairs per row, {pairs / (SEQ_LEN * (SEQ_LEN + 1) / 2):.1%} of one causal 4096 document. "
           "MFU = TFLOPS ÷ the dense bf16 peak "
           f"({peak if peak else 'unknown device: n/a'}). PaLM's 12·L·d·S (full 4096²) is shown for comparison only.",
           "", "| act. ckpt | micro-batch | first step s | steady s/step (min-max) | tokens/s/GPU | TFLOPS | MFU | "
               "MFU (PaLM S²) | peak mem GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        mfu = f"{r['tflops'] / peak:.1%}" if peak else "n/a"
        palm = f"{r['palm_tflops'] / peak:.1%}" if peak else "n/a"
        out.append(f"| {'on' if r['ac'] else 'off'} | {r['mb']} | {r['first_s']:.2f} | {r['steady_s']:.3f} "
                   f"({r['steady_min_s']:.3f}-{r['steady_max_s']:.3f}) | {r['tokens_per_s']:,.0f} | {r['tflops']:.0f} | "
                   f"{mfu} | {palm} | {r['peak_gib']:.1f} |")
    out += [""] + [f"- {n}" for n in notes]
    if best and peak:
        goal = "meets" if best["tflops"] / peak >= 0.5 else "misses"
        out.append(f"- Best: {best['tokens_per_s']:,.0f} tokens/s/GPU at MFU {best['tflops'] / peak:.1%} "
                   f"(micro-batch {best['mb']}, checkpointing {'on' if best['ac'] else 'off'}); this {goal} the "
                   "issue's goal of 50%.")
    out.append(f"- Steady = median of {steps} steps after {warmup} warm-up steps; the first step (allocator, "
               "cuBLAS/kernel selection) is reported alone. Peak memory = torch.cuda.max_memory_allocated.")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attention", default="varlen", choices=["varlen", "flash_attn", "auto"],
                    help="backend to measure; an unavailable one is an error (no sdpa_mask fallback)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/bench/gpu.md", help="Markdown section to write")
    ap.add_argument("--doc-lens", type=Path, default=DOC_LENS, help="real document lengths of 4096-token rows")
    ap.add_argument("--steps", type=int, default=STEPS, help="steady steps per configuration")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="stop starting new configurations after this many seconds (the whole run stays < 8 min)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run the whole flow on CPU with a 1-layer model and sdpa_mask (a test of this script)")
    ap.add_argument("--write-doc-lens", type=Path, default=None, metavar="DOCS_JSONL",
                    help="(CPU) pack the fixture corpus at 4096 and write --doc-lens, then exit")
    a = ap.parse_args(argv)
    if a.write_doc_lens:
        print(write_doc_lens(a.write_doc_lens, a.doc_lens))
        return 0
    import torch
    if a.cpu_smoke:
        return run(a)
    if not torch.cuda.is_available():
        print(f"bench-gpu needs a CUDA GPU and this machine has none (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda}): nothing measured, {a.out} left unchanged. The CPU-side parts (FLOP count, "
              "chunked loss, compile option, HF export) are covered by `make test`.", file=sys.stderr)
        return 2
    os.environ["DS_ACCELERATOR"] = "cuda"
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
