"""Throughput accounting (tokens/s, TFLOPS, MFU) and the metric sinks: JSONL, TensorBoard, loss-curve PNG.

FLOPs of a step = 6·N·T + 12·L·d·A (Kaplan et al. / PaLM appendix B, with the attention term counted over the
area actually attended):
- 6·N·T: the forward (2) and backward (4) matmul FLOPs of the N non-embedding parameters (lm_head included; the
  embedding lookup is not a matmul) for each of the T tokens of the step;
- 12·L·d·A: the attention score (QKᵀ) and value (AV) products, 2·d FLOPs each per (query, key) pair in the
  forward, twice that in the backward, for L layers of width d = heads·head_dim, over A pairs. With document
  masking a row attends only inside its documents: A = Σ over documents of n(n+1)/2 (causal, diagonal
  included), not the full S² of PaLM's 12·L·d·S per token. One 4096-token document has A = 8,390,656; 16
  documents of 256 have A = 526,336.
Activation recomputation is not counted (MFU, not HFU). MFU = achieved FLOP/s per device ÷ the dense bf16 peak.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import ModelConfig

# dense (no sparsity) bf16 tensor-core peaks, TFLOPS, from the vendors' datasheets
PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H200": 989.0}


def attention_pairs(doc_lens) -> int:
    """(query, key) pairs a causal, document-masked attention computes: Σ n(n+1)/2 over the segments."""
    return int(sum(int(n) * (int(n) + 1) // 2 for n in doc_lens))


def pairs_from_cu_seqlens(cu_seqlens: torch.Tensor) -> int:
    return attention_pairs((cu_seqlens[1:] - cu_seqlens[:-1]).tolist())


def step_flops(cfg: ModelConfig, n_params_no_embed: int, tokens: int, pairs: int) -> float:
    """Model FLOPs of one training step (forward + backward) over `tokens` tokens whose rows attend `pairs` pairs."""
    return 6.0 * n_params_no_embed * tokens + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * pairs


def device_peak_tflops(configured: float = 0.0) -> float | None:
    """The configured peak, else the GPU's from PEAK_TFLOPS; None on CPU or an unknown device (MFU n/a)."""
    if configured > 0:
        return configured
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, peak in PEAK_TFLOPS.items():
            if key in name:
                return peak
    return None


def tensorboard_run_dir(out_dir: str | Path, run_name: str = "") -> Path:
    """`<out_dir>/tensorboard/<run_name>/`: one folder per run, so TensorBoard shows each run as its own curve
    (event files of two runs in one folder are drawn as one doubled-back line). No name: the start time; a
    name already used gets the first free `-<n>` suffix, so a rerun never writes into an earlier run's folder."""
    root = Path(out_dir) / "tensorboard"
    name = run_name or time.strftime("%Y%m%d-%H%M%S")
    cand, n = root / name, 1
    while cand.exists():
        n += 1
        cand = root / f"{name}-{n}"
    return cand


class MetricsLog:
    """Rank 0 writes one JSON object per step to metrics.jsonl and mirrors scalars to TensorBoard, in this run's
    own folder (`tensorboard_run_dir`)."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, enabled: bool = True, resume: bool = False,
                 run_name: str = ""):
        self.enabled = enabled
        self.dir = Path(out_dir)
        self.tb = None
        self.tb_dir: Path | None = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        self.f = open(self.path, "a" if resume else "w")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb_dir = tensorboard_run_dir(self.dir, run_name)
                self.tb = SummaryWriter(str(self.tb_dir))
            except ImportError:  # tensorboard is in the [train] extra; the JSONL log is always written
                self.tb = None

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step" and v == v:
                    self.tb.add_scalar(f"train/{k}", v, record["step"])

    def log_eval(self, record: dict) -> None:
        """A validation record (trainer/validate.py): one JSON line, and TensorBoard scalars eval/loss,
        eval/loss_by_type/<source>, eval/loss_by_stage/<stage> at the record's step."""
        if not self.enabled:
            return
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()
        if self.tb is None:
            return
        scalars = {"eval/loss": record.get("eval_loss")}
        for group in ("by_type", "by_stage"):
            scalars.update({f"eval/loss_{group}/{k}": v for k, v in (record.get(f"eval_loss_{group}") or {}).items()})
        for tag, v in scalars.items():
            if isinstance(v, (int, float)) and v == v:
                self.tb.add_scalar(tag, v, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.f.close()
            if self.tb is not None:
                self.tb.close()


def plot_loss(metrics_jsonl: str | Path, png: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lines = [json.loads(line) for line in open(metrics_jsonl)]
    recs = [r for r in lines if "loss" in r]   # training steps; validation records carry eval_loss instead
    evals = [r for r in lines if r.get("eval_loss") is not None]
    ok = [r for r in recs if not r.get("skipped")]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in ok], [r["loss"] for r in ok], lw=1.2, label="training loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", ms=3, lw=1, label="held-out loss")
        ax.legend(fontsize=8)
    for a, b in zip(recs, recs[1:]):
        if b["stage"] != a["stage"]:
            ax.axvline(b["step"], color="grey", ls="--", lw=0.8)
            ax.text(b["step"], ax.get_ylim()[1], f" stage {b['stage']}", va="top", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)
